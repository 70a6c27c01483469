//! The volact host's engine: the pure rules of `volact-core` applied to the host's
//! state (certificate, catalog, count, revocations) and recorded through the store by a
//! group-commit writer; with the data directory, the configuration, clone tracking,
//! maintenance, DNS publishing and the status report. No HTTP: the server
//! (`volact-host`) only translates between HTTP and this crate.

pub mod admission;
pub mod catalog_update;
pub mod clock;
pub mod clones;
pub mod config;
pub mod data;
pub mod dirlock;
pub mod dns;
pub mod engine;
pub mod health;
pub mod inventory;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod migrate;
pub mod registry;
pub mod renewal;
pub mod shared_count;
pub mod status;
pub mod storage;
pub mod tls_config;
pub mod usage;
pub mod vendor_config;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock, whole_seconds};
pub use engine::{Engine, EngineParts};

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
