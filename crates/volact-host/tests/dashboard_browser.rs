//! The dashboard in a real browser: headless Chromium driven through chromedriver.
//! Log in (a wrong token first), read the count, revoke a client, see the count drop.
//! Skipped with a loud note when chromedriver is missing, unless `VOLACT_REQUIRE_ALL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use fantoccini::{Client, Locator};
use jiff::SignedDuration;
use volact_engine::Clock;
use volact_engine::config::RawConfig;
use volact_testkit::browser::{
    self, Follow, Outcome, WAIT, WHOLE, check, chromedriver, start_driver,
};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

/// Asks as client `n` from machine `machine`, with the client's clock `skew` hours off.
async fn ask_as(host: &TestHost, n: u32, product: &str, machine: &str, skew: i64) {
    let time = host.clock.now() + SignedDuration::from_hours(skew);
    let mut body = request(&client(n), &host.vendor.setup_key(product), time);
    body["machine_name"] = machine.into();
    post_raw(host, serde_json::to_vec(&body).unwrap(), "application/json").await;
}

/// Five Demo Office clients joining over a month, a Demo OS fleet short of its
/// workstation minimum, a day of requests and a cloned disk, so every part of the pages
/// has something to show.
async fn seed(host: &TestHost) {
    let t0 = host.clock.now();
    let at = |d: i64, h: i64| t0 + SignedDuration::from_hours(24 * d + h);
    for d in 0..40 {
        host.clock.set(at(d, 8));
        for k in 1..=5 {
            if d >= 6 * k && (d - 6 * k) % 7 == 0 {
                let name = format!("ACCT-LT-{:03}", 10 + k);
                ask_as(host, k as u32, "demo-office", &name, 0).await;
            }
        }
        for k in 1..=14 {
            if d >= 2 * k && (d - 2 * k) % 7 == 0 {
                let name = format!("WS-{:04}", 1200 + k);
                ask_as(host, 100 + k as u32, "demo-os-workstation", &name, 0).await;
            }
        }
        for k in 1..=3 {
            if d >= 9 * k && (d - 9 * k) % 7 == 0 {
                let name = format!("SRV-DB-{k:02}");
                ask_as(host, 200 + k as u32, "demo-os-server", &name, 0).await;
            }
        }
    }
    // The last day: requests spread over the hours, a kiosk whose clock is off, and one
    // disk image cloned onto a second machine.
    for h in 0..20 {
        host.clock.set(at(40, h));
        for k in 1..=14 {
            if (k * 5) % 20 == h {
                let name = format!("WS-{:04}", 1200 + k);
                ask_as(host, 100 + k as u32, "demo-os-workstation", &name, 0).await;
            }
        }
        if h % 7 == 3 {
            ask_as(host, 300, "demo-office", "KIOSK-LOBBY", 6).await;
        }
        if h == 12 {
            ask_as(host, 105, "demo-os-workstation", "WS-1205-COPY", 0).await;
        }
    }
}

async fn count_shown(browser: &Client) -> Outcome<String> {
    let count = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-app=\"demo-office\"] .count"))
        .await?;
    Ok(count.text().await?.trim().to_string())
}

async fn screenshot(browser: &Client, name: &str) -> Outcome {
    browser::screenshot(browser, &format!("dashboard-{name}")).await
}

async fn drive(browser: &Client, host: &TestHost) -> Outcome {
    let base = host.url();
    browser.set_window_size(1280, 1750).await?;
    let token = host.data.admin_token()?;
    browser::log_in(browser, &base, &token, "dashboard-login").await?;
    let shown = count_shown(browser).await?;
    check(
        shown == "5",
        format!("Demo Office count 5 on the overview, saw {shown}"),
    )?;
    // Tall enough for the whole overview in one picture.
    browser.set_window_size(1280, 2300).await?;
    screenshot(browser, "overview").await?;
    browser.set_window_size(1280, 1750).await?;

    browser
        .find(Locator::LinkText("Clients"))
        .await?
        .follow()
        .await?;
    let victim = client(3);
    let row = format!("tr[data-client=\"{victim}\"] button");
    let button = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&row))
        .await?;
    check(button.text().await? == "Revoke", "the row offers Revoke")?;
    button.follow().await?;
    let flash = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("flash"))
        .await?
        .text()
        .await?;
    check(
        flash.contains("Revoked") && flash.contains("count is now 4"),
        format!("flash: {flash}"),
    )?;
    let again = browser.find(Locator::Css(&row)).await?.text().await?;
    check(
        again == "Unrevoke",
        format!("the revoked row offers Unrevoke, saw {again}"),
    )?;
    screenshot(browser, "clients").await?;

    browser
        .find(Locator::LinkText("Overview"))
        .await?
        .follow()
        .await?;
    let shown = count_shown(browser).await?;
    check(
        shown == "4",
        format!("Demo Office count 4 after revoking, saw {shown}"),
    )?;

    browser
        .find(Locator::LinkText("Events"))
        .await?
        .follow()
        .await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("events"))
        .await?;
    screenshot(browser, "events").await?;
    browser
        .find(Locator::LinkText("Host"))
        .await?
        .follow()
        .await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("dl.facts"))
        .await?;
    screenshot(browser, "host").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_see_the_count_revoke_a_client_see_it_drop() {
    let Some(path) = chromedriver() else {
        volact_testkit::skip_or_fail(
            "log_in_see_the_count_revoke_a_client_see_it_drop",
            "chromedriver not found (apt-get install chromium chromium-driver)",
        )
        .unwrap();
        return;
    };
    // Tickets of 35 days, so some end within the overview's 30-day list.
    let options = TestHostOptions {
        config: RawConfig {
            ticket_validity: Some("35d".into()),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    let host = TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap();
    seed(&host).await;
    assert_eq!(count(&host, "demo-office"), 5);

    let driver = start_driver(&path).await.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = browser::connect(&driver, profile.path(), &[])
        .await
        .unwrap();
    let outcome = tokio::time::timeout(WHOLE, drive(&browser, &host)).await;
    // Close the browser before judging, so a failure leaves nothing running.
    let _ = tokio::time::timeout(WAIT, browser.close()).await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("in the browser: {e}"),
        Err(_) => panic!("the browser session took longer than {WHOLE:?}"),
    }
    assert_eq!(count(&host, "demo-office"), 4);
}

/// The dashboard over TLS: a self-signed certificate Chromium is told to accept by the
/// SHA-256 of its key (`--ignore-certificate-errors-spki-list`, nothing broader), log in,
/// see the count, and the session cookie is `Secure`.
async fn drive_tls(browser: &Client, host: &TestHost) -> Outcome {
    let base = host.running.tls_url().ok_or("the host serves no TLS")?;
    browser.goto(&format!("{base}/")).await?;
    let url = browser.current_url().await?;
    check(
        url.scheme() == "https" && url.path() == "/login",
        format!("redirected to https …/login, not {url}"),
    )?;
    let token = host.data.admin_token()?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("token"))
        .await?
        .send_keys(&token)
        .await?;
    browser
        .find(Locator::Id("login-submit"))
        .await?
        .click()
        .await?;
    let shown = count_shown(browser).await?;
    check(
        shown == "5",
        format!("Demo Office count 5 on the overview over TLS, saw {shown}"),
    )?;
    let cookies = browser.get_all_cookies().await?;
    let session = cookies
        .iter()
        .find(|c| c.name() == "volact_session")
        .ok_or("no session cookie")?;
    check(
        session.secure() == Some(true),
        format!("the session cookie is Secure over TLS: {session}"),
    )?;
    screenshot(browser, "tls-overview").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_over_tls_in_a_browser() {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let Some(path) = chromedriver() else {
        volact_testkit::skip_or_fail(
            "the_dashboard_over_tls_in_a_browser",
            "chromedriver not found (apt-get install chromium chromium-driver)",
        )
        .unwrap();
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (certs.path().join("c.pem"), certs.path().join("k.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.subject_public_key_info()));
    let options = TestHostOptions {
        config: RawConfig {
            tls: Some(volact_host::tls::TlsSection {
                listen: Some("127.0.0.1:0".into()),
                cert_file: Some(cert_file.display().to_string()),
                key_file: Some(key_file.display().to_string()),
                allow_plain_admin: None,
            }),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    let host = TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap();
    for k in 1..=5 {
        ask_as(&host, k, "demo-office", &format!("TLS-{k}"), 0).await;
    }
    assert_eq!(count(&host, "demo-office"), 5);

    let driver = start_driver(&path).await.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = browser::connect(
        &driver,
        profile.path(),
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    )
    .await
    .unwrap();
    let outcome = tokio::time::timeout(WHOLE, drive_tls(&browser, &host)).await;
    let _ = tokio::time::timeout(WAIT, browser.close()).await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("in the browser over TLS: {e}"),
        Err(_) => panic!("the browser session took longer than {WHOLE:?}"),
    }
}
