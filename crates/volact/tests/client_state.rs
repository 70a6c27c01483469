//! The client state through the `volact` binary: an edited state file reads
//! `state-tampered` (never a longer grace), a reinstall reseals it without a grace, and
//! `rearm` stops at the catalog's signed limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, s};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One product with a 10-day grace and a signed rearm limit of 1, one with the defaults.
const CATALOG: &str = r#"
vendor = "Acme State Vendor"

[[application]]
id = "draw"
name = "Acme Draw"

[[product]]
id = "draw"
name = "Acme Draw"
application = "draw"
kind = "workstation"
grace_days = 10
rearm_limit = 1

[[product]]
id = "draw-server"
name = "Acme Draw Server"
application = "draw"
kind = "server"
"#;

/// A vendor with [`CATALOG`]: its public bundle and setup keys.
fn vendor(root: &Path) -> (PathBuf, Value) {
    let dir = root.join("vendor");
    run(&["vendor", "init", "--dir", s(&dir)]).ok();
    let source = root.join("catalog.toml");
    std::fs::write(&source, CATALOG).unwrap();
    let report = run(&[
        "vendor",
        "catalog",
        "--dir",
        s(&dir),
        "--from",
        s(&source),
        "--json",
    ])
    .ok()
    .json();
    let bundle = root.join("vendor.pub");
    let export = run(&["vendor", "export", "--dir", s(&dir)]).ok();
    std::fs::write(&bundle, &export.stdout).unwrap();
    (bundle, report["setup_keys"].clone())
}

fn edit(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut json);
    std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

fn status(state: &Path) -> Value {
    run(&["--state", s(state), "status", "--json"]).ok().json()
}

#[test]
fn an_edited_state_file_never_buys_a_longer_grace() {
    let root = tempfile::tempdir().unwrap();
    let (bundle, keys) = vendor(root.path());
    let state = root.path().join("client.json");
    let key = keys["draw"].as_str().unwrap();
    let installed = run(&[
        "--state",
        s(&state),
        "install-key",
        key,
        "--vendor",
        s(&bundle),
        "--json",
    ])
    .ok()
    .json();
    let first = status(&state);
    assert_eq!(first["state"], "initial-grace", "{first:#}");
    let until = first["until"].clone();

    // The copied grace is not what counts.
    edit(&state, |j| j["installed"]["grace_days"] = 36_500.into());
    let st = status(&state);
    assert_eq!(st["state"], "initial-grace", "{st:#}");
    assert_eq!(st["until"], until, "the signed grace of 10 days: {st:#}");

    // An install time moved forward breaks the seal.
    edit(&state, |j| {
        j["installed"]["installed_at"] = "2099-01-01T00:00:00Z".into();
    });
    let st = status(&state);
    assert_eq!(st["state"], "state-tampered", "{st:#}");
    assert_eq!(st["code"], "state-tampered", "{st:#}");
    assert!(st["until"].is_null(), "{st:#}");
    let text = run(&["--state", s(&state), "status"]).ok();
    assert!(
        text.stdout.contains("state-tampered") && text.stdout.contains("install-key"),
        "{text}"
    );
    let xpr = run(&["--state", s(&state), "expiry", "--json"]).ok().json();
    assert_eq!(xpr["state"], "state-tampered", "{xpr:#}");
    assert!(xpr["grace_ends"].is_null(), "{xpr:#}");
    // Any other command leaves it tampered.
    run(&["--state", s(&state), "set-host", "127.0.0.1:9"]).ok();
    assert_eq!(status(&state)["state"], "state-tampered");
    let rearm = run(&["--state", s(&state), "rearm", "--json"]).fails();
    assert_eq!(rearm.error_code(), "state-tampered", "{rearm}");

    // Installing the key again reseals it: same client id, no grace.
    let again = run(&["--state", s(&state), "install-key", key, "--json"])
        .ok()
        .json();
    assert_eq!(again["client_id"], installed["client_id"], "{again:#}");
    assert_eq!(again["resealed"], "edited", "{again:#}");
    assert_eq!(again["grace_forfeited"], true, "{again:#}");
    let st = status(&state);
    assert_eq!(st["state"], "notification", "{st:#}");
    assert!(st.get("code").is_none(), "{st:#}");
}

#[test]
fn rearm_stops_at_the_signed_limit() {
    let root = tempfile::tempdir().unwrap();
    let (bundle, keys) = vendor(root.path());
    for (product, limit) in [("draw", 1u64), ("draw-server", 3)] {
        let state = root.path().join(format!("{product}.json"));
        let key = keys[product].as_str().unwrap();
        run(&[
            "--state",
            s(&state),
            "install-key",
            key,
            "--vendor",
            s(&bundle),
        ])
        .ok();
        for i in 1..=limit {
            let r = run(&["--state", s(&state), "rearm", "--json"]).ok().json();
            assert_eq!(r["rearms"], i, "{r:#}");
            assert_eq!(r["rearm_limit"], limit, "{r:#}");
        }
        let refused = run(&["--state", s(&state), "rearm", "--json"]).fails();
        assert_eq!(refused.error_code(), "invalid-state", "{refused}");
        let err = refused.json();
        assert_eq!(err["details"]["rearm_limit"], limit, "{refused}");
        assert!(
            err["message"].as_str().unwrap().contains("volact activate"),
            "{refused}"
        );
        let verbose = run(&["--state", s(&state), "status", "--verbose"]).ok();
        assert!(
            verbose.stdout.contains(&format!("{limit} of {limit}")),
            "{verbose}"
        );
    }
}
