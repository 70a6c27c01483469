//! The client's license state: `unlicensed`, `initial-grace`, `licensed`,
//! `out-of-tolerance-grace` or `notification`, with until when and why; and the two
//! states of a client machine that cannot be believed: `clock-rollback` (its clock reads
//! earlier than a time it has already seen) and `state-tampered` (its state file was
//! edited or copied from another machine). Neither is ever licensed or in a grace.

use crate::util::{self, human};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use volact_proto::ErrorCode;

/// Grace after a ticket expires before the client falls into notification: 30 days.
pub const OUT_OF_TOLERANCE_GRACE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Status warns this long before a ticket ends: 30 days.
pub const EXPIRY_WARNING: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How far the clock may read behind a time the client itself already saw before that
/// counts as set back: NTP's small steps and a slow save stay well inside it.
pub const CLOCK_ROLLBACK_TOLERANCE: SignedDuration = SignedDuration::from_mins(10);
/// Slack for the time a request takes, on top of the allowed clock difference, when a
/// host's signed time is compared with the client's clock (as when the ticket was taken).
pub const REQUEST_SLACK: SignedDuration = SignedDuration::from_mins(1);

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
    /// The clock reads earlier than a time the client has already seen (its own clock
    /// earlier, or a host's signed time): never licensed, no grace, until the clock is
    /// right again.
    ClockRollback,
    /// The state was edited outside volact or copied from another machine: never
    /// licensed, no grace, until the setup key is installed again.
    StateTampered,
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
            LicenseState::ClockRollback => "clock-rollback",
            LicenseState::StateTampered => "state-tampered",
        }
    }
}

impl std::fmt::Display for LicenseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a client's state cannot be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tamper {
    /// The protected fields do not match their seal (or the seal is gone, or a value is
    /// impossible): the file was edited outside volact.
    Edited,
    /// The seal is intact but was made on another machine: a copied state file or a
    /// disk image cloned after the setup key was installed.
    OtherMachine,
}

/// What the state depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenseInputs {
    /// When the setup key was installed; `None` means no setup key.
    pub installed_at: Option<Timestamp>,
    /// The product's initial grace, in days, from the vendor's signed catalog.
    pub grace_days: u32,
    /// The initial grace was given up when a tampered state was installed over: the
    /// client must be activated by a host.
    pub grace_forfeited: bool,
    /// The held (verified) ticket's validity end, if any.
    pub ticket_valid_until: Option<Timestamp>,
    /// The held (verified) ticket's signed issue time, if any.
    pub ticket_issued_at: Option<Timestamp>,
    /// The clock difference client↔host that was allowed when the ticket was taken.
    pub max_clock_skew: SignedDuration,
    /// The latest time the client knows its clock has reached: its own latest reading,
    /// or the reading a host's verified answer confirmed. `None` when nothing is known.
    pub latest_trusted: Option<Timestamp>,
    /// Why the state cannot be believed, if it cannot.
    pub tamper: Option<Tamper>,
}

impl LicenseInputs {
    /// Inputs with only the install time, the grace and the ticket's end known: no
    /// tampering, nothing seen of the clock (as in the simulator, which plays clocks
    /// that never go back).
    pub fn plain(
        installed_at: Option<Timestamp>,
        grace_days: u32,
        ticket_valid_until: Option<Timestamp>,
    ) -> LicenseInputs {
        LicenseInputs {
            installed_at,
            grace_days,
            grace_forfeited: false,
            ticket_valid_until,
            ticket_issued_at: None,
            max_clock_skew: SignedDuration::ZERO,
            latest_trusted: None,
            tamper: None,
        }
    }
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
    /// The stable error code of a state that is a refusal (`clock-rollback`,
    /// `state-tampered`), for scripts; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

/// The latest of the times the clock cannot legitimately read before, with the time it
/// was seen, or `None` when `now` is not before any of them.
fn rollback(i: &LicenseInputs, now: Timestamp) -> Option<(Timestamp, Timestamp, &'static str)> {
    let own = i.latest_trusted.map(|t| {
        (
            util::add(t, -CLOCK_ROLLBACK_TOLERANCE),
            t,
            "a time this client has already seen",
        )
    });
    let signed = i.ticket_issued_at.map(|t| {
        let slack = i.max_clock_skew.saturating_add(REQUEST_SLACK);
        (
            util::add(t, -slack),
            t,
            "the time its host signed the ticket it holds",
        )
    });
    [own, signed]
        .into_iter()
        .flatten()
        .filter(|(floor, _, _)| now < *floor)
        .max_by_key(|(floor, _, _)| *floor)
}

/// The license state at `now`.
///
/// A tampered state and a clock set back come first: they are never licensed and never
/// in a grace, whatever ticket or install time the state holds, since both could be
/// the product of the edit or of the false clock.
pub fn license_state(i: &LicenseInputs, now: Timestamp) -> LicenseStatus {
    let status = |state, until, reason: String| LicenseStatus {
        state,
        until,
        reason,
        expiry_warning: false,
        code: None,
    };
    let refused = |state, until, reason: String, code| LicenseStatus {
        code: Some(code),
        ..status(state, until, reason)
    };
    let Some(installed_at) = i.installed_at else {
        return status(
            LicenseState::Unlicensed,
            None,
            "no setup key is installed; run `volact install-key KEY`".into(),
        );
    };
    match i.tamper {
        Some(Tamper::Edited) => {
            return refused(
                LicenseState::StateTampered,
                None,
                "the client state was changed outside volact (its seal does not match), so it is not believed: not licensed, no grace. Run `volact install-key KEY` to install the setup key again: the machine keeps its client id but no initial grace, so then run `volact activate` against a host".into(),
                ErrorCode::StateTampered,
            );
        }
        Some(Tamper::OtherMachine) => {
            return refused(
                LicenseState::StateTampered,
                None,
                "the client state was written on another machine (a copied file or a disk image cloned after the setup key was installed), so it is not believed here: not licensed, no grace. Run `volact rearm` to give this machine its own client id, then `volact activate`".into(),
                ErrorCode::StateTampered,
            );
        }
        None => {}
    }
    if let Some((floor, seen, what)) = rollback(i, now) {
        return refused(
            LicenseState::ClockRollback,
            Some(floor),
            format!(
                "this machine's clock reads {now}, {} earlier than {seen}, {what}: the clock was set back, so the client is neither licensed nor in a grace. Set the clock right (or let NTP do it); the state clears by itself once the clock passes {floor}, or at the next successful `volact activate`",
                human(seen.duration_since(now))
            ),
            ErrorCode::ClockRollback,
        );
    }
    // A key installed later than any time the clock is known to have reached cannot
    // have been installed by this client: the install time was written by hand.
    let known = i.latest_trusted.map_or(now, |t| t.max(now));
    if installed_at > util::add(known, CLOCK_ROLLBACK_TOLERANCE) {
        return refused(
            LicenseState::StateTampered,
            None,
            format!(
                "the client state says the setup key was installed at {installed_at}, later than this machine's clock ({now}) has ever read, so it is not believed: not licensed, no grace. Run `volact install-key KEY` again, then `volact activate`"
            ),
            ErrorCode::StateTampered,
        );
    }
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
    if i.grace_forfeited {
        return status(
            LicenseState::Notification,
            None,
            "never activated, and no initial grace remains: it was given up when the setup key was installed over a tampered state; run `volact activate` against a host".into(),
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
        let none = LicenseInputs::plain(None, 30, None);
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

    fn hours(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    /// A client installed at day 0 holding a ticket issued at day 1 for 180 days, whose
    /// clock was last seen at `seen`.
    fn holding(seen: Timestamp) -> LicenseInputs {
        LicenseInputs {
            installed_at: Some(t(0)),
            grace_days: 30,
            grace_forfeited: false,
            ticket_valid_until: Some(t(181)),
            ticket_issued_at: Some(t(1)),
            max_clock_skew: hours(4),
            latest_trusted: Some(seen),
            tamper: None,
        }
    }

    #[test]
    fn a_clock_set_back_in_notification_is_clock_rollback_until_it_is_right() {
        // The ticket ran out at day 181, the out-of-tolerance grace at 211; at day 240
        // the client saw its clock (an attempt to renew), then the clock went back to
        // day 100, inside the old ticket.
        let i = holding(t(240));
        assert_eq!(license_state(&i, t(240)).state, LicenseState::Notification);
        let s = license_state(&i, t(100));
        assert_eq!(s.state, LicenseState::ClockRollback, "{}", s.reason);
        assert_eq!(s.code, Some(ErrorCode::ClockRollback));
        assert_eq!(s.until, Some(t(240) - CLOCK_ROLLBACK_TOLERANCE));
        assert!(s.reason.contains("set back"), "{}", s.reason);
        // A few minutes behind is tolerated; past the mark it reads as before.
        let close = t(240) - SignedDuration::from_mins(5);
        assert_eq!(license_state(&i, close).state, LicenseState::Notification);
        assert_eq!(license_state(&i, t(241)).state, LicenseState::Notification);
    }

    #[test]
    fn a_clock_before_the_ticket_was_signed_is_not_licensed() {
        // Nothing else seen: the signed issue time alone gives it away.
        let i = LicenseInputs {
            latest_trusted: None,
            ..holding(t(1))
        };
        assert_eq!(license_state(&i, t(2)).state, LicenseState::Licensed);
        // Within the allowed clock difference, as when the ticket was taken.
        assert_eq!(
            license_state(&i, t(1) - hours(3)).state,
            LicenseState::Licensed
        );
        let s = license_state(&i, t(1) - hours(5));
        assert_eq!(s.state, LicenseState::ClockRollback, "{}", s.reason);
        assert!(s.reason.contains("signed the ticket"), "{}", s.reason);
        let s = license_state(&i, t(-30));
        assert_eq!(s.state, LicenseState::ClockRollback);
    }

    #[test]
    fn a_tampered_state_is_never_licensed_nor_in_grace() {
        for tamper in [Tamper::Edited, Tamper::OtherMachine] {
            let i = LicenseInputs {
                tamper: Some(tamper),
                ..holding(t(2))
            };
            for now in [t(0), t(2), t(100), t(200), t(500)] {
                let s = license_state(&i, now);
                assert_eq!(s.state, LicenseState::StateTampered, "{tamper:?} {now}");
                assert_eq!(s.code, Some(ErrorCode::StateTampered));
                assert_eq!(s.until, None);
            }
        }
        let s = license_state(
            &LicenseInputs {
                tamper: Some(Tamper::Edited),
                ..holding(t(2))
            },
            t(2),
        );
        assert!(s.reason.contains("install-key"), "{}", s.reason);
        let s = license_state(
            &LicenseInputs {
                tamper: Some(Tamper::OtherMachine),
                ..holding(t(2))
            },
            t(2),
        );
        assert!(s.reason.contains("rearm"), "{}", s.reason);
    }

    #[test]
    fn an_install_time_no_clock_has_reached_is_tampered() {
        // Installed "in 2099" by an edit: no grace until then, and no grace at all.
        let i = LicenseInputs::plain(Some(t(25_000)), 30, None);
        let s = license_state(&i, t(0));
        assert_eq!(s.state, LicenseState::StateTampered, "{}", s.reason);
        let seen = LicenseInputs {
            latest_trusted: Some(t(1)),
            ..i
        };
        assert_eq!(
            license_state(&seen, t(3)).state,
            LicenseState::StateTampered
        );
        // Installed at a time the clock did reach, then the clock went back: a rollback.
        let back = LicenseInputs {
            latest_trusted: Some(t(10)),
            ..LicenseInputs::plain(Some(t(5)), 30, None)
        };
        assert_eq!(
            license_state(&back, t(2)).state,
            LicenseState::ClockRollback
        );
        assert_eq!(
            license_state(&back, t(10)).state,
            LicenseState::InitialGrace
        );
    }

    #[test]
    fn a_forfeited_grace_is_notification_until_activated() {
        let i = LicenseInputs {
            grace_forfeited: true,
            ..LicenseInputs::plain(Some(t(0)), 30, None)
        };
        let s = license_state(&i, t(1));
        assert_eq!(s.state, LicenseState::Notification);
        assert_eq!(s.code, None);
        let held = LicenseInputs {
            ticket_valid_until: Some(t(181)),
            ..i
        };
        assert_eq!(license_state(&held, t(2)).state, LicenseState::Licensed);
    }

    #[test]
    fn the_code_is_serialized_only_for_refusals() {
        let i = LicenseInputs::plain(Some(t(0)), 30, None);
        let json = serde_json::to_value(license_state(&i, t(1))).unwrap();
        assert!(json.get("code").is_none(), "{json}");
        let back = LicenseInputs {
            latest_trusted: Some(t(9)),
            ..i
        };
        let json = serde_json::to_value(license_state(&back, t(1))).unwrap();
        assert_eq!(json["state"], "clock-rollback");
        assert_eq!(json["code"], "clock-rollback");
    }
}
