//! The data directory is private whatever the umask, and one process serves it at a
//! time. Run under umask 000 (this file is its own test process, so the umask does not
//! leak into other tests; its tests share it and all want it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(unix)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use volact_proto::ErrorCode;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

fn open_umask() {
    rustix::process::umask(rustix::fs::Mode::empty());
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` and `dir` itself, with their modes.
fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    out.push((dir.display().to_string(), mode(dir), true));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            modes(&path, out);
        } else {
            out.push((path.display().to_string(), mode(&path), false));
        }
    }
}

fn assert_private(dir: &Path) {
    let mut all = Vec::new();
    modes(dir, &mut all);
    let names: Vec<&str> = all.iter().map(|(p, _, _)| p.as_str()).collect();
    // The inventory and its logs are among them.
    for needed in [
        "volact.db",
        "volact.db-wal",
        "volact-journal",
        "volact.lock",
        "identity.key",
        "vendor.json",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(needed)),
            "{needed} missing from {names:?}"
        );
    }
    for (path, mode, is_dir) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path} is {mode:o}");
    }
}

#[tokio::test]
async fn every_file_is_private_under_umask_000_and_old_ones_are_narrowed() {
    open_umask();
    let host = TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap();
    for n in 1..=5 {
        assert_eq!(ask(&host, &client(n), "demo-os-workstation").await.0, 200);
    }
    let dir = host.data.dir().to_path_buf();
    assert_private(&dir);
    // What an older version left readable to all is narrowed at the next start.
    let host = {
        let running = host;
        for name in ["volact.db", "vendor.json", "certificate.txt"] {
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        running.restart().await.unwrap()
    };
    assert_eq!(ask(&host, &client(9), "demo-os-workstation").await.0, 200);
    assert_private(&dir);
}

#[tokio::test]
async fn a_second_host_on_one_data_directory_is_refused_naming_the_pid() {
    open_umask();
    let host = TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap();
    let mut config = host.data.config(Default::default()).unwrap();
    config.listen = ([127, 0, 0, 1], 0).into();
    let second = volact_host::server::start(&host.data, &config, host.clock.clone()).await;
    let e = second.err().expect("a second host is refused");
    assert_eq!(e.code, ErrorCode::InvalidState);
    let pid = std::process::id();
    assert!(
        e.message.contains(&format!("process {pid}")),
        "{}",
        e.message
    );
    assert_eq!(e.details["pid"], pid);
    // The first one serves on, and once it stops the directory is free again.
    assert_eq!(ask(&host, &client(1), "demo-os-workstation").await.0, 200);
    let host = host.restart().await.unwrap();
    assert_eq!(ask(&host, &client(1), "demo-os-workstation").await.0, 200);
}
