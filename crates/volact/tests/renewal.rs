//! Online renewal of the host certificate (issue 18, point 5), with real processes on
//! loopback: a serving host renews from `volact vendor serve` before its certificate
//! expires and serves with the new one at once; a host that cannot reach the service
//! keeps serving and warns (host status, /metrics); a replayed renewal request is
//! refused. The virtual-clock side (due times, "serving until real expiry") is in
//! crates/volact-host/tests/renewal_clock.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::vendor::vendor_serve;

use common::{Fixture, Server, activation_request, host_status, http, provision, run, s};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use volact_core::keys::PublicKey;

/// Adds a `[vendor]` section to the host's configuration file.
fn configure_vendor(data: &Path, url: &str, renew_before_days: u32) {
    let path = data.join("volact.toml");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!(
        "\n[vendor]\nurl = \"{url}\"\nrenew_before_days = {renew_before_days}\n"
    ));
    std::fs::write(&path, text).unwrap();
}

/// Polls `host status --json` until `done` holds (bounded).
#[track_caller]
fn wait_status(data: &Path, server: &Server, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = host_status(data);
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{status:#}\n--- serve log\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn root_of(fx: &Fixture) -> PublicKey {
    let bundle: Value = serde_json::from_slice(&std::fs::read(&fx.bundle).unwrap()).unwrap();
    PublicKey::from_paserk(bundle["root_public_key"].as_str().unwrap()).unwrap()
}

/// A client of product `draw` asks `server`; returns the answer.
fn activate_client(fx: &Fixture, server: &Server) -> (Value, String, String) {
    let client_id = uuid::Uuid::new_v4().to_string();
    let (body, nonce) = activation_request(&client_id, fx.key("draw"), 1);
    let (status, text) = http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    (serde_json::from_str(&text).unwrap(), client_id, nonce)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Each host of the vendor's records with its activations, from `vendor customers`.
fn activations_in_ledger(fx: &Fixture) -> Vec<(String, u64)> {
    let out = common::run(&[
        "--json",
        "vendor",
        "customers",
        "--dir",
        common::s(&fx.vendor_dir),
    ])
    .ok();
    let customers: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut hosts = Vec::new();
    for c in customers.as_array().unwrap() {
        for k in c["host_keys"].as_array().unwrap() {
            for h in k["hosts"].as_array().unwrap() {
                let id = h["host_id"].as_str().unwrap().to_owned();
                hosts.push((id, h["activations"].as_u64().unwrap()));
            }
        }
    }
    assert!(!hosts.is_empty(), "{customers}");
    hosts
}

#[test]
fn a_serving_host_renews_before_expiry_and_serves_with_the_new_certificate() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    // The service issues one-day certificates; the host renews 10 years ahead of expiry:
    // its certificate (5 years) is due at once.
    let (_service, url) = vendor_serve(&fx, &["--days", "1"]);
    let before = host_status(&fx.data);
    let old_expiry = before["certificate"]["expires"]
        .as_str()
        .unwrap()
        .to_string();
    let ledger_before = activations_in_ledger(&fx);
    configure_vendor(&fx.data, &url, 3650);

    let server = Server::start(&fx.data, &[]);
    let status = wait_status(&fx.data, &server, |s| {
        s["certificate_renewal"]["last_success"].is_string()
    });
    let renewal = &status["certificate_renewal"];
    assert_eq!(renewal["failures_in_a_row"], 0, "{status:#}");
    assert_eq!(renewal["vendor_url"].as_str(), Some(url.as_str()));
    let new_expiry = status["certificate"]["expires"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_expiry, old_expiry, "{status:#}");
    let new_exp: jiff::Timestamp = new_expiry.parse().unwrap();
    let left = new_exp.duration_since(jiff::Timestamp::now());
    assert!(
        left <= jiff::SignedDuration::from_hours(24) && left > jiff::SignedDuration::from_hours(23),
        "{status:#}"
    );
    // Not renewed again within the hour, however short the certificate.
    assert!(renewal["next_attempt"].is_string(), "{status:#}");
    // A renewal spends no activation.
    assert_eq!(activations_in_ledger(&fx), ledger_before);

    // The host serves with the new certificate at once: a client's ticket carries it and
    // verifies along root → certificate → ticket.
    let on_disk = std::fs::read_to_string(fx.data.join("certificate.txt")).unwrap();
    let (answer, client_id, nonce) = activate_client(&fx, &server);
    assert_eq!(answer["result"], "activated", "{answer}");
    assert_eq!(answer["host_certificate"].as_str(), Some(on_disk.trim()));
    let response: volact_proto::ActivationResponse = serde_json::from_value(answer).unwrap();
    let verified = volact_core::verify::verify_answer(
        &root_of(&fx),
        &response,
        volact_core::verify::Expected {
            client_id: &client_id,
            product: "draw",
            nonce: &nonce,
            minimum: 1,
            now: jiff::Timestamp::now(),
            max_skew: jiff::SignedDuration::from_hours(4),
            catalog: None,
        },
    )
    .unwrap();
    let volact_core::verify::VerifiedAnswer::Ticket { certificate, .. } = verified else {
        panic!("not a ticket: {verified:?}");
    };
    assert_eq!(certificate.exp, new_exp);

    // /metrics shows the new expiry and the renewal.
    let (code, metrics) = http(&server.addr, "GET", "/metrics", None).unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &metrics,
            "volact_host_certificate_expires_timestamp_seconds"
        ),
        Some(new_exp.as_second() as f64),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "volact_host_certificate_renewal_last_success_timestamp_seconds"
        )
        .is_some_and(|t| t > 0.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "volact_host_certificate_renewal_failures_total"),
        Some(0.0),
        "{metrics}"
    );
    server.kill();
}

#[test]
fn a_host_that_cannot_reach_the_service_keeps_serving_and_warns() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    // Nothing listens there: every renewal fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let old_certificate = std::fs::read_to_string(fx.data.join("certificate.txt")).unwrap();
    configure_vendor(&fx.data, &url, 3650);

    let server = Server::start(&fx.data, &[]);
    let status = wait_status(&fx.data, &server, |s| {
        s["certificate_renewal"]["failures_in_a_row"].as_u64() >= Some(1)
    });
    let failure = &status["certificate_renewal"]["last_failure"];
    assert_eq!(failure["code"], "host-unreachable", "{status:#}");
    assert!(
        failure["reason"].as_str().unwrap().contains(&url),
        "{status:#}"
    );
    assert!(status["certificate_renewal"]["last_success"].is_null());
    // The next attempt waits about a minute (jitter shortens it by up to a quarter).
    let next: jiff::Timestamp = status["certificate_renewal"]["next_attempt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wait = next.duration_since(jiff::Timestamp::now());
    assert!(wait <= jiff::SignedDuration::from_secs(60), "{status:#}");
    assert_eq!(status["state"], "activated", "{status:#}");

    // The warning, in text…
    let text = run(&["host", "status", "--data", s(&fx.data)]).ok();
    assert!(
        text.stdout.contains("WARNING:")
            && text.stdout.contains("renewing the host certificate failed"),
        "{}",
        text.stdout
    );
    // …in /metrics…
    let (_, metrics) = http(&server.addr, "GET", "/metrics", None).unwrap();
    assert!(
        metric(&metrics, "volact_host_certificate_renewal_failures_total")
            .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "volact_host_certificate_expires_timestamp_seconds"
        )
        .is_some(),
        "{metrics}"
    );
    // …and in the audit log.
    let events = run(&[
        "--json",
        "host",
        "events",
        "--data",
        s(&fx.data),
        "--result",
        "host-certificate-renewal-failed",
    ])
    .ok()
    .json();
    assert!(
        events
            .to_string()
            .contains("host-certificate-renewal-failed"),
        "{events:#}"
    );

    // The host keeps serving with its certificate, which has not expired.
    let (answer, _, _) = activate_client(&fx, &server);
    assert_eq!(answer["result"], "activated", "{answer}");
    assert_eq!(
        answer["host_certificate"].as_str(),
        Some(old_certificate.trim())
    );
    let (code, _) = http(&server.addr, "GET", "/healthz", None).unwrap();
    assert_eq!(code, 200);
    server.kill();
}

#[test]
fn a_replayed_renewal_request_is_refused() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    let data = volact_engine::data::HostData::new(&fx.data);
    let (certificate, _) = data.certificate().unwrap().unwrap();
    let (host_key, _) = data.host_key().unwrap();
    let request = volact_core::renewal::make_renewal_request(
        &data.identity().unwrap(),
        &certificate,
        &host_key,
        "renewal-nonce".into(),
        volact_core::util::whole_seconds(jiff::Timestamp::now()),
    )
    .unwrap();
    let body = serde_json::to_string(&request).unwrap();
    let addr = common::addr_of(&url);
    let (status, first) = http(&addr, "POST", "/v1/host-renewals", Some(&body)).unwrap();
    assert_eq!(status, 200, "{first}");
    let renewed: volact_proto::HostRenewalResponse = serde_json::from_str(&first).unwrap();
    let cert = volact_core::certificate::verify_certificate(
        &root_of(&fx),
        &renewed.host_certificate,
        Some(data.identity().unwrap().public()),
    )
    .unwrap();
    assert_eq!(cert.products, ["suite-desktop", "suite-server", "draw"]);

    let (status, replay) = http(&addr, "POST", "/v1/host-renewals", Some(&body)).unwrap();
    let replay: Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(
        (status, replay["code"].as_str()),
        (409, Some("request-replayed")),
        "{replay}"
    );

    // A host the vendor never activated with this key is refused, even with a genuine
    // certificate of another host: the proof must come from the certified key.
    let other = tmp.path().join("other");
    run(&["host", "init", "--data", s(&other)]).ok();
    let stranger = volact_engine::data::HostData::new(&other);
    let forged = volact_core::renewal::make_renewal_request(
        &stranger.identity().unwrap(),
        &certificate,
        &host_key,
        "stranger".into(),
        volact_core::util::whole_seconds(jiff::Timestamp::now()),
    )
    .unwrap();
    let (status, answer) = http(
        &addr,
        "POST",
        "/v1/host-renewals",
        Some(&serde_json::to_string(&forged).unwrap()),
    )
    .unwrap();
    assert_eq!(status, 400, "{answer}");

    // The service publishes its current catalog.
    let (status, catalog) = http(&addr, "GET", "/v1/catalog", None).unwrap();
    assert_eq!(status, 200, "{catalog}");
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    let bundle: Value = serde_json::from_slice(&std::fs::read(&fx.bundle).unwrap()).unwrap();
    assert_eq!(catalog["catalog"], bundle["catalog"]);
}
