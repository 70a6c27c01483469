//! `volact quickstart --json`: the one-line summary, five demo clients activating at the
//! fifth, and a second run on the same directory that keeps keys, host and count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ChildGuard, addr_of, app_count, command, host_status, run_in, s, wait_healthy};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// A running quickstart and the summary it printed first.
struct Quickstart {
    guard: ChildGuard,
    summary: Value,
}

/// Starts `volact quickstart --data DATA --listen 127.0.0.1:0 --json` in `cwd`, reads the
/// first line of its output (bounded wait) and waits until the host is healthy.
fn start(cwd: &Path, data: &str, run: usize) -> Quickstart {
    let log = cwd.join(format!("quickstart-{run}.log"));
    let mut cmd = command(
        cwd,
        &[
            "quickstart",
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut guard = ChildGuard {
        child: cmd.spawn().unwrap(),
    };
    let stdout = guard.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        // Keep draining until the process ends, so it never blocks on a full pipe.
        for _ in lines {}
    });
    let logs = || {
        format!(
            "--- quickstart log\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let first = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => panic!("quickstart printed no summary line in time\n{}", logs()),
    };
    let summary: Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("the first line is not JSON ({e}): {first}\n{}", logs()));
    let url = summary["url"].as_str().unwrap().to_string();
    wait_healthy(&addr_of(&url), &mut guard, logs);
    Quickstart { guard, summary }
}

#[test]
fn quickstart_serves_a_working_demo_and_keeps_it_across_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // A relative --data, as a user would type it: paths in the summary are relative too.
    let mut qs = start(cwd, "demo", 1);
    let summary = qs.summary.clone();
    let url = summary["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{summary:#}");
    assert_eq!(summary["data"], "demo", "{summary:#}");
    let vendor = cwd.join(summary["vendor"].as_str().unwrap());
    assert!(vendor.is_file(), "{summary:#}");
    let bundle: Value = serde_json::from_slice(&std::fs::read(&vendor).unwrap()).unwrap();
    assert!(
        bundle["root_public_key"]
            .as_str()
            .unwrap()
            .starts_with("k4.public.")
    );
    let keys = summary["setup_keys"].as_object().unwrap().clone();
    let mut products: Vec<&str> = keys.keys().map(String::as_str).collect();
    products.sort_unstable();
    assert_eq!(
        products,
        ["demo-office", "demo-os-server", "demo-os-workstation"]
    );
    let host_id = summary["host_id"].as_str().unwrap().to_string();
    let host_data = cwd.join(summary["host_data"].as_str().unwrap_or("demo/host"));

    // Five machines with the demo-office key: activated at the fifth.
    let office = keys["demo-office"].as_str().unwrap();
    let addr = addr_of(&url);
    let state = |i: usize| cwd.join(format!("m{i}.json"));
    for i in 1..=5 {
        let st = state(i);
        run_in(
            cwd,
            &["--state", s(&st), "ipk", office, "--vendor", s(&vendor)],
        )
        .ok();
        run_in(cwd, &["--state", s(&st), "skms", &addr]).ok();
        let out = run_in(cwd, &["--state", s(&st), "ato", "--json"]);
        if i < 5 {
            assert_eq!(out.code, 1, "{out}");
            assert_eq!(out.error_code(), "count-insufficient", "{out}");
            assert_eq!(out.json()["details"]["count"], i, "{out}");
            assert_eq!(out.json()["details"]["minimum"], 5, "{out}");
        } else {
            let ok = out.ok().json();
            assert_eq!(ok["ticket"]["count"], 5, "{ok:#}");
            assert_eq!(ok["ticket"]["host_id"], host_id.as_str(), "{ok:#}");
        }
    }
    let m1 = state(1);
    run_in(cwd, &["--state", s(&m1), "ato", "--json"]).ok();
    let st = run_in(cwd, &["--state", s(&m1), "status", "--json"])
        .ok()
        .json();
    assert_eq!(st["state"], "licensed", "{st:#}");

    let status = host_status(&host_data);
    assert_eq!(status["host_id"], host_id.as_str(), "{status:#}");
    assert_eq!(status["state"], "activated", "{status:#}");
    assert_eq!(app_count(&status, "demo-office"), 5, "{status:#}");
    assert_eq!(app_count(&status, "demo-os"), 0, "{status:#}");
    qs.guard.kill();

    // Second run on the same directory: same keys, same host, the count is kept.
    let mut qs2 = start(cwd, "demo", 2);
    let summary2 = qs2.summary.clone();
    assert_eq!(
        summary2["setup_keys"], summary["setup_keys"],
        "{summary2:#}"
    );
    assert_eq!(summary2["host_id"], host_id.as_str(), "{summary2:#}");
    assert_eq!(summary2["vendor"], summary["vendor"], "{summary2:#}");
    let status = host_status(&host_data);
    assert_eq!(app_count(&status, "demo-office"), 5, "{status:#}");
    // A known machine renews against the new run without raising the count; its
    // ticket from the first run is still accepted.
    let addr2 = addr_of(summary2["url"].as_str().unwrap());
    let st = state(2);
    run_in(cwd, &["--state", s(&st), "skms", &addr2]).ok();
    let renewed = run_in(cwd, &["--state", s(&st), "ato", "--json"])
        .ok()
        .json();
    assert_eq!(renewed["ticket"]["count"], 5, "{renewed:#}");
    let m5 = run_in(cwd, &["--state", s(&state(5)), "status", "--json"])
        .ok()
        .json();
    assert_eq!(m5["state"], "licensed", "{m5:#}");
    qs2.guard.kill();
}
