//! The vendor service in tests: `volact vendor serve` on an ephemeral loopback port, and
//! hosts that activate against it.

use super::{ChildGuard, Fixture, command, run, s};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

/// `volact vendor serve` on an ephemeral loopback port; its URL from its first line.
pub fn vendor_serve(fx: &Fixture, extra: &[&str]) -> (ChildGuard, String) {
    let (guard, ready) = vendor_serve_ready(fx, extra);
    (guard, ready["url"].as_str().unwrap().to_string())
}

/// `volact vendor serve`, and what it printed once it listened.
pub fn vendor_serve_ready(fx: &Fixture, extra: &[&str]) -> (ChildGuard, Value) {
    let mut args = vec![
        "--json",
        "vendor",
        "serve",
        "--dir",
        s(&fx.vendor_dir),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut cmd = command(Path::new("."), &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard { child };
    // `--json` prints the ready object (over several lines) once it listens.
    let mut reader = BufReader::new(stdout);
    let mut text = String::new();
    let ready: Value = loop {
        let before = text.len();
        reader.read_line(&mut text).unwrap();
        if let Ok(v) = serde_json::from_str(&text) {
            break v;
        }
        assert!(
            text.len() > before && text.len() < 4096,
            "vendor serve printed {text:?}"
        );
    };
    (guard, ready)
}

/// A new host in `root/name` with the fixture's host key installed, not activated.
pub fn new_host(fx: &Fixture, root: &Path, name: &str) -> std::path::PathBuf {
    let data = root.join(name);
    run(&["host", "init", "--data", s(&data)]).ok();
    run(&[
        "host",
        "install-key",
        "--data",
        s(&data),
        "--vendor",
        s(&fx.bundle),
        &fx.host_key,
    ])
    .ok();
    data
}

pub fn activate_online(data: &Path, url: &str) -> super::Output {
    run(&[
        "--json",
        "host",
        "activate",
        "--data",
        s(data),
        "--online",
        "--vendor-url",
        url,
    ])
}
