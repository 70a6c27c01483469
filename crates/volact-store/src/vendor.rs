//! Storage of the vendor's activation service: host keys as records, the hosts each has
//! activated (the ledger of its limits and of answered requests), revocations with the
//! sequence of the signed list, and the hosts' usage reports.
//!
//! One trait, [`VendorStore`], with a SQLite and a PostgreSQL backend; both prove
//! themselves against the same conformance suite (`conformance::vendor`). Times are Unix
//! seconds (UTC), as in the host's store.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use volact_proto::ApiError;

use crate::StoreError;

/// A host key the vendor issued, as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyRecord {
    /// The key's id (its `jti`).
    pub key_id: String,
    /// The customer it was issued to.
    pub customer: String,
    /// Its key group.
    pub group: String,
    /// Its seat cap.
    pub seats: Option<u32>,
    /// Distinct hosts it may activate.
    pub max_hosts: u32,
    /// Activations per host.
    pub max_activations: u32,
    /// When it expires.
    pub expires: Option<i64>,
    /// Whether its hosts send usage reports.
    pub usage_reports: bool,
    /// The signed host key.
    pub token: String,
    /// When it was issued.
    pub created: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A host the service activated, within one host key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host key it was activated with.
    pub key_id: String,
    /// The host's id.
    pub host_id: String,
    /// The host's public key (PASERK), which its usage reports are verified with.
    pub host_public_key: String,
    /// Activations spent on it.
    pub activations: u32,
    /// Its first activation.
    pub first_activated: i64,
    /// Its last activation, renewal or usage report.
    pub last_contact: i64,
    /// When its latest certificate expires.
    pub certificate_expires: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// An activation to admit: the request's host, nonce and time, and the key's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAdmission {
    /// The host key's id.
    pub key_id: String,
    /// The host's id.
    pub host_id: String,
    /// The host's public key.
    pub host_public_key: String,
    /// The request's nonce.
    pub nonce: String,
    /// Now.
    pub at: i64,
    /// When the certificate to be issued expires.
    pub certificate_expires: i64,
    /// The key's host limit.
    pub max_hosts: u32,
    /// The key's activations per host.
    pub max_activations: u32,
}

/// Why an activation or renewal was not admitted.
#[derive(Debug, Clone)]
pub enum AdmitError {
    /// This host's request with this nonce was answered at this time already.
    Replayed {
        /// When it was answered.
        answered_at: i64,
    },
    /// A rule refused it (a limit, with its numbers; an unknown host), as the rules
    /// crate words it.
    Refused(ApiError),
    /// The store failed; nothing was recorded.
    Store(StoreError),
}

impl From<StoreError> for AdmitError {
    fn from(e: StoreError) -> AdmitError {
        AdmitError::Store(e)
    }
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevokedKind {
    /// A host key (all its hosts).
    HostKey,
    /// One host.
    Host,
    /// A delegated signing key.
    Delegation,
}

impl RevokedKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedKind::HostKey => "host-key",
            RevokedKind::Host => "host",
            RevokedKind::Delegation => "delegation",
        }
    }

    /// The kind a stored name names.
    pub fn parse(text: &str) -> Option<RevokedKind> {
        [
            RevokedKind::HostKey,
            RevokedKind::Host,
            RevokedKind::Delegation,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// What it names.
    pub kind: RevokedKind,
    /// The id of the key, host or delegation.
    pub id: String,
    /// When.
    pub at: i64,
    /// Why, if said.
    pub reason: Option<String>,
}

/// Every revocation, and the sequence number of the list they make: it grows with every
/// revocation, so hosts can tell a newer list from an older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// The list's sequence number (0: nothing revoked yet).
    pub sequence: u64,
    /// The revocations, oldest first.
    pub entries: Vec<RevokedEntry>,
}

/// One day's usage report of one host, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The host key.
    pub key_id: String,
    /// The host.
    pub host_id: String,
    /// The day (`YYYY-MM-DD`, UTC).
    pub day: String,
    /// When the service received it.
    pub received: i64,
    /// The host's version.
    pub host_version: String,
    /// Clients the host knows.
    pub clients_known: u64,
    /// Counted clients per product.
    pub products: BTreeMap<String, u64>,
    /// The count of each application.
    pub applications: BTreeMap<String, u64>,
    /// The host-signed report, as proof.
    pub token: String,
}

/// Which usage reports to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this host key's hosts.
    pub key_id: Option<String>,
    /// Only the host keys of this customer.
    pub customer: Option<String>,
    /// From this day on (`YYYY-MM-DD`).
    pub from_day: Option<String>,
    /// Up to this day.
    pub to_day: Option<String>,
}

/// The vendor service's storage.
#[async_trait]
pub trait VendorStore: Send + Sync + std::fmt::Debug {
    /// Adds a host key; `Conflict` when its id is known.
    async fn put_host_key(&self, key: &HostKeyRecord) -> Result<(), StoreError>;

    /// The host key `key_id`, if known.
    async fn host_key(&self, key_id: &str) -> Result<Option<HostKeyRecord>, StoreError>;

    /// Host keys, of one customer or all, oldest first.
    async fn host_keys(&self, customer: Option<&str>) -> Result<Vec<HostKeyRecord>, StoreError>;

    /// Admits an activation in one transaction: refuses a replayed (host, nonce), then
    /// the key's limits (by [`volact_core::certificate::check_limits`]), else records
    /// the nonce, the host (a known host takes no new slot) and one more activation.
    /// Returns the host's activations after it. A key with no record (issued offline)
    /// is admitted by the limits given.
    async fn admit(&self, admission: &HostAdmission) -> Result<u32, AdmitError>;

    /// Records a renewal of a known host (refused when replayed, or for a host this key
    /// never activated): no activation is spent.
    async fn renew(
        &self,
        key_id: &str,
        host_id: &str,
        nonce: &str,
        at: i64,
        certificate_expires: i64,
    ) -> Result<(), AdmitError>;

    /// Hosts, of one key or all, by key then first activation.
    async fn hosts(&self, key_id: Option<&str>) -> Result<Vec<HostRecord>, StoreError>;

    /// Records a revocation (and marks the host key or host, when it has a record);
    /// returns the list's new sequence number.
    async fn revoke(
        &self,
        kind: RevokedKind,
        id: &str,
        at: i64,
        reason: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Every revocation and the list's sequence number.
    async fn revocations(&self) -> Result<Revocations, StoreError>;

    /// Keeps a usage report (replacing the same host's report of the same day) and
    /// notes the contact on the host.
    async fn put_usage(&self, report: &UsageRecord) -> Result<(), StoreError>;

    /// Usage reports, by day then host.
    async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRecord>, StoreError>;

    /// Closes the store.
    async fn close(&self) {}
}
