//! The write path: activation batches, revocations, pruning.

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::{ActivationRecord, StoreError};

/// Rows per multi-row statement. Each statement costs a round trip to the connection's
/// worker thread, which dominates the cost of a row, so rows are sent many at a time.
/// Batches are cut into pieces of these sizes (largest first), so a batch of any length
/// needs few statements and only these few shapes are ever prepared.
const PIECE_SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Deleting this many events per statement keeps each pruning step to a few tens of
/// milliseconds, so activation batches queued behind it wait little.
const PRUNE_CHUNK: i64 = 10_000;

const CLIENT_COLUMNS: &str = "INSERT INTO clients (client_id, machine_name, address, product, \
    application, first_seen, last_seen, last_counted, last_result, last_count, ticket_id, \
    ticket_valid_until, revoked, revoked_reason, requests) VALUES ";
const CLIENT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, 1)";
// An empty product means the setup key was unknown: the request says nothing about what
// the client runs, so what is known is kept. SQLite applies the rows of one statement in
// order, so a client appearing twice in a batch conflicts with its own earlier row.
const CLIENT_CONFLICT: &str = " ON CONFLICT (client_id) DO UPDATE SET \
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
    requests = clients.requests + 1";

const EVENT_COLUMNS: &str = "INSERT INTO events (at, client_id, machine_name, address, product, \
    minimum_asked, count, result) VALUES ";
const EVENT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";

const ADD_TOTAL: &str = "INSERT INTO result_totals (result, n) VALUES (?, ?) \
    ON CONFLICT (result) DO UPDATE SET n = n + excluded.n";

/// The multi-row statements, built once. `Arc<str>` so handing one to sqlx per execution
/// is a reference-count increment, and the text, which is the statement cache's key,
/// stays identical.
#[derive(Debug, Clone)]
pub(super) struct Statements {
    /// Client upserts, one per entry of [`PIECE_SIZES`].
    clients: Vec<Arc<str>>,
    /// Event inserts, one per entry of [`PIECE_SIZES`].
    events: Vec<Arc<str>>,
}

impl Statements {
    pub(super) fn new() -> Self {
        Statements {
            clients: PIECE_SIZES
                .iter()
                .map(|&n| multi_row(CLIENT_COLUMNS, CLIENT_ROW, n, CLIENT_CONFLICT))
                .collect(),
            events: PIECE_SIZES
                .iter()
                .map(|&n| multi_row(EVENT_COLUMNS, EVENT_ROW, n, ""))
                .collect(),
        }
    }
}

fn multi_row(head: &str, row: &str, rows: usize, tail: &str) -> Arc<str> {
    let mut sql = String::with_capacity(head.len() + (row.len() + 2) * rows + tail.len());
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    Arc::from(sql)
}

/// Cuts `len` rows into consecutive pieces, yielding (index into [`PIECE_SIZES`], start).
fn pieces(len: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut start = 0;
    PIECE_SIZES
        .iter()
        .enumerate()
        .flat_map(move |(index, &size)| {
            let count = (len - start) / size;
            let first = start;
            start += count * size;
            (0..count).map(move |k| (index, first + k * size))
        })
}

pub(super) async fn record_batch(
    pool: &SqlitePool,
    statements: &Statements,
    batch: &[ActivationRecord],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    // A batch holds a handful of distinct result codes: a linear scan beats hashing.
    let mut totals: Vec<(&str, i64)> = Vec::new();
    for record in batch {
        match totals
            .iter_mut()
            .find(|(result, _)| *result == record.result)
        {
            Some((_, n)) => *n += 1,
            None => totals.push((&record.result, 1)),
        }
    }

    let mut tx = pool.begin().await?;
    for (index, start) in pieces(batch.len()) {
        let rows = &batch[start..start + PIECE_SIZES[index]];
        upsert_clients(&mut tx, &statements.clients[index], rows).await?;
        insert_events(&mut tx, &statements.events[index], rows).await?;
    }
    for (result, n) in totals {
        sqlx::query(ADD_TOTAL)
            .bind(result)
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn upsert_clients(
    conn: &mut SqliteConnection,
    sql: &Arc<str>,
    rows: &[ActivationRecord],
) -> Result<(), StoreError> {
    let mut query = sqlx::query(AssertSqlSafe(Arc::clone(sql)));
    for r in rows {
        query = query
            .bind(r.client_id.as_str())
            .bind(r.machine_name.as_str())
            .bind(r.address.as_str())
            .bind(r.product.as_str())
            .bind(r.application.as_str())
            .bind(r.at)
            .bind(r.at)
            .bind(r.counted.then_some(r.at))
            .bind(r.result.as_str())
            .bind(i64::from(r.count))
            .bind(r.ticket_id.as_deref())
            .bind(r.ticket_valid_until);
    }
    query.execute(conn).await?;
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    sql: &Arc<str>,
    rows: &[ActivationRecord],
) -> Result<(), StoreError> {
    let mut query = sqlx::query(AssertSqlSafe(Arc::clone(sql)));
    for r in rows {
        query = query
            .bind(r.at)
            .bind(r.client_id.as_str())
            .bind(r.machine_name.as_str())
            .bind(r.address.as_str())
            .bind(r.product.as_str())
            .bind(i64::from(r.minimum_asked))
            .bind(i64::from(r.count))
            .bind(r.result.as_str());
    }
    query.execute(conn).await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_every_row_once_in_order() {
        for len in 0..300 {
            let mut next = 0;
            for (index, start) in pieces(len) {
                assert_eq!(start, next);
                next += PIECE_SIZES[index];
            }
            assert_eq!(next, len);
        }
    }

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let s = Statements::new();
        for (i, &n) in PIECE_SIZES.iter().enumerate() {
            assert_eq!(s.clients[i].matches('?').count(), 12 * n);
            assert_eq!(s.events[i].matches('?').count(), 8 * n);
        }
    }
}
