//! Host keys: the vendor's signed entitlement for one customer to run hosts.

use crate::token::Document;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Default number of distinct hosts one host key may activate.
pub const DEFAULT_MAX_HOSTS: u32 = 6;
/// Default number of activations one host may make with one host key.
pub const DEFAULT_MAX_ACTIVATIONS: u32 = 10;

/// A host key's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// Key id.
    pub jti: String,
    /// The vendor that issued it.
    pub vendor: String,
    /// The customer it was issued to.
    pub customer: String,
    /// The key group whose products hosts with this key activate.
    pub group: String,
    /// Optional cap on distinct clients per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// When the key stops activating hosts and host certificates from it end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<Timestamp>,
    /// Distinct hosts it may activate.
    pub max_hosts: u32,
    /// Activations per host.
    pub max_activations: u32,
    /// When it was issued.
    pub iat: Timestamp,
}

impl Document for HostKey {
    const TYPE: &'static str = "volact.host-key";
}
