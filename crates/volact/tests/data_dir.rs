//! The host's and the vendor's directories through the real binary, under umask 000:
//! every file private, and one process per host data directory.
//! (Its own test process, so the umask set here reaches only these commands.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(unix)]

mod common;

use common::{Server, provision, run, s};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn walk(dir: &Path, bad: &mut Vec<String>, seen: &mut Vec<String>) {
    let check = |path: &Path, want: u32, bad: &mut Vec<String>| {
        let mode = std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if mode != want {
            bad.push(format!("{} is {mode:o}, not {want:o}", path.display()));
        }
    };
    check(dir, 0o700, bad);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        seen.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            walk(&path, bad, seen);
        } else {
            check(&path, 0o600, bad);
        }
    }
}

#[test]
fn directories_are_private_and_a_second_serve_is_refused_naming_the_pid() {
    rustix::process::umask(rustix::fs::Mode::empty());
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let pid = server.guard.id();
    // A client activates, so the inventory, its log and the journal hold something.
    let body = serde_json::json!({
        "client_id": "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10",
        "setup_key": fx.key("suite-desktop"),
        "minimum_count": 1,
        "client_time": jiff::Timestamp::now(),
        "nonce": "nonce-data-dir-test",
        "machine_name": "pc-1",
    });
    let answer = common::http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    );
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");

    // A second host on the same directory is refused, naming the first one's pid.
    let second = run(&[
        "--json",
        "host",
        "serve",
        "--data",
        s(&fx.data),
        "--listen",
        "127.0.0.1:0",
    ])
    .fails();
    assert_eq!(second.error_code(), "invalid-state", "{second}");
    assert!(
        second.stdout.contains(&format!("process {pid}")),
        "{second}"
    );
    // So is seeding a store a host serves from.
    let seed = run(&[
        "--json",
        "host",
        "seed-clients",
        "--data",
        s(&fx.data),
        "--count",
        "5",
    ])
    .fails();
    assert!(seed.stdout.contains(&format!("process {pid}")), "{seed}");

    let (mut bad, mut seen) = (Vec::new(), Vec::new());
    walk(&fx.data, &mut bad, &mut seen);
    walk(&tmp.path().join("vendor"), &mut bad, &mut seen);
    for needed in [
        "volact.db",
        "volact-journal",
        "volact.lock",
        "vendor.db",
        "admin.token",
    ] {
        assert!(seen.iter().any(|n| n == needed), "{needed} not in {seen:?}");
    }
    assert!(bad.is_empty(), "{bad:#?}");
    server.kill();
    // Killed with SIGKILL: the lock went with the process.
    let again = Server::start(&fx.data, &[]);
    again.kill();
}
