//! Plain records exchanged with a [`crate::Store`].

use serde::{Deserialize, Serialize};

/// One activation request as the host decided it, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRecord {
    /// When the host decided (host clock, Unix seconds).
    pub at: i64,
    /// The client id (hyphenated UUID).
    pub client_id: String,
    /// The machine name the client sent.
    pub machine_name: String,
    /// The client's network address as the host saw it.
    pub address: String,
    /// Product id, empty when the setup key was unknown.
    pub product: String,
    /// Application (count group), empty when unknown.
    pub application: String,
    /// The minimum count the client asked for.
    pub minimum_asked: u32,
    /// The count answered (0 when the request was refused before counting).
    pub count: u32,
    /// The stable result code: `activated` or an error code.
    pub result: String,
    /// Whether this request counts: it sets the client's last counted time to `at`.
    pub counted: bool,
    /// The id of the ticket issued, if any.
    pub ticket_id: Option<String>,
    /// When the issued ticket ends, if any.
    pub ticket_valid_until: Option<i64>,
}

/// A client that counts, for rebuilding the in-memory count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedClient {
    /// The client id.
    pub client_id: String,
    /// Its application.
    pub application: String,
    /// Its last counted request.
    pub last_counted: i64,
}

/// One row of the inventory: every client ever seen is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client id.
    pub client_id: String,
    /// Last machine name seen.
    pub machine_name: String,
    /// Last address seen.
    pub address: String,
    /// Last product asked for.
    pub product: String,
    /// Application of that product.
    pub application: String,
    /// First request.
    pub first_seen: i64,
    /// Last request, whatever its result.
    pub last_seen: i64,
    /// Last request that counted, if any.
    pub last_counted: Option<i64>,
    /// Result code of the last request.
    pub last_result: String,
    /// Count answered to the last request.
    pub last_count: u32,
    /// Id of the last ticket issued.
    pub ticket_id: Option<String>,
    /// End of the last ticket issued.
    pub ticket_valid_until: Option<i64>,
    /// Revoked by an administrator.
    pub revoked: bool,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// Number of requests seen from this client.
    pub requests: u64,
}

/// Which inventory rows to list. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    /// Only this application.
    pub application: Option<String>,
    /// Only this product.
    pub product: Option<String>,
    /// Only clients whose id, machine name or address contains this text.
    pub search: Option<String>,
    /// Only revoked (true) or not revoked (false) clients.
    pub revoked: Option<bool>,
    /// Only clients last counted at or after this time (true) / before it or never (false).
    pub counted_since: Option<(i64, bool)>,
    /// At most this many rows (None: all).
    pub limit: Option<u32>,
}

/// One audit event: one activation request and what the host answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, increasing.
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// Client id.
    pub client_id: String,
    /// Machine name.
    pub machine_name: String,
    /// Address.
    pub address: String,
    /// Product id (empty if unknown).
    pub product: String,
    /// Minimum count asked.
    pub minimum_asked: u32,
    /// Count answered.
    pub count: u32,
    /// Result code.
    pub result: String,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events at or after this time.
    pub since: Option<i64>,
    /// Only events with id greater than this (for following).
    pub after_id: Option<i64>,
    /// Only this client.
    pub client_id: Option<String>,
    /// Only this result code.
    pub result: Option<String>,
    /// At most this many (None: all).
    pub limit: Option<u32>,
    /// Oldest first instead of newest first: with `after_id`, a follower reads every
    /// event in order even when more than `limit` arrived since its last look.
    pub oldest_first: bool,
}

/// The same client id seen from another machine within a day: a cloned disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSighting {
    /// When the host saw it (Unix seconds).
    pub at: i64,
    /// The client id.
    pub client_id: String,
    /// The machine name of the request that raised the flag.
    pub machine_name: String,
    /// Another machine name seen for this client within the day, when known.
    pub other_machine_name: Option<String>,
    /// The address of the request that raised the flag.
    pub address: String,
    /// The product asked for, empty when unknown.
    pub product: String,
    /// `machine-name` or `machine-fingerprint`: what differed.
    pub reason: String,
}

/// A client flagged as running from a cloned disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRecord {
    /// The client id.
    pub client_id: String,
    /// First flag.
    pub first_flagged: i64,
    /// Latest flag.
    pub last_flagged: i64,
    /// Number of flags raised (at most about one a day).
    pub flags: u64,
    /// Machine name of the latest flagged request.
    pub machine_name: String,
    /// Another machine name seen with the same client id, when known.
    pub other_machine_name: Option<String>,
    /// Address of the latest flagged request.
    pub address: String,
    /// What differed the last time: `machine-name` or `machine-fingerprint`.
    pub reason: String,
}

/// A host using the store, as it last registered itself: several hosts sharing one
/// PostgreSQL database each keep a row here, refreshed every few seconds, so any of them
/// can list the others and when each was last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host id (from its identity key).
    pub host_id: String,
    /// The machine's name.
    pub name: String,
    /// Where it serves (`http://…`, `https://…`).
    pub listen_urls: Vec<String>,
    /// The volact version it runs.
    pub version: String,
    /// When it last registered (Unix seconds, its clock).
    pub last_seen: i64,
}

/// Rows of one table copied whole from another store, when a host moves to another
/// backend (`volact host migrate-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportRows {
    /// Inventory rows, as they are (revocation, counts of requests and all).
    Clients(Vec<ClientRecord>),
    /// Audit events, keeping their ids.
    Events(Vec<EventRecord>),
    /// Cloned-image flags.
    Clones(Vec<CloneRecord>),
    /// Totals of requests by result code.
    Totals(Vec<(String, u64)>),
}
