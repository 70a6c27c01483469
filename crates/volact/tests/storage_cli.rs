//! `[storage] url` through the real binary: `--storage-url` moves the host's database,
//! and a scheme this build does not know is refused before anything is opened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, provision, run, s};

#[test]
fn storage_url_moves_the_database_and_host_status_reads_it_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let url = "sqlite://DATA/other.db";
    let server = Server::start(&fx.data, &["--storage-url", url]);
    let body = serde_json::json!({
        "client_id": "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e11",
        "setup_key": fx.key("suite-desktop"),
        "minimum_count": 1,
        "client_time": jiff::Timestamp::now(),
        "nonce": "nonce-storage-url-test",
        "machine_name": "pc-1",
    });
    let answer = common::http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    );
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    // Killed: the activation is durable in the journal, applied by the next opener.
    server.kill();
    assert!(fx.data.join("other.db").is_file());
    assert!(
        !fx.data.join("volact.db").exists(),
        "the default was not used"
    );

    let status = run(&[
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        url,
        "--json",
    ])
    .ok();
    assert_eq!(status.json()["clients_known"], 1, "{status}");
}

#[test]
fn an_unknown_storage_scheme_is_refused_naming_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let out = run(&[
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        "mysql://db/volact",
        "--json",
    ])
    .fails();
    assert_eq!(out.error_code(), "bad-request", "{out}");
    assert!(
        out.stdout.contains("sqlite://") && out.stdout.contains("--storage-url"),
        "{out}"
    );
    let out = run(&[
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        "postgres://db/volact",
        "--json",
    ])
    .fails();
    assert!(out.stdout.contains("not built into"), "{out}");
    assert!(!fx.data.join("volact.db").exists(), "nothing was opened");
}
