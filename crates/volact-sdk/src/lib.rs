//! # volact-sdk: volume activation inside a product
//!
//! A vendor's product opens its [`License`] with the vendor's public bundle compiled in,
//! asks [`License::check`] at every start (offline, fast, no network), and leaves
//! [`License::start_renewal`] running: it activates against the organisation's volact
//! host, renews on the host's schedule, and tells the product through
//! [`License::on_change`] or [`License::subscribe`] when the state changes.
//!
//! ```no_run
//! use volact_sdk::{License, State};
//!
//! # fn main() -> Result<(), volact_sdk::Error> {
//! # let bundle: &[u8] = b"";
//! // `bundle` is `include_bytes!("vendor.pub")`, the file `volact vendor export` writes.
//! let license = License::open("demo-os", "/var/lib/demo/licence.json", bundle)?;
//! if license.check().reason == volact_sdk::Reason::NoSetupKey {
//!     license.install_key("VK4DX-Q7RMB-…")?;
//! }
//! license.on_change(|check| eprintln!("licence: {} ({})", check.state, check.message));
//! let renewal = license.start_renewal()?;
//! match license.check().state {
//!     State::Licensed | State::InitialGrace | State::OutOfToleranceGrace => { /* run */ }
//!     State::Notification | State::Unlicensed => { /* run reduced, ask to activate */ }
//! }
//! renewal.stop();
//! # Ok(()) }
//! ```
//!
//! What the check believes: only what verifies along the chain from the vendor root the
//! product was built with (root → host certificate → ticket), for this machine (a state
//! copied to another machine is [`Reason::StateFromAnotherMachine`]), never edited
//! ([`Reason::StateEdited`]), with a clock that was not set back
//! ([`Reason::ClockRollback`]). docs/EMBEDDING.md walks through a product from nothing.
//!
//! The C ABI over this crate is `volact-ffi` (`include/volact.h`).

mod check;
mod license;
mod renewal;
mod watch;

pub use check::{Check, Reason, State};
pub use license::{Activation, Installed, License, Settings};
pub use renewal::Renewal;
pub use volact_client::tls::TlsTrust;
pub use volact_client::{ActivateOptions, Expiry, RearmReport, Status};
pub use volact_proto::{ApiError as Error, ErrorCode};

/// The machine's name for the host's inventory: `VOLACT_MACHINE_NAME` when set (tests and
/// simulations play many machines on one), else the system's host name.
pub fn machine_name() -> String {
    if let Ok(name) = std::env::var("VOLACT_MACHINE_NAME")
        && !name.trim().is_empty()
    {
        return name;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// This library's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
