//! TLS through the real binary: `host init` prints the certificate's fingerprint, the
//! admin CLI pins it (from `serving.json` on the host machine, or `--tls-fingerprint`)
//! and refuses another naming both, a client activates over `https://`, and a certificate
//! replaced while the host serves is presented after SIGHUP without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, provision, run, s};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// `AB:CD:…` → `abcd…`: the other spelling a fingerprint is accepted in.
fn bare(fingerprint: &str) -> String {
    fingerprint.replace(':', "").to_lowercase()
}

fn serving(data: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data.join("serving.json")).unwrap()).unwrap()
}

/// `host clients` against `url` with the token file and `extra` flags (no --data, so
/// nothing is read from serving.json).
fn clients_at(data: &Path, url: &str, extra: &[&str]) -> common::Output {
    let token = data.join("admin.token");
    let mut args = vec![
        "host",
        "clients",
        "--json",
        "--url",
        url,
        "--token-file",
        s(&token),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn the_admin_cli_pins_the_host_certificate_and_refuses_another() {
    let tmp = tempfile::tempdir().unwrap();
    // A data directory of its own to read what `host init` prints.
    let other = tmp.path().join("other");
    let init = run(&[
        "host",
        "init",
        "--data",
        s(&other),
        "--tls-name",
        "volact.test.example",
        "--json",
    ])
    .ok()
    .json();
    let other_fp = init["tls"]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(other_fp.len(), 95, "{init}");
    let names: Vec<&str> = init["tls"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for name in ["localhost", "127.0.0.1", "::1", "volact.test.example"] {
        assert!(names.contains(&name), "{init}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(other.join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let info = serving(&fx.data);
    let url = info["tls_url"].as_str().unwrap().to_string();
    let fp = info["tls_fingerprint"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{info}");
    assert_ne!(fp, other_fp);

    // On the host machine, --data is enough: the URL and pin come from serving.json.
    let listed = run(&["host", "clients", "--json", "--data", s(&fx.data)])
        .ok()
        .json();
    assert!(listed["clients"].is_array(), "{listed}");
    // The status shows the fingerprint.
    let status = run(&["host", "status", "--json", "--data", s(&fx.data)])
        .ok()
        .json();
    assert_eq!(status["tls"]["fingerprint"], fp.as_str(), "{status}");

    // Elsewhere: the right fingerprint (in either spelling) works…
    clients_at(&fx.data, &url, &["--tls-fingerprint", &bare(&fp)]).ok();
    // …another is refused, naming both.
    let wrong = clients_at(&fx.data, &url, &["--tls-fingerprint", &other_fp]).fails();
    assert_eq!(wrong.error_code(), "host-unreachable");
    assert!(
        wrong.stdout.contains(&fp) && wrong.stdout.contains(&other_fp),
        "{wrong}"
    );
    // Without a pin the self-signed certificate is refused with what to do.
    let unpinned = clients_at(&fx.data, &url, &[]).fails();
    assert!(
        unpinned.stdout.contains("--tls-fingerprint") && unpinned.stdout.contains(&fp),
        "{unpinned}"
    );
    // The certificate itself as the CA file works too.
    let ca = fx.data.join("tls/cert.pem");
    clients_at(&fx.data, &url, &["--ca-file", s(&ca)]).ok();
    drop(server);
}

#[test]
fn a_client_activates_over_https_with_a_pinned_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let info = serving(&fx.data);
    let url = info["tls_url"].as_str().unwrap().to_string();
    let fp = info["tls_fingerprint"].as_str().unwrap().to_string();
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
    run(&["--state", s(&state), "set-host", &url]).ok();
    // Not trusted without a pin: the self-signed certificate is refused.
    let refused = run(&["--state", s(&state), "activate", "--json"]).fails();
    assert_eq!(refused.error_code(), "host-unreachable", "{refused}");
    let activated = run(&[
        "--state",
        s(&state),
        "activate",
        "--json",
        "--tls-fingerprint",
        &fp,
    ])
    .ok()
    .json();
    assert_eq!(activated["host"], url.as_str(), "{activated}");
    drop(server);
}

#[cfg(unix)]
#[test]
fn a_replaced_certificate_is_served_after_sighup_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let pid = server.guard.id();
    let old = serving(&fx.data)["tls_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let made = run(&[
        "host",
        "tls-init",
        "--data",
        s(&fx.data),
        "--replace",
        "--json",
    ])
    .ok()
    .json();
    let new = made["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let url = serving(&fx.data)["tls_url"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if clients_at(&fx.data, &url, &["--tls-fingerprint", &new]).success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same process serves, and serving.json names the new certificate.
    let info = serving(&fx.data);
    assert_eq!(info["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(info["tls_fingerprint"], new.as_str());
    clients_at(&fx.data, &url, &["--tls-fingerprint", &old]).fails();
}

#[test]
fn bench_loads_a_host_over_tls_with_a_pinned_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let info = serving(&fx.data);
    let url = info["tls_url"].as_str().unwrap().to_string();
    let fp = info["tls_fingerprint"].as_str().unwrap().to_string();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "bench",
            "--url",
            &url,
            "--setup-key",
            fx.key("draw"),
            "--vendor",
            s(&fx.bundle),
            "--verify-sample",
            "1",
            "--clients",
            "8",
            "--requests",
            "40",
            "--concurrency",
            "4",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let report = bench(&["--tls-fingerprint", &fp]).ok().json();
    assert_eq!(report["results"]["activated"], 40, "{report:#}");
    assert_eq!(report["verify_failures"], 0, "{report:#}");
    // Pinned to another certificate, no request is answered.
    let other = "00".repeat(32);
    let refused = bench(&["--tls-fingerprint", &other]).ok().json();
    assert_eq!(
        refused["results"],
        serde_json::json!({ "transport-error": 40 }),
        "{refused:#}"
    );
    drop(server);
}
