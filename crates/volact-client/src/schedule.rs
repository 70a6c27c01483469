//! What the client holds and when it should next talk to a host: shared by status, the
//! activation and the agent so they never disagree.

use crate::state::ClientState;
use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;
use volact_core::certificate::HostCertificate;
use volact_core::keys::PublicKey;
use volact_core::license::CLOCK_ROLLBACK_TOLERANCE;
use volact_core::settings::Settings;
use volact_core::ticket::{Ticket, verify_stored};
use volact_proto::{ApiError, HostIntervals};

/// The intervals in force: the host's once heard from (held to the design's ranges),
/// else the built-in defaults.
pub(crate) fn settings(intervals: Option<&HostIntervals>) -> Settings {
    intervals.map_or_else(Settings::default, Settings::from_intervals_clamped)
}

pub(crate) use volact_core::util::add;

/// The held ticket, re-verified against the vendor root and checked to be this client's
/// for its installed product. `Err` says why a stored ticket is not accepted (a tampered
/// or foreign file); `Ok(None)` means there is none.
pub(crate) fn held_ticket(
    state: &ClientState,
) -> Result<Option<(Ticket, HostCertificate)>, String> {
    let (Some(installed), Some(stored)) = (&state.installed, &state.ticket) else {
        return Ok(None);
    };
    let (root, _, product) = installed.signed().map_err(|e| e.message)?;
    let (ticket, cert) = verified(&root, &stored.host_certificate, &stored.token)
        .map_err(|e| format!("the stored ticket is not accepted: {}", e.message))?;
    if ticket.sub != installed.client_id || ticket.product != product.id {
        return Err(format!(
            "the stored ticket is for client {} and product {}, not this client ({}) and product ({})",
            ticket.sub, ticket.product, installed.client_id, product.id
        ));
    }
    // The same floor an answer is held to when it arrives: a ticket put into the file by
    // hand, from a genuine host that counted too few machines, is no licence.
    if ticket.count < product.minimum_count || ticket.minimum < product.minimum_count {
        return Err(format!(
            "the stored ticket counted {} machines of a minimum of {}, but this product needs {}; run `volact activate`",
            ticket.count, ticket.minimum, product.minimum_count
        ));
    }
    Ok(Some((ticket, cert)))
}

/// The chain last verified: root, certificate and ticket exactly as they were read, with
/// what they yielded.
type Verified = (PublicKey, String, String, Ticket, HostCertificate);

static LAST_VERIFIED: Mutex<Option<Verified>> = Mutex::new(None);

/// [`verify_stored`], remembering the last chain that verified. A product checks its
/// licence often and its ticket changes once a week: the same bytes under the same root
/// verify the same way, so a check after the first in a process compares bytes instead
/// of verifying two signatures again, and any changed byte is verified anew. (What the
/// time says about the ticket is judged at each check, outside this.)
pub(crate) fn verified(
    root: &PublicKey,
    certificate: &str,
    token: &str,
) -> Result<(Ticket, HostCertificate), ApiError> {
    if let Ok(last) = LAST_VERIFIED.lock()
        && let Some((r, c, t, ticket, cert)) = last.as_ref()
        && r == root
        && c == certificate
        && t == token
    {
        return Ok((ticket.clone(), cert.clone()));
    }
    let (ticket, cert) = verify_stored(root, certificate, token)?;
    if let Ok(mut last) = LAST_VERIFIED.lock() {
        *last = Some((
            root.clone(),
            certificate.to_string(),
            token.to_string(),
            ticket.clone(),
            cert.clone(),
        ));
    }
    Ok((ticket, cert))
}

/// Forgets the remembered chain, so the next check verifies every signature: for
/// measuring the first check of a process.
#[doc(hidden)]
pub fn forget_verified() {
    if let Ok(mut last) = LAST_VERIFIED.lock() {
        *last = None;
    }
}

/// When the client should next contact a host: at the ticket's renewal time while it
/// holds a valid one, right away otherwise (and right away when the clock reads behind
/// the latest time seen: a host's verified answer is what clears that); never before a
/// failed attempt's retry time; `now` when overdue. `None` when no setup key is
/// installed (nothing to activate).
pub(crate) fn next_attempt(
    state: &ClientState,
    ticket: Option<&Ticket>,
    now: Timestamp,
) -> Option<Timestamp> {
    state.installed.as_ref()?;
    let behind = state
        .latest_trusted()
        .is_some_and(|t| now < add(t, -CLOCK_ROLLBACK_TOLERANCE));
    let mut next = match ticket {
        Some(t) if now < t.exp && !behind => t.renew_after,
        _ => now,
    };
    if let Some(attempt) = &state.last_attempt
        && !attempt.succeeded()
        && let Some(retry) = attempt.retry_after
    {
        next = next.max(retry);
    }
    Some(next.max(now))
}

/// When the client should next ask a host for a ticket: at the held ticket's renewal
/// time, right away when it holds none (or the clock reads behind what it has seen), never
/// before a failed attempt's retry time. `None` when no setup key is installed. What
/// the SDK's background renewal (and so `volact agent`) runs by.
pub fn next_attempt_for(state: &ClientState, now: Timestamp) -> Option<Timestamp> {
    let held = held_ticket(state).ok().flatten();
    next_attempt(state, held.as_ref().map(|(t, _)| t), now)
}

/// Human form of a duration for messages and status, e.g. `4d 3h`; at most two units,
/// since status lines need the order of magnitude, not the second.
pub(crate) fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    let mut started = false;
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            parts.push(format!("{n}{name}"));
        }
        if started {
            break;
        }
        started = n > 0;
    }
    if parts.is_empty() {
        parts.push("0s".into());
    }
    let sign = if d.is_negative() { "-" } else { "" };
    format!("{sign}{}", parts.join(" "))
}

/// A timestamp as status shows it: to the second, in UTC.
pub(crate) fn show(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}
