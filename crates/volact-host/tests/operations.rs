//! Operating a host: cloned-image flags, audit-event retention, Prometheus metrics,
//! health, and configuration layering — through the real server and storage with a
//! hand-set clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::time::Duration;
use volact_engine::Clock;
use volact_engine::config::{ConfigLayers, RawConfig};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const OFFICE: &str = "demo-office";

async fn host_with(config: RawConfig) -> TestHost {
    let options = TestHostOptions {
        config,
        ..TestHostOptions::default()
    };
    TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap()
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

async fn get_text(host: &TestHost, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", host.url()));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn admin(host: &TestHost, path: &str) -> Value {
    let token = host.admin_token().unwrap();
    let (status, text) = get_text(host, path, Some(&token)).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Asks as `client` from `machine` (and `fingerprint`) at the host's time.
async fn ask_from(
    host: &TestHost,
    client_id: &str,
    machine: &str,
    fingerprint: Option<&str>,
) -> (u16, Value) {
    let key = host.vendor.setup_key(OFFICE);
    let mut body = request(client_id, &key, host.clock.now());
    body["machine_name"] = json!(machine);
    if let Some(f) = fingerprint {
        body["machine_fingerprint"] = json!(f);
    }
    post_raw(host, serde_json::to_vec(&body).unwrap(), "application/json").await
}

/// The stored flags, waiting (bounded) for `n` of them: flags are stored off the
/// request path.
async fn clones(host: &TestHost, n: usize) -> Value {
    for _ in 0..200 {
        let list = admin(host, "/v1/admin/clones").await;
        if list["clones"].as_array().unwrap().len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} cloned-image flags were stored");
}

/// The value of the metric line that starts with `series` (name and labels as rendered).
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            (series == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|x| series.contains(x))
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
}

#[tokio::test]
async fn one_client_id_on_two_machines_within_a_day_is_flagged() {
    let host = host_with(RawConfig::default()).await;
    let (a, b, c) = (client(1), client(2), client(3));
    // Client a: two machine names an hour apart — a cloned disk.
    assert_eq!(ask_from(&host, &a, "pc-a", None).await.0, 200);
    // Client b: renamed a day later — not a clone.
    assert_eq!(ask_from(&host, &b, "pc-a", None).await.0, 200);
    // Client c: one name, two machine fingerprints.
    assert_eq!(ask_from(&host, &c, "lab", Some("f1f1f1f1")).await.0, 200);
    host.clock.advance(hours(1));
    ask_from(&host, &a, "pc-b", None).await;
    ask_from(&host, &c, "lab", Some("f2f2f2f2")).await;
    host.clock.advance(hours(24));
    ask_from(&host, &b, "pc-b", None).await;
    // The clones keep asking in turn: still one flag for the day.
    ask_from(&host, &a, "pc-a", None).await;

    clones(&host, 2).await;
    // Give a wrongly raised third flag time to land before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = admin(&host, "/v1/admin/clones").await;
    let flagged = list["clones"].as_array().unwrap();
    assert_eq!(flagged.len(), 2, "{list:#}");
    let row = |id: &str| {
        flagged
            .iter()
            .find(|r| r["client_id"] == id)
            .unwrap()
            .clone()
    };
    let ra = row(&a);
    assert_eq!(ra["machine_name"], "pc-b");
    assert_eq!(ra["other_machine_name"], "pc-a");
    assert_eq!(ra["reason"], "machine-name");
    assert_eq!(ra["flags"], 1);
    assert_eq!(ra["address"], "127.0.0.1");
    assert_eq!(row(&c)["reason"], "machine-fingerprint");
    assert!(flagged.iter().all(|r| r["client_id"] != b));

    // An audit event each, shown in the inventory, in status and in the metrics.
    let events = admin(&host, "/v1/admin/events?result=cloned-image").await;
    let mut ids: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, [a.clone(), c.clone()]);
    let clients = admin(&host, "/v1/admin/clients").await;
    let cloned: Vec<&str> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cloned"] == true)
        .map(|r| r["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(cloned.len(), 2);
    let status = admin(&host, "/v1/admin/status").await;
    assert_eq!(status["cloned_clients"], 2);
    let report: volact_engine::status::HostStatus = serde_json::from_value(status).unwrap();
    assert!(
        report
            .render_text()
            .contains(&format!("{:<24} 2 clients flagged", "Cloned images:")),
        "{}",
        report.render_text()
    );
    let pass = host.maintain().await.unwrap();
    assert_eq!(pass.gauges.cloned_clients, 2);
    let (_, text) = get_text(&host, "/metrics", None).await;
    assert_eq!(
        metric(&text, "volact_cloned_image_flags_total", &[]),
        Some(2.0)
    );
    assert_eq!(metric(&text, "volact_cloned_image_clients", &[]), Some(2.0));

    // A fingerprint that is not a short printable string is refused, naming the field.
    let (status, v) = ask_from(&host, &client(9), "pc", Some(&"x".repeat(200))).await;
    assert_eq!(
        (status, v["details"]["field"].as_str()),
        (400, Some("machine_fingerprint")),
        "{v}"
    );
}

#[tokio::test]
async fn audit_events_older_than_the_retention_are_pruned() {
    let host = host_with(RawConfig {
        event_retention: Some("10d".into()),
        ..RawConfig::default()
    })
    .await;
    for i in 1..=3 {
        ask(&host, &client(i), OFFICE).await;
    }
    host.clock.advance(hours(5 * 24));
    ask(&host, &client(4), OFFICE).await;
    // Nothing is old enough yet.
    assert_eq!(host.maintain().await.unwrap().pruned, 0);
    host.clock.advance(hours(6 * 24));
    let pass = host.maintain().await.unwrap();
    assert_eq!(pass.pruned, 3);
    let events = admin(&host, "/v1/admin/events").await;
    let left = events["events"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["client_id"], client(4));
    // The inventory and the request totals are kept.
    assert_eq!(
        admin(&host, "/v1/admin/clients").await["clients"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(admin(&host, "/v1/admin/status").await["requests"], 4);
    let (_, text) = get_text(&host, "/metrics", None).await;
    assert_eq!(metric(&text, "volact_events_pruned_total", &[]), Some(3.0));
}

#[tokio::test]
async fn metrics_show_requests_counts_latency_and_expiring_tickets() {
    let host = host_with(RawConfig {
        ticket_validity: Some("20d".into()),
        ..RawConfig::default()
    })
    .await;
    for i in 1..=5 {
        ask(&host, &client(i), OFFICE).await;
    }
    ask_at(&host, &client(6), OFFICE, host.clock.now() - hours(24)).await;
    post_raw(&host, b"{not json".to_vec(), "application/json").await;
    let pass = host.maintain().await.unwrap();
    assert_eq!(pass.gauges.clients_known, 6);
    assert_eq!((pass.gauges.expiring_7d, pass.gauges.expiring_30d), (0, 1));

    let (status, text) = get_text(&host, "/metrics", None).await;
    assert_eq!(status, 200);
    let requests = |result: &str, product: &str| {
        metric(
            &text,
            "volact_activation_requests_total",
            &[
                &format!("result=\"{result}\""),
                &format!("product=\"{product}\""),
            ],
        )
    };
    assert_eq!(requests("count-insufficient", OFFICE), Some(4.0), "{text}");
    assert_eq!(requests("activated", OFFICE), Some(1.0));
    assert_eq!(requests("clock-skew", OFFICE), Some(1.0));
    assert_eq!(requests("bad-request", "none"), Some(1.0));
    assert_eq!(
        metric(
            &text,
            "volact_application_count",
            &["application=\"demo-office\""]
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &text,
            "volact_application_count",
            &["application=\"demo-os\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            "volact_product_minimum_count",
            &["product=\"demo-os-workstation\""]
        ),
        Some(25.0)
    );
    assert_eq!(metric(&text, "volact_clients_known", &[]), Some(6.0));
    assert_eq!(
        metric(&text, "volact_tickets_expiring", &["within=\"30d\""]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "volact_tickets_expiring", &["within=\"7d\""]),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            "volact_activation_request_duration_seconds_count",
            &[]
        ),
        Some(7.0)
    );
    assert!(
        text.contains("volact_activation_request_duration_seconds_bucket{le=\"0.005\"}"),
        "{text}"
    );
    assert_eq!(metric(&text, "volact_host_ready", &[]), Some(1.0));
    assert!(text.contains("# HELP volact_activation_requests_total"));
    // Two weeks on, the ticket ends within 7 days.
    host.clock.advance(hours(14 * 24));
    assert_eq!(host.maintain().await.unwrap().gauges.expiring_7d, 1);
}

#[tokio::test]
async fn a_metrics_token_closes_metrics_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me\n").unwrap();
    let host = host_with(RawConfig {
        metrics_token_file: Some(token_file.display().to_string()),
        ..RawConfig::default()
    })
    .await;
    let (status, text) = get_text(&host, "/metrics", None).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(get_text(&host, "/metrics", Some("guess")).await.0, 401);
    let (status, text) = get_text(&host, "/metrics", Some("scrape-me")).await;
    assert_eq!(status, 200);
    assert!(text.contains("volact_host_ready 1"), "{text}");
}

#[tokio::test]
async fn health_reports_what_stops_activations() {
    let host = host_with(RawConfig::default()).await;
    // The start-up maintenance pass (which probes storage) is done once a pass asked for
    // returns, so it cannot clear the failure recorded below behind the test's back.
    host.maintain().await.unwrap();
    assert_eq!(
        get_text(&host, "/healthz", None).await,
        (200, "ok\n".into())
    );
    // A failed write (as the writer or the probe would report it) makes the host
    // unhealthy until a write succeeds again; the periodic probe is such a write.
    host.running
        .engine
        .storage_health()
        .record(Err("disk I/O error"));
    let (status, text) = get_text(&host, "/healthz", None).await;
    assert_eq!(status, 503);
    assert!(
        text.starts_with("storage-failure:") && text.contains("disk I/O error"),
        "{text}"
    );
    host.maintain().await.unwrap();
    assert_eq!(get_text(&host, "/healthz", None).await.0, 200);

    // A host whose certificate expired refuses, and says why.
    host.clock.advance(hours(24 * 6 * 365));
    let (status, text) = get_text(&host, "/healthz", None).await;
    assert_eq!(status, 503);
    assert!(text.starts_with("host-certificate-expired:"), "{text}");
    let (_, metrics) = get_text(&host, "/metrics", None).await;
    assert!(metrics.contains("volact_host_ready 0"), "{metrics}");
}

#[tokio::test]
async fn a_host_that_is_not_activated_is_unhealthy() {
    let vendor = TestVendor::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = volact_engine::data::HostData::new(dir.path().join("host"));
    data.init([7; 32]).unwrap();
    let mut config = data.config(RawConfig::default()).unwrap();
    config.listen = ([127, 0, 0, 1], 0).into();
    data.install_key(
        &vendor.host_key("demo-all", None).unwrap(),
        Some(&vendor.bundle),
    )
    .unwrap();
    let clock = std::sync::Arc::new(volact_engine::ManualClock::new(Timestamp::UNIX_EPOCH));
    let running = volact_host::server::start(&data, &config, clock)
        .await
        .unwrap();
    let response = reqwest::get(format!("{}/healthz", running.url()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("host-not-activated:") && text.contains("volact host activate"),
        "{text}"
    );
    running.stop().await.unwrap();
}

#[test]
fn configuration_layers_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("volact.toml");
    std::fs::write(
        &file,
        "renew_interval = \"1d\"\nretry_interval = \"1h\"\nevent_retention = \"30d\"\n",
    )
    .unwrap();
    let env = |name: &str| match name {
        "VOLACT_RETRY_INTERVAL" => Some("2h".to_string()),
        "VOLACT_EVENT_RETENTION" => Some("60d".to_string()),
        "VOLACT_DATA" => Some("not a setting".to_string()),
        _ => None,
    };
    let flags = RawConfig {
        event_retention: Some("120d".into()),
        ..RawConfig::default()
    };
    let layers = ConfigLayers::load(&file, env, flags).unwrap();
    let config = layers.resolve().unwrap();
    assert_eq!(config.settings.renew_interval, hours(24));
    assert_eq!(config.settings.retry_interval, hours(2));
    assert_eq!(config.event_retention, hours(120 * 24));
    assert_eq!(config.settings.count_window, hours(30 * 24), "default");
    let source = |key: &str| layers.source(key).to_string();
    assert_eq!(source("renew_interval"), format!("file {}", file.display()));
    assert_eq!(
        source("retry_interval"),
        "environment VOLACT_RETRY_INTERVAL"
    );
    assert_eq!(source("event_retention"), "flag --event-retention");
    assert_eq!(source("count_window"), "default");
    let report = layers.report(&config);
    let retention = report.iter().find(|e| e.key == "event_retention").unwrap();
    assert_eq!(
        (retention.value.as_str(), retention.seconds),
        ("120d", Some(120 * 86_400))
    );

    // Out of range: refused with the range and where the value was set.
    let env = |name: &str| (name == "VOLACT_COUNT_WINDOW").then(|| "400d".to_string());
    let e = ConfigLayers::load(&file, env, RawConfig::default())
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(
        e.message
            .contains("count_window is 400d; it must be from 1d to 365d")
            && e.message.contains("environment VOLACT_COUNT_WINDOW"),
        "{}",
        e.message
    );
    for bad in ["12h", "3651d"] {
        let flags = RawConfig {
            event_retention: Some(bad.into()),
            ..RawConfig::default()
        };
        let e = ConfigLayers::load(&file, |_| None, flags)
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            e.message.contains("must be from 1d to 3650d")
                && e.message.contains("--event-retention"),
            "{}",
            e.message
        );
    }
    let flags = RawConfig {
        renew_interval: Some("soon".into()),
        ..RawConfig::default()
    };
    let e = ConfigLayers::load(&file, |_| None, flags)
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(
        e.message
            .starts_with("renew_interval: `soon` is not a duration"),
        "{}",
        e.message
    );

    // An unknown key is refused with its name and the file.
    std::fs::write(&file, "event_retension = \"30d\"\n").unwrap();
    let e = ConfigLayers::load(&file, |_| None, RawConfig::default()).unwrap_err();
    assert!(
        e.message.contains("event_retension") && e.message.contains(&file.display().to_string()),
        "{}",
        e.message
    );
}
