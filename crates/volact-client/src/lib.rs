//! The volact client: the shell around the pure core on a client machine.
//!
//! It keeps the client's state in one sealed JSON file ([`ClientState`]), installs setup keys
//! ([`install_key`]), pins hosts ([`set_host`]), activates over HTTP ([`activate`]) and
//! verifies every answer along the vendor's chain, reports status ([`status`],
//! [`expiry`]) and says when to renew ([`next_attempt`]); volact-sdk runs the renewal.
//!
//! Every operation takes `now` from its caller instead of reading the clock, so tests and
//! the simulator can run months in a moment.

mod activate;
pub mod admin;
pub mod discovery;
mod failover;
mod fingerprint;
mod http;
pub use http::read_capped;
mod ops;
mod schedule;
mod seal;
mod state;
mod status;
pub mod tls;

#[cfg(test)]
mod tests;

pub use activate::{
    ActivationOutcome, activate, activate_and_save, activate_and_save_on, activate_and_save_with,
};
pub use discovery::FoundBy;
pub use failover::{ActivateOptions, activate_with, candidates};
pub use http::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use ops::{
    AdoptReport, InstallReport, RearmReport, adopt, clear_dns_server, clear_host, install_key,
    normalize_host, parse_dns_server, rearm, set_dns_server, set_domain, set_host, set_host_cache,
};
pub use schedule::{forget_verified, next_attempt_for as next_attempt};
pub use seal::MachineId;
pub use state::{
    Attempt, ClientState, Guard, Installed, RESULT_ACTIVATED, STATE_VERSION, StoredTicket,
    default_state_path, note_clock, note_clock_on,
};
pub use status::{Expiry, Status, TicketStatus, VendorStatus, expiry, status};
