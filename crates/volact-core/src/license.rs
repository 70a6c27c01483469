//! The client's license state: `unlicensed`, `initial-grace`, `licensed`,
//! `out-of-tolerance-grace` or `notification`, with until when and why.

use crate::util::{self, human};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Grace after a ticket expires before the client falls into notification: 30 days.
pub const OUT_OF_TOLERANCE_GRACE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Status warns this long before a ticket ends: 30 days.
pub const EXPIRY_WARNING: SignedDuration = SignedDuration::from_hours(30 * 24);

/// A client license state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenseState {
    /// No setup key installed.
    Unlicensed,
    /// Setup key installed, not activated yet, inside the initial grace.
    InitialGrace,
    /// Holding a valid ticket.
    Licensed,
    /// The ticket expired; inside the out-of-tolerance grace.
    OutOfToleranceGrace,
    /// Grace is over: the product should nag its user.
    Notification,
}

impl LicenseState {
    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseState::Unlicensed => "unlicensed",
            LicenseState::InitialGrace => "initial-grace",
            LicenseState::Licensed => "licensed",
            LicenseState::OutOfToleranceGrace => "out-of-tolerance-grace",
            LicenseState::Notification => "notification",
        }
    }
}

impl std::fmt::Display for LicenseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the state depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenseInputs {
    /// When the setup key was installed; `None` means no setup key.
    pub installed_at: Option<Timestamp>,
    /// The product's initial grace, in days.
    pub grace_days: u32,
    /// The held ticket's validity end, if any.
    pub ticket_valid_until: Option<Timestamp>,
}

/// The state at a moment, until when it holds (if it ends), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseStatus {
    /// The state.
    pub state: LicenseState,
    /// When it ends by itself, if it does.
    pub until: Option<Timestamp>,
    /// Why, in a sentence.
    pub reason: String,
    /// Whether the ticket ends within the warning period.
    pub expiry_warning: bool,
}

/// The license state at `now`.
pub fn license_state(i: &LicenseInputs, now: Timestamp) -> LicenseStatus {
    let status = |state, until, reason: String| LicenseStatus {
        state,
        until,
        reason,
        expiry_warning: false,
    };
    let Some(installed_at) = i.installed_at else {
        return status(
            LicenseState::Unlicensed,
            None,
            "no setup key is installed; run `volact install-key KEY`".into(),
        );
    };
    if let Some(valid_until) = i.ticket_valid_until {
        if now < valid_until {
            let left = valid_until.duration_since(now);
            let mut s = status(
                LicenseState::Licensed,
                Some(valid_until),
                format!(
                    "activated by the host; the ticket is valid for {} more",
                    human(left)
                ),
            );
            s.expiry_warning = left <= EXPIRY_WARNING;
            return s;
        }
        let grace_end = util::add(valid_until, OUT_OF_TOLERANCE_GRACE);
        if now < grace_end {
            return status(
                LicenseState::OutOfToleranceGrace,
                Some(grace_end),
                format!(
                    "the ticket expired at {valid_until} without renewal; reach a host (volact activate) before {grace_end}"
                ),
            );
        }
        return status(
            LicenseState::Notification,
            None,
            format!(
                "the ticket expired at {valid_until} and the out-of-tolerance grace ended at {grace_end}; run `volact activate`"
            ),
        );
    }
    let grace_end = util::add(installed_at, util::days(i.grace_days));
    if now < grace_end {
        status(
            LicenseState::InitialGrace,
            Some(grace_end),
            format!(
                "not activated yet; the initial grace of {} days lasts until {grace_end}",
                i.grace_days
            ),
        )
    } else {
        status(
            LicenseState::Notification,
            None,
            format!(
                "never activated and the initial grace ended at {grace_end}; run `volact activate` against a host"
            ),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(days: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + days * 86_400).unwrap()
    }

    #[test]
    fn states_move_as_designed() {
        let none = LicenseInputs {
            installed_at: None,
            grace_days: 30,
            ticket_valid_until: None,
        };
        assert_eq!(license_state(&none, t(0)).state, LicenseState::Unlicensed);
        let fresh = LicenseInputs {
            installed_at: Some(t(0)),
            ..none
        };
        let s = license_state(&fresh, t(29));
        assert_eq!(s.state, LicenseState::InitialGrace);
        assert_eq!(s.until, Some(t(30)));
        assert_eq!(
            license_state(&fresh, t(30)).state,
            LicenseState::Notification
        );
        let no_grace = LicenseInputs {
            grace_days: 0,
            ..fresh
        };
        assert_eq!(
            license_state(&no_grace, t(0)).state,
            LicenseState::Notification
        );
        let held = LicenseInputs {
            ticket_valid_until: Some(t(180)),
            ..fresh
        };
        let s = license_state(&held, t(100));
        assert_eq!(s.state, LicenseState::Licensed);
        assert!(!s.expiry_warning);
        assert!(license_state(&held, t(151)).expiry_warning);
        let s = license_state(&held, t(180));
        assert_eq!(s.state, LicenseState::OutOfToleranceGrace);
        assert_eq!(s.until, Some(t(210)));
        assert_eq!(
            license_state(&held, t(210)).state,
            LicenseState::Notification
        );
    }
}
