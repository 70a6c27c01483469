//! Revocation lists: the vendor revokes a host key, a host or a signing key; the service
//! signs the list; a host takes a newer list only (fetched from the service, or imported
//! from a file), and stops activating clients when the list revokes it — with its code,
//! `/healthz`, the audit log and `/metrics` saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::vendor::{activate_online, new_host, vendor_serve};
use common::{Server, activation_request, http, provision, run, s};
use serde_json::Value;
use std::time::{Duration, Instant};

fn key_id_of(data: &std::path::Path) -> String {
    let (_, key) = volact_engine::data::HostData::new(data).host_key().unwrap();
    key.jti
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let (_, text) = http(&server.addr, "GET", "/metrics", None).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_revoked_host_stops_activating_and_older_or_forged_lists_are_refused() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);

    // A second host activated online with the same key; another key is revoked first,
    // so the list the host fetches at start has a sequence and does not name it.
    let host = new_host(&fx, tmp.path(), "host-2");
    activate_online(&host, &url).ok();
    run(&[
        "vendor",
        "revoke",
        "--dir",
        s(&fx.vendor_dir),
        "--host-key",
        "hk-unrelated",
    ])
    .ok();
    let server = Server::start(&host, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&server, "volact_revocation_list_sequence") != Some(1.0) {
        assert!(Instant::now() < deadline, "the host did not fetch the list");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&server, "volact_host_revoked"), Some(0.0));
    let (body, _) = activation_request(&uuid::Uuid::new_v4().to_string(), fx.key("draw"), 1);
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");

    // The vendor revokes the host's key; the host, serving, imports the new list.
    let key_id = key_id_of(&host);
    let revoked: Value = serde_json::from_str(
        &run(&[
            "--json",
            "vendor",
            "revoke",
            "--dir",
            s(&fx.vendor_dir),
            "--host-key",
            &key_id,
            "--reason",
            "contract ended",
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    assert_eq!(revoked["sequence"], 2, "{revoked}");
    let list = tmp.path().join("revocations.token");
    let token = run(&["vendor", "revocations", "--dir", s(&fx.vendor_dir)])
        .ok()
        .stdout;
    std::fs::write(&list, &token).unwrap();
    let out = run(&["host", "import-revocations", "--data", s(&host), s(&list)]).ok();
    assert!(out.stdout.contains("This host is revoked"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let (body, _) = activation_request(&uuid::Uuid::new_v4().to_string(), fx.key("draw"), 1);
        let (status, answer) = http(
            &server.addr,
            "POST",
            "/v1/activations",
            Some(&body.to_string()),
        )
        .unwrap();
        if status == 403 {
            break answer;
        }
        assert!(Instant::now() < deadline, "still activating: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["code"], "host-revoked", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("contract ended"),
        "{answer}"
    );
    let (status, health) = http(&server.addr, "GET", "/healthz", None).unwrap();
    assert_eq!(status, 503);
    assert!(health.starts_with("host-revoked:"), "{health}");
    assert_eq!(metric(&server, "volact_host_revoked"), Some(1.0));
    assert_eq!(
        metric(&server, "volact_revocation_list_sequence"),
        Some(2.0)
    );
    // The audit log has it, once.
    let events = run(&[
        "--json",
        "host",
        "events",
        "--data",
        s(&host),
        "--result",
        "host-revoked",
    ])
    .ok()
    .stdout;
    // Refused client requests are there with this result too; the host's own event,
    // which names no client, once.
    let events: Value = serde_json::from_str(&events).unwrap();
    let own: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["client_id"].as_str().is_none_or(str::is_empty))
        .collect();
    assert_eq!(own.len(), 1, "{events:#}");
    // Online, the vendor refuses the revoked key's hosts too.
    let out = activate_online(&host, &url).fails();
    assert_eq!(out.error_code(), "host-revoked", "{out}");
    server.kill();

    // The same list again, or an older one, is refused: a list played back never lifts
    // a revocation.
    let out = run(&[
        "--json",
        "host",
        "import-revocations",
        "--data",
        s(&host),
        s(&list),
    ])
    .fails();
    assert_eq!(out.error_code(), "bad-request", "{out}");
    assert!(out.stdout.contains("sequence 2"), "{out}");

    // A list signed by another vendor's root is refused.
    let other = tmp.path().join("other-vendor");
    let other_fx = provision(&other, "office");
    run(&[
        "vendor",
        "revoke",
        "--dir",
        s(&other_fx.vendor_dir),
        "--host",
        "x",
    ])
    .ok();
    run(&[
        "vendor",
        "revoke",
        "--dir",
        s(&other_fx.vendor_dir),
        "--host",
        "y",
    ])
    .ok();
    run(&[
        "vendor",
        "revoke",
        "--dir",
        s(&other_fx.vendor_dir),
        "--host",
        "z",
    ])
    .ok();
    let forged = run(&["vendor", "revocations", "--dir", s(&other_fx.vendor_dir)])
        .ok()
        .stdout;
    let forged_file = tmp.path().join("forged.token");
    std::fs::write(&forged_file, forged).unwrap();
    let out = run(&[
        "--json",
        "host",
        "import-revocations",
        "--data",
        s(&host),
        s(&forged_file),
    ])
    .fails();
    assert_eq!(out.error_code(), "untrusted-host", "{out}");

    // Restarted, the host refuses from its very first answer: the list it keeps is in
    // force before it accepts a connection.
    let again = Server::start_answering(&host, &[], 503);
    let (body, _) = activation_request(&uuid::Uuid::new_v4().to_string(), fx.key("draw"), 1);
    let (status, answer) = http(
        &again.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("host-revoked"), "{answer}");
    again.kill();
}

#[test]
fn a_client_refuses_to_renew_from_a_revoked_host_that_does_not_know_it() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    // Host B, activated online; host A is the fixture's. The vendor revokes host A, and
    // only host B learns it.
    let host_b = new_host(&fx, tmp.path(), "host-b");
    activate_online(&host_b, &url).ok();
    let (_, a_cert) = volact_engine::data::HostData::new(&fx.data)
        .certificate()
        .unwrap()
        .unwrap();
    run(&[
        "vendor",
        "revoke",
        "--dir",
        s(&fx.vendor_dir),
        "--host",
        &a_cert.sub,
        "--reason",
        "machine stolen",
    ])
    .ok();
    let list = tmp.path().join("revocations.token");
    let token = run(&["vendor", "revocations", "--dir", s(&fx.vendor_dir)])
        .ok()
        .stdout;
    std::fs::write(&list, token).unwrap();
    run(&["host", "import-revocations", "--data", s(&host_b), s(&list)]).ok();
    let a = Server::start(&fx.data, &[]);
    let b = Server::start(&host_b, &[]);

    // A client activates on host A (which does not know), then renews on host B, which
    // passes it the list.
    let state = tmp.path().join("client.json");
    let key = fx.key("draw");
    run(&[
        "--state",
        s(&state),
        "install-key",
        key,
        "--vendor",
        s(&fx.bundle),
    ])
    .ok();
    run(&["--state", s(&state), "set-host", &a.addr]).ok();
    let first = run(&["--json", "--state", s(&state), "activate"])
        .ok()
        .json();
    let first_ticket = first["ticket"]["ticket_id"].clone();
    assert!(first_ticket.is_string(), "{first:#}");
    run(&["--state", s(&state), "set-host", &b.addr]).ok();
    let renewed = run(&["--json", "--state", s(&state), "activate"])
        .ok()
        .json();
    let renewed_ticket = renewed["ticket"]["ticket_id"].clone();
    assert!(renewed_ticket.is_string(), "{renewed:#}");

    // Back to host A: it answers, but the client refuses it and keeps its ticket.
    run(&["--state", s(&state), "set-host", &a.addr]).ok();
    let out = run(&["--json", "--state", s(&state), "activate"]).fails();
    assert!(out.stdout.contains("host-revoked"), "{out}");
    assert!(out.stdout.contains("machine stolen"), "{out}");
    let status = run(&["--json", "--state", s(&state), "status"]).ok().json();
    assert_eq!(status["state"], "licensed", "{status:#}");
    assert_eq!(status["ticket"]["ticket_id"], renewed_ticket, "{status:#}");
    a.kill();
    b.kill();
}
