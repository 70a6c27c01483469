//! The plain-data types of the C ABI: status codes, licence states, reasons and the check.

use volact_proto::ErrorCode;
use volact_sdk::{Check, Reason, State};

/// What a function of the C ABI returns: OK, or the stable error code of the failure.
/// The numbers never change; new codes are added at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolactStatus {
    /// Success.
    Ok = 0,
    /// `count-insufficient`: the host has not counted enough machines yet; try later.
    CountInsufficient = 1,
    /// `clock-skew`: this machine's clock and the host's disagree.
    ClockSkew = 2,
    /// `product-not-in-key-group`: the host's key does not cover this product.
    ProductNotInKeyGroup = 3,
    /// `unknown-setup-key`: not a setup key of this product's vendor and application.
    UnknownSetupKey = 4,
    /// `host-not-activated`: the host is not activated by the vendor yet.
    HostNotActivated = 5,
    /// `host-certificate-expired`.
    HostCertificateExpired = 6,
    /// `host-key-activation-limit`.
    HostKeyActivationLimit = 7,
    /// `seat-limit-reached`: the host's seat cap is reached.
    SeatLimitReached = 8,
    /// `client-revoked`: this machine was revoked by the host's administrator.
    ClientRevoked = 9,
    /// `untrusted-host`: an answer that does not verify from the vendor root.
    UntrustedHost = 10,
    /// `no-host-found`: no pinned host and none found through DNS.
    NoHostFound = 11,
    /// `host-unreachable`: every host tried failed to answer.
    HostUnreachable = 12,
    /// `rate-limited`.
    RateLimited = 13,
    /// `bad-request`: an argument was not valid (see the message).
    BadRequest = 14,
    /// `unauthorized`.
    Unauthorized = 15,
    /// `not-found`.
    NotFound = 16,
    /// `invalid-state`: the operation does not fit the licence's state (see the message).
    InvalidState = 17,
    /// `storage-failure`: the host cannot store the activation now.
    StorageFailure = 18,
    /// `internal`: a bug (also a panic caught at the boundary).
    Internal = 19,
    /// `host-revoked`: the vendor revoked the host.
    HostRevoked = 20,
    /// `clock-rollback`: this machine's clock was set back.
    ClockRollback = 21,
    /// `state-tampered`: the licence state was edited outside the library.
    StateTampered = 22,
    /// `tls-required`.
    TlsRequired = 23,
    /// `request-replayed`.
    RequestReplayed = 24,
    /// A pointer argument that must not be NULL was NULL.
    NullArgument = 100,
    /// A string argument was not UTF-8.
    InvalidUtf8 = 101,
}

impl VolactStatus {
    /// The status for an SDK error code.
    pub fn from_code(code: ErrorCode) -> VolactStatus {
        match code {
            ErrorCode::CountInsufficient => VolactStatus::CountInsufficient,
            ErrorCode::ClockSkew => VolactStatus::ClockSkew,
            ErrorCode::ProductNotInKeyGroup => VolactStatus::ProductNotInKeyGroup,
            ErrorCode::UnknownSetupKey => VolactStatus::UnknownSetupKey,
            ErrorCode::HostNotActivated => VolactStatus::HostNotActivated,
            ErrorCode::HostCertificateExpired => VolactStatus::HostCertificateExpired,
            ErrorCode::HostKeyActivationLimit => VolactStatus::HostKeyActivationLimit,
            ErrorCode::SeatLimitReached => VolactStatus::SeatLimitReached,
            ErrorCode::ClientRevoked => VolactStatus::ClientRevoked,
            ErrorCode::UntrustedHost => VolactStatus::UntrustedHost,
            ErrorCode::NoHostFound => VolactStatus::NoHostFound,
            ErrorCode::HostUnreachable => VolactStatus::HostUnreachable,
            ErrorCode::RateLimited => VolactStatus::RateLimited,
            ErrorCode::BadRequest => VolactStatus::BadRequest,
            ErrorCode::Unauthorized => VolactStatus::Unauthorized,
            ErrorCode::NotFound => VolactStatus::NotFound,
            ErrorCode::InvalidState => VolactStatus::InvalidState,
            ErrorCode::StorageFailure => VolactStatus::StorageFailure,
            ErrorCode::Internal => VolactStatus::Internal,
            ErrorCode::HostRevoked => VolactStatus::HostRevoked,
            ErrorCode::ClockRollback => VolactStatus::ClockRollback,
            ErrorCode::StateTampered => VolactStatus::StateTampered,
            ErrorCode::TlsRequired => VolactStatus::TlsRequired,
            ErrorCode::RequestReplayed => VolactStatus::RequestReplayed,
        }
    }

    /// The stable kebab-case code (`count-insufficient`, …; `ok`, `null-argument`,
    /// `invalid-utf8` for the ABI's own).
    pub fn as_str(self) -> &'static str {
        match self {
            VolactStatus::Ok => "ok",
            VolactStatus::NullArgument => "null-argument",
            VolactStatus::InvalidUtf8 => "invalid-utf8",
            other => ErrorCode::ALL
                .iter()
                .find(|c| VolactStatus::from_code(**c) == other)
                .map_or("internal", |c| c.as_str()),
        }
    }
}

/// The licence state a product acts on (see `volact_sdk::State`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolactState {
    /// Holding a valid ticket: run normally.
    Licensed = 0,
    /// Not activated yet, inside the initial grace: run normally.
    InitialGrace = 1,
    /// The ticket expired; inside the out-of-tolerance grace: run, and warn.
    OutOfToleranceGrace = 2,
    /// No grace remains: nag.
    Notification = 3,
    /// Not licensed (see the reason).
    Unlicensed = 4,
}

impl From<State> for VolactState {
    fn from(s: State) -> VolactState {
        match s {
            State::Licensed => VolactState::Licensed,
            State::InitialGrace => VolactState::InitialGrace,
            State::OutOfToleranceGrace => VolactState::OutOfToleranceGrace,
            State::Notification => VolactState::Notification,
            State::Unlicensed => VolactState::Unlicensed,
        }
    }
}

/// Why the licence is in its state (see `volact_sdk::Reason`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolactReason {
    /// A verified ticket is in force.
    Activated = 0,
    /// Inside the initial grace, not activated yet.
    NotActivatedYet = 1,
    /// The ticket expired; the out-of-tolerance grace runs.
    ActivationExpired = 2,
    /// No grace remains.
    GraceOver = 3,
    /// No setup key is installed.
    NoSetupKey = 4,
    /// The state was changed outside the library.
    StateEdited = 5,
    /// The state was written on another machine.
    StateFromAnotherMachine = 6,
    /// The clock was set back.
    ClockRollback = 7,
    /// The installed key is another vendor's.
    WrongVendor = 8,
    /// The installed key is another application's.
    WrongApplication = 9,
    /// The state file cannot be read.
    StateUnreadable = 10,
}

impl From<Reason> for VolactReason {
    fn from(r: Reason) -> VolactReason {
        match r {
            Reason::Activated => VolactReason::Activated,
            Reason::NotActivatedYet => VolactReason::NotActivatedYet,
            Reason::ActivationExpired => VolactReason::ActivationExpired,
            Reason::GraceOver => VolactReason::GraceOver,
            Reason::NoSetupKey => VolactReason::NoSetupKey,
            Reason::StateEdited => VolactReason::StateEdited,
            Reason::StateFromAnotherMachine => VolactReason::StateFromAnotherMachine,
            Reason::ClockRollback => VolactReason::ClockRollback,
            Reason::WrongVendor => VolactReason::WrongVendor,
            Reason::WrongApplication => VolactReason::WrongApplication,
            Reason::StateUnreadable => VolactReason::StateUnreadable,
        }
    }
}

/// An offline licence check, as plain data. Times are Unix seconds, 0 when absent. The
/// message and ids are in `volact_check_json`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolactCheck {
    /// The state to act on.
    pub state: VolactState,
    /// Why.
    pub reason: VolactReason,
    /// When the state ends by itself (ticket end, grace end), or 0.
    pub until: i64,
    /// When the ticket is due for renewal, or 0.
    pub renew_after: i64,
}

impl From<&Check> for VolactCheck {
    fn from(c: &Check) -> VolactCheck {
        VolactCheck {
            state: c.state.into(),
            reason: c.reason.into(),
            until: c.until.map_or(0, |t| t.as_second()),
            renew_after: c.renew_after.map_or(0, |t| t.as_second()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_own_status_and_name() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let status = VolactStatus::from_code(code);
            assert!(seen.insert(status as i32), "{code:?} shares a number");
            assert_eq!(status.as_str(), code.as_str());
        }
        assert_eq!(VolactStatus::Ok.as_str(), "ok");
    }
}
