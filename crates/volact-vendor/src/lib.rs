//! The vendor's side of volact, apart from its command line:
//!
//! - [`dir`]: the vendor directory (root key, signed catalog, delegated signing keys,
//!   host keys issued offline);
//! - [`ledger`]: one ledger of host activations and renewals for the online service and
//!   the offline files alike (limits, replay refusal, revocations), kept in the vendor
//!   store;
//! - [`report`]: what the vendor sees of its customers (host keys, hosts, usage);
//! - [`service`]: `volact vendor serve`, the online activation service, with its admin
//!   API, `/metrics` and dashboard.
//!
//! The host's side of the same exchanges (renewing, fetching catalogs and revocation
//! lists, sending usage reports) lives with the host, in the `volact` command.

pub mod dir;
pub mod ledger;
pub mod report;
pub mod service;
