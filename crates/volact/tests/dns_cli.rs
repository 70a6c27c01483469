//! DNS end to end through the `volact` binary and a real BIND 9 on 127.0.0.1: `host
//! serve` publishes its SRV record by dynamic update with TSIG and removes it on a clean
//! shutdown, a client finds it with `--dns-server` and activates, `status --verbose`
//! says how; a wrong key is refused and shown by `host status`; `no-host-found` lists
//! what was tried; the discovery settings persist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, provision, run, s};
use std::time::{Duration, Instant};
use volact_testkit::testbind::{TestBind, ZONE};

fn dns_status(data: &std::path::Path) -> serde_json::Value {
    common::host_status(data)["dns_publish"].clone()
}

#[test]
fn a_serving_host_publishes_itself_and_a_client_finds_it() {
    let Some(bind) =
        TestBind::start_or_skip("a_serving_host_publishes_itself_and_a_client_finds_it").unwrap()
    else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let fx = provision(root.path(), "everything");
    let dns = bind.addr.to_string();
    bind.write_key_file(&fx.data.join("tsig.key"), true)
        .unwrap();
    std::fs::write(
        fx.data.join("volact.toml"),
        format!(
            "[dns.publish]\nserver = \"{dns}\"\nzone = \"{ZONE}\"\nname = \"host1.{ZONE}\"\nttl = 60\nkey_file = \"tsig.key\"\naddress = \"127.0.0.1\"\n"
        ),
    )
    .unwrap();

    // The zone-file lines for adding the record by hand.
    let record = run(&[
        "host",
        "dns-record",
        "--data",
        s(&fx.data),
        "--priority",
        "5",
        "--weight",
        "2",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(
        record["records"][0],
        format!("_volact._tcp.{ZONE}. 60 IN SRV 5 2 7688 host1.{ZONE}.")
    );
    assert_eq!(
        record["records"][1],
        format!("host1.{ZONE}. 60 IN A 127.0.0.1")
    );

    // `host serve` publishes at start.
    let server = Server::start(&fx.data, &[]);
    let port = server.addr.rsplit_once(':').unwrap().1.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dns_status(&fx.data)["event"] != "dns-publish-succeeded" {
        assert!(
            Instant::now() < deadline,
            "not published: {}\n{}",
            dns_status(&fx.data),
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = run(&["host", "status", "--data", s(&fx.data)]).ok().stdout;
    assert!(
        text.contains("DNS publishing:") && text.contains("dns-publish-succeeded"),
        "{text}"
    );

    // A client with only a domain and a DNS server finds and activates.
    let state = root.path().join("client.json");
    let st = s(&state);
    run(&[
        "--state",
        st,
        "install-key",
        fx.key("draw"),
        "--vendor",
        s(&fx.bundle),
    ])
    .ok();
    run(&["--state", st, "set-domain", ZONE]).ok();
    let out = run(&["--state", st, "--dns-server", &dns, "activate", "--json"])
        .ok()
        .json();
    assert_eq!(out["host"], format!("host1.{ZONE}:{port}"));
    let verbose = run(&["--state", st, "status", "--verbose"]).ok().stdout;
    assert!(
        verbose.contains(&format!(
            "DNS SRV record _volact._tcp.{ZONE} (priority 0, weight 0)"
        )),
        "{verbose}"
    );

    // A clean shutdown removes the record.
    let pid = server.guard.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.guard.exited() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dns_status(&fx.data)["event"], "dns-unpublish-succeeded");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(bind.srv_records(ZONE)).unwrap().is_empty());

    // Now nothing serves: no-host-found names the lookup and the cached host.
    let e = run(&["--state", st, "--dns-server", &dns, "activate", "--json"]).fails();
    assert_eq!(e.error_code(), "no-host-found");
    let message = e.json()["message"].as_str().unwrap().to_string();
    for part in [
        format!("_volact._tcp.{ZONE} (SRV): the name does not exist (NXDOMAIN)"),
        format!("host1.{ZONE}:{port} (from host cache"),
        "host-unreachable".to_string(),
    ] {
        assert!(message.contains(&part), "`{part}` missing: {message}");
    }

    // A wrong TSIG key is refused, and `host status` shows the failure.
    bind.write_key_file(&fx.data.join("tsig.key"), false)
        .unwrap();
    let e = run(&["host", "publish-dns", "--data", s(&fx.data), "--json"]).fails();
    assert_eq!(e.error_code(), "unauthorized");
    assert_eq!(dns_status(&fx.data)["event"], "dns-publish-failed");
    let text = run(&["host", "status", "--data", s(&fx.data)]).ok().stdout;
    assert!(
        text.contains("(FAILED)") && text.contains("NOTAUTH"),
        "{text}"
    );
    bind.write_key_file(&fx.data.join("tsig.key"), true)
        .unwrap();
    run(&["host", "publish-dns", "--data", s(&fx.data)]).ok();
    run(&["host", "unpublish-dns", "--data", s(&fx.data)]).ok();
}

#[test]
fn discovery_settings_persist() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("client.json");
    let st = s(&state);
    run(&["--state", st, "set-dns-server", "127.0.0.1:5353"]).ok();
    run(&["--state", st, "host-cache", "off"]).ok();
    let status = run(&["--state", st, "status", "--json"]).ok().json();
    assert_eq!(status["dns_server"], "127.0.0.1:5353");
    assert_eq!(status["host_cache"], false);
    let text = run(&["--state", st, "status", "--verbose"]).ok().stdout;
    assert!(
        text.contains("Host cache:") && text.contains("off"),
        "{text}"
    );
    run(&["--state", st, "host-cache", "on"]).ok();
    run(&["--state", st, "clear-dns-server"]).ok();
    let status = run(&["--state", st, "status", "--json"]).ok().json();
    assert_eq!(status["dns_server"], serde_json::Value::Null);
    assert_eq!(status["host_cache"], true);
    let e = run(&["--state", st, "set-dns-server", "dns.example.com", "--json"]).fails();
    assert_eq!(e.error_code(), "bad-request");
    let e = run(&["--state", st, "host-cache", "maybe"]).fails();
    assert!(e.stderr.contains("on") && e.stderr.contains("off"), "{e}");
    let e = run(&["--state", st, "--dns-server", "nope", "activate", "--json"]).fails();
    assert_eq!(e.error_code(), "bad-request");
}
