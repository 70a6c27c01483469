//! The activation rules, end to end through the real HTTP server and storage, with a
//! hand-set clock: the count story, windows, intervals, clock skew, key groups, seats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use volact_core::keys::PublicKey;
use volact_core::ticket::{Expected, VerifiedAnswer, verify_answer};
use volact_engine::Clock;
use volact_engine::config::RawConfig;
use volact_proto::ActivationResponse;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const WS: &str = "demo-os-workstation";
const SERVER: &str = "demo-os-server";
const OFFICE: &str = "demo-office";

async fn host() -> TestHost {
    TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

#[tokio::test]
async fn twenty_five_workstations_the_story_from_the_field() {
    let host = host().await;
    let t0 = host.clock.now();
    for i in 1..=24 {
        let (status, answer) = ask(&host, &client(i), WS).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], "count-insufficient");
        assert_eq!(answer["count"], i);
        assert_eq!(answer["minimum"], 25);
        let retry: Timestamp = answer["retry_after"].as_str().unwrap().parse().unwrap();
        assert_eq!(retry, t0 + SignedDuration::from_hours(2));
        assert!(answer["ticket"].is_null() && answer["not_yet"].is_string());
    }
    let (_, answer) = ask(&host, &client(25), WS).await;
    assert_eq!(answer["result"], "activated");
    assert_eq!(answer["count"], 25);
    // Client 1 retries and is activated now; its count is still 25 (it was counted once).
    host.clock.advance(SignedDuration::from_hours(2));
    let (_, answer) = ask(&host, &client(1), WS).await;
    assert_eq!(answer["result"], "activated");
    assert_eq!(answer["count"], 25);
    // The ticket verifies along the chain and carries the design's intervals.
    let response: ActivationResponse = serde_json::from_value(answer.clone()).unwrap();
    let root = PublicKey::from_paserk(&host.vendor.bundle.root_public_key).unwrap();
    let ticket = volact_core::token::peek::<volact_core::ticket::Ticket>(
        response.ticket.as_deref().unwrap(),
    )
    .unwrap();
    let expected = Expected {
        client_id: &client(1),
        product: WS,
        nonce: &ticket.nonce,
        minimum: 25,
        now: host.clock.now(),
        max_skew: SignedDuration::from_hours(4),
        catalog: None,
    };
    match verify_answer(&root, &response, expected).unwrap() {
        VerifiedAnswer::Ticket { ticket, .. } => {
            let now = host.clock.now();
            assert_eq!(ticket.exp, now + days(180));
            assert_eq!(ticket.renew_after, now + days(7));
            assert_eq!(ticket.count, 25);
        }
        other => panic!("expected a ticket, got {other:?}"),
    }
    assert_eq!(response.intervals.renew_interval_secs, 7 * 86_400);
    assert_eq!(response.intervals.retry_interval_secs, 2 * 3600);
}

#[tokio::test]
async fn servers_activate_at_five_and_share_the_application_count() {
    let host = host().await;
    for i in 1..=4 {
        let (_, a) = ask(&host, &client(i), SERVER).await;
        assert_eq!(a["result"], "count-insufficient");
        assert_eq!(a["count"], i);
        assert_eq!(a["minimum"], 5);
    }
    let (_, a) = ask(&host, &client(5), SERVER).await;
    assert_eq!(a["result"], "activated");
    // Workstations of the same application share the count: the 6th machine of Demo OS.
    let (_, a) = ask(&host, &client(6), WS).await;
    assert_eq!(a["count"], 6);
    assert_eq!(a["result"], "count-insufficient");
    // Demo Office counts on its own.
    let (_, a) = ask(&host, &client(7), OFFICE).await;
    assert_eq!(a["count"], 1);
    assert_eq!(count(&host, "demo-os"), 6);
    assert_eq!(count(&host, "demo-office"), 1);
}

#[tokio::test]
async fn a_client_silent_for_thirty_days_drops_out_of_the_count() {
    let host = host().await;
    for i in 1..=5 {
        ask(&host, &client(i), OFFICE).await;
    }
    assert_eq!(count(&host, "demo-office"), 5);
    // Clients 2..5 renew on day 10; client 1 stays silent.
    host.clock.advance(days(10));
    for i in 2..=5 {
        let (_, a) = ask(&host, &client(i), OFFICE).await;
        assert_eq!(a["result"], "activated");
    }
    // Day 30 minus a second: client 1 still counts.
    host.clock.advance(days(20) - SignedDuration::from_secs(1));
    assert_eq!(count(&host, "demo-office"), 5);
    // Day 30 plus a second: client 1 is gone, and a newcomer sees 5, not 6.
    host.clock.advance(SignedDuration::from_secs(2));
    assert_eq!(count(&host, "demo-office"), 4);
    let (_, a) = ask(&host, &client(6), OFFICE).await;
    assert_eq!(a["count"], 5);
    // Past day 40 with nobody renewing, everyone but the newcomer is gone: below minimum.
    host.clock.advance(days(10) + SignedDuration::from_secs(1));
    let (_, a) = ask(&host, &client(2), OFFICE).await;
    assert_eq!(a["count"], 2);
    assert_eq!(a["result"], "count-insufficient");
    // The count survives a restart of the host (rebuilt from storage).
    let host = host.restart().await.unwrap();
    assert_eq!(count(&host, "demo-office"), 2);
}

#[tokio::test]
async fn the_hosts_configured_intervals_are_the_ones_clients_get() {
    let config = RawConfig {
        renew_interval: Some("1d".into()),
        retry_interval: Some("15m".into()),
        ticket_validity: Some("30d".into()),
        ..RawConfig::default()
    };
    let host = TestHost::start(
        TestVendor::new(1).unwrap(),
        TestHostOptions {
            config,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let now = host.clock.now();
    let (_, a) = ask(&host, &client(1), OFFICE).await;
    assert_eq!(a["intervals"]["retry_interval_secs"], 900);
    assert_eq!(
        a["retry_after"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        now + SignedDuration::from_mins(15)
    );
    for i in 2..=5 {
        ask(&host, &client(i), OFFICE).await;
    }
    let (_, a) = ask(&host, &client(1), OFFICE).await;
    let ticket =
        volact_core::token::peek::<volact_core::ticket::Ticket>(a["ticket"].as_str().unwrap())
            .unwrap();
    assert_eq!(ticket.renew_after, now + days(1));
    assert_eq!(ticket.exp, now + days(30));
    assert_eq!(a["intervals"]["renew_interval_secs"], 86_400);
}

#[tokio::test]
async fn clocks_more_than_four_hours_apart_are_refused_with_both_times() {
    let host = host().await;
    let now = host.clock.now();
    let limit = SignedDuration::from_hours(4);
    // Exactly at the limit is accepted, either way.
    let (_, a) = ask_at(&host, &client(1), OFFICE, now + limit).await;
    assert_eq!(a["result"], "count-insufficient");
    let (_, a) = ask_at(&host, &client(2), OFFICE, now - limit).await;
    assert_eq!(a["result"], "count-insufficient");
    let late = now + limit + SignedDuration::from_secs(1);
    let (status, a) = ask_at(&host, &client(3), OFFICE, late).await;
    assert_eq!(status, 400);
    assert_eq!(a["code"], "clock-skew");
    let message = a["message"].as_str().unwrap();
    assert!(
        message.contains(&late.to_string()) && message.contains(&now.to_string()),
        "{message}"
    );
    assert!(
        message.contains("4h 1s") && message.contains("allowed 4h"),
        "{message}"
    );
    assert_eq!(a["details"]["difference_secs"], 4 * 3600 + 1);
    assert_eq!(a["details"]["limit_secs"], 4 * 3600);
    // A refused client is not counted.
    assert_eq!(count(&host, "demo-office"), 2);
}

#[tokio::test]
async fn products_outside_the_key_group_are_refused() {
    let vendor = TestVendor::with_source(3, &catalog_with_os_only_group()).unwrap();
    let options = TestHostOptions {
        group: Some("os-only".into()),
        ..Default::default()
    };
    let host = TestHost::start(vendor, options).await.unwrap();
    let (status, a) = ask(&host, &client(1), OFFICE).await;
    assert_eq!(status, 403);
    assert_eq!(a["code"], "product-not-in-key-group");
    assert!(a["message"].as_str().unwrap().contains("os-only"));
    let (_, a) = ask(&host, &client(2), WS).await;
    assert_eq!(a["result"], "count-insufficient");
    assert_eq!(count(&host, "demo-office"), 0);
}

#[tokio::test]
async fn the_seat_cap_refuses_new_clients_and_renews_existing_ones() {
    let options = TestHostOptions {
        seats: Some(3),
        ..Default::default()
    };
    let host = TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap();
    for i in 1..=3 {
        let (status, _) = ask(&host, &client(i), OFFICE).await;
        assert_eq!(status, 200);
    }
    let (status, a) = ask(&host, &client(4), SERVER).await;
    assert_eq!(status, 403);
    assert_eq!(a["code"], "seat-limit-reached");
    assert_eq!(a["details"]["seats"], 3);
    // Existing clients keep their seat.
    host.clock.advance(days(7));
    let (status, a) = ask(&host, &client(1), OFFICE).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(count(&host, "demo-os"), 0);
    // Once a client leaves the window, its seat is free again.
    host.clock.advance(days(31));
    let (status, _) = ask(&host, &client(4), SERVER).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_host_that_is_not_activated_refuses_with_the_fix() {
    let vendor = TestVendor::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = volact_engine::data::HostData::new(dir.path().join("host"));
    data.init([5; 32]).unwrap();
    data.install_key(
        &vendor.host_key("demo-all", None).unwrap(),
        Some(&vendor.bundle),
    )
    .unwrap();
    let mut config = data.config(RawConfig::default()).unwrap();
    config.listen = ([127, 0, 0, 1], 0).into();
    let clock = std::sync::Arc::new(volact_engine::ManualClock::new(volact_testkit::test_epoch()));
    let running = volact_host::server::start(&data, &config, clock)
        .await
        .unwrap();
    let key = vendor.setup_key(OFFICE);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/activations", running.url()))
        .json(&request(&client(1), &key, volact_testkit::test_epoch()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let a: serde_json::Value = response.json().await.unwrap();
    assert_eq!(a["code"], "host-not-activated");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("volact host activate")
    );
    let health = reqwest::get(format!("{}/healthz", running.url()))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_clients_leave_the_count_and_are_refused() {
    let host = host().await;
    for i in 1..=3 {
        ask(&host, &client(i), OFFICE).await;
    }
    assert!(
        host.running
            .engine
            .set_revoked(&client(2), true, Some("stolen laptop"))
            .await
            .unwrap()
    );
    assert_eq!(count(&host, "demo-office"), 2);
    let (status, a) = ask(&host, &client(2), OFFICE).await;
    assert_eq!(status, 403);
    assert_eq!(a["code"], "client-revoked");
    assert!(
        !host
            .running
            .engine
            .set_revoked(&client(99), true, None)
            .await
            .unwrap()
    );
    // Revocation survives a restart.
    let host = host.restart().await.unwrap();
    let (_, a) = ask(&host, &client(2), OFFICE).await;
    assert_eq!(a["code"], "client-revoked");
    assert_eq!(count(&host, "demo-office"), 2);
}
