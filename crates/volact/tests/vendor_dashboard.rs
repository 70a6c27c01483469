//! The vendor service's dashboard: over plain HTTP (login, cookie, CSRF, escaping,
//! security headers) and in headless Chromium as a vendor uses it — log in, find a
//! customer, see its usage chart from a real host's report, revoke its host key.
//! The browser test is skipped with a loud note when chromedriver is missing, unless
//! `VOLACT_REQUIRE_ALL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::vendor::{
    activate_online, host_with_key, issue_key, no_redirects, post_form, report_every_second,
    session_cookie, vendor_serve,
};
use common::{Fixture, Server, activation_request, provision, run, s};
use fantoccini::{Client, Locator};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use volact_testkit::browser::{
    self, Follow, Outcome, WAIT, WHOLE, check, chromedriver, start_driver,
};

/// A host activated online with a new key of `customer`, reporting usage every second,
/// with `clients` clients of Draw activated; returns once the vendor has a report
/// counting them, with the key's id.
fn reporting_host(
    fx: &Fixture,
    url: &str,
    root: &Path,
    customer: &str,
    clients: u32,
) -> (Server, String) {
    let issued = issue_key(fx, url, customer, "office");
    let host = host_with_key(
        fx,
        root,
        "reporting-host",
        issued["host_key"].as_str().unwrap(),
    );
    activate_online(&host, url).ok();
    report_every_second(&host);
    let server = Server::start(&host, &[]);
    for n in 1..=clients {
        let (body, _) = activation_request(&uuid::Uuid::new_v4().to_string(), fx.key("draw"), n);
        let (status, answer) = common::http(
            &server.addr,
            "POST",
            "/v1/activations",
            Some(&body.to_string()),
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reports: Value = serde_json::from_str(
            &run(&[
                "--json",
                "vendor",
                "usage",
                "--dir",
                s(&fx.vendor_dir),
                "--customer",
                customer,
            ])
            .ok()
            .stdout,
        )
        .unwrap();
        let counted = reports
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["products"]["draw"].as_u64() >= Some(u64::from(clients)));
        if counted {
            let key_id = issued["claims"]["jti"].as_str().unwrap().to_owned();
            return (server, key_id);
        }
        assert!(
            Instant::now() < deadline,
            "no report counts the clients: {reports}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_the_token_checks_csrf_and_escapes_names() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    let customer = "Acme <b>&</b> Sons";
    // Two host keys: the customer's page has a usage chart for each besides its own.
    let (key_id, second_key) = {
        let (fx, url) = (fx.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let id = |v: Value| v["claims"]["jti"].as_str().unwrap().to_owned();
            (
                id(issue_key(&fx, &url, customer, "office")),
                id(issue_key(&fx, &url, customer, "office")),
            )
        })
        .await
        .unwrap()
    };
    let http = no_redirects();

    // Not logged in: pages lead to the login form, forms are refused.
    let r = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = post_form(
        &http,
        format!("{url}/revoke"),
        None,
        &[("kind", "host-key"), ("id", &key_id)],
    )
    .await;
    assert_eq!(r.status(), 403);

    // A wrong token is refused; the right one starts a session.
    let r = post_form(&http, format!("{url}/login"), None, &[("token", "wrong")]).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("not the admin token"));
    let token = std::fs::read_to_string(fx.vendor_dir.join("admin.token")).unwrap();
    let r = post_form(
        &http,
        format!("{url}/login"),
        None,
        &[("token", token.trim())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let cookie = session_cookie(&r);

    // The customer's name is shown escaped, on the list and on its page.
    let page = http
        .get(format!("{url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<b>"), "{html}");
    assert!(
        html.contains("Acme &#60;b&#62;&#38;&#60;/b&#62; Sons"),
        "{html}"
    );
    let link = "/customer?name=Acme%20%3Cb%3E%26%3C%2Fb%3E%20Sons";
    assert!(html.contains(&link.replace('&', "&#38;")), "{html}");
    let page = http
        .get(format!("{url}{link}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&key_id) && html.contains("Revoke…"), "{html}");
    assert!(html.contains(&second_key), "{html}");
    assert_eq!(
        html.matches("class=\"chart usage-chart\"").count(),
        3,
        "{html}"
    );
    let missing = http
        .get(format!("{url}/customer?name=nobody"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A revocation without the session's CSRF token is refused and revokes nothing.
    for csrf in ["", "0123456789abcdef"] {
        let r = post_form(
            &http,
            format!("{url}/revoke"),
            Some(&cookie),
            &[("csrf", csrf), ("kind", "host-key"), ("id", &key_id)],
        )
        .await;
        assert_eq!(r.status(), 403, "csrf {csrf:?}");
    }
    let customers: Value = serde_json::from_str(
        &run(&["--json", "vendor", "customers", "--dir", s(&fx.vendor_dir)])
            .ok()
            .stdout,
    )
    .unwrap();
    assert!(
        customers[0]["host_keys"][0]["revoked_at"].is_null(),
        "{customers}"
    );

    // Logging out (with the page's CSRF token) ends the session.
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let r = post_form(
        &http,
        format!("{url}/logout"),
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = http
        .get(format!("{url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the old session is gone");
}

async fn drive(browser: &Client, url: &str, token: &str, key_id: &str) -> Outcome {
    browser.set_window_size(1280, 1400).await?;
    browser::log_in(browser, url, token, "vendor-login").await?;

    // The list: the customer, with its host and its counted clients.
    let row = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("tr[data-customer=\"Acme Dashboard\"]"))
        .await?;
    let text = row.text().await?;
    check(
        text.contains("Acme Dashboard"),
        format!("customer row: {text}"),
    )?;
    let clients = browser
        .find(Locator::Id("stat-clients"))
        .await?
        .text()
        .await?;
    check(clients == "3", format!("3 clients counted, saw {clients}"))?;
    browser::screenshot(browser, "vendor-customers").await?;

    // The customer's page: its usage chart has today's bar.
    browser
        .find(Locator::LinkText("Acme Dashboard"))
        .await?
        .follow()
        .await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("customer-name"))
        .await?;
    let segments = browser
        .find_all(Locator::Css(".usage-chart rect.seg"))
        .await?;
    check(!segments.is_empty(), "the usage chart draws the report")?;
    let legend = browser
        .find(Locator::Css(".usage-chart .legend"))
        .await?
        .text()
        .await?;
    check(
        legend.contains("Draw"),
        format!("the legend names Draw: {legend}"),
    )?;
    browser::screenshot(browser, "vendor-customer").await?;

    // Revoke the host key: a page says what happens, the form revokes.
    browser
        .find(Locator::Id(&format!("revoke-key-{key_id}")))
        .await?
        .follow()
        .await?;
    let reason = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("reason"))
        .await?;
    reason.send_keys("contract ended").await?;
    browser::screenshot(browser, "vendor-revoke").await?;
    browser
        .find(Locator::Id("revoke-confirm"))
        .await?
        .follow()
        .await?;
    let flash = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("flash"))
        .await?
        .text()
        .await?;
    check(
        flash.contains("Revoked host key") && flash.contains(key_id),
        format!("flash: {flash}"),
    )?;
    let state = browser
        .find(Locator::Css(&format!(
            "[data-key=\"{key_id}\"] [data-key-state]"
        )))
        .await?
        .attr("data-key-state")
        .await?;
    check(
        state.as_deref() == Some("revoked"),
        format!("the key shows revoked, saw {state:?}"),
    )?;
    browser::screenshot(browser, "vendor-revoked").await?;

    // The service page lists it in the revocation list, with its reason.
    browser
        .find(Locator::LinkText("Service"))
        .await?
        .follow()
        .await?;
    let list = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("revocations"))
        .await?
        .text()
        .await?;
    check(
        list.contains(key_id) && list.contains("contract ended"),
        format!("revocation list: {list}"),
    )?;
    browser::screenshot(browser, "vendor-service").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_see_a_customers_usage_chart_revoke_its_host_key() {
    let Some(path) = chromedriver() else {
        volact_testkit::skip_or_fail(
            "log_in_see_a_customers_usage_chart_revoke_its_host_key",
            "chromedriver not found (apt-get install chromium chromium-driver)",
        )
        .unwrap();
        return;
    };
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    let (server, key_id) = {
        let (fx, url, root) = (fx.clone(), url.clone(), tmp.path().to_owned());
        tokio::task::spawn_blocking(move || {
            issue_key(&fx, &url, "Beta Industries", "office");
            reporting_host(&fx, &url, &root, "Acme Dashboard", 3)
        })
        .await
        .unwrap()
    };
    let token = std::fs::read_to_string(fx.vendor_dir.join("admin.token")).unwrap();

    let driver = start_driver(&path).await.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = browser::connect(&driver, profile.path(), &[])
        .await
        .unwrap();
    let outcome = tokio::time::timeout(WHOLE, drive(&browser, &url, token.trim(), &key_id)).await;
    let _ = tokio::time::timeout(WAIT, browser.close()).await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("in the browser: {e}"),
        Err(_) => panic!("the browser session took longer than {WHOLE:?}"),
    }
    server.kill();
    // The revocation is the vendor's record, and in the list hosts fetch.
    let customers: Value = serde_json::from_str(
        &run(&[
            "--json",
            "vendor",
            "customers",
            "--dir",
            s(&fx.vendor_dir),
            "--customer",
            "Acme Dashboard",
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    assert!(
        customers[0]["host_keys"][0]["revoked_at"].is_i64(),
        "{customers}"
    );
}
