//! `volact quickstart`: a demo vendor, catalog, host key and activated host, serving, in
//! one command. A second run reuses the same directory.

use crate::host_cmd;
use crate::output::{Output, init_logging};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use volact_core::catalog::demo_source;
use volact_core::host_key::{DEFAULT_MAX_ACTIVATIONS, DEFAULT_MAX_HOSTS};
use volact_engine::config::RawConfig;
use volact_engine::data::{HostData, write_atomic};
use volact_engine::{SystemClock, random_bytes, random_nonce};
use volact_host::server;
use volact_proto::{ApiError, ErrorCode};
use volact_vendor::dir::{HostKeySpec, VendorDir};

/// Prepares the demo (only what is missing) and serves until interrupted.
pub async fn run(
    dir: &Path,
    listen: &str,
    storage: crate::cli::StorageFlag,
    out: Output,
    log_format: &str,
) -> Result<(), ApiError> {
    let now = volact_engine::whole_seconds(Timestamp::now());
    let vendor = VendorDir::new(dir.join("vendor"));
    if !vendor.exists() {
        vendor.init()?;
    }
    if vendor.catalog()?.is_none() {
        vendor.sign_catalog(&demo_source(), now)?;
    }
    let bundle = vendor.export()?;
    let bundle_path = dir.join("vendor.pub");
    let bundle_json = serde_json::to_vec_pretty(&bundle)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    write_atomic(&bundle_path, &bundle_json, false)?;

    let host = HostData::new(dir.join("host"));
    if !host.is_initialised() {
        host.init(random_bytes()?)?;
    }
    host.ensure_admin_token()?;
    if !host.dir().join(volact_host::tls::CERT_FILE).exists() {
        volact_host::tls::init_self_signed(&host, &[], false)?;
    }
    if host.host_key().is_err() {
        let spec = HostKeySpec {
            customer: "Demo Customer".into(),
            group: "demo-all".into(),
            seats: None,
            expires: None,
            max_hosts: DEFAULT_MAX_HOSTS,
            max_activations: DEFAULT_MAX_ACTIVATIONS,
            usage_reports: false,
        };
        let (key, _, _) = vendor.host_key(spec, now, None)?;
        host.install_key(&key, Some(&bundle))?;
    }
    let needs_certificate = match host.certificate()? {
        None => true,
        Some((_, c)) => now >= c.exp,
    };
    if needs_certificate {
        let request = host.activation_request(random_nonce()?, now)?;
        let flags = volact_vendor::service::config::ServiceFlags::default();
        let store = volact_vendor::ledger::open_store(vendor.dir(), &flags).await?;
        let answer = volact_vendor::ledger::activate(
            &vendor,
            store.as_ref(),
            None,
            &request,
            volact_core::util::whole_seconds(now),
            volact_core::certificate::DEFAULT_CERTIFICATE_DAYS,
        )
        .await;
        store.close().await;
        let response = answer?;
        host.install_certificate(&response, now)?;
    }

    let config = host.config(RawConfig {
        listen: Some(listen.to_string()),
        ..RawConfig::from(storage)
    })?;
    init_logging(log_format)?;
    let signal = host_cmd::ShutdownSignal::listen();
    let running = server::start(&host, &config, Arc::new(SystemClock)).await?;
    let (_, catalog) = host.vendor()?;
    let setup_keys: BTreeMap<String, String> = catalog
        .products
        .iter()
        .map(|p| (p.id.clone(), p.setup_key.to_string()))
        .collect();
    let url = running.url();
    let tls_url = running.tls_url();
    let fingerprint = running.tls_fingerprint();
    let summary = serde_json::json!({
        "url": url,
        "tls_url": tls_url,
        "tls_fingerprint": fingerprint,
        "data": dir,
        "host_data": host.dir(),
        "vendor": bundle_path,
        "host_id": running.engine.host_id(),
        "admin_token_file": host.admin_token_path(),
        "setup_keys": setup_keys,
    });
    if out.json {
        // One line, so a program can read it before the log lines.
        println!("{summary}");
    } else {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "volact quickstart: a demo vendor, host key and activated host are ready.\n"
        );
        let _ = writeln!(
            t,
            "  Host     {url}   (host id {})",
            running.engine.host_id()
        );
        let _ = writeln!(t, "  Files    {}", dir.display());
        let _ = writeln!(
            t,
            "  Vendor   {}   (the public bundle clients trust)",
            bundle_path.display()
        );
        // Activations are served on both; the admin API and dashboard over plain HTTP
        // only to this machine, over TLS to any.
        let admin = tls_url.clone().unwrap_or_else(|| url.clone());
        if let (Some(tls_url), Some(fp)) = (&tls_url, &fingerprint) {
            let _ = writeln!(t, "  TLS      {tls_url}   (self-signed; SHA-256 {fp})");
        }
        let _ = writeln!(
            t,
            "  Dashboard {admin}/   (log in with the token in {}; metrics at {admin}/metrics)\n",
            host.admin_token_path().display()
        );
        let _ = writeln!(t, "Setup keys:");
        for p in &catalog.products {
            let _ = writeln!(
                t,
                "  {:<22} {}   {} {:?}, activates at {} machines",
                p.id,
                p.setup_key,
                catalog.application_name(&p.application),
                p.kind,
                p.minimum_count
            );
        }
        let key = catalog
            .products
            .iter()
            .find(|p| p.id == "demo-office")
            .map(|p| p.setup_key.to_string())
            .unwrap_or_default();
        let addr = running.addr;
        let _ = writeln!(
            t,
            "\nTry it (each --state file is one machine; from a checkout, `volact` is `cargo run -q --`):"
        );
        let _ = writeln!(t, "  for i in 1 2 3 4 5; do");
        let _ = writeln!(
            t,
            "    volact --state /tmp/volact-m$i.json install-key {key} --vendor {}",
            bundle_path.display()
        );
        let _ = writeln!(t, "    volact --state /tmp/volact-m$i.json set-host {addr}");
        let _ = writeln!(t, "    volact --state /tmp/volact-m$i.json activate");
        let _ = writeln!(t, "  done");
        let _ = writeln!(
            t,
            "  volact --state /tmp/volact-m1.json activate   # machine 1 retries: now 5 of 5"
        );
        let _ = writeln!(t, "  volact --state /tmp/volact-m1.json status");
        let _ = writeln!(t, "  volact host status --data {}", host.dir().display());
        let _ = writeln!(t, "\nServing until Ctrl-C; logs follow on stderr.");
        print!("{t}");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tracing::info!(url = %url, "serving activations");
    signal.wait().await;
    tracing::info!("shutting down");
    running.stop().await
}
