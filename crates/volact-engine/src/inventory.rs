//! The inventory, the audit log and the cloned-image flags as the admin API, the CLI and
//! the dashboard show them: store rows with readable times and what follows from the
//! host's settings (state, whether a client is inside the count window).

use crate::engine::Engine;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ClientFilter, ClientRecord, CloneRecord, EventFilter, EventRecord};

/// Clients listed when no limit is given.
pub const DEFAULT_CLIENT_LIMIT: u32 = 10_000;
/// Events listed when no limit is given.
pub const DEFAULT_EVENT_LIMIT: u32 = 1_000;
/// The largest limit accepted.
pub const MAX_LIMIT: u32 = 1_000_000;

fn storage(e: volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the host's storage failed: {e}"),
    )
}

fn time(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

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

    /// The standing of a client (revoked or not, last counted at `last_counted`) with a
    /// count window starting at `window_start`: active exactly when it counts
    /// ([`volact_core::count::counts`]).
    pub fn of(revoked: bool, last_counted: Option<i64>, window_start: i64) -> ClientState {
        if revoked {
            ClientState::Revoked
        } else if volact_core::count::counts(revoked, last_counted, window_start) {
            ClientState::Active
        } else {
            ClientState::Stale
        }
    }

    /// The store's filter for clients in this state, with a count window starting at
    /// `window_start`: `(revoked, counted_since)` of [`ClientFilter`]. The store's SQL
    /// agrees with [`volact_core::count::counts`] (tested in `volact-store`).
    fn filter(
        state: Option<ClientState>,
        window_start: i64,
    ) -> (Option<bool>, Option<(i64, bool)>) {
        match state {
            None => (None, None),
            Some(ClientState::Revoked) => (Some(true), None),
            Some(ClientState::Active) => (Some(false), Some((window_start, true))),
            Some(ClientState::Stale) => (Some(false), Some((window_start, false))),
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

impl ClientRow {
    /// The row of `c`, judged at `now` with a count window starting at `window_start`.
    pub fn new(c: ClientRecord, window_start: i64, cloned: bool) -> ClientRow {
        let state = ClientState::of(c.revoked, c.last_counted, window_start);
        ClientRow {
            client_id: c.client_id,
            machine_name: c.machine_name,
            address: c.address,
            product: c.product,
            application: c.application,
            first_seen: time(c.first_seen),
            last_seen: time(c.last_seen),
            last_counted: c.last_counted.map(time),
            last_result: c.last_result,
            last_count: c.last_count,
            ticket_id: c.ticket_id,
            ticket_valid_until: c.ticket_valid_until.map(time),
            revoked: c.revoked,
            revoked_reason: c.revoked_reason,
            requests: c.requests,
            state,
            in_count_window: state == ClientState::Active,
            cloned,
        }
    }
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

fn limit(asked: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match asked {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}"),
        )),
    }
}

fn text(field: &str, value: &Option<String>) -> Result<Option<String>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > 255 || v.chars().any(char::is_control) => Err(ApiError::bad_request(
            field,
            "must be at most 255 characters, without control characters",
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// The store's filter for `q` with a count window starting at `window_start`, at most
/// `limit` rows (one more is asked, to tell whether the list is complete). The admin API
/// and the dashboard both list clients through it.
pub fn client_filter(
    q: &ClientQuery,
    window_start: i64,
    limit: u32,
) -> Result<ClientFilter, ApiError> {
    let state = text("state", &q.state)?
        .map(|s| ClientState::parse(&s))
        .transpose()?;
    let (revoked, counted_since) = ClientState::filter(state, window_start);
    Ok(ClientFilter {
        application: text("application", &q.application)?,
        product: text("product", &q.product)?,
        search: text("search", &q.search)?,
        revoked,
        counted_since,
        limit: Some(limit.saturating_add(1)),
    })
}

/// A client id in the stored (canonical) form.
pub fn canonical_client_id(field: &str, id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            ApiError::bad_request(
                field,
                format!("`{id}` is not a client id (a UUID such as 0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10)"),
            )
        })
}

impl Engine {
    /// The start of the count window now (see [`volact_core::count::window_start`]).
    pub fn window_start(&self) -> i64 {
        volact_core::count::window_start(
            self.now().as_second(),
            self.settings().count_window.as_secs(),
        )
    }

    async fn cloned_ids(&self) -> Result<HashSet<String>, ApiError> {
        Ok(self
            .store()
            .clones(self.window_start())
            .await
            .map_err(storage)?
            .into_iter()
            .map(|c| c.client_id)
            .collect())
    }

    /// One client of the inventory, if known.
    pub async fn client_row(&self, client_id: &str) -> Result<Option<ClientRow>, ApiError> {
        let id = canonical_client_id("client_id", client_id)?;
        let Some(record) = self.store().client(&id).await.map_err(storage)? else {
            return Ok(None);
        };
        let cloned = self.cloned_ids().await?.contains(&id);
        Ok(Some(ClientRow::new(record, self.window_start(), cloned)))
    }

    /// The inventory, filtered.
    pub async fn list_clients(&self, q: &ClientQuery) -> Result<ClientList, ApiError> {
        let window_start = self.window_start();
        let limit = limit(q.limit, DEFAULT_CLIENT_LIMIT)?;
        let filter = client_filter(q, window_start, limit)?;
        let mut records = self.store().clients(&filter).await.map_err(storage)?;
        let truncated = records.len() > limit as usize;
        records.truncate(limit as usize);
        let cloned = self.cloned_ids().await?;
        Ok(ClientList {
            clients: records
                .into_iter()
                .map(|c| {
                    let flagged = cloned.contains(&c.client_id);
                    ClientRow::new(c, window_start, flagged)
                })
                .collect(),
            truncated,
            count_window_secs: self.settings().intervals().count_window_secs,
            at: self.now(),
        })
    }

    /// The audit log, filtered: newest first, or oldest first when following (`after_id`).
    pub async fn list_events(&self, q: &EventQuery) -> Result<EventList, ApiError> {
        let limit = limit(q.limit, DEFAULT_EVENT_LIMIT)?;
        let since = text("since", &q.since)?
            .map(|s| parse_since(&s, self.now()))
            .transpose()?;
        let client_id = text("client", &q.client)?
            .map(|c| canonical_client_id("client", &c))
            .transpose()?;
        let filter = EventFilter {
            since: since.map(|t| t.as_second()),
            after_id: q.after_id,
            client_id,
            result: text("result", &q.result)?,
            limit: Some(limit.saturating_add(1)),
            oldest_first: q.after_id.is_some(),
        };
        let mut records = self.store().events(&filter).await.map_err(storage)?;
        let truncated = records.len() > limit as usize;
        records.truncate(limit as usize);
        let last_id = records.iter().map(|e| e.id).max().or(q.after_id);
        Ok(EventList {
            events: records.into_iter().map(EventRow::from).collect(),
            truncated,
            last_id,
        })
    }

    /// Clients flagged as cloned images since `since` (default: the count window).
    pub async fn list_clones(&self, since: Option<Timestamp>) -> Result<CloneList, ApiError> {
        let since = since.map_or_else(|| self.window_start(), |t| t.as_second());
        let clones = self.store().clones(since).await.map_err(storage)?;
        Ok(CloneList {
            clones: clones.into_iter().map(CloneRow::from).collect(),
            since: time(since),
        })
    }
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

impl From<EventRecord> for EventRow {
    fn from(e: EventRecord) -> EventRow {
        EventRow {
            id: e.id,
            at: time(e.at),
            client_id: e.client_id,
            machine_name: e.machine_name,
            address: e.address,
            product: e.product,
            minimum_asked: e.minimum_asked,
            count: e.count,
            result: e.result,
        }
    }
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

impl From<CloneRecord> for CloneRow {
    fn from(c: CloneRecord) -> CloneRow {
        CloneRow {
            client_id: c.client_id,
            first_flagged: time(c.first_flagged),
            last_flagged: time(c.last_flagged),
            flags: c.flags,
            machine_name: c.machine_name,
            other_machine_name: c.other_machine_name,
            address: c.address,
            reason: c.reason,
        }
    }
}

/// `GET /v1/admin/clones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneList {
    /// Most recently flagged first.
    pub clones: Vec<CloneRow>,
    /// Flags since this time are listed.
    pub since: Timestamp,
}

/// A point in time as an administrator writes it: RFC 3339 (`2026-01-31T12:00:00Z`), a
/// date (`2026-01-31`, midnight UTC), a civil time in UTC (`2026-01-31 12:00`), or a
/// duration meaning that long before `now` (`24h`, `7d`, `1d 12h`).
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>()
        && let Ok(t) = dt.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(t.timestamp());
    }
    if let Ok(d) = text.parse::<jiff::civil::Date>()
        && let Ok(t) = d.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(t.timestamp());
    }
    if let Ok(d) = volact_core::settings::parse_duration(text)
        && let Ok(t) = now.checked_sub(d)
    {
        return Ok(t);
    }
    Err(ApiError::bad_request(
        "since",
        format!(
            "`{text}` is not a time; write 2026-01-31, 2026-01-31T12:00:00Z or a duration ago such as 24h or 7d"
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_dates_and_durations_ago() {
        let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let at = |s: &str| parse_since(s, now).unwrap().to_string();
        assert_eq!(at("2026-01-31T12:00:00Z"), "2026-01-31T12:00:00Z");
        assert_eq!(at("2026-01-31"), "2026-01-31T00:00:00Z");
        assert_eq!(at("2026-01-31 06:30"), "2026-01-31T06:30:00Z");
        assert_eq!(at("24h"), "2026-01-31T00:00:00Z");
        assert_eq!(at("7d"), "2026-01-25T00:00:00Z");
        let e = parse_since("yesterday-ish", now).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("24h"), "{}", e.message);
    }

    #[test]
    fn states_parse_and_refuse_with_the_choices() {
        assert_eq!(ClientState::parse("Stale").unwrap(), ClientState::Stale);
        let e = ClientState::parse("gone").unwrap_err();
        assert!(e.message.contains("active, stale or revoked"));
    }
}
