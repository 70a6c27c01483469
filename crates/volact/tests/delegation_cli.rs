//! `volact vendor delegate`: a signing key certified by the root signs host certificates,
//! and hosts and clients accept the chain root → signing key → host certificate → ticket;
//! a key outside its delegation's scope is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, provision, run, s};
use std::path::Path;

/// Has the host in `data` make a request, signs it with `signing`, and installs the
/// answer; returns the output of the install.
fn activate_with(root: &Path, fx: &common::Fixture, signing: &Path, name: &str) -> common::Output {
    let request = root.join(format!("{name}.request.json"));
    let response = root.join(format!("{name}.response.json"));
    run(&[
        "host",
        "activate",
        "--data",
        s(&fx.data),
        "--request-out",
        s(&request),
    ])
    .ok();
    let answer = run(&[
        "vendor",
        "activate-host",
        "--dir",
        s(&fx.vendor_dir),
        "--signing",
        s(signing),
        s(&request),
    ])
    .ok();
    std::fs::write(&response, &answer.stdout).unwrap();
    common::run(&[
        "host",
        "activate",
        "--data",
        s(&fx.data),
        "--response",
        s(&response),
        "--json",
    ])
}

#[test]
fn a_delegated_signing_key_activates_a_host_whose_clients_verify_the_whole_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let signing = tmp.path().join("service-key");
    let report = run(&[
        "vendor",
        "delegate",
        "--dir",
        s(&fx.vendor_dir),
        "--out",
        s(&signing),
        "--days",
        "30",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        report["scope"],
        serde_json::json!([
            "host-certificates",
            "catalogs",
            "revocation-lists",
            "host-keys"
        ])
    );
    assert!(report["jti"].as_str().unwrap().starts_with("sk-"));
    // The directory is refused a second key.
    let again = run(&[
        "vendor",
        "delegate",
        "--dir",
        s(&fx.vendor_dir),
        "--out",
        s(&signing),
        "--json",
    ])
    .fails();
    assert_eq!(again.error_code(), "invalid-state");

    activate_with(tmp.path(), &fx, &signing, "delegated").ok();
    let status = common::host_status(&fx.data);
    assert_eq!(status["state"], "activated", "{status:#}");

    // A client verifies root → signing key → host certificate → ticket.
    let server = Server::start(&fx.data, &[]);
    let state = tmp.path().join("client.json");
    run(&[
        "--state",
        s(&state),
        "install-key",
        fx.key("draw"),
        "--vendor",
        s(&fx.bundle),
    ])
    .ok();
    run(&["--state", s(&state), "set-host", &server.addr]).ok();
    run(&["--state", s(&state), "activate"]).ok();
    let client = run(&["--state", s(&state), "status", "--json"]).ok().json();
    assert_eq!(client["state"], "licensed", "{client:#}");
    server.kill();
}

#[test]
fn a_signing_key_delegated_for_catalogs_only_cannot_certify_a_host() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let signing = tmp.path().join("catalog-key");
    run(&[
        "vendor",
        "delegate",
        "--dir",
        s(&fx.vendor_dir),
        "--out",
        s(&signing),
        "--scope",
        "catalogs",
    ])
    .ok();
    let refused = activate_with(tmp.path(), &fx, &signing, "narrow").fails();
    assert_eq!(refused.error_code(), "untrusted-host", "{refused:?}");
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(said.contains("does not cover host-certificates"), "{said}");
    // The host keeps the certificate it had.
    assert_eq!(common::host_status(&fx.data)["state"], "activated");
}
