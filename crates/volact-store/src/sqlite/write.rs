//! The write path: activation batches (on a rusqlite connection of their own, see
//! `worker`), revocations and pruning (through sqlx, as the reads).

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, params};
use sqlx::sqlite::SqlitePool;

use crate::{ActivationRecord, StoreError};

/// Deleting this many events per statement keeps each pruning step to a few tens of
/// milliseconds, so activation batches queued behind it wait little.
const PRUNE_CHUNK: i64 = 10_000;

// An empty product means the setup key was unknown: the request says nothing about what
// the client runs, so what is known is kept. Each row is a client's requests of one batch
// merged (see `ClientUpdate`), so a client is written once per batch.
const UPSERT_CLIENT: &str = "INSERT INTO clients (client_id, machine_name, address, product, \
    application, first_seen, last_seen, last_counted, last_result, last_count, ticket_id, \
    ticket_valid_until, revoked, revoked_reason, requests) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, NULL, ?13) \
    ON CONFLICT (client_id) DO UPDATE SET \
    machine_name = excluded.machine_name, \
    address = excluded.address, \
    product = CASE WHEN excluded.product = '' THEN clients.product ELSE excluded.product END, \
    application = CASE WHEN excluded.product = '' THEN clients.application \
        ELSE excluded.application END, \
    last_seen = excluded.last_seen, \
    last_counted = COALESCE(excluded.last_counted, clients.last_counted), \
    last_result = excluded.last_result, \
    last_count = excluded.last_count, \
    ticket_id = COALESCE(excluded.ticket_id, clients.ticket_id), \
    ticket_valid_until = COALESCE(excluded.ticket_valid_until, clients.ticket_valid_until), \
    requests = clients.requests + excluded.requests";

const INSERT_EVENT: &str = "INSERT INTO events (at, client_id, machine_name, address, product, \
    minimum_asked, count, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const ADD_TOTAL: &str = "INSERT INTO result_totals (result, n) VALUES (?1, ?2) \
    ON CONFLICT (result) DO UPDATE SET n = n + excluded.n";

/// The journal's rows up to this sequence number are in the database.
const SET_JOURNAL_THROUGH: &str = "INSERT INTO host_meta (key, value) \
    VALUES ('journal_through', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// Activation batches, oldest first, as the journal hands them over.
pub(super) type Batches = [Arc<[ActivationRecord]>];

/// Stores the batches' requests in one transaction: each client's inventory row
/// (created or updated), one audit event per request, the per-result totals. With
/// `journal_through`, the same transaction notes that the journal's rows up to that
/// sequence number are now in the database.
pub(super) fn apply(
    c: &mut Connection,
    batches: &Batches,
    journal_through: Option<i64>,
) -> Result<(), StoreError> {
    let records = || batches.iter().flat_map(|b| b.iter());
    // A batch holds a handful of distinct result codes: a linear scan beats hashing.
    let mut totals: Vec<(&str, i64)> = Vec::new();
    for record in records() {
        match totals
            .iter_mut()
            .find(|(result, _)| *result == record.result)
        {
            Some((_, n)) => *n += 1,
            None => totals.push((&record.result, 1)),
        }
    }
    let updates = ClientUpdate::merge(records());
    let tx = c.transaction()?;
    {
        let mut upsert = tx.prepare_cached(UPSERT_CLIENT)?;
        for u in &updates {
            let (product, application) = match u.product {
                Some(p) => (p.product.as_str(), p.application.as_str()),
                None => ("", ""),
            };
            upsert.execute(params![
                u.last.client_id,
                u.last.machine_name,
                u.last.address,
                product,
                application,
                u.first.at,
                u.last.at,
                u.counted,
                u.last.result,
                i64::from(u.last.count),
                u.ticket_id,
                u.ticket_valid_until,
                u.requests,
            ])?;
        }
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        for r in records() {
            insert.execute(params![
                r.at,
                r.client_id,
                r.machine_name,
                r.address,
                r.product,
                i64::from(r.minimum_asked),
                i64::from(r.count),
                r.result,
            ])?;
        }
        let mut add = tx.prepare_cached(ADD_TOTAL)?;
        for (result, n) in totals {
            add.execute(params![result, n])?;
        }
        if let Some(seq) = journal_through {
            tx.prepare_cached(SET_JOURNAL_THROUGH)?
                .execute(params![seq])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The journal sequence number the database holds everything up to (0 for none).
pub(super) fn journal_through(c: &Connection) -> Result<i64, StoreError> {
    let value: Option<i64> = c
        .query_row(
            "SELECT value FROM host_meta WHERE key = 'journal_through'",
            [],
            |row| row.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(value.unwrap_or(0))
}

/// What a batch's requests from one client do to its inventory row, merged so the row
/// is written once per batch however many requests it holds: the same row as applying
/// them one by one.
#[derive(Debug)]
struct ClientUpdate<'a> {
    /// The client's first request in the batch.
    first: &'a ActivationRecord,
    /// Its last request.
    last: &'a ActivationRecord,
    /// Its last request naming a product (unknown setup keys name none).
    product: Option<&'a ActivationRecord>,
    /// Its last request that counted.
    counted: Option<i64>,
    ticket_id: Option<&'a str>,
    ticket_valid_until: Option<i64>,
    requests: i64,
}

impl<'a> ClientUpdate<'a> {
    /// One update per client, ordered by client id, which visits the inventory's pages
    /// in order.
    fn merge(records: impl Iterator<Item = &'a ActivationRecord>) -> Vec<ClientUpdate<'a>> {
        let mut by_client: HashMap<&str, ClientUpdate<'a>> = HashMap::new();
        for r in records {
            let update = by_client
                .entry(r.client_id.as_str())
                .or_insert_with(|| ClientUpdate {
                    first: r,
                    last: r,
                    product: None,
                    counted: None,
                    ticket_id: None,
                    ticket_valid_until: None,
                    requests: 0,
                });
            update.last = r;
            if !r.product.is_empty() {
                update.product = Some(r);
            }
            if r.counted {
                update.counted = Some(r.at);
            }
            if let Some(id) = &r.ticket_id {
                update.ticket_id = Some(id);
            }
            if let Some(until) = r.ticket_valid_until {
                update.ticket_valid_until = Some(until);
            }
            update.requests += 1;
        }
        let mut updates: Vec<ClientUpdate<'a>> = by_client.into_values().collect();
        updates.sort_unstable_by(|a, b| a.first.client_id.cmp(&b.first.client_id));
        updates
    }
}

pub(super) async fn set_revoked(
    pool: &SqlitePool,
    client_id: &str,
    revoked: bool,
    reason: Option<&str>,
    // The schema keeps no revocation time: the inventory shows the state, and who revoked
    // what when belongs in the host's own log.
    _at: i64,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE clients SET revoked = ?, revoked_reason = ? WHERE client_id = ?")
            .bind(revoked)
            .bind(reason)
            .bind(client_id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn prune_events(pool: &SqlitePool, before: i64) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        // Each chunk is its own statement on the pool, so the write connection goes back
        // to the queue between chunks and activation batches interleave with pruning.
        let done = sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT ?)",
        )
        .bind(before)
        .bind(PRUNE_CHUNK)
        .execute(pool)
        .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < PRUNE_CHUNK.unsigned_abs() {
            return Ok(deleted);
        }
    }
}
