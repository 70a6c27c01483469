//! The vendor sees its customers: a host key issued through the service's admin API with
//! usage reports on, a host activated online that sends its daily report (counts only),
//! and the vendor's view of customers and usage as text, JSON and CSV — offline from the
//! vendor directory and online through the admin API alike. Revoking the key through the
//! API stops the host's renewals and reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::vendor::{activate_online, host_with_key, report_every_second, vendor_serve};
use common::{Server, activation_request, provision, run, s};
use serde_json::Value;
use std::time::{Duration, Instant};

fn usage_json(args: &[&str]) -> Value {
    let mut all = vec!["--json", "vendor", "usage"];
    all.extend_from_slice(args);
    serde_json::from_str(&run(&all).ok().stdout).unwrap()
}

#[test]
fn a_hosts_usage_reports_reach_the_vendors_view_and_hold_no_client_id() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    let token_file = fx.vendor_dir.join("admin.token");
    let online = ["--url", url.as_str(), "--token-file", s(&token_file)];

    // A host key issued online, through the admin API, with usage reports on.
    let mut args = vec!["--json", "vendor", "host-key"];
    args.extend_from_slice(&online);
    args.extend_from_slice(&[
        "--customer",
        "Acme Usage",
        "--group",
        "office",
        "--usage-reports",
    ]);
    let issued: Value = serde_json::from_str(&run(&args).ok().stdout).unwrap();
    assert_eq!(issued["claims"]["usage_reports"], true, "{issued}");
    let host_key = issued["host_key"].as_str().unwrap();
    // Without the token the admin API refuses, and says where the token is.
    let out = run(&[
        "--json",
        "vendor",
        "customers",
        "--url",
        &url,
        "--token-file",
        s(&tmp.path().join("no-such-token")),
    ])
    .fails();
    assert_eq!(out.error_code(), "invalid-state", "{out}");

    let host = host_with_key(&fx, tmp.path(), "reporting-host", host_key);
    activate_online(&host, &url).ok();
    report_every_second(&host);
    let server = Server::start(&host, &[]);
    let client_id = uuid::Uuid::new_v4().to_string();
    let (body, _) = activation_request(&client_id, fx.key("draw"), 1);
    let (_, answer) = common::http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["result"], "activated", "{answer}");

    // The host refreshes the day's report every second: wait for one that counts the
    // client (bounded). A report may see the client in the inventory a moment before the
    // count does, so wait for the count.
    let dir_source = ["--dir", s(&fx.vendor_dir)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let reports = usage_json(&[dir_source[0], dir_source[1], "--customer", "Acme Usage"]);
        if let Some(r) = reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["products"]["draw"].as_u64() >= Some(1))
        {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no report counts the client: {reports}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    server.kill();
    assert_eq!(report["products"]["draw"], 1, "{report}");
    assert_eq!(report["clients_known"], 1, "{report}");
    assert_eq!(report["key_id"], issued["claims"]["jti"], "{report}");
    // Counts only: the client's id and machine name appear nowhere, not even in the
    // host-signed token the service keeps.
    let text = report.to_string();
    let payload = report["token"].as_str().unwrap();
    let claims: Value = volact_core::token::peek::<RawReport>(payload).unwrap().0;
    for (what, value) in [("report", &text), ("token", &claims.to_string())] {
        assert!(
            !value.contains(&client_id),
            "{what} holds the client id: {value}"
        );
        assert!(
            !value.contains("machine"),
            "{what} holds a machine name: {value}"
        );
    }

    // The same view online, and as CSV.
    let mut args = vec!["--json", "vendor", "usage"];
    args.extend_from_slice(&online);
    let remote: Value = serde_json::from_str(&run(&args).ok().stdout).unwrap();
    assert!(
        remote
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host_id"] == report["host_id"])
    );
    let csv = run(&["vendor", "usage", "--dir", s(&fx.vendor_dir), "--csv"])
        .ok()
        .stdout;
    assert!(
        csv.starts_with("day,key_id,host_id,host_version,clients_known,product,clients\n"),
        "{csv}"
    );
    assert!(csv.contains(",draw,1\n"), "{csv}");

    // Customers: the key, its host, its activation.
    let mut args = vec!["--json", "vendor", "customers"];
    args.extend_from_slice(&online);
    args.extend_from_slice(&["--customer", "Acme Usage"]);
    let customers: Value = serde_json::from_str(&run(&args).ok().stdout).unwrap();
    let key = &customers[0]["host_keys"][0];
    assert_eq!(customers[0]["customer"], "Acme Usage", "{customers}");
    assert_eq!(key["hosts"][0]["activations"], 1, "{customers}");
    assert_eq!(key["hosts"][0]["host_id"], report["host_id"], "{customers}");
    let text = run(&["vendor", "customers", "--dir", s(&fx.vendor_dir)])
        .ok()
        .stdout;
    assert!(
        text.contains("Acme Usage") && text.contains("activations 1/10"),
        "{text}"
    );
    let csv = run(&["vendor", "customers", "--dir", s(&fx.vendor_dir), "--csv"])
        .ok()
        .stdout;
    assert!(csv.lines().any(|l| l.starts_with("Acme Usage,")), "{csv}");

    // Revoked through the API: the host is refused a new activation.
    let key_id = issued["claims"]["jti"].as_str().unwrap();
    let mut args = vec!["--json", "vendor", "revoke"];
    args.extend_from_slice(&online);
    args.extend_from_slice(&["--host-key", key_id, "--reason", "contract ended"]);
    let revoked: Value = serde_json::from_str(&run(&args).ok().stdout).unwrap();
    assert!(revoked["sequence"].as_u64() >= Some(1), "{revoked}");
    let out = activate_online(&host, &url).fails();
    assert_eq!(out.error_code(), "host-revoked", "{out}");
}

/// A usage report's claims as signed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct RawReport(Value);

impl volact_core::token::Document for RawReport {
    const TYPE: &'static str = "volact.usage-report";
}
