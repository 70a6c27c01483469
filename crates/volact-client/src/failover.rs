//! Which hosts to ask, in what order, and what to say when none can activate.
//!
//! A pinned host is asked alone. Otherwise the host cache (the host that answered last
//! time) goes first, and only when it cannot serve does DNS discovery run, so a working
//! cached host costs no DNS query, as with KMS. Hosts are asked in turn within the same
//! attempt until one gives an answer about this client.

use crate::activate::{ActivationOutcome, Asking, Reply, ask, no_key, record_failure, settle};
use crate::discovery::{self, Candidate, Dns, DnsOptions, FoundBy, LookedUp, SplitMix, srv_name};
use crate::http::{self, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::schedule;
use crate::state::ClientState;
use jiff::Timestamp;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use volact_core::verify::Expected;
use volact_proto::{ApiError, ErrorCode};

/// Most hosts asked in one attempt, however many DNS lists.
const MAX_HOSTS: usize = 64;

/// Settings of one activation that are not in the state file: command-line overrides and
/// timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateOptions {
    /// The DNS server for discovery (`--dns-server`); overrides the state's setting.
    pub dns_server: Option<SocketAddr>,
    /// Skip the host cache this time (`--no-host-cache`).
    pub no_host_cache: bool,
    /// How long to wait for a TCP connection before trying the next host.
    pub connect_timeout: Duration,
    /// How long one host may take to answer in all.
    pub request_timeout: Duration,
    /// How long one DNS query may take.
    pub dns_timeout: Duration,
    /// Seed of the weighted order within a priority; `None` draws one from the system, so
    /// clients spread over hosts. Tests set it to be exact.
    pub seed: Option<u64>,
    /// Whom to trust for `https://` hosts (`--tls-fingerprint`, `--ca-file`; by default the
    /// system's roots). Answers are verified by their signatures either way.
    pub tls: crate::tls::TlsTrust,
}

impl Default for ActivateOptions {
    fn default() -> Self {
        ActivateOptions {
            dns_server: None,
            no_host_cache: false,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            dns_timeout: discovery::DNS_TIMEOUT,
            seed: None,
            tls: crate::tls::TlsTrust::default(),
        }
    }
}

/// One host that could not serve, and why.
#[derive(Debug, Clone)]
pub(crate) struct Tried {
    host: String,
    found_by: FoundBy,
    error: ApiError,
}

/// The hosts still to ask, and discovery still to run.
pub(crate) struct Plan {
    queue: VecDeque<Candidate>,
    /// Domains to look up once the queue runs dry; `None` once done (or never wanted).
    domains: Option<Vec<String>>,
    dns_options: DnsOptions,
    dns: Option<Result<Dns, String>>,
    rng: SplitMix,
    looked_up: Vec<LookedUp>,
    discovered: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    tls: crate::tls::TlsTrust,
}

impl Plan {
    fn new(queue: Vec<Candidate>, domains: Option<Vec<String>>, options: &ActivateOptions) -> Plan {
        Plan {
            queue: queue.into(),
            domains,
            dns_options: DnsOptions {
                server: options.dns_server,
                timeout: options.dns_timeout,
            },
            dns: None,
            rng: options
                .seed
                .map_or_else(SplitMix::from_os, SplitMix::from_seed),
            looked_up: Vec::new(),
            discovered: false,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            tls: options.tls.clone(),
        }
    }

    /// Exactly these hosts, in order; no discovery.
    pub(crate) fn given(hosts: Vec<Candidate>, options: &ActivateOptions) -> Plan {
        Plan::new(hosts, None, options)
    }

    /// The plan for `state`: the pinned host alone; otherwise the cached host (unless the
    /// cache is off), then discovery in the set domain or the machine's search domains.
    pub(crate) fn for_state(
        state: &ClientState,
        options: &ActivateOptions,
    ) -> Result<Plan, ApiError> {
        if let Some(host) = &state.pinned_host {
            return Ok(Plan::given(
                vec![Candidate::plain(host.clone(), FoundBy::Pinned)],
                options,
            ));
        }
        let mut options = options.clone();
        if options.dns_server.is_none() {
            options.dns_server = state.dns_server_addr()?;
        }
        let mut first = Vec::new();
        if state.use_host_cache
            && !options.no_host_cache
            && let Some(host) = &state.last_host
        {
            first.push(Candidate::plain(host.clone(), FoundBy::Cache));
        }
        let domains = match &state.domain {
            Some(d) => vec![d.clone()],
            None => discovery::system_search_domains(),
        };
        Ok(Plan::new(first, Some(domains), &options))
    }

    fn ensure_dns(&mut self) {
        if self.dns.is_none() {
            self.dns = Some(Dns::new(&self.dns_options));
        }
    }

    /// The next host to ask; runs discovery when the queue is empty.
    async fn next(&mut self, tried: &[Tried]) -> Option<Candidate> {
        loop {
            if let Some(c) = self.queue.pop_front() {
                return Some(c);
            }
            let domains = self.domains.take()?;
            self.discovered = true;
            if domains.is_empty() {
                self.looked_up.push(LookedUp {
                    name: "_volact._tcp.DOMAIN (SRV)".into(),
                    result: "nothing to look up: no domain is set with `volact set-domain DOMAIN` and this machine has no DNS search domain".into(),
                });
                return None;
            }
            self.ensure_dns();
            let found = match &self.dns {
                Some(Ok(dns)) => {
                    let tls = self.tls.fingerprint.is_some() || self.tls.ca_file.is_some();
                    discovery::discover_with(dns, &domains, &mut self.rng, tls).await
                }
                Some(Err(why)) => {
                    let names: Vec<String> = domains.iter().map(|d| srv_name(d)).collect();
                    self.looked_up.push(LookedUp {
                        name: format!("{} (SRV)", names.join(", ")),
                        result: why.clone(),
                    });
                    return None;
                }
                None => return None,
            };
            self.looked_up.extend(found.looked_up);
            self.queue.extend(
                found
                    .candidates
                    .into_iter()
                    .filter(|c| !tried.iter().any(|t| t.host == c.host)),
            );
        }
    }

    /// The HTTP client for `host`. A cached host name is resolved through the discovery
    /// DNS server, like the SRV targets it came from.
    async fn client_for(&mut self, host: &mut Candidate) -> Result<reqwest::Client, ApiError> {
        if host.found_by == FoundBy::Cache
            && host.addrs.is_empty()
            && let Some((name, port)) = split_host(&host.host)
            && name.parse::<IpAddr>().is_err()
        {
            self.ensure_dns();
            if let Some(Ok(dns)) = &self.dns {
                host.addrs = dns.addrs(&name, port).await.map_err(|why| {
                    ApiError::with_details(
                        ErrorCode::HostUnreachable,
                        format!(
                            "the cached host name {name} does not resolve through {}: {why}",
                            dns.server()
                        ),
                        serde_json::json!({ "host": host.host, "cause": why }),
                    )
                })?;
            }
        }
        http::client(self.connect_timeout, self.request_timeout, host, &self.tls)
    }
}

/// `name` and `port` of `name:port` or `[v6]:port`.
fn split_host(host: &str) -> Option<(String, u16)> {
    let (name, port) = http::host_port(host).1.rsplit_once(':')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    Some((name.to_string(), port.parse().ok()?))
}

/// Activates or renews now, like `slmgr /ato`, with the given options, and records the
/// outcome in `state` (see [`crate::activate`] for saving it).
///
/// With a pinned host only that host is asked. Otherwise the cached host is asked first
/// (unless the cache is off in the state or in `options`), then the hosts that
/// `_volact._tcp.DOMAIN` SRV records name, by priority and at random by weight. A host
/// that does not answer, is not trusted or cannot activate is skipped and the next one
/// asked, as is a refusal without a valid signature; a signed refusal about the client
/// itself ends the search. When no host can serve,
/// the error is `no-host-found`, listing every name looked up and every host asked.
pub async fn activate_with(
    state: &mut ClientState,
    now: Timestamp,
    machine_name: &str,
    nonce: String,
    options: &ActivateOptions,
) -> Result<ActivationOutcome, ApiError> {
    let installed = state.installed.clone().ok_or_else(no_key)?;
    let mut plan = Plan::for_state(state, options)?;
    let asking = Asking {
        now,
        machine_name,
        nonce,
        installed: &installed,
    };
    run(state, &mut plan, asking).await
}

/// Asks the plan's hosts in turn and records the outcome.
pub(crate) async fn run(
    state: &mut ClientState,
    plan: &mut Plan,
    asking: Asking<'_>,
) -> Result<ActivationOutcome, ApiError> {
    let (root, catalog) = asking.installed.vendor.open()?;
    let request = asking.request(state);
    let expected = Expected {
        client_id: &asking.installed.client_id,
        product: &asking.installed.product,
        nonce: &request.nonce,
        minimum: asking.installed.minimum_count,
        now: asking.now,
        max_skew: schedule::settings(state.intervals.as_ref()).max_clock_skew,
        catalog: Some(&catalog),
    };
    // The vendor's newest revocation list this client has seen, verified again here.
    let mut held = state
        .guard
        .revocation_list
        .as_deref()
        .and_then(|t| volact_core::revocation::verify(&root, &catalog.vendor, t).ok());
    let mut tried: Vec<Tried> = Vec::new();
    let mut last: Option<(Candidate, Reply)> = None;
    while tried.len() < MAX_HOSTS {
        let Some(mut host) = plan.next(&tried).await else {
            break;
        };
        let (reply, newer_list) = match plan.client_for(&mut host).await {
            Err(e) => (Reply::Failed(e), None),
            Ok(client) => {
                ask(
                    &client,
                    &host.host,
                    &request,
                    &root,
                    expected,
                    held.as_ref(),
                )
                .await
            }
        };
        // A newer revocation list from a verified answer is kept, whatever the answer
        // says: it can only make the client stricter.
        if let Some(token) = newer_list {
            state.guard.revocation_list = Some(token);
            held = state
                .guard
                .revocation_list
                .as_deref()
                .and_then(|t| volact_core::revocation::verify(&root, &catalog.vendor, t).ok());
        }
        // Only a verified answer ends the search: anything unsigned or unverifiable, and
        // a host that cannot serve, sends the client to the next host, so one rogue or
        // broken host ahead of the real ones cannot stop a site from activating.
        let Reply::Failed(error) = &reply else {
            return settle(state, asking.now, &host, reply, asking.installed);
        };
        tracing::warn!(host = %host.host, found_by = %host.found_by, code = %error.code, "{}", error.message);
        tried.push(Tried {
            host: host.host.clone(),
            found_by: host.found_by.clone(),
            error: error.clone(),
        });
        last = Some((host, reply));
    }
    // One host and no discovery (a pinned host): its own error says the most.
    if tried.len() == 1
        && !plan.discovered
        && let Some((host, reply)) = last
    {
        return settle(state, asking.now, &host, reply, asking.installed);
    }
    let error = no_host_found(&tried, &plan.looked_up);
    let hosts: Vec<&str> = tried.iter().map(|t| t.host.as_str()).collect();
    record_failure(state, asking.now, hosts.join(", "), &error, None);
    Err(error)
}

/// `no-host-found`, listing every name looked up and every host tried, with why.
fn no_host_found(tried: &[Tried], looked_up: &[LookedUp]) -> ApiError {
    let mut parts = Vec::new();
    if !looked_up.is_empty() {
        let lines: Vec<String> = looked_up
            .iter()
            .map(|l| format!("{}: {}", l.name, l.result))
            .collect();
        parts.push(format!("looked up {}", lines.join("; ")));
    }
    if tried.is_empty() {
        parts.push("found no host to ask".into());
    } else {
        let lines: Vec<String> = tried
            .iter()
            .map(|t| {
                format!(
                    "{} (from {}): {} ({})",
                    t.host, t.found_by, t.error.message, t.error.code
                )
            })
            .collect();
        parts.push(format!("tried {}", lines.join("; ")));
    }
    let details_tried: Vec<serde_json::Value> = tried
        .iter()
        .map(|t| {
            serde_json::json!({
                "host": t.host,
                "found_by": t.found_by,
                "code": t.error.code,
                "message": t.error.message,
            })
        })
        .collect();
    ApiError::with_details(
        ErrorCode::NoHostFound,
        format!(
            "no host could activate this client: {}. Check that a volact host is running and published in DNS (`volact host dns-record` prints its SRV record), set the discovery domain with `volact set-domain DOMAIN`, or pin a host with `volact set-host HOST[:PORT]`",
            parts.join(". ")
        ),
        serde_json::json!({ "looked_up": looked_up, "tried": details_tried }),
    )
}

/// Every host discovery would offer now, in order, without asking any: the pinned host
/// alone, or the cached host followed by the SRV targets. For diagnostics and tests.
pub async fn candidates(
    state: &ClientState,
    options: &ActivateOptions,
) -> Result<(Vec<Candidate>, Vec<LookedUp>), ApiError> {
    let mut plan = Plan::for_state(state, options)?;
    let mut out: Vec<Candidate> = Vec::new();
    let none: Vec<Tried> = Vec::new();
    while out.len() < MAX_HOSTS {
        let Some(c) = plan.next(&none).await else {
            break;
        };
        if !out.iter().any(|o| o.host == c.host) {
            out.push(c);
        }
    }
    Ok((out, plan.looked_up))
}
