//! `[storage] url` through the real binary: `--storage-url` moves the host's database,
//! a scheme this build does not know is refused before anything is opened, and a host
//! on PostgreSQL keeps what it acknowledged when killed.
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
    // A password on the command line is refused before anything is opened, and not
    // repeated: it would be in every user's process list.
    let out = run(&[
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        "postgres://volact:hunter2@db/volact",
        "--json",
    ])
    .fails();
    assert_eq!(out.error_code(), "bad-request", "{out}");
    assert!(
        out.stdout.contains("password_file") && out.stdout.contains("VOLACT_STORAGE_PASSWORD"),
        "{out}"
    );
    assert!(
        !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
        "{out}"
    );
    assert!(!fx.data.join("volact.db").exists(), "nothing was opened");
}

/// `host serve` on PostgreSQL through the real binary: an acknowledged activation is in
/// the database after the host is killed (SIGKILL), and `host status` reads it there.
#[test]
fn a_host_on_postgres_killed_keeps_what_it_acknowledged() {
    let Some(pg) =
        volact_testkit::postgres::TestPostgres::start("a_host_on_postgres_killed").unwrap()
    else {
        return;
    };
    let database = pg.create_database().unwrap();
    let url = pg.url(&database);
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &["--storage-url", &url]);
    let id = "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e12";
    let body = serde_json::json!({
        "client_id": id,
        "setup_key": fx.key("suite-desktop"),
        "minimum_count": 1,
        "client_time": jiff::Timestamp::now(),
        "nonce": "nonce-postgres-kill-test",
        "machine_name": "pc-pg",
    });
    let answer = common::http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    );
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    server.kill();
    let stored = pg
        .query(&database, "SELECT client_id, machine_name FROM clients")
        .unwrap();
    assert_eq!(stored.trim(), format!("{id}|pc-pg"));
    assert!(!fx.data.join("volact.db").exists(), "SQLite was not used");

    let status = run(&[
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        &url,
        "--json",
    ])
    .ok();
    assert_eq!(status.json()["clients_known"], 1, "{status}");

    // config check shows the PostgreSQL settings, the password only as "set".
    let mut cmd = common::command(
        std::path::Path::new("."),
        &["--json", "host", "config", "check", "--data", s(&fx.data)],
    );
    cmd.env("VOLACT_STORAGE_URL", &url)
        .env("VOLACT_STORAGE_PASSWORD", "env-secret-value");
    let out = common::run_with(cmd, &["host", "config", "check"]).ok();
    assert!(!out.stdout.contains("env-secret-value"), "{out}");
    let report = out.json();
    let entry = |key: &str| {
        report["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("storage_url")["value"], url.as_str());
    assert_eq!(entry("storage_password")["value"], "set (hidden)");
    assert_eq!(
        entry("storage_password")["source"],
        "environment VOLACT_STORAGE_PASSWORD"
    );
    assert!(entry("storage_pool_size")["value"].is_string());
}

/// `host migrate-store` copies a SQLite host's inventory, audit log, clone flags and
/// totals into PostgreSQL, and says how many rows of each it copied: the counts match
/// the source, row for row; a non-empty target is refused unless --force, and a forced
/// repeat writes no event twice; a host on the copy reports what the original did.
#[test]
fn migrate_store_copies_a_sqlite_host_into_postgres() {
    let Some(pg) =
        volact_testkit::postgres::TestPostgres::start("migrate_store_copies_a_sqlite_host")
            .unwrap()
    else {
        return;
    };
    let database = pg.create_database().unwrap();
    let url = pg.url(&database);
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let ask = |n: u32, machine: &str, key: &str| {
        let body = serde_json::json!({
            "client_id": format!("0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9{n:03}"),
            "setup_key": key,
            "minimum_count": 1,
            "client_time": jiff::Timestamp::now(),
            "nonce": format!("nonce-migrate-{n}-{machine}"),
            "machine_name": machine,
        });
        common::http(
            &server.addr,
            "POST",
            "/v1/activations",
            Some(&body.to_string()),
        )
        .map(|a| a.0)
    };
    let key = fx.key("suite-desktop");
    for n in 0..6 {
        assert_eq!(ask(n, &format!("pc-{n}"), key), Some(200));
    }
    // The same client id from another machine: a cloned-image flag.
    assert_eq!(ask(0, "pc-elsewhere", key).map(|s| s < 500), Some(true));
    // An unknown setup key: a refusal, another result total.
    assert_eq!(
        ask(7, "pc-7", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE").map(|s| s >= 400),
        Some(true)
    );
    let revoked = "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9002";
    run(&["host", "revoke", revoked, "--data", s(&fx.data)]).ok();
    server.kill();

    let source = run(&["--json", "host", "status", "--data", s(&fx.data)])
        .ok()
        .json();
    let migrate = |extra: &[&str]| {
        let mut args = vec!["--json", "host", "migrate-store", "--data", s(&fx.data)];
        args.extend_from_slice(&["--to", &url]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let report = migrate(&[]).ok().json();
    let copied = &report["copied"];
    let in_pg = |table: &str| -> u64 {
        pg.query(&database, &format!("SELECT COUNT(*) FROM {table}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    for table in ["clients", "events", "clone_flags", "result_totals"] {
        let t = &copied[table];
        assert_eq!(t["source"], t["written"], "{table}: {report}");
        assert_eq!(
            t["source"].as_u64(),
            Some(in_pg(table)),
            "{table}: {report}"
        );
    }
    assert_eq!(copied["clients"]["source"], source["clients_known"]);
    // Six machines asked (the unknown key is refused before the host records anyone).
    assert_eq!(copied["clients"]["source"], 6, "{report}");
    assert_eq!(copied["clone_flags"]["source"], 1, "{report}");
    assert_eq!(
        copied["result_totals"]["source"].as_u64(),
        Some(source["by_result"].as_object().unwrap().len() as u64)
    );
    // The audit log holds every recorded request and the clone flag.
    assert!(
        copied["events"]["source"].as_u64().unwrap() >= 8,
        "{report}"
    );
    assert_eq!(
        pg.query(
            &database,
            &format!("SELECT revoked FROM clients WHERE client_id = '{revoked}'")
        )
        .unwrap()
        .trim(),
        "t"
    );

    // Into a store holding data: refused, unless forced; forced, nothing is doubled.
    let refused = migrate(&[]).fails();
    assert!(refused.stdout.contains("--force"), "{refused}");
    let again = migrate(&["--force"]).ok().json();
    assert_eq!(again["copied"]["events"]["written"], 0, "{again}");
    assert_eq!(
        again["copied"]["clients"]["written"],
        copied["clients"]["source"]
    );
    assert_eq!(Some(in_pg("events")), copied["events"]["source"].as_u64());

    // The host reads the same status from the copy.
    let moved = run(&[
        "--json",
        "host",
        "status",
        "--data",
        s(&fx.data),
        "--storage-url",
        &url,
    ])
    .ok()
    .json();
    for key in [
        "clients_known",
        "requests",
        "activated",
        "refused",
        "by_result",
        "cloned_clients",
    ] {
        assert_eq!(moved[key], source[key], "{key}");
    }
}
