//! Activation: pick hosts, ask them in turn, verify the answer along the vendor's chain,
//! and record the outcome in the state.

use crate::discovery::Candidate;
use crate::failover::{ActivateOptions, activate_with};
use crate::http::{self, HostReply};
use crate::schedule::{self, add, show};
use crate::seal::MachineId;
use crate::state::{Attempt, ClientState, Installed, RESULT_ACTIVATED, StoredTicket};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::path::Path;
use volact_core::decide::count_insufficient;
use volact_core::keys::PublicKey;
use volact_core::refusal;
use volact_core::ticket::Ticket;
use volact_core::util::{printable, printable_json};
use volact_core::verify::{
    Expected, VerifiedAnswer, signed_intervals, verify_answer, verify_refusal,
};
use volact_proto::{ActivationRequest, ActivationResponse, ApiError, ErrorCode, HostIntervals};

/// A successful activation or renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationOutcome {
    /// The host that activated the client, `host:port`.
    pub host: String,
    /// Whether the client already held a ticket (a renewal rather than a first activation).
    pub renewed: bool,
    /// The new ticket.
    pub ticket: StoredTicket,
}

/// The longest a host may tell a client to wait: the retry interval's upper bound.
const MAX_RETRY: SignedDuration = SignedDuration::from_hours(30 * 24);

pub(crate) fn no_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        "no setup key installed; run volact install-key KEY --vendor FILE",
    )
}

/// What one host's answer amounts to, before it is recorded. Only what verified along
/// the vendor's chain may change the state: intervals and retry times come from signed
/// documents alone, held to the design's ranges.
pub(crate) enum Reply {
    Ticket {
        ticket: Box<Ticket>,
        token: String,
        certificate: String,
        intervals: Option<HostIntervals>,
    },
    NotYet {
        count: u32,
        minimum: u32,
        retry_after: Timestamp,
        intervals: Option<HostIntervals>,
    },
    /// A verified answer about this client that it cannot use (a signed refusal, or a
    /// genuine ticket this machine's clock cannot use): every host would say the same,
    /// so the search ends here.
    Refused {
        error: ApiError,
        retry_after: Option<Timestamp>,
        intervals: Option<HostIntervals>,
    },
    /// No usable answer (unreachable, unsigned, unverifiable, or a host that cannot
    /// serve): nothing of it is stored, and the next host is asked.
    Failed(ApiError),
}

/// Activates or renews now, like `slmgr /ato`, and records the outcome in `state`, with
/// the default [`ActivateOptions`] (the system's DNS servers, the host cache as the state
/// says). See [`activate_with`].
///
/// The state is changed in memory only: the caller must save it afterwards, **also when
/// this returns an error**, so the last attempt (and the retry time the agent honours) is
/// kept. [`activate_and_save`] does that. An answer that does not verify against the
/// vendor root stores nothing but the attempt. A "not yet" keeps the held ticket and is
/// returned as the `count-insufficient` error.
pub async fn activate(
    state: &mut ClientState,
    now: Timestamp,
    machine_name: &str,
    nonce: String,
) -> Result<ActivationOutcome, ApiError> {
    activate_with(state, now, machine_name, nonce, &ActivateOptions::default()).await
}

/// [`activate`] against the given hosts, in order, with the default options.
#[cfg(test)]
pub(crate) async fn activate_hosts(
    state: &mut ClientState,
    hosts: &[String],
    now: Timestamp,
    machine_name: &str,
    nonce: String,
) -> Result<ActivationOutcome, ApiError> {
    let installed = state.installed.clone().ok_or_else(no_key)?;
    let hosts = hosts
        .iter()
        .map(|h| Candidate::plain(h.clone(), crate::discovery::FoundBy::Given))
        .collect();
    let mut plan = crate::failover::Plan::given(hosts, &ActivateOptions::default());
    let ask = Asking {
        now,
        machine_name,
        nonce,
        installed: &installed,
    };
    crate::failover::run(state, &mut plan, ask).await
}

/// What every host is asked, and what its answer is checked against.
pub(crate) struct Asking<'a> {
    pub now: Timestamp,
    pub machine_name: &'a str,
    pub nonce: String,
    pub installed: &'a Installed,
}

impl Asking<'_> {
    /// The request every host receives.
    pub(crate) fn request(&self, state: &ClientState) -> ActivationRequest {
        ActivationRequest {
            client_id: self.installed.client_id.clone(),
            setup_key: self.installed.setup_key.to_string(),
            minimum_count: self.installed.minimum_count,
            client_time: self.now,
            nonce: self.nonce.clone(),
            machine_name: self.machine_name.to_string(),
            ticket_id: state.ticket.as_ref().map(|t| t.ticket_id.clone()),
            machine_fingerprint: crate::fingerprint::machine_fingerprint(),
            previous_client_id: state.guard.previous_client_id.clone(),
        }
    }
}

/// Loads the state at `path`, activates, and saves the outcome whether it succeeded or
/// not. Another command may have changed the file while the hosts were asked, so the
/// outcome is merged into the file as it is then.
pub async fn activate_and_save(
    path: &Path,
    now: Timestamp,
    machine_name: &str,
    nonce: String,
) -> Result<ActivationOutcome, ApiError> {
    activate_and_save_with(path, now, machine_name, nonce, &ActivateOptions::default()).await
}

/// [`activate_and_save`] with the given options.
pub async fn activate_and_save_with(
    path: &Path,
    now: Timestamp,
    machine_name: &str,
    nonce: String,
    options: &ActivateOptions,
) -> Result<ActivationOutcome, ApiError> {
    activate_and_save_on(path, &MachineId::this(), now, machine_name, nonce, options).await
}

/// [`activate_and_save_with`] reading and sealing the state as `machine` does.
pub async fn activate_and_save_on(
    path: &Path,
    machine: &MachineId,
    now: Timestamp,
    machine_name: &str,
    nonce: String,
    options: &ActivateOptions,
) -> Result<ActivationOutcome, ApiError> {
    let mut state = ClientState::load_on(path, machine)?;
    let result = activate_with(&mut state, now, machine_name, nonce, options).await;
    let mut fresh = ClientState::load_on(path, machine)?;
    merge_outcome(&mut fresh, &state);
    let saved = fresh.save_on(path, machine);
    // A failed activation's message matters more than a failed save of its record; a
    // ticket that could not be saved is lost, so then the save error wins.
    match (result, saved) {
        (Ok(outcome), Ok(())) => Ok(outcome),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    }
}

/// Copies what an activation learned (`done`) into a state re-read from disk (`fresh`).
/// The ticket is copied only if the same client still has the same product installed:
/// a key installed meanwhile must not receive a ticket for the old product.
pub(crate) fn merge_outcome(fresh: &mut ClientState, done: &ClientState) {
    let identity = |s: &ClientState| {
        s.installed
            .as_ref()
            .map(|i| (i.client_id.clone(), i.product.clone()))
    };
    if identity(fresh) == identity(done) {
        fresh.ticket.clone_from(&done.ticket);
    }
    fresh.merge_clock(done);
    fresh.intervals = done.intervals.or(fresh.intervals);
    fresh.last_attempt.clone_from(&done.last_attempt);
    if done.last_host.is_some() {
        fresh.last_host.clone_from(&done.last_host);
        fresh
            .last_host_found_by
            .clone_from(&done.last_host_found_by);
    }
}

/// Asks `host` and judges its answer. With a verified answer comes the vendor's
/// revocation list the host passed along, when it verified and is newer than `held`
/// (the client keeps it); an answer from a host that the newest list revokes is
/// refused with `host-revoked`.
pub(crate) async fn ask(
    client: &reqwest::Client,
    host: &str,
    request: &ActivationRequest,
    root: &PublicKey,
    expected: Expected<'_>,
    held: Option<&volact_core::revocation::RevocationList>,
) -> (Reply, Option<String>) {
    let (reply, newer) = match http::post_activation(client, host, request).await {
        Err(e) => (Reply::Failed(e), None),
        Ok(HostReply::Refusal(error)) => (judge_refusal(error, root, expected), None),
        Ok(HostReply::Answer(answer)) => judge_revoked(&answer, root, expected, held),
    };
    // Whatever the host wrote, and whatever of it a verification error quotes, reaches
    // the terminal and the state file only as plain text.
    let reply = match reply {
        Reply::Refused {
            error,
            retry_after,
            intervals,
        } => Reply::Refused {
            error: clean(error),
            retry_after,
            intervals,
        },
        Reply::Failed(error) => Reply::Failed(clean(error)),
        other => other,
    };
    (reply, newer)
}

/// [`judge`], then the revocation check: the newest of the list the client holds and the
/// one the answer carries (when it verifies against the vendor root).
fn judge_revoked(
    answer: &ActivationResponse,
    root: &PublicKey,
    expected: Expected<'_>,
    held: Option<&volact_core::revocation::RevocationList>,
) -> (Reply, Option<String>) {
    use volact_core::revocation;
    let reply = judge(answer, root, expected);
    if !matches!(reply, Reply::Ticket { .. } | Reply::NotYet { .. }) {
        return (reply, None);
    }
    // The answer verified, so its certificate did: read it for the vendor and the ids.
    let Ok(certificate) = volact_core::token::peek::<volact_core::certificate::HostCertificate>(
        &answer.host_certificate,
    ) else {
        return (reply, None);
    };
    let offered = answer.revocation_list.as_deref().and_then(|token| {
        revocation::verify(root, &certificate.vendor, token)
            .ok()
            .filter(|list| revocation::is_newer(held, list))
            .map(|list| (token.to_owned(), list))
    });
    let in_force = offered.as_ref().map(|(_, l)| l).or(held);
    let newer = offered.as_ref().map(|(t, _)| t.clone());
    match in_force.map(|list| revocation::check_certificate(list, &certificate)) {
        Some(Err(e)) => (Reply::Failed(e), newer),
        _ => (reply, newer),
    }
}

fn clean(mut error: ApiError) -> ApiError {
    error.message = printable(&error.message);
    error.details = printable_json(&error.details);
    error
}

/// A refusal counts only with a valid signature in the vendor's chain; then its retry
/// time (measured on the host's clock, applied on this one) and intervals are used, held
/// to the design's ranges. Without one it is a failed host and nothing of it is used.
fn judge_refusal(error: ApiError, root: &PublicKey, expected: Expected<'_>) -> Reply {
    match verify_refusal(root, &error, expected) {
        Ok(verified) => {
            let retry_after = add(expected.now, verified.retry_interval());
            let mut error = refusal::without_signature(error);
            if let Some(map) = error.details.as_object_mut() {
                map.insert(
                    "retry_after".into(),
                    serde_json::Value::String(retry_after.to_string()),
                );
            }
            Reply::Refused {
                error,
                retry_after: Some(retry_after),
                intervals: signed_intervals(Some(&verified.refusal.intervals)),
            }
        }
        // A refusal about the client must be signed: unsigned, it may come from anyone.
        Err(why) if refusal::is_signed(error.code) => Reply::Failed(ApiError::with_details(
            why.code,
            format!("{} (the host said: {})", why.message, error.message),
            serde_json::json!({ "refused_with": error.code }),
        )),
        // What a host says about itself (not activated, expired, rate-limited, storage
        // failure, a malformed request) needs no signature to send the client elsewhere,
        // but nothing in it steers the client, nor is shown as if it did.
        Err(_) => {
            let mut error = refusal::without_signature(error);
            if let Some(map) = error.details.as_object_mut() {
                map.remove("retry_after");
                map.remove("intervals");
            }
            Reply::Failed(error)
        }
    }
}

/// Verifies an answer along the vendor's chain, against this machine's clock and catalog.
fn judge(answer: &ActivationResponse, root: &PublicKey, expected: Expected<'_>) -> Reply {
    let verified = match verify_answer(root, answer, expected) {
        Ok(v) => v,
        // Only a ticket that verified is judged against the clock: that is about this
        // machine, and no other host would do better.
        Err(e) if e.code == ErrorCode::ClockSkew => {
            return Reply::Refused {
                error: e,
                retry_after: None,
                intervals: None,
            };
        }
        Err(e) => return Reply::Failed(e),
    };
    let now = expected.now;
    match verified {
        VerifiedAnswer::Ticket { ticket, .. } => {
            let Some(token) = answer.ticket.clone() else {
                return Reply::Failed(ApiError::new(
                    ErrorCode::UntrustedHost,
                    "the host sent no ticket",
                ));
            };
            Reply::Ticket {
                intervals: signed_intervals(ticket.intervals.as_ref()),
                ticket: Box::new(ticket),
                token,
                certificate: answer.host_certificate.clone(),
            }
        }
        VerifiedAnswer::NotYet { not_yet, .. } => {
            // A retry time in the past or years ahead is a host bug; keep within the
            // retry interval's range so the client neither hammers nor gives up.
            let earliest = add(now, SignedDuration::from_mins(1));
            let latest = add(now, MAX_RETRY);
            let retry_after = not_yet.retry_after.clamp(earliest, latest);
            Reply::NotYet {
                count: not_yet.count,
                minimum: not_yet.minimum,
                retry_after,
                intervals: signed_intervals(not_yet.intervals.as_ref()),
            }
        }
    }
}

/// Records the final reply of `host` in the state and turns it into the caller's result.
pub(crate) fn settle(
    state: &mut ClientState,
    now: Timestamp,
    host: &Candidate,
    reply: Reply,
    installed: &Installed,
) -> Result<ActivationOutcome, ApiError> {
    let found_by = host.found_by.clone();
    let host = host.host.as_str();
    // A verified answer is fresh (it echoes the nonce) from a host that accepted this
    // clock: the latest trustworthy time.
    if matches!(reply, Reply::Ticket { .. } | Reply::NotYet { .. }) {
        state.confirm_clock(now);
    }
    match reply {
        Reply::Ticket {
            ticket,
            token,
            certificate,
            intervals,
        } => {
            let stored = StoredTicket {
                token,
                host_certificate: certificate,
                ticket_id: ticket.jti.clone(),
                host_id: ticket.iss.clone(),
                count: ticket.count,
                minimum: ticket.minimum,
                issued_at: ticket.iat,
                renew_after: ticket.renew_after,
                valid_until: ticket.exp,
            };
            let renewed = state.ticket.is_some();
            state.ticket = Some(stored.clone());
            state.intervals = intervals.or(state.intervals);
            state.last_host = Some(host.to_string());
            state.last_host_found_by = Some(found_by);
            state.last_attempt = Some(Attempt {
                at: now,
                host: host.to_string(),
                result: RESULT_ACTIVATED.into(),
                count: Some(ticket.count),
                minimum: Some(ticket.minimum),
                message: format!(
                    "activated by host {host} ({} of {} machines counted); valid until {}, renewal after {}",
                    ticket.count,
                    ticket.minimum,
                    show(ticket.exp),
                    show(ticket.renew_after)
                ),
                retry_after: None,
            });
            Ok(ActivationOutcome {
                host: host.to_string(),
                renewed,
                ticket: stored,
            })
        }
        Reply::NotYet {
            count,
            minimum,
            retry_after,
            intervals,
        } => {
            let error = count_insufficient(
                count,
                minimum,
                retry_after,
                &installed.application,
                &installed.application_name,
            );
            state.intervals = intervals.or(state.intervals);
            state.last_host = Some(host.to_string());
            state.last_host_found_by = Some(found_by);
            state.last_attempt = Some(Attempt {
                at: now,
                host: host.to_string(),
                result: error.code.as_str().into(),
                count: Some(count),
                minimum: Some(minimum),
                message: error.message.clone(),
                retry_after: Some(retry_after),
            });
            Err(error)
        }
        Reply::Refused {
            error,
            retry_after,
            intervals,
        } => {
            state.intervals = intervals.or(state.intervals);
            record_failure(state, now, host.to_string(), &error, retry_after);
            Err(error)
        }
        Reply::Failed(error) => {
            record_failure(state, now, host.to_string(), &error, None);
            Err(error)
        }
    }
}

pub(crate) fn record_failure(
    state: &mut ClientState,
    now: Timestamp,
    host: String,
    error: &ApiError,
    retry_after: Option<Timestamp>,
) {
    let figure = |name: &str| {
        error
            .details
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let retry_interval = schedule::settings(state.intervals.as_ref()).retry_interval;
    state.last_attempt = Some(Attempt {
        at: now,
        host,
        result: error.code.as_str().into(),
        count: figure("count"),
        minimum: figure("minimum"),
        message: printable(&error.message),
        retry_after: Some(retry_after.unwrap_or_else(|| add(now, retry_interval))),
    });
}
