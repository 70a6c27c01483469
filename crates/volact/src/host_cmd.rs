//! `volact host …` commands.

use crate::cli::{HostCommand, ServeFlags};
use crate::output::{Output, init_logging};
use jiff::Timestamp;
use std::path::Path;
use std::sync::Arc;
use volact_core::catalog::VendorBundle;
use volact_engine::config::RawConfig;
use volact_engine::data::{HostData, write_atomic};
use volact_engine::storage::{OpenMode, open_configured};
use volact_engine::{SystemClock, random_bytes, random_nonce, status};
use volact_host::server;
use volact_proto::{ApiError, ErrorCode, HostActivationResponse};

/// Reads a vendor bundle file.
pub fn read_bundle(path: &Path) -> Result<VendorBundle, ApiError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot read the vendor bundle {}: {e}", path.display()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("{} is not a vendor bundle ({e}); create one with `volact vendor export --dir V > vendor.pub`", path.display()),
        )
    })
}

impl From<ServeFlags> for RawConfig {
    fn from(f: ServeFlags) -> RawConfig {
        RawConfig {
            listen: f.listen,
            renew_interval: f.renew_interval,
            retry_interval: f.retry_interval,
            ticket_validity: f.ticket_validity,
            count_window: f.count_window,
            max_clock_skew: f.max_clock_skew,
            event_retention: f.event_retention,
            metrics_token_file: f.metrics_token_file,
            ..RawConfig::from(f.storage)
        }
    }
}

/// Runs a host command.
pub async fn run(cmd: HostCommand, out: Output, log_format: &str) -> Result<(), ApiError> {
    let now = volact_engine::whole_seconds(Timestamp::now());
    match cmd {
        HostCommand::Init {
            data,
            tls_name,
            no_tls,
        } => {
            let host = HostData::new(&data.data);
            let public = host.init(random_bytes()?)?;
            let token_path = host.admin_token_path();
            let tls = if no_tls {
                None
            } else {
                Some(volact_host::tls::init_self_signed(&host, &tls_name, false)?)
            };
            let report = serde_json::json!({ "host_id": public.host_id(), "data": data.data, "admin_token_file": token_path, "tls": tls });
            out.result(&report, || {
                format!(
                    "Host {} created in {}.\nAdmin token (for the dashboard and admin API): {} (mode 0600)\n{}Next: volact host install-key --data {} --vendor vendor.pub HOST_KEY\n",
                    public.host_id(),
                    data.data.display(),
                    token_path.display(),
                    tls.as_ref().map(tls_text).unwrap_or_else(|| "No TLS: the admin API and dashboard will answer only on this machine.\n".into()),
                    data.data.display()
                )
            });
        }
        HostCommand::TlsInit {
            data,
            tls_name,
            replace,
        } => {
            let host = HostData::new(&data.data);
            host.identity()?;
            let tls = volact_host::tls::init_self_signed(&host, &tls_name, replace)?;
            out.result(&tls, || {
                let config = if tls.config_written {
                    format!("[tls] added to {}.\n", host.config_path().display())
                } else {
                    format!(
                        "{} has a [tls] section already: check that cert_file and key_file name these files.\n",
                        host.config_path().display()
                    )
                };
                format!("{}{config}A serving host uses the new certificate for new connections within seconds (or at once on SIGHUP).\n", tls_text(&tls))
            });
        }
        HostCommand::InstallKey {
            data,
            vendor,
            host_key,
        } => {
            let bundle = vendor.as_deref().map(read_bundle).transpose()?;
            let host = HostData::new(&data.data);
            let key = host.install_key(&host_key, bundle.as_ref())?;
            out.result(&key, || {
                format!(
                    "Host key {} installed (customer {}, key group {}).\nNext: volact host activate --data {} --request-out request.json\n",
                    key.jti,
                    key.customer,
                    key.group,
                    data.data.display()
                )
            });
        }
        HostCommand::Activate {
            data,
            request_out,
            response,
            online,
            vendor_url,
            vendor_ca_file,
            vendor_fingerprint,
        } => {
            let host = HostData::new(&data.data);
            if online {
                let url = match vendor_url {
                    Some(url) => url,
                    None => service_url(&host)?,
                };
                let trust = volact_client::tls::TlsTrust::from_flags(
                    vendor_fingerprint.as_deref(),
                    vendor_ca_file.as_deref(),
                )?;
                let request = host.activation_request(random_nonce()?, now)?;
                let link = crate::vendor_link::VendorLink::new(&url, trust);
                let answer = crate::vendor_link::activate_online(&link, &request).await?;
                let cert = host.install_certificate(&answer, now)?;
                host.set_vendor_url(&url)?;
                out.result(&cert, || {
                    format!(
                        "Host {} activated online until {} for {} products ({}).\nNext: volact host serve --data {}\n",
                        cert.sub,
                        cert.exp,
                        cert.products.len(),
                        cert.products.join(", "),
                        data.data.display()
                    )
                });
            } else if let Some(path) = request_out {
                let request = host.activation_request(random_nonce()?, now)?;
                let json = serde_json::to_vec_pretty(&request)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                write_atomic(&path, &json, false)?;
                out.result(&serde_json::json!({ "request": path }), || {
                    format!(
                        "Activation request written to {}.\nTake it to the vendor (volact vendor activate-host --dir V {} > response.json), then run:\n  volact host activate --data {} --response response.json\n",
                        path.display(),
                        path.display(),
                        data.data.display()
                    )
                });
            } else if let Some(path) = response {
                let bytes = std::fs::read(&path).map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidState,
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let answer: HostActivationResponse =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        ApiError::new(
                            ErrorCode::BadRequest,
                            format!(
                                "{} is not the vendor's activation answer: {e}",
                                path.display()
                            ),
                        )
                    })?;
                let cert = host.install_certificate(&answer, now)?;
                out.result(&cert, || {
                    format!(
                        "Host {} activated until {} for {} products ({}).\nNext: volact host serve --data {}\n",
                        cert.sub,
                        cert.exp,
                        cert.products.len(),
                        cert.products.join(", "),
                        data.data.display()
                    )
                });
            } else {
                return Err(activate_choices(&data.data));
            }
        }
        HostCommand::ImportCatalog { data, file } => {
            let host = HostData::new(&data.data);
            let catalog = crate::vendor_renew::import_catalog_file(&host, &file)?;
            out.result(&catalog, || {
                format!(
                    "Catalog version {} of {} installed ({} products).\nA serving host takes it within seconds; no new activation is needed.\n",
                    catalog.version,
                    catalog.vendor,
                    catalog.products.len()
                )
            });
        }
        HostCommand::ImportRevocations { data, file } => {
            let host = HostData::new(&data.data);
            let list = crate::vendor_revocations::import_file(&host, &file)?;
            let revoked = host
                .certificate()?
                .map(|(_, c)| volact_core::revocation::check_certificate(&list, &c));
            out.result(&list, || {
                let state = match &revoked {
                    Some(Err(e)) => format!("\nThis host is revoked: {}\n", e.message),
                    _ => "\nThis host is not on it.\n".to_owned(),
                };
                format!(
                    "Revocation list {} of {} installed ({} host keys, {} hosts, {} signing keys revoked).{state}",
                    list.sequence,
                    list.vendor,
                    list.host_keys.len(),
                    list.hosts.len(),
                    list.delegations.len()
                )
            });
        }
        HostCommand::Serve { data, flags } => {
            init_logging(log_format)?;
            let host = HostData::new(&data.data);
            let config = host.config(flags.into())?;
            serve(&host, &config).await?;
        }
        #[cfg(feature = "bench-seed")]
        HostCommand::SeedClients {
            data,
            count,
            seed,
            storage,
        } => {
            crate::seed_cmd::seed_clients(&data.data, storage, count, seed, out).await?;
        }
        HostCommand::DnsRecord { data, record } => crate::dns_cmd::record(&data, record, out)?,
        HostCommand::PublishDns { data } => crate::dns_cmd::publish_now(&data, true, out).await?,
        HostCommand::UnpublishDns { data } => {
            crate::dns_cmd::publish_now(&data, false, out).await?;
        }
        HostCommand::Status { data, storage } => {
            let host = HostData::new(&data.data);
            let config = host.config(storage.into())?;
            host.identity()?;
            // A serving host knows activations it has not applied to its database yet;
            // otherwise the database (with any journal a crash left applied) is complete.
            let report = match crate::admin_cmd::live_status(&data.data).await {
                Some(report) => report,
                None => {
                    let store = open_configured(&config, host.dir(), OpenMode::Direct).await?;
                    let report = status::collect(&host, store.as_ref(), &config, now).await;
                    store.close().await;
                    report?
                }
            };
            let tls = tls_status(&host, &config);
            let mut json = serde_json::to_value(&report)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            if let Some(map) = json.as_object_mut() {
                map.insert("tls".into(), tls.clone());
            }
            out.result(&json, || {
                let line = match (tls["url"].as_str(), tls["fingerprint"].as_str()) {
                    (Some(url), Some(fp)) => {
                        format!("TLS:          {url}, certificate SHA-256 {fp}\n")
                    }
                    (None, Some(fp)) => {
                        format!("TLS:          certificate SHA-256 {fp} (host not serving)\n")
                    }
                    _ => {
                        "TLS:          none (admin API and dashboard on this machine only)\n".into()
                    }
                };
                format!("{}{line}", report.render_text())
            });
        }
        HostCommand::Clients(args) => crate::admin_cmd::clients(args, out).await?,
        HostCommand::Events(args) => crate::admin_cmd::events(args, out).await?,
        HostCommand::Revoke(args) => crate::admin_cmd::revoke(args, out).await?,
        HostCommand::Unrevoke(args) => crate::admin_cmd::unrevoke(args, out).await?,
        HostCommand::Config(cmd) => crate::config_cmd::run(cmd, out)?,
        HostCommand::MigrateStore(args) => crate::migrate_cmd::run(args, out).await?,
    }
    Ok(())
}

/// Serves until Ctrl-C or SIGTERM, then stops gracefully.
pub async fn serve(
    host: &HostData,
    config: &volact_engine::config::HostConfig,
) -> Result<(), ApiError> {
    let signal = ShutdownSignal::listen();
    let running = server::start(host, config, Arc::new(SystemClock)).await?;
    let ready = running.engine.not_ready(Timestamp::now()).is_none();
    match running.engine.not_ready(Timestamp::now()) {
        None => {
            tracing::info!(url = %running.url(), host_id = running.engine.host_id(), "serving activations")
        }
        Some(e) => {
            tracing::warn!(url = %running.url(), reason = %e.message, "serving, but refusing activations")
        }
    }
    let publisher = crate::dns_cmd::start_publishing(
        host,
        running.engine.store().clone(),
        running.addr.port(),
        running.tls_addr.map(|a| a.port()),
        ready,
    )?;
    let link = crate::vendor_link::VendorLink::of_host(host, config)?;
    let renewal = crate::vendor_renew::start_renewal(link.as_ref(), host, config, &running.engine);
    let catalogs = crate::vendor_renew::start_catalog_updates(link.as_ref(), host, &running.engine);
    let revocations = crate::vendor_revocations::start(link.as_ref(), host, &running.engine);
    let usage = crate::vendor_usage::start_usage_reports(
        link.as_ref(),
        host,
        &running.engine,
        config.vendor.usage_report_every,
    );
    signal.wait().await;
    tracing::info!("shutting down");
    if let Some(renewal) = renewal {
        renewal.stop();
    }
    catalogs.abort();
    revocations.abort();
    if let Some(usage) = usage {
        usage.abort();
    }
    // Out of DNS first, so no client is sent to a host that is going away.
    crate::dns_cmd::stop_publishing(publisher).await;
    running.stop().await
}

/// Returns on Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown() {
    ShutdownSignal::listen().wait().await;
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made. Made before a host
/// starts, a signal that arrives while it is still starting (opening a large database,
/// applying its journal) stops it as soon as it has started, instead of being lost.
pub struct ShutdownSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignal {
    /// Starts listening.
    pub fn listen() -> ShutdownSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            ShutdownSignal { signals }
        }
        #[cfg(not(unix))]
        ShutdownSignal {}
    }

    /// Returns once either signal has arrived (at once if one already has).
    pub async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `host activate` without a flag: what the flows are, instead of one required flag that
/// hides the other.
fn activate_choices(data: &std::path::Path) -> ApiError {
    let d = data.display();
    ApiError::with_details(
        ErrorCode::BadRequest,
        format!(
            "`host activate` needs --request-out or --response: offline activation takes two steps.\n  1. volact host activate --data {d} --request-out request.json   (take request.json to the vendor)\n  2. volact host activate --data {d} --response response.json     (install the vendor's answer)"
        ),
        serde_json::json!({ "choices": ["--request-out", "--response"] }),
    )
}

/// What `host init` and `host tls-init` say about the certificate they made.
fn tls_text(tls: &volact_host::tls::TlsInit) -> String {
    format!(
        "TLS certificate: {} (key {}, mode 0600) for {}\nIts SHA-256 fingerprint (clients pin it with --tls-fingerprint):\n  {}\n",
        tls.cert_file.display(),
        tls.key_file.display(),
        tls.names.join(", "),
        tls.fingerprint
    )
}

/// The TLS address and certificate fingerprint: the serving host's, else the files'.
fn tls_status(host: &HostData, config: &volact_engine::config::HostConfig) -> serde_json::Value {
    if let Some(s) = host.serving()
        && s.tls_url.is_some()
    {
        return serde_json::json!({ "url": s.tls_url, "fingerprint": s.tls_fingerprint });
    }
    match &config.tls.listener {
        Some(l) => match volact_host::tls::load(&l.cert_file, &l.key_file) {
            Ok(key) => {
                serde_json::json!({ "url": null, "fingerprint": volact_host::tls::fingerprint(&key) })
            }
            Err(e) => serde_json::json!({ "url": null, "fingerprint": null, "error": e.message }),
        },
        None => serde_json::json!({ "url": null, "fingerprint": null }),
    }
}

/// The vendor service URL of the host's catalog (signed by the vendor), for
/// `host activate --online` without `--vendor-url`.
fn service_url(host: &HostData) -> Result<String, ApiError> {
    let (_, catalog) = host.vendor()?;
    catalog.service_url.ok_or_else(|| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "{}'s catalog names no activation service; give --vendor-url URL, or activate offline with --request-out",
                catalog.vendor
            ),
            serde_json::json!({ "field": "vendor-url" }),
        )
    })
}
