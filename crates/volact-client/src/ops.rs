//! The local commands: install a setup key, pin or unpin a host, set the discovery
//! domain. Each checks everything before it changes the state, so a refusal leaves the
//! state as it was.

use crate::state::{ClientState, Guard, Installed};
use jiff::Timestamp;
use serde::Serialize;
use std::net::{Ipv4Addr, Ipv6Addr};
use volact_core::catalog::VendorBundle;
use volact_core::license::Tamper;
use volact_core::setup_key::SetupKey;
use volact_proto::{ApiError, DEFAULT_PORT, ErrorCode};

/// What `install-key` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// The client id (kept from before, or new).
    pub client_id: String,
    /// Whether the client id was created by this install.
    pub new_client_id: bool,
    /// The product id.
    pub product: String,
    /// The product's display name.
    pub product_name: String,
    /// The installed setup key.
    pub setup_key: String,
    /// When the initial grace started.
    pub installed_at: Timestamp,
    /// Whether a held ticket was dropped because it was for another product or vendor,
    /// or came with a state that was not believed.
    pub ticket_dropped: bool,
    /// Why the state installed over was not believed, if it was not: the install sealed
    /// it again on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resealed: Option<Tamper>,
    /// Whether no initial grace remains (the state installed over had been edited).
    pub grace_forfeited: bool,
}

/// Installs a setup key, like `slmgr /ipk`.
///
/// `bundle` is the vendor's public bundle; it is needed the first time and replaces the
/// stored one when given again. The client id is kept if one exists (a machine keeps
/// its identity across keys, so it is not counted twice), otherwise `new_id` makes one.
/// A key of another product (or another vendor) drops the held ticket and starts that
/// product's initial grace, once per product: going back to a product installed before
/// resumes its grace where it was. Reinstalling the same product keeps both.
///
/// Over a state that is not believed, the install seals it again on this machine and
/// drops the held ticket (it may have come from another machine): an intact copy keeps
/// its record; an edited state keeps only the client id, with no initial grace and no
/// rearms left, since nothing else in it can be believed.
pub fn install_key(
    state: &mut ClientState,
    key_text: &str,
    bundle: Option<VendorBundle>,
    now: Timestamp,
    new_id: impl FnOnce() -> String,
) -> Result<InstallReport, ApiError> {
    let key = SetupKey::parse(key_text)?;
    let previous = state.installed.as_ref();
    let bundle = match (bundle, previous) {
        (Some(b), _) => b,
        (None, Some(p)) => p.vendor.clone(),
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                "no vendor bundle is known on this machine yet; pass --vendor FILE (the vendor's public bundle) with the first install-key",
            ));
        }
    };
    let (_root, catalog) = bundle.open()?;
    let product = catalog.product_for_key(&key)?;
    let tamper = state.tamper;
    let edited = tamper == Some(Tamper::Edited);

    let same_vendor = previous.is_some_and(|p| p.vendor.root_public_key == bundle.root_public_key);
    let same_product = same_vendor && previous.is_some_and(|p| p.product == product.id);
    // An edited file's client id is kept only if it is one volact could have made.
    let kept_id = previous
        .map(|p| p.client_id.clone())
        .filter(|id| !edited || uuid::Uuid::parse_str(id).is_ok());
    let (client_id, new_client_id) = match kept_id {
        Some(id) => (id, false),
        None => (new_id(), true),
    };
    let mut guard = state.guard.clone();
    let installed_at = if edited {
        guard = Guard {
            rearms: guard.rearms.max(product.rearm_limit()),
            previous_client_id: guard.previous_client_id,
            clock_seen: None,
            earlier_products: Default::default(),
            grace_forfeited: true,
            revocation_list: guard.revocation_list,
        };
        now
    } else {
        match previous {
            Some(p) if same_product => p.installed_at,
            _ => {
                if let Some(p) = previous {
                    let started = guard
                        .earlier_products
                        .entry(p.product.clone())
                        .or_insert(p.installed_at);
                    *started = (*started).min(p.installed_at);
                }
                guard.earlier_products.remove(&product.id).unwrap_or(now)
            }
        }
    };
    let drop_ticket = !same_product || tamper.is_some();
    let ticket_dropped = drop_ticket && state.ticket.is_some();
    if drop_ticket {
        state.ticket = None;
    }
    let mut installed = Installed {
        client_id: client_id.clone(),
        setup_key: key.clone(),
        product: String::new(),
        product_name: String::new(),
        application: String::new(),
        application_name: String::new(),
        minimum_count: 0,
        grace_days: 0,
        installed_at,
        vendor: bundle,
    };
    installed.copy_from(&catalog, product);
    state.installed = Some(installed);
    state.guard = guard;
    state.tamper = None;
    state.observe_clock(now);
    Ok(InstallReport {
        client_id,
        new_client_id,
        product: product.id.clone(),
        product_name: product.name.clone(),
        setup_key: key.to_string(),
        installed_at,
        ticket_dropped,
        resealed: tamper,
        grace_forfeited: state.guard.grace_forfeited,
    })
}

/// What `rearm` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RearmReport {
    /// The client id before.
    pub old_client_id: String,
    /// The new client id.
    pub client_id: String,
    /// When the new initial grace started.
    pub installed_at: Timestamp,
    /// Rearms this installation has made, this one included.
    pub rearms: u32,
    /// The most the product's catalog allows.
    pub rearm_limit: u32,
}

/// Gives the machine a new client id, like `slmgr /rearm`: for a machine cloned from a
/// disk image after its setup key was installed, whose copies all share one client id and
/// so count as one machine. The held ticket is dropped (it names the old id) and the
/// initial grace starts again; the machine is counted anew at its next activation, and
/// tells the host its old id, so a machine revoked under it stays refused.
///
/// Each installation may rearm as often as its product's signed `rearm_limit` says (3
/// unless the catalog says otherwise); past that, `invalid-state`. An edited state is
/// `state-tampered`: its rearm count cannot be believed. A copy from another machine may
/// rearm (that is what it is for), and is sealed on this machine by it.
pub fn rearm(
    state: &mut ClientState,
    now: Timestamp,
    new_id: impl FnOnce() -> String,
) -> Result<RearmReport, ApiError> {
    let installed = state.installed.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidState,
            "no setup key is installed, so there is no client id to renew; run `volact install-key KEY --vendor FILE`",
        )
    })?;
    if state.tamper == Some(Tamper::Edited) {
        return Err(ApiError::new(
            ErrorCode::StateTampered,
            "rearm refused: the client state was changed outside volact, so its rearm count cannot be believed. Run `volact install-key KEY` to install the setup key again (the machine keeps its client id, with no initial grace and no rearms left), then `volact activate`",
        ));
    }
    let (_, _, product) = installed.signed()?;
    let limit = product.rearm_limit();
    let rearms = state.guard.rearms;
    if rearms >= limit {
        return Err(ApiError::with_details(
            ErrorCode::InvalidState,
            format!(
                "rearm refused: this installation of {} has been rearmed {rearms} times, the most its vendor allows ({limit}). A rearm gives a new client id and a new initial grace, so it is limited; activate this machine against a host instead (`volact activate`). If it really is a copy of another machine and needs an id of its own, its administrator must set it up afresh",
                product.name
            ),
            serde_json::json!({ "rearms": rearms, "rearm_limit": limit, "product": product.id }),
        ));
    }
    // The last attempt goes below; its time stays as a reading of the clock.
    state.observe_clock(now);
    let Some(installed) = state.installed.as_mut() else {
        return Err(crate::activate::no_key());
    };
    let old_client_id = std::mem::replace(&mut installed.client_id, new_id());
    installed.installed_at = now;
    let client_id = installed.client_id.clone();
    let guard = &mut state.guard;
    guard.rearms = rearms.saturating_add(1);
    guard.previous_client_id = Some(old_client_id.clone());
    guard.earlier_products.clear();
    guard.grace_forfeited = false;
    state.ticket = None;
    state.last_attempt = None;
    state.tamper = None;
    Ok(RearmReport {
        old_client_id,
        client_id,
        installed_at: now,
        rearms: state.guard.rearms,
        rearm_limit: limit,
    })
}

/// What [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    /// The other machine's client id, which this one no longer uses.
    pub old_client_id: String,
    /// This machine's own client id.
    pub client_id: String,
}

/// Gives a state copied from another machine an identity of this machine's own, so that
/// the copy activates as itself instead of as the machine it came from: a new client id
/// (the old one is told to hosts, so a machine revoked under it stays refused), no held
/// ticket and no initial grace (a copy is not a fresh install, and copying a file must
/// never be a way to a grace). Unlike [`rearm`] it spends no rearm: the copy never had
/// a licence of its own to reset. `None` when the state is not a copy (nothing to do);
/// `state-tampered` for an edited state, which only `install_key` clears.
pub fn adopt(
    state: &mut ClientState,
    now: Timestamp,
    new_id: impl FnOnce() -> String,
) -> Result<Option<AdoptReport>, ApiError> {
    match state.tamper {
        None => return Ok(None),
        Some(Tamper::Edited) => {
            return Err(ApiError::new(
                ErrorCode::StateTampered,
                "the client state was changed outside volact, so it is not believed and cannot be activated as it is. Install the setup key again (`volact install-key KEY`, or the product's own install step), then activate",
            ));
        }
        Some(Tamper::OtherMachine) => {}
    }
    let Some(installed) = state.installed.as_mut() else {
        return Ok(None);
    };
    let old_client_id = std::mem::replace(&mut installed.client_id, new_id());
    let client_id = installed.client_id.clone();
    state.guard.previous_client_id = Some(old_client_id.clone());
    state.guard.grace_forfeited = true;
    state.ticket = None;
    state.last_attempt = None;
    state.tamper = None;
    state.observe_clock(now);
    Ok(Some(AdoptReport {
        old_client_id,
        client_id,
    }))
}

/// Pins a host, like `slmgr /skms`: `HOST`, `HOST:PORT`, an IPv4 address, an IPv6
/// address (bare, or `[ADDR]:PORT` with a port). Returns the normalised `host:port`.
pub fn set_host(state: &mut ClientState, text: &str) -> Result<String, ApiError> {
    let host = normalize_host(text)?;
    state.pinned_host = Some(host.clone());
    Ok(host)
}

/// Unpins the host, like `slmgr /ckms`: back to discovery.
/// How the last host was found is forgotten if it was the pin, which no longer holds.
pub fn clear_host(state: &mut ClientState) {
    state.pinned_host = None;
    if state.last_host_found_by == Some(crate::discovery::FoundBy::Pinned) {
        state.last_host_found_by = None;
    }
}

/// Sets the domain for SRV discovery (`_volact._tcp.DOMAIN`). Returns it normalised.
pub fn set_domain(state: &mut ClientState, text: &str) -> Result<String, ApiError> {
    let domain = check_dns_name(text.trim()).map_err(|why| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "`{}` is not a domain name: {why}; write it like corp.example.com",
                text.trim()
            ),
            serde_json::json!({ "field": "domain", "value": text.trim(), "reason": why }),
        )
    })?;
    state.domain = Some(domain.clone());
    Ok(domain)
}

/// Normalises `HOST[:PORT]` to `host:port` (`[v6]:port` for IPv6), the form used in
/// URLs and in the state file.
pub fn normalize_host(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    parse_host(text).map_err(|why| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "`{text}` is not a host: {why}; write HOST or HOST:PORT, e.g. volact.corp.example.com, 10.0.0.5:{DEFAULT_PORT} or [fd00::5]:{DEFAULT_PORT}"
            ),
            serde_json::json!({ "field": "host", "value": text, "reason": why }),
        )
    })
}

fn parse_host(text: &str) -> Result<String, String> {
    // A TLS host keeps its scheme: `https://host:port` (port 7689 by default, the plain
    // port's neighbour); its certificate is checked as --tls-fingerprint or --ca-file say.
    if let Some(rest) = text.strip_prefix("https://") {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // `[v6]:port`, `name:port` and `v4:port` carry a port; a bare IPv6 address has
        // colons but no port.
        let with_port = match rest.strip_prefix('[') {
            Some(v6) if v6.contains("]:") => rest.to_string(),
            Some(_) => format!("{rest}:{DEFAULT_TLS_PORT}"),
            None if rest.matches(':').count() == 1 => rest.to_string(),
            None if rest.contains(':') => format!("[{rest}]:{DEFAULT_TLS_PORT}"),
            None => format!("{rest}:{DEFAULT_TLS_PORT}"),
        };
        return parse_host(&with_port).map(|h| format!("https://{h}"));
    }
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.contains("://") || text.contains('/') {
        return Err("give the host name only, without a scheme or path (or https://HOST[:PORT] for a host serving TLS)".into());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or("the `[` of an IPv6 address is not closed")?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv6 address"))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => parse_port(
                after
                    .strip_prefix(':')
                    .ok_or("expected `:PORT` after `]`")?,
            )?,
        };
        return Ok(format!("[{ip}]:{port}"));
    }
    if text.matches(':').count() > 1 {
        let ip: Ipv6Addr = text.parse().map_err(|_| {
            "it is not an IPv6 address (to give a port with one, write [ADDR]:PORT)".to_string()
        })?;
        return Ok(format!("[{ip}]:{DEFAULT_PORT}"));
    }
    let (name, port) = match text.split_once(':') {
        Some((name, port)) => (name, parse_port(port)?),
        None => (text, DEFAULT_PORT),
    };
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(format!("{ip}:{port}"));
    }
    let name = check_dns_name(name)?;
    Ok(format!("{name}:{port}"))
}

/// The port of a host's TLS listener by default.
pub const DEFAULT_TLS_PORT: u16 = DEFAULT_PORT + 1;

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port `{text}` must be a number from 1 to 65535")),
    }
}

/// Checks a DNS host name (letters, digits, `-`, dot-separated labels of at most 63
/// characters) and returns it in lower case without a trailing dot.
fn check_dns_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{c}` is not allowed; use letters, digits, `-` and `.`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    // A name whose last label is all digits is a mistyped IPv4 address, never a host
    // name (no top-level domain is numeric).
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("it looks like an IPv4 address but is not a valid one".into());
    }
    Ok(name)
}

/// Points discovery at a DNS server, `ADDR[:PORT]` (port 53 when left out). Returns it
/// as stored, `ADDR:PORT`.
pub fn set_dns_server(state: &mut ClientState, text: &str) -> Result<String, ApiError> {
    let addr = parse_dns_server(text)?;
    state.dns_server = Some(addr.to_string());
    Ok(addr.to_string())
}

/// Back to the system's DNS servers for discovery.
pub fn clear_dns_server(state: &mut ClientState) {
    state.dns_server = None;
}

/// Turns the host cache on or off, like `slmgr /ckhc` (off) and `/skhc` (on). Turning it
/// off keeps the remembered host for `status`, but activation no longer asks it first.
pub fn set_host_cache(state: &mut ClientState, on: bool) {
    state.use_host_cache = on;
}

/// Parses `ADDR[:PORT]` (IPv6 as `[ADDR]:PORT` or bare) into a socket address; a DNS
/// server must be given by address, since finding it by name would need DNS.
pub fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, ApiError> {
    let text = text.trim();
    let refuse = |why: &str| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "`{text}` is not a DNS server address: {why}; write ADDR or ADDR:PORT, e.g. 10.0.0.2, 127.0.0.1:5353 or [fd00::2]:53"
            ),
            serde_json::json!({ "field": "dns_server", "value": text, "reason": why }),
        )
    };
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        if addr.port() == 0 {
            return Err(refuse("port 0 is not a port"));
        }
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(std::net::SocketAddr::new(ip, 53)),
        Err(_) => Err(refuse("give an IP address, not a name")),
    }
}
