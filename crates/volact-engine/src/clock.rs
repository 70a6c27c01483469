//! Where the host's "now" comes from: the system clock in production, a hand-set clock
//! in tests and simulations, so time-based rules are tested without waiting.

use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        whole_seconds(Timestamp::now())
    }
}

pub use volact_core::util::whole_seconds;

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        if let Ok(mut now) = self.now.lock() {
            *now = t;
        }
    }

    /// Moves the time forward (or back, with a negative duration).
    pub fn advance(&self, d: SignedDuration) {
        if let Ok(mut now) = self.now.lock() {
            *now = now.checked_add(d).unwrap_or(*now);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.now
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|p| *p.into_inner())
    }
}
