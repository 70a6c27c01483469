//! The admin API's requests and answers (`/v1/admin/…` on a host): the inventory, the
//! audit log, cloned-image flags and revocations. The host serves them, the command line,
//! the dashboard's tests and the typed admin client (`volact_client::admin`) read them.
//!
//! The host's status report (`GET /v1/admin/status`) is not here: it is built from the
//! catalog's and host key's own types, and stays with the host's engine.

use crate::ApiError;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Clients listed when no limit is given.
pub const DEFAULT_CLIENT_LIMIT: u32 = 10_000;
/// Events listed when no limit is given.
pub const DEFAULT_EVENT_LIMIT: u32 = 1_000;
/// The largest limit accepted.
pub const MAX_LIMIT: u32 = 1_000_000;

/// A client's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientState {
    /// Counted within the count window.
    Active,
    /// Not counted within the count window (or never counted).
    Stale,
    /// Revoked by an administrator.
    Revoked,
}

impl ClientState {
    /// The stable form.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Active => "active",
            ClientState::Stale => "stale",
            ClientState::Revoked => "revoked",
        }
    }

    /// Parses `active`, `stale` or `revoked`.
    pub fn parse(text: &str) -> Result<ClientState, ApiError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(ClientState::Active),
            "stale" => Ok(ClientState::Stale),
            "revoked" => Ok(ClientState::Revoked),
            _ => Err(ApiError::bad_request(
                "state",
                format!("`{text}` is not active, stale or revoked"),
            )),
        }
    }
}

/// One client of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    /// Client id.
    pub client_id: String,
    /// Last machine name seen.
    pub machine_name: String,
    /// Last address seen.
    pub address: String,
    /// Last product asked for.
    pub product: String,
    /// Its application.
    pub application: String,
    /// First request.
    pub first_seen: Timestamp,
    /// Last request.
    pub last_seen: Timestamp,
    /// Last counted request.
    pub last_counted: Option<Timestamp>,
    /// Result code of the last request.
    pub last_result: String,
    /// Count answered to the last request.
    pub last_count: u32,
    /// Last ticket issued.
    pub ticket_id: Option<String>,
    /// When that ticket ends.
    pub ticket_valid_until: Option<Timestamp>,
    /// Revoked by an administrator.
    pub revoked: bool,
    /// Why.
    pub revoked_reason: Option<String>,
    /// Requests seen.
    pub requests: u64,
    /// Active, stale or revoked.
    pub state: ClientState,
    /// Whether the client counts now (counted within the window, not revoked).
    pub in_count_window: bool,
    /// Whether the client is flagged as a cloned image.
    pub cloned: bool,
}

/// Which clients to list (`GET /v1/admin/clients?…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuery {
    /// Only this application.
    pub application: Option<String>,
    /// Only this product.
    pub product: Option<String>,
    /// `active`, `stale` or `revoked`.
    pub state: Option<String>,
    /// Text in the client id, machine name or address.
    pub search: Option<String>,
    /// At most this many (default [`DEFAULT_CLIENT_LIMIT`]).
    pub limit: Option<u32>,
}

/// `GET /v1/admin/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientList {
    /// Most recently seen first.
    pub clients: Vec<ClientRow>,
    /// Whether more clients matched than the limit.
    pub truncated: bool,
    /// The count window the states were judged with.
    pub count_window_secs: u64,
    /// When the list was taken (host clock).
    pub at: Timestamp,
}

/// `GET /v1/admin/clones?since=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneQuery {
    /// From this time (as `since` of [`EventQuery`]); default: the count window.
    pub since: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// Client id.
    pub client_id: String,
    /// Machine name.
    pub machine_name: String,
    /// Address.
    pub address: String,
    /// Product (empty when unknown).
    pub product: String,
    /// Minimum count asked.
    pub minimum_asked: u32,
    /// Count answered.
    pub count: u32,
    /// `activated`, an error code, or `cloned-image` for a cloned-image flag.
    pub result: String,
}

/// Which events to list (`GET /v1/admin/events?…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// From this time: RFC 3339, a date (`2026-01-31`, UTC) or a duration ago (`24h`).
    pub since: Option<String>,
    /// Only this client id.
    pub client: Option<String>,
    /// Only this result code.
    pub result: Option<String>,
    /// Only events after this id, oldest first (for following).
    pub after_id: Option<i64>,
    /// At most this many (default [`DEFAULT_EVENT_LIMIT`]).
    pub limit: Option<u32>,
}

/// `GET /v1/admin/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// Newest first; oldest first when `after_id` was given.
    pub events: Vec<EventRow>,
    /// Whether more events matched than the limit.
    pub truncated: bool,
    /// The highest id listed (or the `after_id` given): pass it as `after_id` to follow.
    pub last_id: Option<i64>,
}

/// A client flagged as a cloned image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRow {
    /// Client id.
    pub client_id: String,
    /// First flag.
    pub first_flagged: Timestamp,
    /// Latest flag.
    pub last_flagged: Timestamp,
    /// Flags raised (about one a day while the copies keep asking).
    pub flags: u64,
    /// Machine name of the latest flagged request.
    pub machine_name: String,
    /// Another machine seen with this client id, when known.
    pub other_machine_name: Option<String>,
    /// Address of the latest flagged request.
    pub address: String,
    /// `machine-name` or `machine-fingerprint`.
    pub reason: String,
}

/// `GET /v1/admin/clones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneList {
    /// Most recently flagged first.
    pub clones: Vec<CloneRow>,
    /// Flags since this time are listed.
    pub since: Timestamp,
}

/// The body of `POST /v1/admin/clients/{id}/revoke`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why, for the inventory.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to a revocation or its undoing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeAnswer {
    /// The client as it stands now.
    pub client: ClientRow,
    /// The count of the client's application now.
    pub application_count: u32,
}
