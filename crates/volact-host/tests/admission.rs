//! Admission of new clients: rate limits per address and prefix (count inflation by
//! made-up client ids), refusals that must not grow the inventory, revoked machines
//! coming back under a new id, and the seat cap under concurrent new clients.
//!
//! Requests from other addresses than loopback are made through the engine itself (the
//! HTTP layer passes it the peer's address): tests stay on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::SignedDuration;
use serde_json::{Value, json};
use volact_engine::Clock;
use volact_engine::admission::RateLimitSection;
use volact_engine::config::RawConfig;
use volact_proto::{ActivationRequest, ActivationResponse, ApiError, ErrorCode};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const WS: &str = "demo-os-workstation";

async fn host_with(options: TestHostOptions) -> TestHost {
    TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap()
}

fn body(host: &TestHost, client_id: &str) -> Value {
    request(client_id, &host.vendor.setup_key(WS), host.clock.now())
}

/// Asks through the engine as if from `address`.
async fn ask_from(
    host: &TestHost,
    body: Value,
    address: &str,
) -> Result<ActivationResponse, ApiError> {
    let req: ActivationRequest = serde_json::from_value(body).unwrap();
    host.running.engine.activate(&req, address).await
}

fn code(r: &Result<ActivationResponse, ApiError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    }
}

async fn client_total(host: &TestHost) -> u64 {
    host.running.engine.store().client_total().await.unwrap()
}

fn metric(host: &TestHost, series: &str) -> f64 {
    let text = host.running.engine.metrics().render(&[], true);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// One address sending made-up client ids gets its burst (200 by default), then
/// `rate-limited`; a client it already counted renews; another address is unaffected;
/// the refusals are counted and audited once, and none of them is stored.
#[tokio::test]
async fn one_address_making_up_ids_is_rate_limited_while_known_clients_renew() {
    let host = host_with(TestHostOptions::default()).await;
    let known = client(1);
    assert_eq!(
        code(&ask_from(&host, body(&host, &known), "192.0.2.7").await),
        "ok"
    );
    let mut admitted = 1;
    let mut refused = Vec::new();
    for n in 2..=300 {
        match ask_from(&host, body(&host, &client(n)), "192.0.2.7").await {
            Ok(_) => admitted += 1,
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(admitted, 200, "the default burst per address");
    assert_eq!(refused.len(), 100);
    let e = &refused[0];
    assert_eq!(e.code, ErrorCode::RateLimited, "{}", e.message);
    assert_eq!(e.details["limit"], "address");
    assert_eq!(e.details["subject"], "192.0.2.7");
    // 100 a minute: the next one in 0.6 s, said as 1 s.
    assert_eq!(e.details["retry_after_secs"], 1);
    // A counted client from the same address renews, limited or not.
    for _ in 0..3 {
        assert_eq!(
            code(&ask_from(&host, body(&host, &known), "192.0.2.7").await),
            "ok"
        );
    }
    // Another address (another /24) is not affected.
    assert_eq!(
        code(&ask_from(&host, body(&host, &client(1_000)), "192.0.3.7").await),
        "ok"
    );
    assert_eq!(
        metric(&host, "volact_new_clients_refused_total{limit=\"address\"}"),
        100.0
    );
    // Only what was admitted is stored: 200 from the flood, 1 from the other address.
    assert_eq!(client_total(&host).await, 201);
    // One audit event for the flood, not one per refusal (stored off the request path).
    let mut events = Vec::new();
    for _ in 0..50 {
        events = host
            .running
            .engine
            .store()
            .events(&volact_store::EventFilter {
                result: Some("rate-limited".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].address, "192.0.2.7");
    // A minute later the bucket holds 100 again.
    host.clock.advance(SignedDuration::from_secs(60));
    let mut later = 0;
    for n in 301..=450 {
        if ask_from(&host, body(&host, &client(n)), "192.0.2.7")
            .await
            .is_ok()
        {
            later += 1;
        }
    }
    assert_eq!(later, 100);
}

/// Well-formed requests that are refused anyway (clock skew, an unknown setup key) were
/// each stored as a client row: made-up ids grew the inventory without bound. Now they
/// are stored only within the new-client budget.
#[tokio::test]
async fn refused_requests_do_not_grow_the_inventory_without_bound() {
    let host = host_with(TestHostOptions::default()).await;
    let skewed = host.clock.now() - SignedDuration::from_hours(24);
    let mut codes = std::collections::BTreeMap::<&str, u32>::new();
    for n in 1..=400 {
        let b = request(&client(n), &host.vendor.setup_key(WS), skewed);
        *codes
            .entry(code(&ask_from(&host, b, "198.51.100.9").await))
            .or_default() += 1;
    }
    assert_eq!(codes["clock-skew"], 200, "{codes:?}");
    assert_eq!(codes["rate-limited"], 200, "{codes:?}");
    assert_eq!(client_total(&host).await, 200);
    // Refused before admission (an unknown setup key): the same budget, per address.
    let unknown = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ";
    for n in 1_001..=1_400 {
        let mut b = body(&host, &client(n));
        b["setup_key"] = json!(unknown);
        let r = ask_from(&host, b, "203.0.113.9").await;
        assert!(r.is_err());
    }
    let total = client_total(&host).await;
    assert!(total <= 400, "{total} rows for 800 refused requests");
    // Refusals of a client the count knows are still stored, as before.
    let before = client_total(&host).await;
    let known = client(5_000);
    assert_eq!(
        code(&ask_from(&host, body(&host, &known), "192.0.2.1").await),
        "ok"
    );
    let b = request(&known, &host.vendor.setup_key(WS), skewed);
    assert_eq!(code(&ask_from(&host, b, "192.0.2.1").await), "clock-skew");
    let row = host
        .running
        .engine
        .store()
        .client(&known)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_result, "clock-skew");
    assert_eq!(client_total(&host).await, before + 1);
}

/// Over HTTP from loopback: exempt by default (the quickstart, the simulator and
/// `volact bench` run there), limited when the switch is off, with `429`, `Retry-After`
/// and `retry_after_secs`.
#[tokio::test]
async fn loopback_is_exempt_by_default_and_limited_when_the_exemption_is_off() {
    let open = host_with(TestHostOptions::default()).await;
    for n in 1..=230 {
        let (status, answer) = ask(&open, &client(n), WS).await;
        assert_eq!(status, 200, "client {n}: {answer}");
    }
    let strict = host_with(TestHostOptions {
        config: RawConfig {
            rate_limits: Some(RateLimitSection {
                exempt_loopback: Some(false),
                per_address_per_minute: Some(10),
                per_address_burst: Some(3),
                ..RateLimitSection::default()
            }),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    })
    .await;
    for n in 1..=3 {
        assert_eq!(ask(&strict, &client(n), WS).await.0, 200);
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/activations", strict.url()))
        .json(&body(&strict, &client(4)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "6", "10 a minute");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "rate-limited");
    assert_eq!(answer["details"]["retry_after_secs"], 6);
    assert_eq!(answer["details"]["subject"], "127.0.0.1");
    // Renewals are never limited.
    assert_eq!(ask(&strict, &client(1), WS).await.0, 200);
    strict.clock.advance(SignedDuration::from_secs(6));
    assert_eq!(ask(&strict, &client(4), WS).await.0, 200);
    assert_eq!(ask(&strict, &client(5), WS).await.0, 429);
}

/// A revoked machine that rearms asks with a new client id, naming the old one as
/// `previous_client_id` or carrying the same fingerprint: refused `client-revoked` until
/// an administrator un-revokes the old client.
#[tokio::test]
async fn a_rearmed_revoked_machine_stays_refused_until_unrevoked() {
    let host = host_with(TestHostOptions::default()).await;
    let engine = &host.running.engine;
    let (old, rearmed, other_id) = (client(1), client(2), client(3));
    let fingerprint = "f".repeat(64);
    let with_fp = |id: &str| {
        let mut b = body(&host, id);
        b["machine_fingerprint"] = json!(fingerprint);
        b
    };
    assert_eq!(
        code(&ask_from(&host, with_fp(&old), "192.0.2.10").await),
        "ok"
    );
    assert!(
        engine
            .set_revoked(&old, true, Some("stolen"))
            .await
            .unwrap()
    );
    // The rearmed machine names its old id.
    let mut b = body(&host, &rearmed);
    b["previous_client_id"] = json!(old);
    let e = ask_from(&host, b.clone(), "192.0.2.10").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ClientRevoked, "{}", e.message);
    assert_eq!(e.details["revoked_client_id"], json!(old));
    // The old id asks again (its agent renewing): refused, and its machine remembered.
    assert_eq!(
        code(&ask_from(&host, with_fp(&old), "192.0.2.10").await),
        "client-revoked"
    );
    // A new id without the old one, from the same machine: refused by its fingerprint.
    let e = ask_from(&host, with_fp(&other_id), "192.0.2.10")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ClientRevoked, "{}", e.message);
    assert_eq!(e.details["matched_by"], "machine fingerprint");
    // A restarted host still knows the machine (kept in the audit log, written off the
    // request path: waited for here).
    for _ in 0..100 {
        let filter = volact_store::EventFilter {
            result: Some("revoked-machine".into()),
            ..Default::default()
        };
        if !engine.store().events(&filter).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let host = host.restart().await.unwrap();
    let engine = &host.running.engine;
    let with_fp = |id: &str| {
        let mut b = body(&host, id);
        b["machine_fingerprint"] = json!(fingerprint);
        b
    };
    let e = ask_from(&host, with_fp(&other_id), "192.0.2.10")
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::ClientRevoked,
        "after a restart: {}",
        e.message
    );
    // A malformed previous id is a bad request naming the field.
    let mut bad = body(&host, &client(4));
    bad["previous_client_id"] = json!("not-a-uuid");
    let e = ask_from(&host, bad, "192.0.2.10").await.unwrap_err();
    assert_eq!(e.details["field"], "previous_client_id");
    // Neither counted.
    assert_eq!(count(&host, "demo-os"), 0);
    assert!(
        metric(&host, "volact_revoked_machine_refusals_total") >= 1.0,
        "the refusals are counted"
    );
    // The administrator lifts the revocation: both come in.
    assert!(engine.set_revoked(&old, false, None).await.unwrap());
    assert_eq!(code(&ask_from(&host, b, "192.0.2.10").await), "ok");
    assert_eq!(
        code(&ask_from(&host, with_fp(&other_id), "192.0.2.10").await),
        "ok"
    );
}

/// Many new clients at once against a host with N seats: exactly N are admitted and the
/// rest refused `seat-limit-reached`, however the requests interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seat_cap_holds_under_concurrent_new_clients() {
    const SEATS: u32 = 7;
    let host = std::sync::Arc::new(
        host_with(TestHostOptions {
            seats: Some(SEATS),
            ..TestHostOptions::default()
        })
        .await,
    );
    let tasks: Vec<_> = (1..=60)
        .map(|n| {
            let host = host.clone();
            tokio::spawn(async move { ask(&host, &client(n), WS).await })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for (n, t) in (1..).zip(tasks) {
        let (status, answer) = t.await.unwrap();
        match status {
            200 => admitted.push(n),
            _ => {
                assert_eq!(answer["code"], "seat-limit-reached", "{answer}");
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len(), refused), (SEATS as usize, 60 - SEATS));
    assert_eq!(count(&host, "demo-os"), SEATS);
    // The seated clients still renew.
    for n in admitted {
        assert_eq!(ask(&host, &client(n), WS).await.0, 200);
    }
}

/// Revocations while rearmed machines ask: the engine takes the revoked set and the
/// count in one order on both paths, so neither waits on the other for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_while_rearmed_machines_ask_does_not_deadlock() {
    let host = std::sync::Arc::new(host_with(TestHostOptions::default()).await);
    let old = client(1);
    assert_eq!(
        code(&ask_from(&host, body(&host, &old), "192.0.2.20").await),
        "ok"
    );
    let toggler = {
        let host = host.clone();
        let old = old.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                host.running
                    .engine
                    .set_revoked(&old, i % 2 == 0, None)
                    .await
                    .unwrap();
            }
        })
    };
    let askers: Vec<_> = (0..4u32)
        .map(|t| {
            let host = host.clone();
            let old = old.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    let mut b = body(&host, &client(10_000 + t * 100 + n));
                    b["previous_client_id"] = json!(old);
                    let _ = ask_from(&host, b, "::1").await;
                }
            })
        })
        .collect();
    let all = async {
        toggler.await.unwrap();
        for a in askers {
            a.await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("no deadlock between revocations and admissions");
}
