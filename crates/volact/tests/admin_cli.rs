//! `volact host clients | events | revoke | unrevoke | config check` through the real
//! binary, against a host served by `volact host serve` in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, app_count, command, host_status, http, provision, run, run_with, s};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Client id number `n`.
fn client(n: u32) -> String {
    format!("20000000-0000-4000-8000-{n:012}")
}

/// Asks the served host to activate `client_id` for `product` from `machine`.
fn ask(server: &Server, client_id: &str, key: &str, machine: &str) -> (u16, Value) {
    let (mut body, _) = common::activation_request(client_id, key, 1);
    body["machine_name"] = Value::String(machine.into());
    let (status, text) = http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .expect("the host answers");
    (status, serde_json::from_str(&text).unwrap())
}

fn host_cmd(data: &Path, args: &[&str]) -> common::Output {
    let mut all = vec!["host"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data)]);
    run(&all)
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn inventory_events_and_revocation_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let desktop = fx.key("suite-desktop").to_string();
    for (i, machine) in [(1, "ws-01"), (2, "lab, room 2"), (3, "ws-\"three\"")] {
        let (status, a) = ask(&server, &client(i), &desktop, machine);
        assert_eq!(status, 200, "{a}");
    }
    let (_, a) = ask(&server, &client(4), fx.key("draw"), "drawing-pc");
    assert_eq!(a["result"], "activated");
    assert_eq!(app_count(&host_status(&fx.data), "acme-suite"), 3);

    // JSON: every client, with state, window and ticket expiry.
    let list = host_cmd(&fx.data, &["clients", "--json"]).ok().json();
    assert_eq!(ids(&list), [client(1), client(2), client(3), client(4)]);
    let row = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == client(3))
        .unwrap();
    assert_eq!(
        (row["state"].as_str(), row["in_count_window"].as_bool()),
        (Some("active"), Some(true))
    );
    assert!(row["ticket_valid_until"].is_string(), "{row}");
    // Filters.
    let filtered = |args: &[&str]| {
        let mut all = vec!["clients", "--json"];
        all.extend_from_slice(args);
        ids(&host_cmd(&fx.data, &all).ok().json())
    };
    assert_eq!(filtered(&["--application", "acme-draw"]), [client(4)]);
    assert_eq!(
        filtered(&["--product", "suite-desktop", "--search", "ROOM 2"]),
        [client(2)]
    );
    assert_eq!(filtered(&["--state", "stale"]), Vec::<String>::new());

    // Text: an aligned table with a summary.
    let text = host_cmd(&fx.data, &["clients"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    let state_at = lines[0].find("STATE").unwrap();
    assert!(lines[0].starts_with("CLIENT ID"), "{text}");
    for l in &lines[1..5] {
        assert_eq!(&l[state_at..state_at + 6], "active", "{text}");
    }
    assert!(
        text.contains("4 clients: 4 active, 0 stale, 0 revoked"),
        "{text}"
    );

    // CSV: a header, then one properly quoted line per client.
    let csv = host_cmd(&fx.data, &["clients", "--csv"]).ok().stdout;
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[0].starts_with("client_id,machine_name,address,product,application,state,"));
    assert!(
        csv.contains(&format!("{},\"lab, room 2\",127.0.0.1,", client(2))),
        "{csv}"
    );
    assert!(csv.contains("\"ws-\"\"three\"\"\""), "{csv}");

    // Revoke: the count drops at once, renewal is refused.
    let out = host_cmd(&fx.data, &["revoke", &client(3), "--reason", "lost laptop"]).ok();
    assert!(
        out.stdout.contains("revoked (reason: lost laptop)")
            && out.stdout.contains("acme-suite now counts 2"),
        "{out}"
    );
    assert_eq!(app_count(&host_status(&fx.data), "acme-suite"), 2);
    let (status, a) = ask(&server, &client(3), &desktop, "ws-\"three\"");
    assert_eq!((status, a["code"].as_str()), (403, Some("client-revoked")));
    assert_eq!(filtered(&["--state", "revoked"]), [client(3)]);
    let unknown = run(&[
        "--json",
        "host",
        "revoke",
        &client(99),
        "--data",
        s(&fx.data),
    ])
    .fails();
    assert_eq!(unknown.error_code(), "not-found");
    let back = host_cmd(&fx.data, &["unrevoke", &client(3), "--json"])
        .ok()
        .json();
    assert_eq!(back["client"]["revoked"], false);
    let (status, a) = ask(&server, &client(3), &desktop, "ws-\"three\"");
    assert_eq!(
        (status, a["result"].as_str()),
        (200, Some("activated")),
        "{a}"
    );

    // Events: the audit log, filtered, oldest first in text.
    let events = host_cmd(&fx.data, &["events", "--json"]).ok().json();
    assert_eq!(events["events"].as_array().unwrap().len(), 6);
    let by_result = host_cmd(
        &fx.data,
        &["events", "--json", "--result", "client-revoked"],
    )
    .ok()
    .json();
    let refused = by_result["events"].as_array().unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["client_id"], client(3));
    let mine = host_cmd(
        &fx.data,
        &["events", "--json", "--client", &client(3), "--since", "1h"],
    )
    .ok()
    .json();
    assert_eq!(mine["events"].as_array().unwrap().len(), 3);
    let text = host_cmd(&fx.data, &["events", "--client", &client(1)])
        .ok()
        .stdout;
    assert!(text.starts_with("ID") && text.contains("RESULT"), "{text}");
    assert!(
        text.contains("ws-01") && text.contains("count-insufficient"),
        "{text}"
    );
    let bad = run(&[
        "--json",
        "host",
        "events",
        "--since",
        "someday",
        "--data",
        s(&fx.data),
    ])
    .fails();
    assert_eq!(bad.error_code(), "bad-request");

    // Another token file and an explicit URL.
    let wrong = tmp.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let denied = run(&[
        "--json",
        "host",
        "clients",
        "--url",
        &server.url,
        "--token-file",
        s(&wrong),
    ])
    .fails();
    assert_eq!(denied.error_code(), "unauthorized");
    let token = fx.data.join("admin.token");
    let list = run(&[
        "--json",
        "host",
        "clients",
        "--url",
        &server.url,
        "--token-file",
        s(&token),
    ])
    .ok()
    .json();
    assert_eq!(list["clients"].as_array().unwrap().len(), 4);
}

#[test]
fn events_follow_prints_new_events_as_they_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let server = Server::start(&fx.data, &[]);
    let desktop = fx.key("suite-desktop").to_string();
    ask(&server, &client(1), &desktop, "before-follow");
    let mut cmd = command(
        Path::new("."),
        &["host", "events", "--follow", "--data", s(&fx.data)],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = common::ChildGuard {
        child: cmd.spawn().unwrap(),
    };
    let stdout = child.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |text: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(line.clone());
                if line.contains(text) {
                    return;
                }
            }
        }
        panic!(
            "`host events --follow` never printed {text}; it printed:\n{}",
            seen.join("\n")
        );
    };
    wait_for("before-follow", &mut seen);
    assert!(seen[0].starts_with("ID"), "{seen:?}");
    ask(&server, &client(2), &desktop, "during-follow");
    wait_for("during-follow", &mut seen);
    ask(&server, &client(3), &desktop, "later-still");
    wait_for("later-still", &mut seen);
    // Every event once, in order.
    assert_eq!(
        seen.iter().filter(|l| l.contains("during-follow")).count(),
        1
    );
    assert!(!child.exited(), "follow keeps running until stopped");
    child.kill();
}

#[test]
fn admin_commands_say_when_no_host_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("host");
    run(&["host", "init", "--data", s(&data)]).ok();
    let out = run(&[
        "--json",
        "host",
        "clients",
        "--data",
        s(&data),
        "--url",
        "http://127.0.0.1:9",
    ])
    .fails();
    assert_eq!(out.error_code(), "host-unreachable");
    let message = out.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("no host answers at http://127.0.0.1:9")
            && message.contains(&format!("volact host serve --data {}", data.display())),
        "{message}"
    );
    let text = run(&[
        "host",
        "revoke",
        &client(1),
        "--data",
        s(&data),
        "--url",
        "http://127.0.0.1:9",
    ])
    .fails();
    assert!(
        text.stderr.contains("no host answers") && text.stderr.contains("[host-unreachable]"),
        "{text}"
    );
    // Without --data or --token-file there is no token to send.
    let out = run(&["--json", "host", "events", "--url", "http://127.0.0.1:9"]).fails();
    assert!(
        out.json()["message"]
            .as_str()
            .unwrap()
            .contains("--token-file"),
        "{out}"
    );
}

#[test]
fn config_check_resolves_file_then_environment_then_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("host");
    run(&["host", "init", "--data", s(&data)]).ok();
    std::fs::write(
        data.join("volact.toml"),
        "renew_interval = \"1d\"\nretry_interval = \"1h\"\nevent_retention = \"30d\"\n[limits]\nmax_connections = 500\n",
    )
    .unwrap();
    let check = |env: &[(&str, &str)], flags: &[&str]| {
        let mut args = vec!["--json", "host", "config", "check", "--data", s(&data)];
        args.extend_from_slice(flags);
        let mut cmd = command(Path::new("."), &args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with(cmd, &args)
    };
    let entry = |report: &Value, key: &str| {
        report["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .unwrap()
            .clone()
    };
    let env = [
        ("VOLACT_RETRY_INTERVAL", "2h"),
        ("VOLACT_EVENT_RETENTION", "60d"),
    ];
    let report = check(&env, &["--event-retention", "120d"]).ok().json();
    assert_eq!(report["valid"], true);
    assert_eq!(report["limits"]["max_connections"], 500);
    assert_eq!(report["limits"]["idle_timeout_secs"], 30.0);
    assert!(report["rate_limits"]["per_address"]["per_minute"].is_u64());
    let renew = entry(&report, "renew_interval");
    assert_eq!(
        (renew["value"].as_str(), renew["seconds"].as_i64()),
        (Some("1d"), Some(86_400))
    );
    assert!(renew["source"].as_str().unwrap().starts_with("file "));
    let retry = entry(&report, "retry_interval");
    assert_eq!(
        (retry["value"].as_str(), retry["source"].as_str()),
        (Some("2h"), Some("environment VOLACT_RETRY_INTERVAL"))
    );
    let retention = entry(&report, "event_retention");
    assert_eq!(
        (retention["value"].as_str(), retention["source"].as_str()),
        (Some("120d"), Some("flag --event-retention"))
    );
    assert_eq!(entry(&report, "count_window")["source"], "default");
    // Where the data lives is listed with the rest.
    let storage = entry(&report, "storage_url");
    assert_eq!(
        (storage["value"].as_str(), storage["source"].as_str()),
        (Some("sqlite://DATA/volact.db"), Some("default"))
    );
    let elsewhere = check(&[("VOLACT_STORAGE_URL", "sqlite://DATA/other.db")], &[])
        .ok()
        .json();
    assert_eq!(
        entry(&elsewhere, "storage_url")["source"],
        "environment VOLACT_STORAGE_URL"
    );
    // Text form: a table with the source of each value.
    let mut cmd = command(
        Path::new("."),
        &["host", "config", "check", "--data", s(&data)],
    );
    cmd.env("VOLACT_LISTEN", "127.0.0.1:7699");
    let text = run_with(cmd, &["host", "config", "check"]).ok().stdout;
    assert!(text.contains("The configuration is valid."), "{text}");
    // The sections without keys of their own are shown as resolved too.
    assert!(
        text.contains("Connections ([limits])") && text.contains("total 500"),
        "{text}"
    );
    assert!(text.contains("New clients ([rate_limits])"), "{text}");
    let listen = text.lines().find(|l| l.starts_with("listen")).unwrap();
    assert!(
        listen.contains("127.0.0.1:7699") && listen.contains("environment VOLACT_LISTEN"),
        "{text}"
    );

    // Out of range, from the environment: refused with the range and the variable.
    let out = check(&[("VOLACT_MAX_CLOCK_SKEW", "3d")], &[]).fails();
    let message = out.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("max_clock_skew is 3d; it must be from 1m to 2d")
            && message.contains("VOLACT_MAX_CLOCK_SKEW"),
        "{message}"
    );
    let out = check(&[], &["--event-retention", "5000d"]).fails();
    assert_eq!(out.error_code(), "bad-request");
    // A missing metrics token file is caught before starting.
    let out = check(&[], &["--metrics-token-file", "missing.token"]).fails();
    assert!(
        out.json()["message"]
            .as_str()
            .unwrap()
            .contains("missing.token"),
        "{out}"
    );
    // An unknown key: refused with its name and the file.
    std::fs::write(data.join("volact.toml"), "renew_intervall = \"1d\"\n").unwrap();
    let out = check(&[], &[]).fails();
    let message = out.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("renew_intervall") && message.contains("volact.toml"),
        "{message}"
    );
}
