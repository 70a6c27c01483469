//! The `[dns.publish]` section of `D/volact.toml` and the SRV record it describes.
//!
//! ```toml
//! [dns.publish]
//! server = "10.0.0.2:53"            # the zone's primary, which accepts RFC 2136 updates
//! zone = "corp.example.com"
//! domain = "corp.example.com"       # default: the zone; clients look up _volact._tcp.DOMAIN
//! name = "volact1.corp.example.com" # the SRV target; default: this machine's host name
//! port = 7688                       # default: the port `host serve` listens on
//! priority = 0
//! weight = 0
//! ttl = 3600
//! key_file = "tsig.key"             # BIND key file; relative to the data directory
//! address = "10.0.0.5"              # also publish an A/AAAA record for `name`
//! keep_on_shutdown = false
//! refresh_interval = "24h"
//! ```

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use volact_core::settings::parse_duration;
use volact_proto::{ApiError, ErrorCode};

/// The service label of the SRV record: `_volact._tcp.DOMAIN`.
pub const SRV_SERVICE: &str = "_volact._tcp";
/// The SRV service of a host's TLS listener: clients given a TLS trust look it up first
/// and ask its targets over `https://`.
pub const SRV_SERVICE_TLS: &str = "_volact-tls._tcp";
/// Default TTL of published records, in seconds.
pub const DEFAULT_TTL: u32 = 3600;
/// Default interval between re-registrations (KMS re-registers daily).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// `[dns]` as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// `[dns.publish]`: register this host's SRV record by dynamic update.
    pub publish: Option<PublishRaw>,
}

/// `[dns.publish]` as written: every field optional here, checked by [`PublishRaw::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRaw {
    /// The primary server of the zone, `ADDR[:PORT]`.
    pub server: Option<String>,
    /// The zone to update.
    pub zone: Option<String>,
    /// The discovery domain (default: the zone).
    pub domain: Option<String>,
    /// The SRV target host name (default: this machine's name).
    pub name: Option<String>,
    /// The port clients connect to (default: the listen port).
    pub port: Option<u16>,
    /// SRV priority (lower is preferred).
    pub priority: Option<u16>,
    /// SRV weight within the priority.
    pub weight: Option<u16>,
    /// TTL in seconds.
    pub ttl: Option<u32>,
    /// TSIG key in BIND's key-file format.
    pub key_file: Option<PathBuf>,
    /// Address for an A/AAAA record of `name`.
    pub address: Option<String>,
    /// Keep the records when the host shuts down.
    pub keep_on_shutdown: Option<bool>,
    /// How often to register again, e.g. `24h`.
    pub refresh_interval: Option<String>,
}

/// The records to publish and where: everything checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// The zone's primary server.
    pub server: SocketAddr,
    /// The zone, lower case without the trailing dot.
    pub zone: String,
    /// What the SRV record says.
    pub record: SrvRecord,
    /// The TSIG key file, if updates are signed.
    pub key_file: Option<PathBuf>,
    /// Keep the records on shutdown.
    pub keep_on_shutdown: bool,
    /// Interval between registrations.
    pub refresh_interval: Duration,
}

/// One host's SRV record (and optional address record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// The discovery domain.
    pub domain: String,
    /// The target host name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Priority.
    pub priority: u16,
    /// Weight.
    pub weight: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// Address record of `name`, if wanted.
    pub address: Option<IpAddr>,
    /// The port of the host's TLS listener, when it has one: published too, under
    /// `_volact-tls._tcp` with the same target, priority, weight and TTL.
    pub tls_port: Option<u16>,
}

impl SrvRecord {
    /// `_volact._tcp.DOMAIN`.
    pub fn owner(&self) -> String {
        format!("{SRV_SERVICE}.{}", self.domain)
    }

    /// `_volact-tls._tcp.DOMAIN`.
    pub fn tls_owner(&self) -> String {
        format!("{SRV_SERVICE_TLS}.{}", self.domain)
    }

    /// The records as zone-file lines, as `host dns-record` prints them.
    pub fn zone_lines(&self) -> Vec<String> {
        let srv = |owner: String, port: u16| {
            format!(
                "{owner}. {} IN SRV {} {} {port} {}.",
                self.ttl, self.priority, self.weight, self.name
            )
        };
        let mut lines = vec![srv(self.owner(), self.port)];
        if let Some(port) = self.tls_port {
            lines.push(srv(self.tls_owner(), port));
        }
        if let Some(ip) = self.address {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            lines.push(format!("{}. {} IN {kind} {ip}", self.name, self.ttl));
        }
        lines
    }
}

fn bad(field: &str, why: impl Into<String>) -> ApiError {
    let why = why.into();
    ApiError::with_details(
        ErrorCode::BadRequest,
        format!("volact.toml [dns.publish] {field}: {why}"),
        serde_json::json!({ "field": format!("dns.publish.{field}"), "reason": why }),
    )
}

/// Checks a DNS name and returns it in lower case without a trailing dot.
pub fn check_name(field: &str, text: &str) -> Result<String, ApiError> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(name)
    } else {
        Err(bad(
            field,
            format!("`{text}` is not a DNS name; write it like corp.example.com"),
        ))
    }
}

/// Whether `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// This machine's host name (from the kernel), lower case; `None` when unknown.
pub fn machine_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

/// Parses `ADDR[:PORT]` (port 53 when left out).
pub fn parse_server(text: &str) -> Result<SocketAddr, ApiError> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            bad(
                "server",
                format!("`{t}` is not ADDR or ADDR:PORT (give the DNS server's IP address)"),
            )
        })
}

impl PublishRaw {
    /// The SRV record this configuration describes, with `over` (command-line flags)
    /// winning. `listen_port` is the default port. Needs only a domain (or zone).
    pub fn record(&self, over: &PublishRaw, listen_port: u16) -> Result<SrvRecord, ApiError> {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let zone = pick(&over.zone, &self.zone);
        let domain_text = pick(&over.domain, &self.domain).or(zone).or_else(|| {
            machine_host_name().and_then(|h| h.split_once('.').map(|(_, d)| d.to_string()))
        });
        let Some(domain_text) = domain_text else {
            return Err(bad(
                "domain",
                "no discovery domain: give --domain DOMAIN (or set dns.publish.zone or domain in volact.toml)",
            ));
        };
        let domain = check_name("domain", &domain_text)?;
        let name = match pick(&over.name, &self.name) {
            Some(n) => check_name("name", &n)?,
            None => {
                let host = machine_host_name().ok_or_else(|| {
                    bad(
                        "name",
                        "this machine's host name is unknown; give --name HOSTNAME",
                    )
                })?;
                let full = if host.contains('.') {
                    host
                } else {
                    format!("{host}.{domain}")
                };
                check_name("name", &full)?
            }
        };
        let port = over.port.or(self.port).unwrap_or(listen_port);
        if port == 0 {
            return Err(bad(
                "port",
                "port 0 cannot be published; give the port clients connect to",
            ));
        }
        let ttl = over.ttl.or(self.ttl).unwrap_or(DEFAULT_TTL);
        if !(1..=604_800).contains(&ttl) {
            return Err(bad(
                "ttl",
                format!("{ttl} is outside 1–604800 seconds (one week)"),
            ));
        }
        let address =
            match pick(&over.address, &self.address) {
                Some(a) => Some(a.trim().parse::<IpAddr>().map_err(|_| {
                    bad("address", format!("`{a}` is not an IPv4 or IPv6 address"))
                })?),
                None => None,
            };
        Ok(SrvRecord {
            domain,
            name,
            port,
            priority: over.priority.or(self.priority).unwrap_or(0),
            weight: over.weight.or(self.weight).unwrap_or(0),
            ttl,
            address,
            tls_port: None,
        })
    }

    /// Everything needed to publish: the record, plus server and zone (both required).
    /// A relative `key_file` is taken from `data_dir`.
    pub fn resolve(&self, data_dir: &Path, listen_port: u16) -> Result<PublishConfig, ApiError> {
        let server = self.server.as_deref().ok_or_else(|| {
            bad(
                "server",
                "missing: give the zone's primary DNS server as ADDR:PORT",
            )
        })?;
        let server = parse_server(server)?;
        let zone = self
            .zone
            .as_deref()
            .ok_or_else(|| bad("zone", "missing: give the zone to update"))?;
        let zone = check_name("zone", zone)?;
        let record = self.record(&PublishRaw::default(), listen_port)?;
        if !in_zone(&record.domain, &zone) {
            return Err(bad(
                "domain",
                format!("{} is not in zone {zone}", record.domain),
            ));
        }
        if record.address.is_some() && !in_zone(&record.name, &zone) {
            return Err(bad(
                "address",
                format!(
                    "an address record for {} cannot be published in zone {zone}; leave `address` out or use a name in the zone",
                    record.name
                ),
            ));
        }
        let refresh_interval = match &self.refresh_interval {
            None => DEFAULT_REFRESH,
            Some(text) => {
                let d = parse_duration(text).map_err(|e| bad("refresh_interval", e.message))?;
                let secs = u64::try_from(d.as_secs()).unwrap_or(0);
                if !(60..=30 * 86_400).contains(&secs) {
                    return Err(bad("refresh_interval", "must be from 1m to 30d"));
                }
                Duration::from_secs(secs)
            }
        };
        let key_file = self.key_file.as_ref().map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                data_dir.join(p)
            }
        });
        Ok(PublishConfig {
            server,
            zone,
            record,
            key_file,
            keep_on_shutdown: self.keep_on_shutdown.unwrap_or(false),
            refresh_interval,
        })
    }
}
