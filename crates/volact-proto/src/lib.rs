//! Wire types of the volact protocol and the stable error codes every refusal carries.
//!
//! This crate holds data only: it has no rules, no I/O and no clock. The host, the client
//! and the command line all speak in these types, so a field means the same everywhere.

pub mod admin;
mod error;
mod wire;

pub use error::{ApiError, ErrorCode};
pub use wire::*;

/// Default TCP port of a volact host (never KMS's 1688).
pub const DEFAULT_PORT: u16 = 7688;

/// Largest request body the host accepts, in bytes. Activation requests are a few hundred
/// bytes; anything near this size is an attack or a bug.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
