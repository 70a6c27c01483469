//! The write path: activation batches (on a rusqlite connection of their own, see
//! `worker`), revocations and pruning (through sqlx, as the reads).

use std::sync::Arc;

use rusqlite::{Connection, params};
use sqlx::sqlite::SqlitePool;

use super::frame::Frame;
use crate::{ActivationRecord, DbError};

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

/// One activation request as the write path reads it: an [`ActivationRecord`] or a row
/// of a journal frame, its strings borrowed from either.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    pub(super) at: i64,
    pub(super) client_id: &'a str,
    pub(super) machine_name: &'a str,
    pub(super) address: &'a str,
    pub(super) product: &'a str,
    pub(super) application: &'a str,
    pub(super) minimum_asked: u32,
    pub(super) count: u32,
    pub(super) result: &'a str,
    pub(super) counted: bool,
    pub(super) ticket_id: Option<&'a str>,
    pub(super) ticket_valid_until: Option<i64>,
}

impl<'a> From<&'a ActivationRecord> for Row<'a> {
    fn from(r: &'a ActivationRecord) -> Row<'a> {
        Row {
            at: r.at,
            client_id: &r.client_id,
            machine_name: &r.machine_name,
            address: &r.address,
            product: &r.product,
            application: &r.application,
            minimum_asked: r.minimum_asked,
            count: r.count,
            result: &r.result,
            counted: r.counted,
            ticket_id: r.ticket_id.as_deref(),
            ticket_valid_until: r.ticket_valid_until,
        }
    }
}

#[cfg(test)]
impl Row<'_> {
    /// The same request as an owned record.
    pub(super) fn to_record(self) -> ActivationRecord {
        ActivationRecord {
            at: self.at,
            client_id: self.client_id.to_owned(),
            machine_name: self.machine_name.to_owned(),
            address: self.address.to_owned(),
            product: self.product.to_owned(),
            application: self.application.to_owned(),
            minimum_asked: self.minimum_asked,
            count: self.count,
            result: self.result.to_owned(),
            counted: self.counted,
            ticket_id: self.ticket_id.map(str::to_owned),
            ticket_valid_until: self.ticket_valid_until,
        }
    }
}

/// Where a row of a [`Source`] is: which batch, and where in it.
type Locator = (u32, u32);

/// The requests one transaction stores, oldest first.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// A batch as the host handed it over.
    Records(&'a [ActivationRecord]),
    /// Journal frames, but for their rows up to sequence number `after`, which the
    /// database already holds.
    Frames {
        frames: &'a [Arc<Frame>],
        after: u64,
    },
}

impl<'a> Source<'a> {
    /// How many rows there are at most (for sizing).
    fn len(self) -> usize {
        match self {
            Source::Records(records) => records.len(),
            Source::Frames { frames, .. } => frames.iter().map(|f| f.len()).sum(),
        }
    }

    /// Calls `f` with every row, in order, and where to find it again.
    fn each(
        self,
        mut f: impl FnMut(Locator, Row<'a>) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        match self {
            Source::Records(records) => {
                for (i, record) in records.iter().enumerate() {
                    f((0, locator(i)?), Row::from(record))?;
                }
            }
            Source::Frames { frames, after } => {
                for (i, frame) in frames.iter().enumerate() {
                    let mut read = 0;
                    for (seq, position, row) in frame.rows() {
                        read += 1;
                        if seq > after {
                            f((locator(i)?, position), row)?;
                        }
                    }
                    if read != frame.len() {
                        return Err(unreadable());
                    }
                }
            }
        }
        Ok(())
    }

    /// The row at `at`, as [`Source::each`] gave it.
    fn row(self, (batch, position): Locator) -> Result<Row<'a>, DbError> {
        let row = match self {
            Source::Records(records) => records
                .get(usize::try_from(position).map_err(|_| unreadable())?)
                .map(Row::from),
            Source::Frames { frames, .. } => frames
                .get(usize::try_from(batch).map_err(|_| unreadable())?)
                .and_then(|f| f.row_at(position)),
        };
        row.ok_or_else(unreadable)
    }
}

fn locator(i: usize) -> Result<u32, DbError> {
    u32::try_from(i).map_err(|_| DbError::Corrupt("a fold of over 4 billion rows".to_owned()))
}

/// Frames are checked when made, so this is a defect, not bad input.
fn unreadable() -> DbError {
    DbError::Corrupt("a journal frame in memory did not read back".to_owned())
}

/// Stores the requests in one transaction: each client's inventory row (created or
/// updated, once however many requests it made), one audit event per request, the
/// per-result totals. With `journal_through`, the same transaction notes that the
/// journal's rows up to that sequence number are now in the database.
pub(super) fn apply(
    c: &mut Connection,
    source: Source<'_>,
    journal_through: Option<i64>,
) -> Result<(), DbError> {
    // Every row's client id and where to read it again, sorted by client id and then by
    // arrival: each client's requests come together, merged into one write of its row,
    // and the rows are visited in the inventory's order. 24 bytes a row, where the merged
    // updates themselves would take several times that for a large fold.
    let mut index: Vec<(&str, Locator)> = Vec::with_capacity(source.len());
    source.each(|at, row| {
        index.push((row.client_id, at));
        Ok(())
    })?;
    index.sort_unstable();
    let tx = c.transaction()?;
    {
        let mut upsert = tx.prepare_cached(UPSERT_CLIENT)?;
        let mut rows = index.iter();
        let mut next = rows.next();
        while let Some(&(client_id, at)) = next {
            let mut update = ClientUpdate::new(source.row(at)?);
            next = rows.next();
            while let Some(&(_, at)) = next.filter(|(id, _)| *id == client_id) {
                update.add(source.row(at)?);
                next = rows.next();
            }
            let (product, application) = update.product.unwrap_or(("", ""));
            upsert.execute(params![
                update.last.client_id,
                update.last.machine_name,
                update.last.address,
                product,
                application,
                update.first_at,
                update.last.at,
                update.counted,
                update.last.result,
                i64::from(update.last.count),
                update.ticket_id,
                update.ticket_valid_until,
                update.requests,
            ])?;
        }
        drop(index);
        // A batch holds a handful of distinct result codes: a linear scan beats hashing.
        let mut totals: Vec<(&str, i64)> = Vec::new();
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        source.each(|_, r| {
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
            match totals.iter_mut().find(|(result, _)| *result == r.result) {
                Some((_, n)) => *n += 1,
                None => totals.push((r.result, 1)),
            }
            Ok(())
        })?;
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
pub(super) fn journal_through(c: &Connection) -> Result<i64, DbError> {
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

/// What a transaction's requests from one client do to its inventory row, merged so the
/// row is written once however many requests it holds: the same row as applying them
/// one by one.
#[derive(Debug)]
struct ClientUpdate<'a> {
    /// When its first request came.
    first_at: i64,
    /// Its last request.
    last: Row<'a>,
    /// Product and application of its last request naming a product (unknown setup keys
    /// name none).
    product: Option<(&'a str, &'a str)>,
    /// Its last request that counted.
    counted: Option<i64>,
    ticket_id: Option<&'a str>,
    ticket_valid_until: Option<i64>,
    requests: i64,
}

impl<'a> ClientUpdate<'a> {
    /// The update of the client's first request.
    fn new(row: Row<'a>) -> ClientUpdate<'a> {
        let mut update = ClientUpdate {
            first_at: row.at,
            last: row,
            product: None,
            counted: None,
            ticket_id: None,
            ticket_valid_until: None,
            requests: 0,
        };
        update.add(row);
        update
    }

    /// Adds the client's next request.
    fn add(&mut self, r: Row<'a>) {
        self.last = r;
        if !r.product.is_empty() {
            self.product = Some((r.product, r.application));
        }
        if r.counted {
            self.counted = Some(r.at);
        }
        if let Some(id) = r.ticket_id {
            self.ticket_id = Some(id);
        }
        if let Some(until) = r.ticket_valid_until {
            self.ticket_valid_until = Some(until);
        }
        self.requests += 1;
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
) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE clients SET revoked = ?, revoked_reason = ? WHERE client_id = ?")
            .bind(revoked)
            .bind(reason)
            .bind(client_id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn prune_events(pool: &SqlitePool, before: i64) -> Result<u64, DbError> {
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
    use super::super::frame::tests::record;
    use super::*;

    /// An in-memory database with the schema.
    fn database() -> Result<Connection, DbError> {
        let c = Connection::open_in_memory()?;
        for &(_, _, sql) in super::super::schema::MIGRATIONS {
            c.execute_batch(sql)?;
        }
        Ok(c)
    }

    /// Every row of the inventory, the audit log and the totals, as text.
    fn dump(c: &Connection) -> Result<Vec<String>, DbError> {
        let mut out = Vec::new();
        for query in [
            "SELECT * FROM clients ORDER BY client_id",
            "SELECT * FROM events ORDER BY id",
            "SELECT * FROM result_totals ORDER BY result",
        ] {
            let mut statement = c.prepare(query)?;
            let columns = statement.column_count();
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let values = (0..columns)
                    .map(|i| row.get::<_, rusqlite::types::Value>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(format!("{values:?}"));
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_store_what_records_store_and_skip_the_rows_already_applied() -> Result<(), DbError> {
        // Seven clients, several requests each, some of them in both transactions.
        let batch: Vec<ActivationRecord> = (0..40)
            .map(|i| ActivationRecord {
                client_id: format!("client-{}", i % 7),
                ..record(i)
            })
            .collect();
        let mut by_records = database()?;
        apply(&mut by_records, Source::Records(&batch[..25]), None)?;
        apply(&mut by_records, Source::Records(&batch[25..]), None)?;

        // The journal's first 25 rows are in the database; its frames hold 1–30 and 31–40.
        let mut by_frames = database()?;
        apply(&mut by_frames, Source::Records(&batch[..25]), Some(25))?;
        let frames = [
            Arc::new(Frame::encode(1, &batch[..30])?),
            Arc::new(Frame::encode(31, &batch[30..])?),
        ];
        let source = Source::Frames {
            frames: &frames,
            after: 25,
        };
        apply(&mut by_frames, source, Some(40))?;

        let stored = dump(&by_frames)?;
        assert_eq!(stored, dump(&by_records)?);
        assert_eq!(
            stored.len(),
            7 + 40 + 1,
            "seven clients, forty events, one result"
        );
        assert_eq!(journal_through(&by_frames)?, 40);
        Ok(())
    }
}
