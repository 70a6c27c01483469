//! Online host activation: `volact vendor serve` answers `volact host activate --online`
//! through the same ledger as the offline files, so a replayed request is refused, one
//! host identity takes one slot however often it activates, the 7th host of a key is
//! refused with the numbers, and a request dated far from the service's clock is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    CATALOG_TOML, Fixture, Server, activation_request, provision, provision_with, run, s,
};
use serde_json::Value;
use std::time::Duration;

use common::vendor::{activate_online, host_with_key, new_host, vendor_serve, vendor_serve_ready};

fn post(url: &str, body: &[u8]) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        volact_client::tls::install_default_provider();
        let response = reqwest::Client::new()
            .post(format!("{url}/v1/host-activations"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn hosts_activate_online_within_the_host_keys_limits() {
    // reqwest has TLS without a provider of its own: ring, as in the binary.
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    // One host of the key is activated offline already (the fixture's).
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);

    // Online, end to end: the host serves, and a client activates against it.
    let second = new_host(&fx, tmp.path(), "host-2");
    let cert = activate_online(&second, &url).ok().json();
    assert!(cert["exp"].is_string(), "{cert}");
    let server = Server::start(&second, &[]);
    let (body, _) = activation_request(&uuid::Uuid::new_v4().to_string(), fx.key("draw"), 1);
    let (_, answer) = common::http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["result"], "activated", "{answer}");
    server.kill();

    // The same host again: a new request, the same slot.
    activate_online(&second, &url).ok();

    // A request answered once is refused when played again, and spends nothing.
    let third = new_host(&fx, tmp.path(), "host-3");
    let request = third.with_extension("request.json");
    run(&[
        "host",
        "activate",
        "--data",
        s(&third),
        "--request-out",
        s(&request),
    ])
    .ok();
    let bytes = std::fs::read(&request).unwrap();
    let (status, first) = post(&url, &bytes);
    assert_eq!(status, 200, "{first}");
    let (status, replay) = post(&url, &bytes);
    assert_eq!(
        (status, replay["code"].as_str()),
        (409, Some("request-replayed")),
        "{replay}"
    );
    // The same file offline: the ledger is one.
    let offline = run(&[
        "--json",
        "vendor",
        "activate-host",
        "--dir",
        s(&fx.vendor_dir),
        s(&request),
    ])
    .fails();
    assert_eq!(offline.error_code(), "request-replayed", "{offline}");

    // Hosts 4 to 6 fill the key's six hosts; the 7th is refused with the numbers.
    for n in 4..=6 {
        let data = new_host(&fx, tmp.path(), &format!("host-{n}"));
        activate_online(&data, &url).ok();
    }
    let seventh = new_host(&fx, tmp.path(), "host-7");
    let refused = activate_online(&seventh, &url).fails();
    assert_eq!(
        refused.error_code(),
        "host-key-activation-limit",
        "{refused}"
    );
    let details = &refused.json()["details"];
    assert_eq!(
        (details["hosts"].as_u64(), details["max_hosts"].as_u64()),
        (Some(6), Some(6)),
        "{refused}"
    );

    // A request dated an hour off the service's clock is refused before anything is spent.
    let skewed = volact_engine::data::HostData::new(&seventh)
        .activation_request(
            "skewed-nonce".into(),
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    let (status, answer) = post(&url, &serde_json::to_vec(&skewed).unwrap());
    assert_eq!(answer["code"], "clock-skew", "{status} {answer}");

    // Not JSON, or too large: refused, and the service still answers.
    let (status, _) = post(&url, b"{not json");
    assert_eq!(status, 400);
    let (status, _) = post(&url, &vec![b' '; 200 * 1024]);
    assert_eq!(status, 413);
    let (status, _) = post(&url, &bytes);
    assert_eq!(status, 409);
}

/// The issue's end to end: vendor → service → a host activated online → 25 clients, of
/// which the first 24 wait for the count and the 25th activates; then the same host
/// activates again up to its key's 10 activations, and the 11th is refused with the
/// numbers.
#[test]
fn twenty_five_clients_through_a_host_activated_online_and_the_eleventh_activation_refused() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let catalog = CATALOG_TOML.replace("minimum_count = 3", "minimum_count = 25");
    let fx = provision_with(tmp.path(), "office", &catalog, None);
    let (_service, url) = vendor_serve(&fx, &[]);
    let host = new_host(&fx, tmp.path(), "online-host");
    activate_online(&host, &url).ok();
    let server = Server::start(&host, &[]);
    for n in 1..=25u64 {
        let (body, _) = activation_request(
            &uuid::Uuid::new_v4().to_string(),
            fx.key("suite-desktop"),
            25,
        );
        let (status, answer) = common::http(
            &server.addr,
            "POST",
            "/v1/activations",
            Some(&body.to_string()),
        )
        .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["count"].as_u64(), Some(n), "{status} {answer}");
        let expected = if n < 25 {
            "count-insufficient"
        } else {
            "activated"
        };
        assert_eq!(answer["result"], expected, "client {n}: {answer}");
        assert_eq!(answer["ticket"].is_string(), n == 25, "{answer}");
    }
    server.kill();

    // Activations 2 to 10 of this host are answered; the 11th is refused, with both
    // numbers and both limits.
    for _ in 2..=10 {
        activate_online(&host, &url).ok();
    }
    let refused = activate_online(&host, &url).fails();
    assert_eq!(
        refused.error_code(),
        "host-key-activation-limit",
        "{refused}"
    );
    let details = &refused.json()["details"];
    assert_eq!(
        (
            details["activations"].as_u64(),
            details["max_activations"].as_u64()
        ),
        (Some(10), Some(10)),
        "{refused}"
    );
    assert!(details["max_hosts"].as_u64() == Some(6), "{refused}");
}

#[test]
fn the_service_refuses_to_listen_off_loopback_and_a_directory_without_a_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let out = run(&[
        "--json",
        "vendor",
        "serve",
        "--dir",
        s(&fx.vendor_dir),
        "--listen",
        "0.0.0.0:0",
    ])
    .fails();
    assert_eq!(out.error_code(), "bad-request", "{out}");
    let empty = tmp.path().join("empty-vendor");
    run(&["vendor", "init", "--dir", s(&empty)]).ok();
    let out = run(&[
        "--json",
        "vendor",
        "serve",
        "--dir",
        s(&empty),
        "--listen",
        "127.0.0.1:0",
    ])
    .fails();
    assert_eq!(out.error_code(), "invalid-state", "{out}");
}

#[test]
fn attempts_past_the_per_address_limit_are_refused_rate_limited() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    // One a minute, two at once.
    let (_service, url) = vendor_serve(&fx, &["--attempts-per-minute", "1"]);
    for _ in 0..2 {
        let (status, answer) = post(&url, b"{}");
        assert_eq!(status, 400, "{answer}");
    }
    let (status, answer) = post(&url, b"{}");
    assert_eq!(
        (status, answer["code"].as_str()),
        (429, Some("rate-limited")),
        "{answer}"
    );
    assert!(
        answer["details"]["retry_after_secs"].as_u64() >= Some(1),
        "{answer}"
    );
    // A host that asks now is refused too, with the code, and nothing is spent.
    let host = new_host(&fx, tmp.path(), "host-2");
    let out = activate_online(&host, &url).fails();
    assert_eq!(out.error_code(), "rate-limited", "{out}");
}

/// `GET url` with the admin `token` (if any), trusting the certificate `fingerprint`.
fn admin_get(url: &str, fingerprint: &str, token: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trust = volact_client::tls::TlsTrust::from_flags(Some(fingerprint), None).unwrap();
        let http = volact_client::tls::configure(reqwest::Client::builder(), &trust)
            .unwrap()
            .build()
            .unwrap();
        let mut request = http.get(url).timeout(Duration::from_secs(10));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    })
}

#[test]
fn the_service_serves_https_and_its_admin_api_and_metrics_take_the_token() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (cert, key) =
        volact_host::tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_file = tmp.path().join("service-cert.pem");
    let key_file = tmp.path().join("service-key.pem");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let (_service, ready) = vendor_serve_ready(
        &fx,
        &["--tls-cert", s(&cert_file), "--tls-key", s(&key_file)],
    );
    let url = ready["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{ready}");
    let fingerprint = ready["tls_fingerprint"].as_str().unwrap().to_string();
    let token_file = ready["admin_token_file"].as_str().unwrap();
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64, "a 256-bit token");

    // A host that does not trust the certificate is refused at the handshake, and says
    // how to trust it; one that pins it activates.
    let host = new_host(&fx, tmp.path(), "host-2");
    let out = run(&[
        "--json",
        "host",
        "activate",
        "--data",
        s(&host),
        "--online",
        "--vendor-url",
        &url,
    ])
    .fails();
    assert_eq!(out.error_code(), "host-unreachable", "{out}");
    assert!(out.stdout.contains("--vendor-fingerprint"), "{out}");
    run(&[
        "--json",
        "host",
        "activate",
        "--data",
        s(&host),
        "--online",
        "--vendor-url",
        &url,
        "--vendor-fingerprint",
        &fingerprint,
    ])
    .ok();

    // The admin API and /metrics: nothing without the token, everything with it.
    let status_url = format!("{url}/v1/admin/status");
    let (code, body) = admin_get(&status_url, &fingerprint, None);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("unauthorized") && body.contains("admin.token"),
        "{body}"
    );
    let (code, body) = admin_get(&status_url, &fingerprint, Some("0".repeat(64).as_str()));
    assert_eq!(code, 401, "{body}");
    let (code, body) = admin_get(&status_url, &fingerprint, Some(&token));
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["tls"], true, "{status}");
    assert_eq!(status["signer"], "root", "{status}");
    assert!(status["catalog_version"].as_u64() >= Some(1), "{status}");
    let (code, _) = admin_get(&format!("{url}/metrics"), &fingerprint, None);
    assert_eq!(code, 401);
    let (code, metrics) = admin_get(&format!("{url}/metrics"), &fingerprint, Some(&token));
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "volact_vendor_requests_total{endpoint=\"host-activations\",result=\"ok\"} 1"
        ),
        "{metrics}"
    );
    let (code, body) = admin_get(
        &format!("{url}/v1/admin/nothing"),
        &fingerprint,
        Some(&token),
    );
    assert_eq!(code, 404, "{body}");
}

#[test]
fn a_host_finds_the_service_in_the_vendors_signed_catalog() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (_service, url) = vendor_serve(&fx, &[]);
    // Without a URL in the catalog, --online alone says what to give.
    let host = new_host(&fx, tmp.path(), "host-2");
    let out = run(&["--json", "host", "activate", "--data", s(&host), "--online"]).fails();
    assert_eq!(out.error_code(), "bad-request", "{out}");
    assert!(out.stdout.contains("--vendor-url"), "{out}");

    // The vendor signs the service's URL into a new catalog version; a host given the
    // new bundle activates online with no URL of its own.
    let source = tmp.path().join("catalog.toml");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, format!("service_url = \"{url}\"\n{text}")).unwrap();
    run(&[
        "vendor",
        "catalog",
        "--dir",
        s(&fx.vendor_dir),
        "--from",
        s(&source),
    ])
    .ok();
    let bundle = tmp.path().join("vendor-2.pub");
    let export = run(&["vendor", "export", "--dir", s(&fx.vendor_dir)]).ok();
    std::fs::write(&bundle, &export.stdout).unwrap();
    let host = tmp.path().join("host-3");
    run(&["host", "init", "--data", s(&host)]).ok();
    run(&[
        "host",
        "install-key",
        "--data",
        s(&host),
        "--vendor",
        s(&bundle),
        &fx.host_key,
    ])
    .ok();
    let out = run(&["--json", "host", "activate", "--data", s(&host), "--online"]).ok();
    assert!(out.stdout.contains("\"exp\""), "{out}");
}

#[test]
fn with_the_root_key_offline_a_delegated_key_issues_host_keys_and_certificates() {
    volact_client::tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let signing = tmp.path().join("signing");
    run(&[
        "vendor",
        "delegate",
        "--dir",
        s(&fx.vendor_dir),
        "--out",
        s(&signing),
        "--days",
        "30",
    ])
    .ok();
    // The service's directory holds the root's public key and the catalog, not the root
    // key itself.
    let service_dir = tmp.path().join("service");
    std::fs::create_dir(&service_dir).unwrap();
    for file in ["root.pub", "catalog.token"] {
        std::fs::copy(fx.vendor_dir.join(file), service_dir.join(file)).unwrap();
    }
    let service = Fixture {
        vendor_dir: service_dir.clone(),
        ..fx.clone()
    };
    // Without the root key and without --signing it cannot sign anything: refused at
    // start.
    let out = run(&[
        "--json",
        "vendor",
        "serve",
        "--dir",
        s(&service_dir),
        "--listen",
        "127.0.0.1:0",
    ])
    .fails();
    assert_eq!(out.error_code(), "invalid-state", "{out}");
    let (_service, url) = vendor_serve(&service, &["--signing", s(&signing)]);

    let issued = run(&[
        "--json",
        "vendor",
        "host-key",
        "--dir",
        s(&service_dir),
        "--signing",
        s(&signing),
        "--customer",
        "Offline Root Ltd",
        "--group",
        "office",
    ])
    .ok();
    let issued: Value = serde_json::from_str(&issued.stdout).unwrap();
    assert!(issued["claims"]["delegation"].is_string(), "{issued}");
    let host_key = issued["host_key"].as_str().unwrap();
    let host = host_with_key(&fx, tmp.path(), "host-2", host_key);
    let out = activate_online(&host, &url).ok();
    let cert: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(cert["customer"], "Offline Root Ltd", "{cert}");
    assert!(cert["delegation"].is_string(), "{cert}");

    // A key delegated for host certificates only cannot issue host keys: hosts refuse
    // what it signs.
    let narrow = tmp.path().join("narrow");
    run(&[
        "vendor",
        "delegate",
        "--dir",
        s(&fx.vendor_dir),
        "--out",
        s(&narrow),
        "--scope",
        "host-certificates",
    ])
    .ok();
    let issued = run(&[
        "--json",
        "vendor",
        "host-key",
        "--dir",
        s(&service_dir),
        "--signing",
        s(&narrow),
        "--customer",
        "X",
        "--group",
        "office",
    ])
    .ok();
    let issued: Value = serde_json::from_str(&issued.stdout).unwrap();
    let host = tmp.path().join("host-3");
    run(&["host", "init", "--data", s(&host)]).ok();
    let out = run(&[
        "--json",
        "host",
        "install-key",
        "--data",
        s(&host),
        "--vendor",
        s(&fx.bundle),
        issued["host_key"].as_str().unwrap(),
    ])
    .fails();
    assert!(out.stdout.contains("host-keys"), "{out}");
}

#[test]
fn an_earlier_versions_ledger_is_imported_so_an_upgrade_spends_nothing_anew() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    // The vendor directory as an earlier version left it: ledger.json, no store. Its
    // host has used all 10 activations of the key.
    for f in ["vendor.db", "vendor.db-wal", "vendor.db-shm"] {
        let _ = std::fs::remove_file(fx.vendor_dir.join(f));
    }
    let data = volact_engine::data::HostData::new(&fx.data);
    let (_, key) = data.host_key().unwrap();
    let (_, cert) = data.certificate().unwrap().unwrap();
    let ledger = serde_json::json!({ "keys": { key.jti.clone(): { cert.sub.clone(): 10 } } });
    std::fs::write(fx.vendor_dir.join("ledger.json"), ledger.to_string()).unwrap();

    let request = tmp.path().join("again.request.json");
    run(&[
        "host",
        "activate",
        "--data",
        s(&fx.data),
        "--request-out",
        s(&request),
    ])
    .ok();
    let out = run(&[
        "--json",
        "vendor",
        "activate-host",
        "--dir",
        s(&fx.vendor_dir),
        s(&request),
    ])
    .fails();
    assert_eq!(out.error_code(), "host-key-activation-limit", "{out}");
    assert!(out.stdout.contains("\"activations\": 10"), "{out}");
    assert!(!fx.vendor_dir.join("ledger.json").exists());
    assert!(fx.vendor_dir.join("ledger.json.imported").exists());
    let customers = run(&["--json", "vendor", "customers", "--dir", s(&fx.vendor_dir)])
        .ok()
        .json();
    let hosts = customers[0]["host_keys"][0]["hosts"].clone();
    assert_eq!(hosts[0]["activations"], 10, "{customers:#}");
}
