//! `volact status` and `volact expiry`: the license state, what is installed, the ticket,
//! the host and the last attempt, as JSON or as aligned text in the manner of
//! `slmgr /dlv` and `slmgr /xpr`.

use crate::discovery::FoundBy;
use crate::schedule::{self, human, show};
use crate::state::{Attempt, ClientState};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use volact_core::license::{LicenseInputs, LicenseState, LicenseStatus, Tamper, license_state};
use volact_proto::HostIntervals;

/// Everything `volact status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The license state, until when it holds, why, and whether expiry is near.
    #[serde(flatten)]
    pub license: LicenseStatus,
    /// The client id, once a setup key is installed.
    pub client_id: Option<String>,
    /// The product id.
    pub product: Option<String>,
    /// The product's display name.
    pub product_name: Option<String>,
    /// The application (count group) id.
    pub application: Option<String>,
    /// The application's display name.
    pub application_name: Option<String>,
    /// The last five characters of the setup key, as `slmgr` shows them.
    pub partial_key: Option<String>,
    /// The vendor's name and catalog version, if its bundle verifies.
    pub vendor: Option<VendorStatus>,
    /// The host: the pinned one, else the one that last answered.
    pub host: Option<String>,
    /// Whether `host` is pinned (discovery off).
    pub host_pinned: bool,
    /// The discovery domain.
    pub domain: Option<String>,
    /// How the host that last answered was found: pinned, the host cache, or which SRV
    /// record (with its priority and weight).
    pub host_found_by: Option<FoundBy>,
    /// Whether the host cache is on (the last host is asked first).
    pub host_cache: bool,
    /// The DNS server discovery asks; the system's when `None`.
    pub dns_server: Option<String>,
    /// Whether `dns_server` was given for this command (`--dns-server` or
    /// `VOLACT_DNS_SERVER`) rather than saved with `set-dns-server`.
    #[serde(default)]
    pub dns_server_given: bool,
    /// The held ticket, verified against the vendor root.
    pub ticket: Option<TicketStatus>,
    /// Why a stored ticket was not accepted, if it was not.
    pub ticket_problem: Option<String>,
    /// The last activation attempt.
    pub last_attempt: Option<Attempt>,
    /// The intervals in force: the last host's, or the defaults.
    pub intervals: HostIntervals,
    /// Whether `intervals` were heard from a host (otherwise they are the defaults).
    pub intervals_from_host: bool,
    /// When the client should next contact a host.
    pub next_attempt: Option<Timestamp>,
    /// Rearms this installation has made.
    pub rearms: Option<u32>,
    /// The most rearms the product's signed catalog allows.
    pub rearm_limit: Option<u32>,
    /// The client id before the last rearm, sent to hosts with every request.
    pub previous_client_id: Option<String>,
    /// The latest time this client's clock is known to have reached; a clock reading
    /// earlier than this (by more than a few minutes) is `clock-rollback`.
    pub clock_seen: Option<Timestamp>,
}

/// The vendor behind the installed product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorStatus {
    /// Vendor name from the signed catalog.
    pub name: String,
    /// Catalog version.
    pub catalog_version: u64,
}

/// The held ticket and the certificate of the host that signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketStatus {
    /// Ticket id.
    pub ticket_id: String,
    /// The signing host's id.
    pub host_id: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum that applied.
    pub minimum: u32,
    /// Issued at.
    pub issued_at: Timestamp,
    /// When to renew.
    pub renew_after: Timestamp,
    /// When it ends.
    pub valid_until: Timestamp,
    /// The host certificate's host key id.
    pub host_key_id: String,
    /// The customer the host key was issued to.
    pub customer: String,
    /// When the host certificate expires.
    pub certificate_expires: Timestamp,
}

/// The client's status at `now`. A stored ticket counts only if it verifies against the
/// vendor root and names this client and product; the product, its grace and its rearm
/// limit come from the vendor's signed catalog, never from copies in the state; a state
/// read as tampered, or a clock behind the latest time the client has seen, is never
/// licensed nor in a grace.
pub fn status(state: &ClientState, now: Timestamp) -> Status {
    let installed = state.installed.as_ref();
    let signed = installed.and_then(|i| i.signed().ok());
    let (held, ticket_problem) = match schedule::held_ticket(state) {
        Ok(held) => (held, None),
        Err(problem) => (None, Some(problem)),
    };
    // An installed key its own signed catalog does not vouch for is an edit, whether or
    // not the state came through `load`.
    let tamper = state
        .tamper
        .or((installed.is_some() && signed.is_none()).then_some(Tamper::Edited));
    let license = license_state(
        &LicenseInputs {
            installed_at: installed.map(|i| i.installed_at),
            grace_days: signed.as_ref().map_or(0, |(_, _, p)| p.grace_days),
            grace_forfeited: state.guard.grace_forfeited,
            ticket_valid_until: held.as_ref().map(|(t, _)| t.exp),
            ticket_issued_at: held.as_ref().map(|(t, _)| t.iat),
            max_clock_skew: schedule::settings(state.intervals.as_ref()).max_clock_skew,
            latest_trusted: state.latest_trusted(),
            tamper,
        },
        now,
    );
    let vendor = signed.as_ref().map(|(_, c, _)| VendorStatus {
        name: c.vendor.clone(),
        catalog_version: c.version,
    });
    let product = signed.as_ref().map(|(_, _, p)| p);
    let next_attempt = schedule::next_attempt(state, held.as_ref().map(|(t, _)| t), now);
    let ticket = held.map(|(t, c)| TicketStatus {
        ticket_id: t.jti,
        host_id: t.iss,
        count: t.count,
        minimum: t.minimum,
        issued_at: t.iat,
        renew_after: t.renew_after,
        valid_until: t.exp,
        host_key_id: c.key_id,
        customer: c.customer,
        certificate_expires: c.exp,
    });
    let key = installed.map(|i| i.setup_key.as_str().to_string());
    Status {
        license,
        client_id: installed.map(|i| i.client_id.clone()),
        product: product.map(|p| p.id.clone()),
        product_name: product.map(|p| p.name.clone()),
        application: product.map(|p| p.application.clone()),
        application_name: signed
            .as_ref()
            .map(|(_, c, p)| c.application_name(&p.application)),
        partial_key: key.map(|k| {
            k.chars()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        }),
        vendor,
        host: state
            .pinned_host
            .clone()
            .or_else(|| state.last_host.clone()),
        host_pinned: state.pinned_host.is_some(),
        domain: state.domain.clone(),
        host_found_by: state.last_host_found_by.clone(),
        host_cache: state.use_host_cache,
        dns_server: state.dns_server.clone(),
        dns_server_given: false,
        ticket,
        ticket_problem,
        last_attempt: state.last_attempt.clone(),
        intervals: state
            .intervals
            .unwrap_or_else(|| schedule::settings(None).intervals()),
        intervals_from_host: state.intervals.is_some(),
        next_attempt,
        rearms: installed.map(|_| state.guard.rearms),
        rearm_limit: product.map(|p| p.rearm_limit()),
        previous_client_id: state.guard.previous_client_id.clone(),
        clock_seen: state.latest_trusted(),
    }
}

/// Collects `Name: value` lines and aligns the values in one column.
struct Lines(Vec<(String, String)>);

impl Lines {
    fn add(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }

    fn render(&self) -> String {
        let width = self.0.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
        let mut out = String::new();
        for (name, value) in &self.0 {
            out.push_str(&format!("{:<width$}{value}\n", format!("{name}:")));
        }
        out
    }
}

fn secs(s: u64) -> String {
    human(SignedDuration::from_secs(
        i64::try_from(s).unwrap_or(i64::MAX),
    ))
}

impl Status {
    /// The status as a command with `--dns-server ADDR` sees it: discovery asks `addr`,
    /// whatever `set-dns-server` saved.
    pub fn with_dns_server(mut self, addr: std::net::SocketAddr) -> Status {
        self.dns_server = Some(addr.to_string());
        self.dns_server_given = true;
        self
    }

    /// The status as aligned `Name: value` lines, like `slmgr /dli` (or `/dlv` when
    /// `verbose`, which adds ids, the host certificate, the vendor and the intervals).
    pub fn render_text(&self, verbose: bool) -> String {
        let mut l = Lines(Vec::new());
        l.add("License state", self.license.state.as_str());
        if let Some(until) = self.license.until {
            l.add("Until", show(until));
        }
        l.add("Reason", self.license.reason.clone());
        if self.license.expiry_warning {
            l.add(
                "Warning",
                "the ticket ends within 30 days; make sure a host is reachable so it renews",
            );
        }
        if let Some(problem) = &self.ticket_problem {
            l.add("Ticket problem", problem.clone());
        }
        if let (Some(name), Some(id)) = (&self.product_name, &self.product) {
            l.add("Product", format!("{name} ({id})"));
        }
        if let (Some(name), Some(id)) = (&self.application_name, &self.application) {
            l.add("Application", format!("{name} ({id})"));
        }
        if let Some(id) = &self.client_id {
            l.add("Client id", id.clone());
        }
        if verbose {
            if let Some(id) = &self.previous_client_id {
                l.add("Previous client id", id.clone());
            }
            if let (Some(n), Some(limit)) = (self.rearms, self.rearm_limit) {
                l.add("Rearms", format!("{n} of {limit}"));
            }
            if let Some(seen) = self.clock_seen {
                l.add("Clock last seen", show(seen));
            }
        }
        if let Some(key) = &self.partial_key {
            l.add("Partial setup key", key.clone());
        }
        match &self.host {
            Some(h) if self.host_pinned => l.add("Host", format!("{h} (pinned)")),
            Some(h) => l.add("Host", format!("{h} (last to answer; discovery on)")),
            None => l.add("Host", "none pinned; discovery"),
        }
        if verbose {
            if let Some(how) = &self.host_found_by {
                l.add("Host found by", how.to_string());
            }
            if !self.host_pinned {
                l.add(
                    "Discovery domain",
                    self.domain
                        .clone()
                        .unwrap_or_else(|| "the machine's DNS search domains".into()),
                );
                l.add(
                    "DNS server",
                    match &self.dns_server {
                        Some(d) if self.dns_server_given => {
                            format!("{d} (given on this command)")
                        }
                        Some(d) => d.clone(),
                        None => "the system's".into(),
                    },
                );
                l.add(
                    "Host cache",
                    if self.host_cache {
                        "on (the last host is asked first)"
                    } else {
                        "off (volact host-cache on)"
                    },
                );
            }
        }
        let seen = self
            .ticket
            .as_ref()
            .map(|t| (t.count, t.minimum))
            .or_else(|| {
                self.last_attempt
                    .as_ref()
                    .and_then(|a| a.count.zip(a.minimum))
            });
        if let Some((count, minimum)) = seen {
            l.add("Count seen", format!("{count} of {minimum}"));
        }
        if let Some(t) = &self.ticket {
            l.add("Ticket issued", show(t.issued_at));
            l.add("Renew after", show(t.renew_after));
            l.add("Valid until", show(t.valid_until));
            if verbose {
                l.add("Ticket id", t.ticket_id.clone());
                l.add("Host id", t.host_id.clone());
                l.add(
                    "Host certificate",
                    format!(
                        "host key {} for {}, expires {}",
                        t.host_key_id,
                        t.customer,
                        show(t.certificate_expires)
                    ),
                );
            }
        }
        if let Some(a) = &self.last_attempt {
            let at = if a.host.is_empty() {
                String::new()
            } else {
                format!(" at {}", a.host)
            };
            l.add("Last attempt", format!("{}{at}: {}", show(a.at), a.result));
            if !a.succeeded() || verbose {
                l.add("Last message", a.message.clone());
            }
        }
        if let Some(next) = self.next_attempt {
            l.add("Next attempt", show(next));
        }
        if verbose {
            if let Some(v) = &self.vendor {
                l.add(
                    "Vendor",
                    format!("{} (catalog version {})", v.name, v.catalog_version),
                );
            }
            let from = if self.intervals_from_host {
                "from the host"
            } else {
                "defaults"
            };
            let i = &self.intervals;
            l.add("Intervals", from);
            l.add("  Renewal", secs(i.renew_interval_secs));
            l.add("  Retry", secs(i.retry_interval_secs));
            l.add("  Ticket validity", secs(i.ticket_validity_secs));
            l.add("  Count window", secs(i.count_window_secs));
            l.add("  Max clock skew", secs(i.max_clock_skew_secs));
        }
        l.render()
    }
}

/// What `volact expiry` shows: when the current state ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// The license state.
    pub state: LicenseState,
    /// The ticket's end while licensed.
    pub valid_until: Option<Timestamp>,
    /// The end of the grace the client is in, if it is in one.
    pub grace_ends: Option<Timestamp>,
    /// One sentence for a person.
    pub text: String,
}

/// When the activation (or the grace the client is in) ends, like `slmgr /xpr`.
pub fn expiry(state: &ClientState, now: Timestamp) -> Expiry {
    let s = status(state, now);
    let left = |t: Timestamp| human(t.duration_since(now));
    let (valid_until, grace_ends, text) = match (s.license.state, s.license.until) {
        (LicenseState::Licensed, Some(t)) => (
            Some(t),
            None,
            format!(
                "Volume activation will expire {} ({} from now).",
                show(t),
                left(t)
            ),
        ),
        (LicenseState::InitialGrace, Some(t)) => (
            None,
            Some(t),
            format!(
                "Not activated yet; the initial grace ends {} ({} from now).",
                show(t),
                left(t)
            ),
        ),
        (LicenseState::OutOfToleranceGrace, Some(t)) => (
            None,
            Some(t),
            format!(
                "The activation expired; the out-of-tolerance grace ends {} ({} from now).",
                show(t),
                left(t)
            ),
        ),
        (LicenseState::Unlicensed, _) => (
            None,
            None,
            "No setup key is installed; run `volact install-key KEY --vendor FILE`.".to_string(),
        ),
        (LicenseState::ClockRollback, Some(t)) => (
            None,
            None,
            format!(
                "Not licensed: this machine's clock was set back. It clears once the clock passes {} ({} from now), or at the next successful activation.",
                show(t),
                left(t)
            ),
        ),
        (LicenseState::StateTampered, _) => {
            (None, None, format!("Not licensed: {}", s.license.reason))
        }
        _ => (
            None,
            None,
            format!("Not activated and no grace remains: {}", s.license.reason),
        ),
    };
    Expiry {
        state: s.license.state,
        valid_until,
        grace_ends,
        text,
    }
}
