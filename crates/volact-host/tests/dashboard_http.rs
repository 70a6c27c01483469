//! The dashboard over plain HTTP: login and its cookie, redirects, CSRF refusals, revoking
//! through the form, escaping, and the count history replayed against the live count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use std::collections::BTreeMap;
use volact_engine::Clock;
use volact_engine::config::RawConfig;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const OFFICE: &str = "demo-office";
const SERVER: &str = "demo-os-server";

async fn host() -> TestHost {
    TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap()
}

/// A client that neither follows redirects nor keeps cookies: each test sees exactly
/// what the server sends.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(host: &TestHost, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = http().get(format!("{}{path}", host.url()));
    if let Some(c) = cookie {
        request = request.header(COOKIE, c);
    }
    request.send().await.unwrap()
}

async fn post_form(
    host: &TestHost,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", volact_host::dashboard::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = http()
        .post(format!("{}{path}", host.url()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    if let Some(c) = cookie {
        request = request.header(COOKIE, c);
    }
    request.send().await.unwrap()
}

/// Logs in; returns the `name=value` of the session cookie.
async fn login(host: &TestHost) -> String {
    let token = host.data.admin_token().unwrap();
    let response = post_form(host, "/login", None, &[("token", &token)]).await;
    assert_eq!(response.status().as_u16(), 303);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token embedded in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    html[at + 19..at + 19 + 64].to_string()
}

async fn page(host: &TestHost, path: &str, cookie: &str) -> String {
    let response = get(host, path, Some(cookie)).await;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_login_and_forms_are_refused() {
    let host = host().await;
    for path in ["/", "/clients", "/events?since=all", "/host"] {
        let r = get(&host, path, None).await;
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()[LOCATION], "/login", "{path}");
        // A made-up session id is no better than none.
        let r = get(&host, path, Some("volact_session=00ff")).await;
        assert_eq!(r.headers()[LOCATION], "/login", "{path}");
    }
    for path in ["/clients/revoke", "/clients/unrevoke", "/logout"] {
        let r = post_form(&host, path, None, &[("client_id", &client(1))]).await;
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
    let r = get(&host, "/login", None).await;
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("name=\"token\""));
    let css = get(&host, "/dashboard.css", None).await;
    assert_eq!(css.status().as_u16(), 200);
    assert!(
        css.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_cookie_and_logout_ends_it() {
    let host = host().await;
    let wrong = post_form(&host, "/login", None, &[("token", "not-the-token")]).await;
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));
    let empty = post_form(&host, "/login", None, &[]).await;
    assert_eq!(empty.status().as_u16(), 401);

    let token = host.data.admin_token().unwrap();
    let r = post_form(&host, "/login", None, &[("token", &token)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()[LOCATION], "/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let parts: Vec<&str> = set.split(';').map(str::trim).collect();
    let (name, id) = parts[0].split_once('=').unwrap();
    assert_eq!(name, "volact_session");
    assert_eq!(id.len(), 64, "256 random bits in hex: {set}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(parts.contains(&attribute), "{attribute} missing from {set}");
    }
    let cookie = parts[0].to_string();
    let overview = page(&host, "/", &cookie).await;
    assert!(overview.contains("Demo Office") && overview.contains(host.running.engine.host_id()));
    // Logged in, the login page sends you on.
    assert_eq!(
        get(&host, "/login", Some(&cookie)).await.headers()[LOCATION],
        "/"
    );

    // Logout needs the CSRF token too.
    let r = post_form(&host, "/logout", Some(&cookie), &[("csrf", "x")]).await;
    assert_eq!(r.status().as_u16(), 403);
    let csrf = csrf_of(&overview);
    let r = post_form(&host, "/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&host, "/", Some(&cookie)).await.headers()[LOCATION],
        "/login"
    );
}

/// Finding 8 of issue 12: wrong tokens typed at the login form from an address the
/// administrator shares used to refuse the right one too.
#[tokio::test]
async fn many_wrong_logins_never_lock_out_the_right_token() {
    let host = host().await;
    let mut limited = 0;
    for _ in 0..30 {
        let r = post_form(&host, "/login", None, &[("token", "a-guess")]).await;
        let status = r.status().as_u16();
        assert!(status == 401 || status == 429, "{status}");
        assert!(r.headers().get(SET_COOKIE).is_none());
        if status == 429 {
            limited += 1;
        }
    }
    assert!(
        limited >= 20,
        "wrong tokens are still slowed down: {limited} of 30"
    );
    let started = std::time::Instant::now();
    let cookie = login(&host).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let overview = page(&host, "/", &cookie).await;
    assert!(overview.contains(host.running.engine.host_id()));
    // Guesses are still refused with a wait after the administrator logged in.
    let r = post_form(&host, "/login", None, &[("token", "a-guess")]).await;
    assert_eq!(r.status().as_u16(), 429);
}

#[tokio::test]
async fn revoking_through_the_form_needs_the_sessions_csrf_token() {
    let host = host().await;
    for i in 1..=5 {
        assert_eq!(ask(&host, &client(i), OFFICE).await.0, 200);
    }
    let cookie = login(&host).await;
    let other = login(&host).await;
    let clients = page(&host, "/clients", &cookie).await;
    assert!(clients.contains(&client(3)));
    let csrf = csrf_of(&clients);
    let other_csrf = csrf_of(&page(&host, "/clients", &other).await);
    assert_ne!(csrf, other_csrf);

    let target = client(3);
    for bad in [
        vec![("client_id", target.as_str())],
        vec![("client_id", target.as_str()), ("csrf", "")],
        vec![("client_id", target.as_str()), ("csrf", &csrf[..63])],
        vec![
            ("client_id", target.as_str()),
            ("csrf", other_csrf.as_str()),
        ],
    ] {
        let r = post_form(&host, "/clients/revoke", Some(&cookie), &bad).await;
        assert_eq!(r.status().as_u16(), 403, "{bad:?}");
    }
    assert_eq!(count(&host, OFFICE), 5);

    let r = post_form(
        &host,
        "/clients/revoke",
        Some(&cookie),
        &[("csrf", &csrf), ("client_id", &target), ("state", "active")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()[LOCATION], "/clients?state=active");
    assert_eq!(count(&host, OFFICE), 4);
    let listed = page(&host, "/clients?state=revoked", &cookie).await;
    assert!(
        listed.contains("Revoked") && listed.contains("count is now 4"),
        "flash"
    );
    assert!(listed.contains(&target) && !listed.contains(&client(1)));
    assert!(listed.contains("Unrevoke"));
    // The admin API (through the typed client the CLI uses) sees what the form did.
    let revoked = host
        .admin()
        .unwrap()
        .clients(&volact_proto::admin::ClientQuery {
            state: Some("revoked".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = revoked
        .clients
        .iter()
        .map(|c| c.client_id.as_str())
        .collect();
    assert_eq!(ids, [target.as_str()]);
    let overview = page(&host, "/", &cookie).await;
    assert!(overview.contains("data-count=\"4\""));
    // The charts are inline SVG: the count line, the minimum as a dashed line, a legend.
    for part in [
        "<svg",
        "<polyline class=\"line\"",
        "class=\"min a\"",
        "Demo Office: minimum 5",
    ] {
        assert!(overview.contains(part), "{part}");
    }
    let events = page(
        &host,
        &format!("/events?since=all&client={target}"),
        &cookie,
    )
    .await;
    assert!(events.contains(&target) && !events.contains(&client(1)));
    assert_eq!(
        ask(&host, &target, OFFICE).await.1["code"],
        "client-revoked"
    );

    let r = post_form(
        &host,
        "/clients/unrevoke",
        Some(&cookie),
        &[("csrf", &csrf), ("client_id", &target)],
    )
    .await;
    assert_eq!(r.headers()[LOCATION], "/clients");
    assert_eq!(ask(&host, &target, OFFICE).await.0, 200);
    assert_eq!(count(&host, OFFICE), 5);
}

#[tokio::test]
async fn what_clients_send_is_shown_escaped() {
    let host = host().await;
    let mut body = request(&client(1), &host.vendor.setup_key(OFFICE), host.clock.now());
    body["machine_name"] = "<script>alert('x')</script>&\"".into();
    let (status, _) = post_raw(
        &host,
        serde_json::to_vec(&body).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(status, 200);
    let cookie = login(&host).await;
    for path in ["/clients?q=%3Cscript", "/events"] {
        let html = page(&host, path, &cookie).await;
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{path}"
        );
    }
    let html = page(&host, "/host", &cookie).await;
    assert!(html.contains("Test Customer") && html.contains("demo-all"));
    // The host registers itself in the store as it starts; the card lists it as this one.
    let mut html = html;
    for _ in 0..40 {
        if html.contains("this host") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        html = page(&host, "/host", &cookie).await;
    }
    assert!(html.contains("Hosts sharing the store"), "{html}");
    assert!(html.contains("this host"), "{html}");
    assert!(html.contains(&host.url()), "{html}");
}

/// The overview's 90-day chart comes from `Store::count_history`; replaying the audit log
/// must give the count the engine had at the end of each day, including days long past.
#[tokio::test]
async fn count_history_replays_the_live_count_of_past_days() {
    let options = TestHostOptions {
        config: RawConfig {
            count_window: Some("10d".into()),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    let host = TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap();
    let t0 = host.clock.now();
    let day = |d: i64, h: i64| t0 + SignedDuration::from_hours(24 * d + h);
    let days = 45;
    let mut live: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in 0..days {
        host.clock.set(day(d, 9));
        for k in 1..=8u32 {
            // Each client asks on its own rhythm; odd ones stop after day 25, so the count
            // climbs, then falls as they age out of the window.
            let period = 3 + i64::from(k);
            if (d + i64::from(k)) % period == 0 && (k % 2 == 0 || d <= 25) {
                ask(&host, &client(k), OFFICE).await;
            }
        }
        if d % 6 == 0 {
            ask(&host, &client(20), SERVER).await;
        }
        // Refused requests (clock skew) never count.
        if d == 30 {
            let far = host.clock.now() + SignedDuration::from_hours(24);
            assert_eq!(ask_at(&host, &client(30), OFFICE, far).await.0, 400);
        }
        host.clock.set(day(d, 23) + SignedDuration::from_secs(3599));
        for application in ["demo-office", "demo-os"] {
            live.entry(application.into())
                .or_default()
                .push(u64::from(count(&host, application)));
        }
    }
    let store = host.running.engine.store();
    let window = 10 * 86_400;
    let now = host.clock.now().as_second();
    let history = store.count_history(now, days as u32, window).await.unwrap();
    assert_eq!(history.days.len(), days as usize);
    assert_eq!(history.days[0], day(0, 0).as_second());
    assert_eq!(history.partial_days, 0);
    let replayed: BTreeMap<String, Vec<u64>> = history
        .series
        .iter()
        .map(|s| (s.application.clone(), s.counts.clone()))
        .collect();
    assert_eq!(replayed, live);
    let office = &live["demo-office"];
    assert!(
        office.iter().max() > office.last(),
        "the count fell: {office:?}"
    );

    // A revoked client leaves every day of the history.
    host.running
        .engine
        .set_revoked(&client(2), true, None)
        .await
        .unwrap();
    let after = store.count_history(now, days as u32, window).await.unwrap();
    let before_office = &replayed["demo-office"];
    let after_office = &after
        .series
        .iter()
        .find(|s| s.application == "demo-office")
        .unwrap()
        .counts;
    assert!(
        after_office
            .iter()
            .zip(before_office)
            .all(|(a, b)| a <= b && b - a <= 1)
    );
    assert!(after_office.iter().sum::<u64>() < before_office.iter().sum::<u64>());

    // Requests per hour and expiring tickets read the same log and inventory.
    let hours = store
        .requests_by_hour(day(30, 0).as_second())
        .await
        .unwrap();
    assert!(hours.iter().any(|h| h.result == "clock-skew" && h.n == 1));
    let tickets_end = Timestamp::from_second(now).unwrap() + SignedDuration::from_hours(24 * 200);
    let expiring = store
        .expiring_tickets(now, tickets_end.as_second(), 100)
        .await
        .unwrap();
    assert!(!expiring.is_empty() && expiring.iter().all(|c| c.client_id != client(2)));
    assert!(
        expiring
            .windows(2)
            .all(|w| w[0].ticket_valid_until <= w[1].ticket_valid_until)
    );
}
