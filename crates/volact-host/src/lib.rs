//! The volact host: its data directory, the activation engine (the pure rules of
//! `volact-core` plus the count index, revocations and a group-commit writer to the
//! store), and the HTTP layer, which only translates.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod clock;
pub mod clones;
pub mod config;
pub mod dashboard;
pub mod data;
pub mod dirlock;
pub mod dns;
pub mod engine;
pub mod health;
pub mod http;
pub mod inventory;
pub mod listener;
pub mod maintenance;
pub mod metrics;
pub mod server;
pub mod status;
pub mod testkit;
pub mod tls;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock, whole_seconds};
pub use engine::Engine;

/// 32 random bytes from the operating system, for keys and nonces.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], volact_proto::ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| {
        volact_proto::ApiError::new(
            volact_proto::ErrorCode::Internal,
            format!("the system's random source failed: {e}"),
        )
    })?;
    Ok(buf)
}

/// A random nonce of 32 hex digits.
pub fn random_nonce() -> Result<String, volact_proto::ApiError> {
    let bytes: [u8; 16] = random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares a presented secret with the expected one in time that does not depend on
/// where they differ, so a token cannot be guessed byte by byte from response times.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}
