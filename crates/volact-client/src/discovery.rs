//! Finding hosts in DNS: `_volact._tcp.DOMAIN` SRV records, ordered as RFC 2782 says
//! (ascending priority, weighted at random within a priority), each target's addresses
//! resolved through the same DNS server so a test zone never leaks to the system resolver.

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use volact_core::util::printable;

/// The service label clients look up: `_volact._tcp.DOMAIN`.
pub const SRV_SERVICE: &str = "_volact._tcp";
/// The service label of hosts serving TLS: `_volact-tls._tcp.DOMAIN`. Its targets are
/// asked over `https://`; a client looks it up (before the plain one) when it was told
/// whom to trust for TLS (`--tls-fingerprint` or `--ca-file`).
pub const SRV_SERVICE_TLS: &str = "_volact-tls._tcp";

/// How long one DNS query may take before the server counts as not answering.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Most SRV records taken from one answer; a zone with more is misconfigured, and each
/// one costs a connection attempt.
const MAX_RECORDS: usize = 32;

/// How a host came to be asked. Recorded with the host that last answered, so `volact
/// status --verbose` can say where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum FoundBy {
    /// The host pinned with `set-host`.
    Pinned,
    /// The host cache: the host that answered last time.
    Cache,
    /// An SRV record.
    Srv {
        /// The record's owner name, `_volact._tcp.DOMAIN`.
        record: String,
        /// Its priority (lower is preferred).
        priority: u16,
        /// Its weight within the priority.
        weight: u16,
    },
    /// Given by the caller of the library.
    Given,
}

impl fmt::Display for FoundBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoundBy::Pinned => write!(f, "pinned with set-host"),
            FoundBy::Cache => write!(f, "host cache (the host that answered last time)"),
            FoundBy::Srv {
                record,
                priority,
                weight,
            } => write!(
                f,
                "DNS SRV record {record} (priority {priority}, weight {weight})"
            ),
            FoundBy::Given => write!(f, "given by the caller"),
        }
    }
}

/// One host to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `host:port` as shown and remembered.
    pub host: String,
    /// The addresses to connect to; empty means the system resolves `host`.
    pub addrs: Vec<SocketAddr>,
    /// How it was found.
    pub found_by: FoundBy,
}

impl Candidate {
    /// A host the system resolves, as a pinned host is.
    pub fn plain(host: impl Into<String>, found_by: FoundBy) -> Candidate {
        Candidate {
            host: host.into(),
            addrs: Vec::new(),
            found_by,
        }
    }
}

/// One SRV record's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrvTarget {
    /// The record's owner name.
    pub record: String,
    /// Target host name, lower case, without the trailing dot.
    pub target: String,
    /// Port.
    pub port: u16,
    /// Priority.
    pub priority: u16,
    /// Weight.
    pub weight: u16,
}

/// What looking up one name gave, for the `no-host-found` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LookedUp {
    /// The name looked up, e.g. `_volact._tcp.corp.example.com (SRV)`.
    pub name: String,
    /// What came of it, e.g. `2 records` or `the name does not exist (NXDOMAIN)`.
    pub result: String,
}

/// A source of random numbers for the weighted order; injectable so tests are exact.
pub trait WeightRng: Send {
    /// A number uniformly distributed in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64;
}

/// SplitMix64: small, fast and good enough to spread load; not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator that always gives the same sequence for `seed`.
    pub fn from_seed(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// A generator seeded by the operating system (or the clock, if that fails).
    pub fn from_os() -> SplitMix {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes = (nanos as u64).to_le_bytes();
        }
        SplitMix(u64::from_le_bytes(bytes))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl WeightRng for SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Rejection sampling: plain `next() % n` would favour small values.
        let zone = u64::MAX - (u64::MAX % n);
        for _ in 0..64 {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
        self.next() % n
    }
}

/// Orders SRV targets as RFC 2782 says: ascending priority; within a priority, each
/// next target is drawn with probability proportional to its weight. Weight-0 targets
/// come after the weighted ones of their priority, in random order, so a weight of 0
/// means "only when the weighted ones fail".
pub fn order_srv(mut records: Vec<SrvTarget>, rng: &mut dyn WeightRng) -> Vec<SrvTarget> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let end = rest
            .iter()
            .position(|r| r.priority != first.priority)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(end);
        let mut group = group.to_vec();
        shuffle(&mut group, rng);
        let mut sum: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
        while sum > 0 {
            let pick = rng.below(sum);
            let mut running = 0u64;
            let mut chosen = 0;
            for (i, r) in group.iter().enumerate() {
                running += u64::from(r.weight);
                if running > pick {
                    chosen = i;
                    break;
                }
            }
            let r = group.remove(chosen);
            sum -= u64::from(r.weight);
            out.push(r);
        }
        out.extend(group);
        rest = tail;
    }
    out
}

fn shuffle<T>(items: &mut [T], rng: &mut dyn WeightRng) {
    for i in (1..items.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// How to reach DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsOptions {
    /// The DNS server to ask; `None` means the system's (from `/etc/resolv.conf`).
    pub server: Option<SocketAddr>,
    /// How long one query may take.
    pub timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            server: None,
            timeout: DNS_TIMEOUT,
        }
    }
}

/// A DNS resolver for discovery: the given server, or the system's.
pub struct Dns {
    resolver: TokioResolver,
    server: String,
}

impl Dns {
    /// Sets up the resolver. Fails when no server is given and the system has none.
    pub fn new(options: &DnsOptions) -> Result<Dns, String> {
        let (mut builder, server) = match options.server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                (
                    Resolver::builder_with_config(
                        ResolverConfig::from_name_servers(vec![ns]),
                        TokioRuntimeProvider::default(),
                    ),
                    addr.to_string(),
                )
            }
            None => (
                Resolver::builder_tokio().map_err(|e| {
                    format!("cannot read the system's DNS configuration ({e}); pass --dns-server ADDR:PORT")
                })?,
                "the system's DNS servers".to_string(),
            ),
        };
        let opts = builder.options_mut();
        opts.timeout = options.timeout;
        opts.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Dns { resolver, server })
    }

    /// Which server is asked, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The SRV targets of `_volact._tcp.DOMAIN`, unordered.
    pub async fn srv(&self, domain: &str) -> Result<Vec<SrvTarget>, String> {
        self.srv_of(srv_name(domain)).await
    }

    /// The SRV targets of `record`, unordered.
    async fn srv_of(&self, record: String) -> Result<Vec<SrvTarget>, String> {
        let lookup = self
            .resolver
            .srv_lookup(format!("{record}."))
            .await
            .map_err(|e| describe(&e, "SRV"))?;
        let mut out = Vec::new();
        for answer in lookup.answers().iter().take(MAX_RECORDS) {
            if let RData::SRV(srv) = &answer.data {
                out.push(SrvTarget {
                    record: record.clone(),
                    target: host_name(&srv.target.to_ascii()),
                    port: srv.port,
                    priority: srv.priority,
                    weight: srv.weight,
                });
            }
        }
        Ok(out)
    }

    /// The addresses of `name` (A and AAAA), with `port`.
    pub async fn addrs(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lookup = self
            .resolver
            .lookup_ip(format!("{name}."))
            .await
            .map_err(|e| describe(&e, "address"))?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err("it has no address records".into());
        }
        Ok(addrs)
    }
}

/// `_volact._tcp.DOMAIN`.
pub fn srv_name(domain: &str) -> String {
    format!("{SRV_SERVICE}.{}", host_name(domain))
}

/// A DNS name as volact shows it: lower case, no trailing dot, and nothing a terminal
/// would act on (a name from a DNS answer is the network's text).
fn host_name(name: &str) -> String {
    printable(&name.trim_end_matches('.').to_ascii_lowercase())
}

fn describe(e: &NetError, what: &str) -> String {
    if e.is_nx_domain() {
        "the name does not exist (NXDOMAIN)".into()
    } else if e.is_no_records_found() {
        format!("the name has no {what} records")
    } else if matches!(e, NetError::Timeout) {
        "the DNS server did not answer in time".into()
    } else {
        printable(&format!("the lookup failed: {e}"))
    }
}

/// The machine's DNS search domains (`search`, else `domain`, in `/etc/resolv.conf`).
pub fn system_search_domains() -> Vec<String> {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => {
            let mut out: Vec<String> = Vec::new();
            let names = config.search().iter().chain(config.domain());
            for name in names {
                let d = host_name(&name.to_ascii());
                if !d.is_empty() && !out.contains(&d) {
                    out.push(d);
                }
            }
            out
        }
        Err(_) => Vec::new(),
    }
}

/// What discovery found: the hosts in the order to ask them, and every name it looked up.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The hosts, in order.
    pub candidates: Vec<Candidate>,
    /// Every lookup and its result.
    pub looked_up: Vec<LookedUp>,
}

/// Looks up `_volact._tcp.D` for each domain `D` in turn, orders each answer (RFC 2782)
/// and resolves each target's addresses. Targets whose names do not resolve are left out
/// and reported in `looked_up`.
pub async fn discover(dns: &Dns, domains: &[String], rng: &mut dyn WeightRng) -> Discovered {
    discover_with(dns, domains, rng, false).await
}

/// [`discover`], looking up `_volact-tls._tcp.D` before `_volact._tcp.D` with `tls`;
/// the TLS record's targets become `https://target:port` candidates.
pub async fn discover_with(
    dns: &Dns,
    domains: &[String],
    rng: &mut dyn WeightRng,
    tls: bool,
) -> Discovered {
    let mut found = Discovered::default();
    let services: &[(&str, &str)] = if tls {
        &[(SRV_SERVICE_TLS, "https://"), (SRV_SERVICE, "")]
    } else {
        &[(SRV_SERVICE, "")]
    };
    for domain in domains {
        for (service, scheme) in services {
            discover_service(dns, domain, service, scheme, rng, &mut found).await;
        }
    }
    found
}

async fn discover_service(
    dns: &Dns,
    domain: &str,
    service: &str,
    scheme: &str,
    rng: &mut dyn WeightRng,
    found: &mut Discovered,
) {
    {
        let record = format!("{service}.{}", host_name(domain));
        let targets = match dns.srv_of(record.clone()).await {
            Ok(t) => t,
            Err(why) => {
                found.looked_up.push(LookedUp {
                    name: format!("{record} (SRV)"),
                    result: why,
                });
                return;
            }
        };
        found.looked_up.push(LookedUp {
            name: format!("{record} (SRV)"),
            result: match targets.len() {
                1 => "1 record".to_string(),
                n => format!("{n} records"),
            },
        });
        for t in order_srv(targets, rng) {
            // RFC 2782: a target of "." means the service is decidedly not offered here.
            if t.target.is_empty() {
                continue;
            }
            let host = format!("{scheme}{}:{}", t.target, t.port);
            if found.candidates.iter().any(|c| c.host == host) {
                continue;
            }
            match dns.addrs(&t.target, t.port).await {
                Ok(addrs) => found.candidates.push(Candidate {
                    host,
                    addrs,
                    found_by: FoundBy::Srv {
                        record: t.record.clone(),
                        priority: t.priority,
                        weight: t.weight,
                    },
                }),
                Err(why) => found.looked_up.push(LookedUp {
                    name: format!("{} (A/AAAA, target of {record})", t.target),
                    result: why,
                }),
            }
        }
    }
}
