//! DNS on both sides. Client: the discovery flags (`--dns-server`, `--no-host-cache`,
//! `--connect-timeout`) and settings (`host-cache`, `set-dns-server`,
//! `clear-dns-server`). Host: `host dns-record`, `host publish-dns`, `host
//! unpublish-dns`, and publishing while `host serve` runs.

use crate::cli::DataDir;
use crate::output::Output;
use clap::Args;
use std::path::Path;
use std::time::Duration;
use volact_client::{ActivateOptions, ClientState};
use volact_engine::config::RawConfig;
use volact_engine::data::HostData;
use volact_engine::dns::{self, PublishRaw, PublishResult, Publisher};
use volact_proto::{ApiError, ErrorCode};

/// First retry after a failed publish; it doubles up to 15 minutes.
const PUBLISH_RETRY_FIRST: Duration = Duration::from_secs(10);

/// Discovery flags of the commands that look for a host (and `status`, which shows them).
#[derive(Debug, Clone, Default, Args)]
pub struct DiscoveryFlags {
    /// DNS server for host discovery, ADDR[:PORT]; overrides `volact set-dns-server`.
    #[arg(long, env = "VOLACT_DNS_SERVER", value_name = "ADDR:PORT")]
    pub dns_server: Option<String>,
    /// Do not ask the host that answered last time first (see `volact host-cache`).
    #[arg(long)]
    pub no_host_cache: bool,
    /// How long to wait for a host's connection before trying the next, e.g. 2s.
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// For https:// hosts: trust exactly the certificate with this SHA-256 fingerprint
    /// (what `volact host init` printed on the host).
    #[arg(long, env = "VOLACT_TLS_FINGERPRINT", value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    /// For https:// hosts: trust certificates issued by the CAs in this PEM file
    /// [default: the system's certificate authorities].
    #[arg(
        long,
        env = "VOLACT_CA_FILE",
        value_name = "PEM",
        conflicts_with = "tls_fingerprint"
    )]
    pub ca_file: Option<std::path::PathBuf>,
}

impl DiscoveryFlags {
    /// The activation options these flags ask for.
    pub fn options(&self) -> Result<ActivateOptions, ApiError> {
        let mut options = ActivateOptions {
            no_host_cache: self.no_host_cache,
            tls: volact_client::tls::TlsTrust::from_flags(
                self.tls_fingerprint.as_deref(),
                self.ca_file.as_deref(),
            )?,
            ..ActivateOptions::default()
        };
        if let Some(text) = &self.dns_server {
            options.dns_server = Some(volact_client::parse_dns_server(text)?);
        }
        if let Some(text) = &self.connect_timeout {
            let d = volact_core::settings::parse_duration(text)?;
            let ms = u64::try_from(d.as_millis()).unwrap_or(0);
            if !(100..=120_000).contains(&ms) {
                return Err(ApiError::bad_request(
                    "connect-timeout",
                    format!("`{text}` is outside 100ms–2m"),
                ));
            }
            options.connect_timeout = Duration::from_millis(ms);
        }
        Ok(options)
    }
}

/// `host dns-record` flags; each overrides `[dns.publish]` of `volact.toml`.
#[derive(Debug, Clone, Default, Args)]
pub struct DnsRecordFlags {
    /// Discovery domain: clients look up _volact._tcp.DOMAIN.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// SRV priority (lower is preferred; default 0).
    #[arg(long)]
    pub priority: Option<u16>,
    /// SRV weight among hosts of one priority (default 0).
    #[arg(long)]
    pub weight: Option<u16>,
    /// The host name clients connect to (default: this machine's).
    #[arg(long, value_name = "HOSTNAME")]
    pub name: Option<String>,
    /// The port clients connect to (default: the listen port).
    #[arg(long)]
    pub port: Option<u16>,
    /// TTL in seconds (default 3600).
    #[arg(long)]
    pub ttl: Option<u32>,
    /// Also print an A/AAAA record for the host name with this address.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
}

/// `host-cache on|off`.
pub fn host_cache(path: &Path, switch: &str, out: Output) -> Result<(), ApiError> {
    let mut s = ClientState::load(path)?;
    let on = switch == "on";
    volact_client::set_host_cache(&mut s, on);
    s.save(path)?;
    out.result(&serde_json::json!({ "host_cache": on }), || {
        if on {
            "Host cache on: the host that answered last is asked first.\n".into()
        } else {
            "Host cache off: every activation follows DNS discovery's order.\n".into()
        }
    });
    Ok(())
}

/// `set-dns-server ADDR[:PORT]`.
pub fn set_dns_server(path: &Path, server: &str, out: Output) -> Result<(), ApiError> {
    let mut s = ClientState::load(path)?;
    let addr = volact_client::set_dns_server(&mut s, server)?;
    s.save(path)?;
    out.result(&serde_json::json!({ "dns_server": addr }), || {
        format!("Discovery asks the DNS server {addr}.\n")
    });
    Ok(())
}

/// `clear-dns-server`.
pub fn clear_dns_server(path: &Path, out: Output) -> Result<(), ApiError> {
    let mut s = ClientState::load(path)?;
    volact_client::clear_dns_server(&mut s);
    s.save(path)?;
    out.result(&serde_json::json!({ "dns_server": null }), || {
        "Discovery asks the system's DNS servers.\n".into()
    });
    Ok(())
}

/// The port clients reach this host on: the running host's, else the configured one.
fn serving_port(host: &HostData) -> Result<u16, ApiError> {
    if let Some(info) = host.serving()
        && let Some(port) = info
            .url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
    {
        return Ok(port);
    }
    Ok(host.config(RawConfig::default())?.listen.port())
}

/// The port of the host's TLS listener: where it serves, else as configured (none when
/// it has no TLS or asks for any free port).
fn tls_port(host: &HostData) -> Result<Option<u16>, ApiError> {
    if let Some(info) = host.serving()
        && let Some(url) = &info.tls_url
    {
        return Ok(url.rsplit_once(':').and_then(|(_, p)| p.parse().ok()));
    }
    Ok(host
        .config(RawConfig::default())?
        .tls
        .listener
        .map(|l| l.listen.port())
        .filter(|p| *p != 0))
}

fn no_section(host: &HostData) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        format!(
            "{} has no [dns.publish] section: add one with at least `server = \"ADDR:PORT\"` and `zone = \"ZONE\"` (and `key_file` for a TSIG key), or add the record by hand (`volact host dns-record --data {}`)",
            host.config_path().display(),
            host.dir().display()
        ),
    )
}

fn show(result: &PublishResult, out: Output) {
    out.result(result, || format!("{}\n", result.message));
}

/// `host dns-record`: the SRV record (zone-file lines) for this host.
pub fn record(data: &DataDir, record: DnsRecordFlags, out: Output) -> Result<(), ApiError> {
    let host = HostData::new(&data.data);
    let section = dns::publish_section(&host)?.unwrap_or_default();
    let over = PublishRaw {
        domain: record.domain,
        name: record.name,
        port: record.port,
        priority: record.priority,
        weight: record.weight,
        ttl: record.ttl,
        address: record.address,
        ..PublishRaw::default()
    };
    let mut srv = section.record(&over, serving_port(&host)?)?;
    // A host serving TLS is also published under `_volact-tls._tcp`, which clients
    // given a TLS trust look up first and ask over https://.
    srv.tls_port = tls_port(&host)?;
    let lines = srv.zone_lines();
    let report = serde_json::json!({
        "owner": srv.owner(),
        "target": srv.name,
        "port": srv.port,
        "priority": srv.priority,
        "weight": srv.weight,
        "ttl": srv.ttl,
        "address": srv.address,
        "records": lines,
    });
    out.result(&report, || {
        format!(
            "; Add to the zone of {} so clients find this host (or configure [dns.publish] and run `volact host publish-dns`):\n{}\n",
            srv.domain,
            lines.join("\n")
        )
    });
    Ok(())
}

/// `host publish-dns` (`publish` true) or `host unpublish-dns`: one dynamic DNS update now.
pub async fn publish_now(data: &DataDir, publish: bool, out: Output) -> Result<(), ApiError> {
    let host = HostData::new(&data.data);
    let config = dns::publish_config(&host, serving_port(&host)?, tls_port(&host)?)?
        .ok_or_else(|| no_section(&host))?;
    let store = command_store(&host).await?;
    let result = if publish {
        dns::publish(&host, store.as_ref(), &config).await
    } else {
        dns::unpublish(&host, store.as_ref(), &config).await
    };
    store.close().await;
    show(&result?, out);
    Ok(())
}

/// The store a DNS command records its result in: straight to the database, since a
/// serving host may own the store's journal.
async fn command_store(
    host: &HostData,
) -> Result<std::sync::Arc<dyn volact_store::Store>, ApiError> {
    let config = host.config(RawConfig::default())?;
    volact_engine::storage::open_configured(
        &config,
        host.dir(),
        volact_engine::storage::OpenMode::Direct,
    )
    .await
}

/// Starts publishing for `host serve` when `[dns.publish]` is configured and the host can
/// activate (a host that refuses every client must not attract them).
pub fn start_publishing(
    host: &HostData,
    store: std::sync::Arc<dyn volact_store::Store>,
    port: u16,
    tls_port: Option<u16>,
    ready: bool,
) -> Result<Option<Publisher>, ApiError> {
    let Some(config) = dns::publish_config(host, port, tls_port)? else {
        return Ok(None);
    };
    if !ready {
        tracing::warn!(
            "not publishing in DNS: this host cannot activate clients yet (see the warning above)"
        );
        return Ok(None);
    }
    Ok(Some(Publisher::start(
        host,
        store,
        config,
        PUBLISH_RETRY_FIRST,
    )))
}

/// Stops publishing; removes the records unless `keep_on_shutdown`. Failures are logged
/// (and recorded) by the publisher; shutting down goes on regardless.
pub async fn stop_publishing(publisher: Option<Publisher>) {
    if let Some(p) = publisher {
        let _ = p.shutdown().await;
    }
}
