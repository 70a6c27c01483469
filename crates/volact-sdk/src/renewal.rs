//! Background renewal: a thread of its own that activates when due, renews on the host's
//! schedule, retries on its retry interval, and tells the watchers when the state changes.

use crate::check::Check;
use crate::license::{License, exchange};
use jiff::Timestamp;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;
use volact_core::util::whole_seconds;
use volact_proto::{ApiError, ErrorCode};

/// Shortest sleep between passes, so a clock jump or a failing step cannot spin.
const MIN_STEP: Duration = Duration::from_secs(15);
/// Longest sleep between passes: the state is re-read at least this often, so a key
/// installed or a host pinned by another process takes effect without a restart.
const MAX_STEP: Duration = Duration::from_secs(3600);
/// The most a renewal is put off by its jitter, so that machines that activated together
/// (after a host came back, say) do not all renew in the same second.
const MAX_JITTER: Duration = Duration::from_secs(30 * 60);

/// The running background renewal of a [`License`]. Stopping it (or dropping it) ends the
/// thread promptly, also in the middle of an exchange with a host.
#[derive(Debug)]
pub struct Renewal {
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewal {
    /// Stops the renewal and waits for its thread to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the licence renewal thread ended by a panic");
        }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.halt();
    }
}

impl License {
    /// Starts renewing in the background: activates when no ticket is held, renews at the
    /// held ticket's renewal time (the host's renew interval, plus a jitter of up to a
    /// tenth of the wait, at most 30 minutes), and after a failure tries again at the
    /// host's retry interval (or the retry time a "not yet" names). Each pass re-reads
    /// the state and sends a change notice when the state, reason or until-time
    /// changed (also when a grace or a ticket simply runs out). Needs no async runtime of
    /// the caller's.
    pub fn start_renewal(&self) -> Result<Renewal, ApiError> {
        let (tx, rx) = watch::channel(false);
        let license = self.clone();
        let thread = std::thread::Builder::new()
            .name("volact-renewal".into())
            .spawn(move || license.renew(rx))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot start the licence renewal thread: {e}"),
                )
            })?;
        Ok(Renewal {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    fn renew(&self, mut stop: watch::Receiver<bool>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!("cannot start the licence renewal's I/O runtime: {e}");
                return;
            }
        };
        runtime.block_on(async {
            loop {
                let wait = self.pass(&mut stop).await;
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
        });
    }

    /// One pass: activate if due, notify, and say how long to sleep.
    async fn pass(&self, stop: &mut watch::Receiver<bool>) -> Duration {
        let now = whole_seconds(Timestamp::now());
        let due = self
            .load()
            .ok()
            .and_then(|state| volact_client::next_attempt(&state, now));
        if due.is_some_and(|t| t <= now) {
            let result = match self.prepare_activation(now) {
                Ok(()) => tokio::select! {
                    _ = stop.changed() => return Duration::ZERO,
                    r = exchange(&self.inner, now) => r,
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(o) => tracing::info!(
                    host = %o.host,
                    valid_until = %o.ticket.valid_until,
                    renewed = o.renewed,
                    "activated"
                ),
                Err(e) => tracing::warn!(code = %e.code, "{}", e.message),
            }
        }
        let now = Timestamp::now();
        let check = self.check_at(now);
        self.note_clock(now, &check);
        let next = self
            .load()
            .ok()
            .and_then(|state| volact_client::next_attempt(&state, now));
        sleep_for(now, next, &check, jitter_fraction())
    }
}

/// How long to sleep at `now`: until the next attempt (put off by `jitter`, a fraction in
/// [0, 1) of a tenth of the wait, at most [`MAX_JITTER`]), or until the state ends by
/// itself if that comes first, so its change notice is prompt; between [`MIN_STEP`] and
/// [`MAX_STEP`].
pub(crate) fn sleep_for(
    now: Timestamp,
    next: Option<Timestamp>,
    check: &Check,
    jitter: f64,
) -> Duration {
    let until =
        |t: Timestamp| Duration::from_secs(t.duration_since(now).as_secs().max(0).unsigned_abs());
    let mut wait = next.map_or(MAX_STEP, |t| {
        let base = until(t);
        let spread = (base / 10).min(MAX_JITTER);
        base + spread.mul_f64(jitter.clamp(0.0, 1.0))
    });
    if let Some(end) = check.until
        && end > now
    {
        wait = wait.min(until(end) + Duration::from_secs(1));
    }
    wait.clamp(MIN_STEP, MAX_STEP)
}

/// A random fraction in [0, 1) for the jitter; 0.5 if the system has no randomness.
fn jitter_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::{Reason, State};
    use jiff::SignedDuration;

    fn check(until: Option<Timestamp>) -> Check {
        Check {
            state: State::Licensed,
            reason: Reason::Activated,
            until,
            renew_after: None,
            message: String::new(),
            client_id: None,
            product: None,
        }
    }

    #[test]
    fn the_renewal_waits_for_the_next_attempt_plus_at_most_a_tenth_of_it() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let next = now + SignedDuration::from_mins(50);
        let none = sleep_for(now, Some(next), &check(None), 0.0);
        let most = sleep_for(now, Some(next), &check(None), 0.999);
        assert_eq!(none, Duration::from_secs(50 * 60));
        assert!(
            most > none && most < Duration::from_secs(55 * 60),
            "{most:?}"
        );
    }

    #[test]
    fn the_renewal_wakes_when_the_state_ends_and_never_spins_nor_sleeps_past_an_hour() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let far = now + SignedDuration::from_hours(24 * 7);
        let soon = now + SignedDuration::from_mins(20);
        assert_eq!(
            sleep_for(now, Some(far), &check(Some(soon)), 0.0),
            Duration::from_secs(20 * 60 + 1)
        );
        assert_eq!(sleep_for(now, Some(far), &check(None), 0.0), MAX_STEP);
        assert_eq!(sleep_for(now, Some(now), &check(None), 0.0), MIN_STEP);
        assert_eq!(sleep_for(now, None, &check(Some(now)), 0.0), MAX_STEP);
    }

    #[test]
    fn the_jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter_fraction();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
