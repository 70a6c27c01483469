//! The admin API through the real HTTP server: bearer-token access with back-off (that
//! never refuses the right token), the
//! inventory and its filters, the audit log and following it, revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::SignedDuration;
use serde_json::{Value, json};
use volact_engine::Clock;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const OFFICE: &str = "demo-office";
const WS: &str = "demo-os-workstation";

async fn host() -> TestHost {
    TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// A request to the admin API with `token` (none: no Authorization header).
async fn call(
    host: &TestHost,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}{path_and_query}", host.url());
    let client = reqwest::Client::new();
    let mut request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}

async fn get(host: &TestHost, path: &str) -> Value {
    let token = host.admin_token().unwrap();
    let (status, _, v) = call(host, "GET", path, Some(&token), None).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn admin_api_requires_the_token_and_slows_down_guessing() {
    let host = host().await;
    let token = host.admin_token().unwrap();
    // No token.
    let (status, headers, v) = call(&host, "GET", "/v1/admin/clients", None, None).await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthorized")));
    assert!(headers.contains_key("www-authenticate"));
    assert!(v["message"].as_str().unwrap().contains("admin.token"));
    // Unknown admin paths are not revealed without the token either.
    let (status, _, _) = call(&host, "GET", "/v1/admin/nothing-here", None, None).await;
    assert_eq!(status, 401);
    let (status, _, v) = call(&host, "GET", "/v1/admin/nothing-here", Some(&token), None).await;
    assert_eq!((status, v["code"].as_str()), (404, Some("not-found")));
    // The right token works.
    let (status, _, v) = call(&host, "GET", "/v1/admin/status", Some(&token), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "activated");
    // Wrong tokens: refused, and after five (the two without a token above count) the
    // address is answered `rate-limited` with a wait…
    for attempt in 0..3 {
        let (status, _, v) =
            call(&host, "GET", "/v1/admin/clients", Some("wrong-token"), None).await;
        assert_eq!(status, 401, "attempt {attempt}: {v}");
    }
    let (status, headers, v) = call(
        &host,
        "POST",
        "/v1/admin/clients/x/revoke",
        Some("bad"),
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("rate-limited")),
        "{v}"
    );
    assert!(headers.contains_key("retry-after"));
    assert!(v["details"]["retry_after_secs"].as_u64().unwrap() >= 1);
    // …but the right token from the same address is accepted at once: the back-off
    // never locks out whoever holds it.
    let (status, _, v) = call(&host, "GET", "/v1/admin/status", Some(&token), None).await;
    assert_eq!(status, 200, "{v}");
    // Activations stay open to everyone meanwhile.
    let (status, answer) = ask(&host, &client(1), OFFICE).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _, v) = call(&host, "GET", "/v1/admin/clients", Some(&token), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v, "clients"), [client(1)]);
    // A success does not end the wait of whoever else guesses from that address.
    let (status, _, v) = call(&host, "GET", "/v1/admin/clients", Some("wrong"), None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("rate-limited")),
        "{v}"
    );
}

/// Finding 8 of issue 12: wrong guesses from an address the administrator shares (a
/// NAT, 127.0.0.1) used to refuse the right token too, so anyone could lock them out.
#[tokio::test]
async fn many_wrong_tokens_never_lock_out_the_right_one() {
    let host = host().await;
    let token = host.admin_token().unwrap();
    let mut limited = 0;
    for _ in 0..50 {
        let (status, _, v) = call(&host, "GET", "/v1/admin/status", Some("guess"), None).await;
        assert!(status == 401 || status == 429, "{status} {v}");
        if v["code"] == "rate-limited" {
            limited += 1;
        }
    }
    assert!(
        limited >= 40,
        "wrong tokens are still slowed down: {limited} of 50"
    );
    let started = std::time::Instant::now();
    let (status, _, v) = call(&host, "GET", "/v1/admin/status", Some(&token), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "activated");
    let (status, _, v) = call(
        &host,
        "POST",
        &format!("/v1/admin/clients/{}/unrevoke", client(9)),
        Some(&token),
        None,
    )
    .await;
    assert_ne!(v["code"], "rate-limited", "{status} {v}");
    assert_ne!(v["code"], "unauthorized", "{status} {v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// Clients 1–5 ask for Office (5 activate it), client 6 for the OS, at t0; a month
/// later client 3 asks again and client 2 is revoked.
async fn inventory() -> TestHost {
    let host = host().await;
    for i in 1..=5 {
        ask(&host, &client(i), OFFICE).await;
    }
    ask(&host, &client(6), WS).await;
    host.clock.advance(days(31));
    let (_, a) = ask(&host, &client(3), OFFICE).await;
    assert_eq!(a["count"], 1, "the others fell out of the window: {a}");
    let token = host.admin_token().unwrap();
    let (status, _, v) = call(
        &host,
        "POST",
        &format!("/v1/admin/clients/{}/revoke", client(2)),
        Some(&token),
        Some(json!({ "reason": "stolen laptop" })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    host
}

#[tokio::test]
async fn clients_are_listed_with_state_window_and_ticket_and_filtered() {
    let host = inventory().await;
    let all = get(&host, "/v1/admin/clients").await;
    assert_eq!(all["clients"].as_array().unwrap().len(), 6);
    assert_eq!(all["truncated"], false);
    assert_eq!(all["count_window_secs"], 30 * 86_400);
    // Most recently seen first: client 3 asked last.
    assert_eq!(all["clients"][0]["client_id"], client(3));
    let row = |id: &str| {
        all["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap()
            .clone()
    };
    let c3 = row(&client(3));
    assert_eq!(c3["state"], "active");
    assert_eq!(c3["in_count_window"], true);
    assert_eq!(c3["machine_name"], format!("machine-{}", client(3)));
    assert_eq!(c3["address"], "127.0.0.1");
    assert_eq!(c3["product"], OFFICE);
    assert_eq!(c3["requests"], 2);
    assert_eq!(c3["first_seen"], "2026-01-01T00:00:00Z");
    assert_eq!(c3["last_seen"], "2026-02-01T00:00:00Z");
    assert_eq!(c3["last_result"], "count-insufficient");
    // Client 5 completed the count of 5 at t0, so it holds a 180-day ticket.
    let c5 = row(&client(5));
    assert_eq!(
        (c5["state"].as_str(), c5["in_count_window"].as_bool()),
        (Some("stale"), Some(false))
    );
    assert_eq!(c5["ticket_valid_until"], "2026-06-30T00:00:00Z");
    assert!(row(&client(1))["ticket_valid_until"].is_null());
    let c2 = row(&client(2));
    assert_eq!(
        (c2["state"].as_str(), c2["revoked"].as_bool()),
        (Some("revoked"), Some(true))
    );
    assert_eq!(c2["revoked_reason"], "stolen laptop");

    let q = |query: &'static str| {
        let host = &host;
        async move {
            sorted(ids(
                &get(host, &format!("/v1/admin/clients?{query}")).await,
                "clients",
            ))
        }
    };
    assert_eq!(q("state=active").await, [client(3)]);
    assert_eq!(
        q("state=stale").await,
        [client(1), client(4), client(5), client(6)]
    );
    assert_eq!(q("state=revoked").await, [client(2)]);
    assert_eq!(q("application=demo-os").await, [client(6)]);
    assert_eq!(
        q("product=demo-office&state=stale").await,
        [client(1), client(4), client(5)]
    );
    // Search matches part of an id, a machine name or an address, whatever the case.
    let tail = &client(4)[30..];
    assert_eq!(
        sorted(ids(
            &get(&host, &format!("/v1/admin/clients?search={tail}")).await,
            "clients"
        )),
        [client(4)]
    );
    let machine = format!("MACHINE-{}", client(6)).to_uppercase();
    assert_eq!(
        sorted(ids(
            &get(&host, &format!("/v1/admin/clients?search={machine}")).await,
            "clients"
        )),
        [client(6)]
    );
    assert_eq!(q("search=127.0.0").await.len(), 6);
    assert!(q("search=nobody-has-this").await.is_empty());
    let one = get(&host, "/v1/admin/clients?limit=1").await;
    assert_eq!(
        (ids(&one, "clients").len(), one["truncated"].as_bool()),
        (1, Some(true))
    );
    // Bad filters are refused with the field at fault.
    let token = host.admin_token().unwrap();
    let (status, _, v) = call(
        &host,
        "GET",
        "/v1/admin/clients?state=gone",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, v["details"]["field"].as_str()),
        (400, Some("state")),
        "{v}"
    );
    let (status, _, v) = call(
        &host,
        "GET",
        "/v1/admin/clients?limit=-3",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("bad-request")),
        "{v}"
    );
}

#[tokio::test]
async fn events_are_filtered_and_followed_by_id() {
    let host = inventory().await;
    let t1 = host.clock.now();
    // A refused request: the host's clock and the client's differ by a day.
    ask_at(&host, &client(7), OFFICE, t1 - days(1)).await;
    let all = get(&host, "/v1/admin/events").await;
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 8);
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()),
        "newest first"
    );
    let newest = &events[0];
    assert_eq!(newest["client_id"], client(7));
    assert_eq!(newest["result"], "clock-skew");
    assert_eq!(newest["product"], OFFICE);
    assert_eq!(newest["minimum_asked"], 1);
    assert_eq!(newest["address"], "127.0.0.1");
    assert_eq!(newest["at"], "2026-02-01T00:00:00Z");
    assert_eq!(all["last_id"], newest["id"]);

    let count = |v: &Value| v["events"].as_array().unwrap().len();
    let by_client = get(&host, &format!("/v1/admin/events?client={}", client(3))).await;
    assert_eq!(count(&by_client), 2);
    let skew = get(&host, "/v1/admin/events?result=clock-skew").await;
    assert_eq!(ids(&skew, "events"), [client(7)]);
    let activated = get(&host, "/v1/admin/events?result=activated").await;
    assert_eq!(ids(&activated, "events"), [client(5)]);
    // Since: an RFC 3339 time, a date, or a duration before the host's clock.
    assert_eq!(
        count(&get(&host, "/v1/admin/events?since=2026-01-15").await),
        2
    );
    assert_eq!(
        count(&get(&host, "/v1/admin/events?since=2026-01-31T23:00:00Z").await),
        2
    );
    assert_eq!(count(&get(&host, "/v1/admin/events?since=40d").await), 8);
    assert_eq!(count(&get(&host, "/v1/admin/events?since=1h").await), 2);

    // Following: after_id gives what came later, oldest first, in pages.
    let mark = all["last_id"].as_i64().unwrap();
    let nothing = get(&host, &format!("/v1/admin/events?after_id={mark}")).await;
    assert_eq!(
        (count(&nothing), nothing["last_id"].as_i64()),
        (0, Some(mark))
    );
    for i in 10..13 {
        ask(&host, &client(i), OFFICE).await;
    }
    let next = get(&host, &format!("/v1/admin/events?after_id={mark}&limit=2")).await;
    assert_eq!(ids(&next, "events"), [client(10), client(11)]);
    assert_eq!(next["truncated"], true);
    let after = next["last_id"].as_i64().unwrap();
    let rest = get(&host, &format!("/v1/admin/events?after_id={after}")).await;
    assert_eq!(ids(&rest, "events"), [client(12)]);

    let token = host.admin_token().unwrap();
    let (status, _, v) = call(
        &host,
        "GET",
        "/v1/admin/events?since=last-tuesday",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, v["details"]["field"].as_str()),
        (400, Some("since")),
        "{v}"
    );
    let (status, _, v) = call(
        &host,
        "GET",
        "/v1/admin/events?client=not-a-uuid",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, v["details"]["field"].as_str()),
        (400, Some("client")),
        "{v}"
    );
}

#[tokio::test]
async fn revoking_drops_the_count_at_once_and_refuses_renewal_until_unrevoked() {
    let host = host().await;
    for i in 1..=5 {
        let (_, a) = ask(&host, &client(i), OFFICE).await;
        assert_eq!(a["count"], i);
    }
    let token = host.admin_token().unwrap();
    let path = format!("/v1/admin/clients/{}/revoke", client(5));
    let (status, _, v) = call(
        &host,
        "POST",
        &path,
        Some(&token),
        Some(json!({ "reason": "left the company" })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["client"]["state"], "revoked");
    assert_eq!(v["client"]["revoked_reason"], "left the company");
    assert_eq!(v["client"]["in_count_window"], false);
    assert_eq!(v["application_count"], 4);
    assert_eq!(
        count(&host, OFFICE),
        4,
        "the count drops at once, before any request"
    );
    // Renewal refused with client-revoked; the count is not raised by it.
    let (status, a) = ask(&host, &client(5), OFFICE).await;
    assert_eq!(
        (status, a["code"].as_str()),
        (403, Some("client-revoked")),
        "{a}"
    );
    assert_eq!(count(&host, OFFICE), 4);
    // Another client now sees 5 only with a new machine.
    let (_, a) = ask(&host, &client(1), OFFICE).await;
    assert_eq!(
        (a["count"].as_u64(), a["result"].as_str()),
        (Some(4), Some("count-insufficient"))
    );
    let status_report = get(&host, "/v1/admin/status").await;
    let office = status_report["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == OFFICE)
        .unwrap()
        .clone();
    assert_eq!(office["count"], 4);

    // An empty body is fine; the reason is optional.
    let path = format!("/v1/admin/clients/{}/unrevoke", client(5));
    let (status, _, v) = call(&host, "POST", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["client"]["revoked"], false);
    assert!(v["client"]["revoked_reason"].is_null());
    let (status, a) = ask(&host, &client(5), OFFICE).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["count"].as_u64(), a["result"].as_str()),
        (Some(5), Some("activated"))
    );

    // Unknown and malformed client ids.
    let unknown = format!("/v1/admin/clients/{}/revoke", client(99));
    let (status, _, v) = call(&host, "POST", &unknown, Some(&token), None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not-found")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("volact host clients")
    );
    let (status, _, v) = call(
        &host,
        "POST",
        "/v1/admin/clients/nope/revoke",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("bad-request")),
        "{v}"
    );
    let typo = format!("/v1/admin/clients/{}/revoke", client(1));
    let (status, _, v) = call(
        &host,
        "POST",
        &typo,
        Some(&token),
        Some(json!({ "reasn": "typo" })),
    )
    .await;
    assert_eq!(
        (status, v["details"]["field"].as_str()),
        (400, Some("reasn")),
        "{v}"
    );
    // The revocation survives a restart.
    let path = format!("/v1/admin/clients/{}/revoke", client(4));
    call(&host, "POST", &path, Some(&token), None).await;
    let host = host.restart().await.unwrap();
    let (_, a) = ask(&host, &client(4), OFFICE).await;
    assert_eq!(a["code"], "client-revoked");
}

/// The typed admin client (`volact_client::admin`, which the CLI uses) reads what the
/// API serves: the same rows as the raw JSON, and revocations that move the count.
#[tokio::test]
async fn the_typed_admin_client_reads_and_changes_what_the_api_serves() {
    use volact_proto::admin::{ClientQuery, ClientState, CloneQuery, EventQuery};
    let host = inventory().await;
    let admin = host.admin().unwrap();
    let raw = get(&host, "/v1/admin/clients").await;
    let typed = admin.clients(&ClientQuery::default()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&typed).unwrap()["clients"],
        raw["clients"]
    );
    let revoked = admin
        .clients(&ClientQuery {
            state: Some("revoked".into()),
            ..ClientQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(revoked.clients.len(), 1);
    assert_eq!(revoked.clients[0].client_id, client(2));
    assert_eq!(revoked.clients[0].state, ClientState::Revoked);

    let answer = admin.unrevoke(&client(2)).await.unwrap();
    assert!(!answer.client.revoked);
    let again = admin.revoke(&client(2), Some("typed")).await.unwrap();
    assert_eq!(again.client.revoked_reason.as_deref(), Some("typed"));
    assert_eq!(again.client.state, ClientState::Revoked);

    let events = admin
        .events(&EventQuery {
            client: Some(client(3)),
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(!events.events.is_empty());
    assert!(events.events.iter().all(|e| e.client_id == client(3)));
    let clones = admin.clones(&CloneQuery::default()).await.unwrap();
    assert!(clones.clones.is_empty());
    let status: Value = admin.status().await.unwrap();
    assert_eq!(status["clients_known"], 6);

    let unknown = admin.revoke(&client(99), None).await.unwrap_err();
    assert_eq!(unknown.code, volact_proto::ErrorCode::NotFound);
}
