//! TLS on the host: activations, the admin API and the dashboard over `https://` with a
//! pinned certificate, HSTS and a `Secure` session cookie there and not on plain HTTP, the
//! admin API and dashboard refused over plain HTTP to a peer other than 127.0.0.1 (a
//! second loopback address, 127.0.0.2, stands for another machine), a renewed certificate
//! served to new connections without a restart, and a TLS handshake that never comes
//! closed at the header deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use volact_client::tls::TlsTrust;
use volact_engine::config::RawConfig;
use volact_host::listener::LimitsSection;
use volact_host::tls::TlsSection;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const OFFICE: &str = "demo-office";
/// The series counting connections closed before their head (a silent TLS handshake too).
const HEADER_TIMEOUTS: &str = "volact_connections_timed_out_total{phase=\"header\"}";

/// Longest a test waits for the host to notice new certificate files (it polls every 2 s).
const RELOAD_PATIENCE: Duration = Duration::from_secs(10);

/// Writes a self-signed certificate for 127.0.0.1 into `dir` as `NAME.crt`/`NAME.key`.
fn write_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = volact_host::tls::self_signed(&["127.0.0.1".into()]).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&k, key).unwrap();
    std::fs::write(&c, cert).unwrap();
    (c, k)
}

/// The SHA-256 fingerprint of the first certificate in `pem`, computed here, not asked
/// of the host.
fn fingerprint_of(pem: &Path) -> String {
    let der = CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    volact_core::fingerprint::of_certificate(der.as_ref())
}

struct Tls {
    host: TestHost,
    certs: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

async fn tls_host(allow_plain_admin: bool, limits: Option<LimitsSection>) -> Tls {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(certs.path(), "host");
    let options = TestHostOptions {
        config: RawConfig {
            tls: Some(TlsSection {
                listen: Some("127.0.0.1:0".into()),
                cert_file: Some(cert.display().to_string()),
                key_file: Some(key.display().to_string()),
                allow_plain_admin: Some(allow_plain_admin),
            }),
            limits,
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    let host = TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap();
    Tls {
        host,
        certs,
        cert,
        key,
    }
}

impl Tls {
    fn url(&self) -> String {
        self.host.running.tls_url().unwrap()
    }
}

/// A client trusting exactly the certificate with `fingerprint`.
fn pinned(fingerprint: &str) -> reqwest::Client {
    let trust = TlsTrust::from_flags(Some(fingerprint), None).unwrap();
    volact_client::tls::configure(reqwest::Client::builder(), &trust)
        .unwrap()
        .build()
        .unwrap()
}

/// A plain client whose connections come from 127.0.0.`n`.
fn plain_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

fn activation_body(host: &TestHost, n: u32) -> Value {
    let now = volact_engine::Clock::now(host.clock.as_ref());
    request(&client(n), &host.vendor.setup_key(OFFICE), now)
}

#[tokio::test]
async fn activations_and_the_admin_api_over_https_with_a_pinned_certificate() {
    let t = tls_host(false, None).await;
    let fp = fingerprint_of(&t.cert);
    assert_eq!(
        t.host.running.tls_fingerprint().as_deref(),
        Some(fp.as_str())
    );
    let serving = t.host.data.serving().unwrap();
    assert_eq!(serving.tls_fingerprint.as_deref(), Some(fp.as_str()));
    assert_eq!(serving.tls_url.as_deref(), Some(t.url().as_str()));

    let http = pinned(&fp);
    let response = http
        .post(format!("{}/v1/activations", t.url()))
        .json(&activation_body(&t.host, 1))
        .send()
        .await
        .unwrap();
    // HTTP/2 by ALPN, and HSTS on every TLS answer.
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["result"].is_string(), "{answer}");

    let token = t.host.admin_token().unwrap();
    let clients: Value = http
        .get(format!("{}/v1/admin/clients", t.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clients["clients"][0]["client_id"], client(1), "{clients}");
    let unauthorised = http
        .get(format!("{}/v1/admin/clients", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);

    // Plain HTTP answers carry no HSTS.
    let plain = reqwest::Client::new()
        .get(format!("{}/v1/host", t.host.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("strict-transport-security").is_none());

    // Another certificate's fingerprint is refused, naming both.
    let (other, _) = write_cert(t.certs.path(), "other");
    let other_fp = fingerprint_of(&other);
    let e = pinned(&other_fp)
        .get(format!("{}/v1/host", t.url()))
        .send()
        .await
        .unwrap_err();
    let why = volact_client::tls::error_chain(&e);
    assert!(why.contains(&fp) && why.contains(&other_fp), "{why}");
    // Without a pin or CA, the self-signed certificate is refused with what to do.
    let e = volact_client::tls::configure(reqwest::Client::builder(), &TlsTrust::default())
        .unwrap()
        .build()
        .unwrap()
        .get(format!("{}/v1/host", t.url()))
        .send()
        .await
        .unwrap_err();
    let why = volact_client::tls::error_chain(&e);
    assert!(
        why.contains("--tls-fingerprint") && why.contains(&fp),
        "{why}"
    );
    // The certificate as its own CA also works.
    let trust = TlsTrust::from_flags(None, Some(&t.cert)).unwrap();
    let by_ca = volact_client::tls::configure(reqwest::Client::builder(), &trust)
        .unwrap()
        .build()
        .unwrap()
        .get(format!("{}/v1/host", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_ca.status(), 200);
    drop(t.key);
}

#[tokio::test]
async fn admin_and_dashboard_over_plain_http_answer_only_127_0_0_1() {
    let t = tls_host(false, None).await;
    let token = t.host.admin_token().unwrap();
    let plain = t.host.url();
    let tls_port = t.host.running.tls_addr.unwrap().port();

    // From 127.0.0.2, standing for another machine: activations yes, admin no.
    let remote = plain_from(2);
    let activation = remote
        .post(format!("{plain}/v1/activations"))
        .json(&activation_body(&t.host, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(activation.status(), 200);
    let refused = remote
        .get(format!("{plain}/v1/admin/clients"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let e: Value = refused.json().await.unwrap();
    assert_eq!(e["code"], "tls-required", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("https://127.0.0.1:{tls_port}/v1/admin/clients")),
        "{message}"
    );
    let page = remote.get(format!("{plain}/login")).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("tls-required"));

    // From 127.0.0.1 both answer over plain HTTP, and the cookie is not Secure there.
    let local = plain_from(1);
    let listed = local
        .get(format!("{plain}/v1/admin/clients"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let no_redirect = |b: reqwest::ClientBuilder| {
        b.redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let login = no_redirect(reqwest::Client::builder())
        .post(format!("{plain}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_token(&token))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("volact_session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Over TLS it is.
    let trust = TlsTrust::from_flags(Some(&fingerprint_of(&t.cert)), None).unwrap();
    let login =
        no_redirect(volact_client::tls::configure(reqwest::Client::builder(), &trust).unwrap())
            .post(format!("{}/login", t.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_token(&token))
            .send()
            .await
            .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn allow_plain_admin_lets_other_machines_in_over_plain_http() {
    let t = tls_host(true, None).await;
    let listed = plain_from(2)
        .get(format!("{}/v1/admin/clients", t.host.url()))
        .bearer_auth(t.host.admin_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn a_host_without_tls_serves_admin_only_to_127_0_0_1() {
    let host = TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap();
    assert!(host.running.tls_url().is_none());
    let refused = plain_from(2)
        .get(format!("{}/v1/admin/status", host.url()))
        .bearer_auth(host.admin_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let e: Value = refused.json().await.unwrap();
    assert_eq!(e["code"], "tls-required");
    assert!(e["message"].as_str().unwrap().contains("tls-init"), "{e}");
}

/// Whether a fresh connection pinned to `fingerprint` is served.
async fn served_with(url: &str, fingerprint: &str) -> bool {
    pinned(fingerprint)
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let t = tls_host(false, None).await;
    let old = fingerprint_of(&t.cert);
    assert!(served_with(&t.url(), &old).await);

    // A broken certificate file: the old one stays in force.
    std::fs::write(&t.cert, "not a certificate").unwrap();
    tokio::time::sleep(volact_host::tls::reload::POLL_EVERY * 2).await;
    assert!(served_with(&t.url(), &old).await);
    assert_eq!(
        t.host.running.tls_fingerprint().as_deref(),
        Some(old.as_str())
    );

    // A renewed one, written over the files: new connections get it.
    let (cert, key) = write_cert(t.certs.path(), "renewed");
    std::fs::copy(&key, &t.key).unwrap();
    std::fs::copy(&cert, &t.cert).unwrap();
    let new = fingerprint_of(&t.cert);
    assert_ne!(new, old);
    let deadline = Instant::now() + RELOAD_PATIENCE;
    while !served_with(&t.url(), &new).await {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within {RELOAD_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!served_with(&t.url(), &old).await);
    assert_eq!(
        t.host.running.tls_fingerprint().as_deref(),
        Some(new.as_str())
    );
    let serving = t.host.data.serving().unwrap();
    assert_eq!(serving.tls_fingerprint.as_deref(), Some(new.as_str()));
}

#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_closed_at_the_header_deadline() {
    let limits = LimitsSection {
        header_read_timeout: Some("500ms".into()),
        ..LimitsSection::default()
    };
    let t = tls_host(false, Some(limits)).await;
    let before = metric(&t.host, HEADER_TIMEOUTS).await;
    let mut idle = tokio::net::TcpStream::connect(t.host.running.tls_addr.unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
    )
    .await
    .expect("the host closes a silent TLS connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&t.host, HEADER_TIMEOUTS).await < before + 1.0 {
        assert!(Instant::now() < deadline, "the timeout was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `token=TOKEN`, form-encoded.
fn form_token(token: &str) -> String {
    let encoded: String = token
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("token={encoded}")
}
