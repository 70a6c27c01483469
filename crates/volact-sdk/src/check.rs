//! What [`License::check`](crate::License::check) answers: one of five licence states, a
//! stable reason code, until when, and the reason in words.

use jiff::Timestamp;
use serde::Serialize;
use volact_client::{ClientState, Status};
use volact_core::license::{LicenseState, Tamper};

/// The licence state a product acts on. Five states, as a product needs to tell them
/// apart; why the state is what it is, is the [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(C)]
pub enum State {
    /// Holding a valid ticket from a host: run normally.
    Licensed = 0,
    /// Installed, not activated yet, inside the initial grace: run normally, activate soon.
    InitialGrace = 1,
    /// The ticket expired; inside the out-of-tolerance grace: run, and say that the
    /// product must reach a host.
    OutOfToleranceGrace = 2,
    /// No grace remains: the product should nag (KMS's notification mode).
    Notification = 3,
    /// Not licensed: no setup key, or a state that is not believed (see the reason).
    Unlicensed = 4,
}

impl State {
    /// The stable kebab-case name (`licensed`, `initial-grace`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Licensed => "licensed",
            State::InitialGrace => "initial-grace",
            State::OutOfToleranceGrace => "out-of-tolerance-grace",
            State::Notification => "notification",
            State::Unlicensed => "unlicensed",
        }
    }

    /// Whether the product may run with its licensed features: licensed or in a grace.
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            State::Licensed | State::InitialGrace | State::OutOfToleranceGrace
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the licence is in its state: a stable code a product can branch on and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(C)]
pub enum Reason {
    /// A host's ticket, verified from the vendor root, is in force.
    Activated = 0,
    /// Installed and inside the initial grace, not activated yet.
    NotActivatedYet = 1,
    /// The ticket expired; the out-of-tolerance grace runs.
    ActivationExpired = 2,
    /// No grace remains and no ticket is in force.
    GraceOver = 3,
    /// No setup key is installed.
    NoSetupKey = 4,
    /// The state file was changed outside volact (its seal does not match).
    StateEdited = 5,
    /// The state file was written on another machine (copied, or a cloned disk image).
    StateFromAnotherMachine = 6,
    /// The clock reads earlier than a time this client has already seen.
    ClockRollback = 7,
    /// The installed setup key belongs to another vendor than the one the product trusts.
    WrongVendor = 8,
    /// The installed setup key is for another application than the product's.
    WrongApplication = 9,
    /// The state file cannot be read (permissions, or it is not a volact state).
    StateUnreadable = 10,
}

impl Reason {
    /// The stable kebab-case code (`activated`, `clock-rollback`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Activated => "activated",
            Reason::NotActivatedYet => "not-activated-yet",
            Reason::ActivationExpired => "activation-expired",
            Reason::GraceOver => "grace-over",
            Reason::NoSetupKey => "no-setup-key",
            Reason::StateEdited => "state-edited",
            Reason::StateFromAnotherMachine => "state-from-another-machine",
            Reason::ClockRollback => "clock-rollback",
            Reason::WrongVendor => "wrong-vendor",
            Reason::WrongApplication => "wrong-application",
            Reason::StateUnreadable => "state-unreadable",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of an offline licence check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The state to act on.
    pub state: State,
    /// Why, as a stable code.
    pub reason: Reason,
    /// When this state ends by itself: the ticket's end while licensed, the grace's end
    /// in a grace, the time the clock must pass after a rollback; `None` otherwise.
    pub until: Option<Timestamp>,
    /// When the ticket is due for renewal (renewal runs by itself; this is for display).
    pub renew_after: Option<Timestamp>,
    /// The reason in a sentence for a person, saying what to do.
    pub message: String,
    /// This machine's client id, once a setup key is installed.
    pub client_id: Option<String>,
    /// The installed product's id, from the vendor's signed catalog.
    pub product: Option<String>,
}

impl Check {
    /// Whether two checks differ in what a product acts on (state, reason, until), which
    /// is when change notices are sent.
    pub fn differs_from(&self, other: &Check) -> bool {
        (self.state, self.reason, self.until) != (other.state, other.reason, other.until)
    }

    /// An unlicensed answer for a reason found before the state could be judged.
    pub(crate) fn refused(reason: Reason, message: String, state: Option<&ClientState>) -> Check {
        let installed = state.and_then(|s| s.installed.as_ref());
        Check {
            state: State::Unlicensed,
            reason,
            until: None,
            renew_after: None,
            message,
            client_id: installed.map(|i| i.client_id.clone()),
            product: None,
        }
    }

    /// The answer for `status`, computed from `state` (which `status` was made from).
    pub(crate) fn from_status(status: &Status, state: &ClientState) -> Check {
        let license = &status.license;
        let (state_now, reason) = match license.state {
            LicenseState::Licensed => (State::Licensed, Reason::Activated),
            LicenseState::InitialGrace => (State::InitialGrace, Reason::NotActivatedYet),
            LicenseState::OutOfToleranceGrace => {
                (State::OutOfToleranceGrace, Reason::ActivationExpired)
            }
            LicenseState::Notification => (State::Notification, Reason::GraceOver),
            LicenseState::Unlicensed => (State::Unlicensed, Reason::NoSetupKey),
            LicenseState::ClockRollback => (State::Unlicensed, Reason::ClockRollback),
            LicenseState::StateTampered => match state.tamper {
                Some(Tamper::OtherMachine) => (State::Unlicensed, Reason::StateFromAnotherMachine),
                _ => (State::Unlicensed, Reason::StateEdited),
            },
        };
        Check {
            state: state_now,
            reason,
            until: license.until,
            renew_after: status.ticket.as_ref().map(|t| t.renew_after),
            message: license.reason.clone(),
            client_id: status.client_id.clone(),
            product: status.product.clone(),
        }
    }
}
