//! The inventory, the audit log and the cloned-image flags as the admin API, the CLI and
//! the dashboard show them: store rows with readable times and what follows from the
//! host's settings (state, whether a client is inside the count window).

use crate::engine::Engine;
use jiff::Timestamp;
use std::collections::HashSet;
pub use volact_proto::admin::{
    ClientList, ClientQuery, ClientRow, ClientState, CloneList, CloneRow, DEFAULT_CLIENT_LIMIT,
    DEFAULT_EVENT_LIMIT, EventList, EventQuery, EventRow, MAX_LIMIT,
};
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ClientFilter, ClientRecord, CloneRecord, EventFilter, EventRecord};

fn storage(e: volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the host's storage failed: {e}"),
    )
}

/// The standing of a client (revoked or not, last counted at `last_counted`) with a
/// count window starting at `window_start`: active exactly when it counts
/// ([`volact_core::count::counts`]).
pub fn client_state(revoked: bool, last_counted: Option<i64>, window_start: i64) -> ClientState {
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
fn state_filter(
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

fn time(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The row of `c`, judged at `now` with a count window starting at `window_start`.
pub fn client_row(c: ClientRecord, window_start: i64, cloned: bool) -> ClientRow {
    let state = client_state(c.revoked, c.last_counted, window_start);
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
    let (revoked, counted_since) = state_filter(state, window_start);
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
        Ok(Some(client_row(record, self.window_start(), cloned)))
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
                    client_row(c, window_start, flagged)
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
            events: records.into_iter().map(event_row).collect(),
            truncated,
            last_id,
        })
    }

    /// Clients flagged as cloned images since `since` (default: the count window).
    pub async fn list_clones(&self, since: Option<Timestamp>) -> Result<CloneList, ApiError> {
        let since = since.map_or_else(|| self.window_start(), |t| t.as_second());
        let clones = self.store().clones(since).await.map_err(storage)?;
        Ok(CloneList {
            clones: clones.into_iter().map(clone_row).collect(),
            since: time(since),
        })
    }
}

/// An audit event as the admin API shows it.
pub fn event_row(e: EventRecord) -> EventRow {
    {
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

/// A cloned-image flag as the admin API shows it.
pub fn clone_row(c: CloneRecord) -> CloneRow {
    {
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
