//! The activation model of volact as pure functions: signed documents (catalog, host key,
//! host certificate, ticket), setup keys, the count, the host's decision and the client's
//! license state.
//!
//! Nothing here performs I/O or reads a clock: every function that depends on time takes
//! `now` as an argument, and randomness arrives as bytes from the caller. The host, the
//! client, the tests and the simulator all run this same code.

pub mod catalog;
pub mod certificate;
pub mod clones;
pub mod count;
pub mod decide;
pub mod delegation;
mod ed25519;
pub mod fingerprint;
pub mod host_key;
pub mod keys;
pub mod license;
pub mod ratelimit;
pub mod refusal;
pub mod renewal;
pub mod revocation;
pub mod settings;
pub mod setup_key;
pub mod ticket;
pub mod token;
pub mod usage;
pub mod util;
pub mod verify;

pub use volact_proto::{ApiError, ErrorCode};
