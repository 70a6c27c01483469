//! `volact agent`: stays running, activates when due and renews on schedule. This is the
//! one place in the crate that reads the real clock.

use crate::activate::merge_outcome;
use crate::failover::{ActivateOptions, activate_with};
use crate::schedule;
use crate::state::{ClientState, note_clock};
use jiff::Timestamp;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use volact_proto::ApiError;

/// Shortest sleep between checks, so a clock jump or a failing step cannot spin.
const MIN_STEP: Duration = Duration::from_secs(15);
/// Longest sleep between checks: the state file is re-read at least this often, so a key
/// installed or a host pinned meanwhile takes effect without restarting the agent.
const MAX_STEP: Duration = Duration::from_secs(3600);

/// Runs until `stop` completes: re-reads the state at `path`, notes the clock in it (at
/// most hourly), activates or renews when due (see `next_attempt` in [`crate::Status`]),
/// saves the outcome, and sleeps until the next attempt in steps of 15 seconds to 1 hour. Refusals are logged and retried on
/// schedule; only a state file that cannot be read or written ends the agent with an
/// error.
pub async fn run_agent(
    path: &Path,
    machine_name: &str,
    stop: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    run_agent_with(path, machine_name, &ActivateOptions::default(), stop).await
}

/// [`run_agent`] with the given activation options (DNS server, host cache, timeouts).
pub async fn run_agent_with(
    path: &Path,
    machine_name: &str,
    options: &ActivateOptions,
    stop: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let mut stop = std::pin::pin!(stop);
    loop {
        let now = Timestamp::now();
        // The agent is what runs while a licence runs out: its readings of the clock are
        // what makes setting the clock back afterwards visible.
        note_clock(path, now)?;
        let mut state = ClientState::load(path)?;
        let mut next = due(&state, now);
        if next.is_some_and(|t| t <= now) {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let result = tokio::select! {
                _ = &mut stop => return Ok(()),
                r = activate_with(&mut state, now, machine_name, nonce, options) => r,
            };
            match &result {
                Ok(o) => {
                    tracing::info!(host = %o.host, valid_until = %o.ticket.valid_until, renewed = o.renewed, "activated")
                }
                Err(e) => tracing::warn!(code = %e.code, "{}", e.message),
            }
            let mut fresh = ClientState::load(path)?;
            merge_outcome(&mut fresh, &state);
            fresh.save(path)?;
            next = due(&fresh, Timestamp::now());
        }
        let wait = match next {
            Some(t) => {
                let secs = t
                    .duration_since(Timestamp::now())
                    .as_secs()
                    .max(0)
                    .unsigned_abs();
                Duration::from_secs(secs).clamp(MIN_STEP, MAX_STEP)
            }
            None => MAX_STEP,
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn due(state: &ClientState, now: Timestamp) -> Option<Timestamp> {
    let held = schedule::held_ticket(state).ok().flatten();
    schedule::next_attempt(state, held.as_ref().map(|(t, _)| t), now)
}
