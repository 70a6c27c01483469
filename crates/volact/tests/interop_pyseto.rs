//! Tickets verify with an independent PASETO implementation: Python's `pyseto` checks the
//! chain vendor root → host certificate → ticket (`tests/interop/verify_ticket.py`).
//! Skipped with a loud message when python3 or pyseto is missing, unless
//! `VOLACT_REQUIRE_ALL=1`, which makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, activation_request, http, provision, run, s};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_ticket.py")
}

/// Whether `python3` with `pyseto` can run; otherwise skips loudly, or fails when
/// `VOLACT_REQUIRE_ALL=1`.
fn pyseto_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import pyseto"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        volact_testkit::skip_or_fail(
            "interop_pyseto",
            "python3 with pyseto not found (pip install pyseto)",
        )
        .unwrap();
    }
    found
}

/// Runs the Python verifier on `inputs`; returns its exit success and JSON summary.
fn verify(dir: &Path, name: &str, inputs: &Value) -> (bool, Value) {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(inputs).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(script())
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify_ticket.py printed no JSON ({e})\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), summary)
}

#[test]
fn tickets_verify_with_pyseto() {
    if !pyseto_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fx = provision(root, "office");
    let bundle: Value = serde_json::from_slice(&std::fs::read(&fx.bundle).unwrap()).unwrap();
    let root_public_key = bundle["root_public_key"].as_str().unwrap().to_string();
    let server = Server::start(&fx.data, &[]);

    // 1. A ticket straight from the HTTP API (draw activates at the first machine).
    let client_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let (body, nonce) = activation_request(&client_id, fx.key("draw"), 1);
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .expect("the host answers");
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["result"], "activated", "{answer:#}");
    let inputs = json!({
        "root_public_key": root_public_key,
        "host_certificate": answer["host_certificate"],
        "ticket": answer["ticket"],
        "client_id": client_id,
        "product": "draw",
        "nonce": nonce,
    });
    let (ok, summary) = verify(root, "http", &inputs);
    assert!(ok, "pyseto rejected the HTTP ticket: {summary:#}");
    assert_eq!(summary["client_id"], client_id.as_str());
    assert_eq!(summary["nonce"], nonce.as_str());
    assert_eq!(summary["host_id"], answer["host_id"]);
    assert_eq!(summary["count"], 1);

    // 2. The ticket a CLI client stored in its state file.
    let state = root.join("client.json");
    run(&[
        "--state",
        s(&state),
        "ipk",
        fx.key("draw"),
        "--vendor",
        s(&fx.bundle),
    ])
    .ok();
    run(&["--state", s(&state), "skms", &server.addr]).ok();
    run(&["--state", s(&state), "ato", "--json"]).ok();
    let stored: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let cli_client = stored["installed"]["client_id"].as_str().unwrap();
    let cli_inputs = json!({
        "root_public_key": stored["installed"]["vendor"]["root_public_key"],
        "host_certificate": stored["ticket"]["host_certificate"],
        "ticket": stored["ticket"]["token"],
        "client_id": cli_client,
        "product": "draw",
    });
    let (ok, summary) = verify(root, "cli", &cli_inputs);
    assert!(ok, "pyseto rejected the stored ticket: {summary:#}");
    assert_eq!(summary["ticket_id"], stored["ticket"]["ticket_id"]);
    assert_eq!(summary["count"], 2);

    // 3. The verifier really checks: wrong client, wrong nonce, another vendor's root.
    let mut wrong_client = inputs.clone();
    wrong_client["client_id"] = json!(uuid::Uuid::new_v4().hyphenated().to_string());
    let (ok, summary) = verify(root, "wrong-client", &wrong_client);
    assert!(!ok, "{summary:#}");
    let mut wrong_nonce = inputs.clone();
    wrong_nonce["nonce"] = json!("00000000000000000000000000000000");
    let (ok, summary) = verify(root, "wrong-nonce", &wrong_nonce);
    assert!(!ok, "{summary:#}");
    let other = root.join("other-vendor");
    let other_root = run(&["vendor", "init", "--dir", s(&other), "--json"])
        .ok()
        .json()["root_public_key"]
        .clone();
    let mut impostor = inputs.clone();
    impostor["root_public_key"] = other_root;
    let (ok, summary) = verify(root, "other-root", &impostor);
    assert!(!ok, "{summary:#}");
    let mut tampered = inputs.clone();
    let token = inputs["ticket"].as_str().unwrap();
    let flipped: String = token
        .char_indices()
        .map(|(i, c)| {
            if i == token.len() - 20 {
                if c == 'x' { 'y' } else { 'x' }
            } else {
                c
            }
        })
        .collect();
    tampered["ticket"] = json!(flipped);
    let (ok, summary) = verify(root, "tampered", &tampered);
    assert!(!ok, "{summary:#}");

    server.kill();
}
