//! Stable error codes and the error object that carries them over the wire and out of the CLI.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable reason for a refusal. The kebab-case string form is the
/// contract; variants are never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Fewer distinct machines have asked than the product's minimum.
    CountInsufficient,
    /// Client and host clocks differ by more than the allowed difference.
    ClockSkew,
    /// The product is not in the host key's key group.
    ProductNotInKeyGroup,
    /// The setup key is mistyped or not in the catalog.
    UnknownSetupKey,
    /// The host has no valid host certificate yet.
    HostNotActivated,
    /// The host certificate has expired.
    HostCertificateExpired,
    /// The host key has been used for as many hosts or activations as it allows.
    HostKeyActivationLimit,
    /// The host key's seat cap is reached; new clients are refused.
    SeatLimitReached,
    /// An administrator revoked this client.
    ClientRevoked,
    /// A signature chain does not verify against the vendor root key.
    UntrustedHost,
    /// Neither DNS discovery nor a pinned host produced a working host.
    NoHostFound,
    /// The host did not answer.
    HostUnreachable,
    /// Too many requests; slow down.
    RateLimited,
    /// The request is malformed.
    BadRequest,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Something is not found (a client id, a file).
    NotFound,
    /// A local precondition fails (no setup key installed, missing files, wrong state).
    InvalidState,
    /// The host's storage failed; the request was not recorded.
    StorageFailure,
    /// An unexpected internal failure.
    Internal,
    /// The vendor revoked this host (or its host key); it must not activate anyone.
    HostRevoked,
    /// The client machine's clock is behind the latest trustworthy time it has seen.
    ClockRollback,
    /// The client's state file was changed outside volact, or copied from another machine.
    StateTampered,
    /// The admin API or the dashboard was asked over plain HTTP from another machine; use
    /// the host's TLS address.
    TlsRequired,
    /// A signed request already answered was presented again (a host activation request
    /// carried to the vendor twice); it spends nothing a second time.
    RequestReplayed,
}

impl ErrorCode {
    /// The stable kebab-case form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::CountInsufficient => "count-insufficient",
            ErrorCode::ClockSkew => "clock-skew",
            ErrorCode::ProductNotInKeyGroup => "product-not-in-key-group",
            ErrorCode::UnknownSetupKey => "unknown-setup-key",
            ErrorCode::HostNotActivated => "host-not-activated",
            ErrorCode::HostCertificateExpired => "host-certificate-expired",
            ErrorCode::HostKeyActivationLimit => "host-key-activation-limit",
            ErrorCode::SeatLimitReached => "seat-limit-reached",
            ErrorCode::ClientRevoked => "client-revoked",
            ErrorCode::UntrustedHost => "untrusted-host",
            ErrorCode::NoHostFound => "no-host-found",
            ErrorCode::HostUnreachable => "host-unreachable",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not-found",
            ErrorCode::InvalidState => "invalid-state",
            ErrorCode::StorageFailure => "storage-failure",
            ErrorCode::Internal => "internal",
            ErrorCode::HostRevoked => "host-revoked",
            ErrorCode::ClockRollback => "clock-rollback",
            ErrorCode::StateTampered => "state-tampered",
            ErrorCode::TlsRequired => "tls-required",
            ErrorCode::RequestReplayed => "request-replayed",
        }
    }

    /// Every code, for exhaustive tables (metrics, documentation).
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::CountInsufficient,
        ErrorCode::ClockSkew,
        ErrorCode::ProductNotInKeyGroup,
        ErrorCode::UnknownSetupKey,
        ErrorCode::HostNotActivated,
        ErrorCode::HostCertificateExpired,
        ErrorCode::HostKeyActivationLimit,
        ErrorCode::SeatLimitReached,
        ErrorCode::ClientRevoked,
        ErrorCode::UntrustedHost,
        ErrorCode::NoHostFound,
        ErrorCode::HostUnreachable,
        ErrorCode::RateLimited,
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::InvalidState,
        ErrorCode::StorageFailure,
        ErrorCode::Internal,
        ErrorCode::HostRevoked,
        ErrorCode::ClockRollback,
        ErrorCode::StateTampered,
        ErrorCode::TlsRequired,
        ErrorCode::RequestReplayed,
    ];

    /// The HTTP status a host answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownSetupKey | ErrorCode::ClockSkew => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::ProductNotInKeyGroup
            | ErrorCode::SeatLimitReached
            | ErrorCode::ClientRevoked
            | ErrorCode::HostKeyActivationLimit
            | ErrorCode::HostRevoked
            | ErrorCode::UntrustedHost
            | ErrorCode::TlsRequired => 403,
            ErrorCode::ClockRollback | ErrorCode::StateTampered | ErrorCode::RequestReplayed => 409,
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidState => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::HostNotActivated
            | ErrorCode::HostCertificateExpired
            | ErrorCode::StorageFailure
            | ErrorCode::HostUnreachable
            | ErrorCode::NoHostFound => 503,
            ErrorCode::CountInsufficient => 200,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a stable code, a message that says what happened and what to do, and the
/// figures behind it. The host answers with it as JSON; the CLI prints the message, or
/// this object with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// An English message for a person: what happened and what to do.
    pub message: String,
    /// The figures behind the refusal (counts, times, limits, field names).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ApiError {
    /// A refusal with no figures.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// A refusal with figures.
    pub fn with_details(
        code: ErrorCode,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        ApiError {
            code,
            message: message.into(),
            details,
        }
    }

    /// A `bad-request` naming the field at fault and why.
    pub fn bad_request(field: &str, why: impl Into<String>) -> Self {
        let why = why.into();
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!("bad request: field `{field}`: {why}"),
            serde_json::json!({ "field": field, "reason": why }),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_strings() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap_or(ErrorCode::Internal);
            assert_eq!(back, code);
        }
    }
}
