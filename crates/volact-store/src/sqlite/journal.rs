//! The activation journal: a second SQLite file beside the database that takes each
//! activation batch as a pure append.
//!
//! Storing an activation in the inventory and the audit log touches b-tree pages at
//! random places (the client's row, the old and new entries of the indexes on its
//! times, the audit log's index by client), and SQLite writes every page a commit
//! touches to its log whole: about 20 KB and a hundred write calls per batch, paid on
//! the request path. Appended to a table with no index but its key, a batch fills the
//! last page or two, so the request path pays a few pages and one flush. The batches
//! are applied to the database later, many thousands at a time (see `fold`), where the
//! pages that many activations share are written once.
//!
//! The journal is owned by one store at a time, marked by a lock file, because two
//! stores applying the same journal would store its activations twice.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::durable::Durability;
use super::worker::{self, Worker};
use crate::{ActivationRecord, StoreError};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS journal (
    seq                INTEGER NOT NULL PRIMARY KEY,
    at                 INTEGER NOT NULL,
    client_id          TEXT    NOT NULL,
    machine_name       TEXT    NOT NULL,
    address            TEXT    NOT NULL,
    product            TEXT    NOT NULL,
    application        TEXT    NOT NULL,
    minimum_asked      INTEGER NOT NULL,
    count              INTEGER NOT NULL,
    result             TEXT    NOT NULL,
    counted            INTEGER NOT NULL,
    ticket_id          TEXT,
    ticket_valid_until INTEGER
)";

const INSERT: &str = "INSERT INTO journal (seq, at, client_id, machine_name, address, \
    product, application, minimum_asked, count, result, counted, ticket_id, \
    ticket_valid_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// Rows deleted per statement once applied: the request path shares the journal's
/// connection, so each deletion must be short.
const FORGET_CHUNK: u64 = 4096;

/// Rows read per query when replaying at start-up.
pub(super) const REPLAY_CHUNK: u32 = 20_000;

/// Page cache of the journal's connection: it only ever touches its last pages.
const CACHE_KIB: i64 = 2048;

/// Where the journal of the database at `db` lives, and its lock file.
pub(super) fn paths(db: &Path) -> (PathBuf, PathBuf) {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volact".to_owned());
    (
        db.with_file_name(format!("{stem}-journal.db")),
        db.with_file_name(format!("{stem}-journal.lock")),
    )
}

/// Takes the journal's lock. `Ok(None)` when another store holds it.
pub(super) fn lock(path: &Path) -> Result<Option<File>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(e))
}

/// The journal's database, its write connection and its flushing.
#[derive(Debug)]
pub(super) struct Journal {
    worker: Worker,
    pub(super) durability: Durability,
}

impl Journal {
    /// Opens (creating) the journal at `path`.
    pub(super) async fn open(path: &Path, busy: Duration) -> Result<Journal, StoreError> {
        let worker = Worker::open("volact-journal", path, false, busy, |c| {
            worker::write_pragmas(c, CACHE_KIB)?;
            c.execute(CREATE, [])?;
            Ok(())
        })
        .await?;
        let durability = Durability::new(path);
        durability.sync(durability.committed()).await?;
        Ok(Journal { worker, durability })
    }

    /// Appends `batch` with sequence numbers from `first` on, in one transaction.
    /// Returns the flush token covering it.
    pub(super) async fn append(
        &self,
        first: u64,
        batch: Arc<[ActivationRecord]>,
    ) -> Result<u64, StoreError> {
        let first = seq_value(first)?;
        self.worker
            .run(move |c| {
                let tx = c.transaction()?;
                {
                    let mut insert = tx.prepare_cached(INSERT)?;
                    for (seq, r) in (first..).zip(batch.iter()) {
                        insert.execute(params![
                            seq,
                            r.at,
                            r.client_id,
                            r.machine_name,
                            r.address,
                            r.product,
                            r.application,
                            i64::from(r.minimum_asked),
                            i64::from(r.count),
                            r.result,
                            r.counted,
                            r.ticket_id,
                            r.ticket_valid_until,
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        Ok(self.durability.committed())
    }

    /// Deletes the rows after `from` up to and including `through`, which the database
    /// now holds, in short steps between the request path's appends.
    pub(super) async fn forget(&self, from: u64, through: u64) -> Result<(), StoreError> {
        let mut done = from;
        while done < through {
            let upto = seq_value(through.min(done.saturating_add(FORGET_CHUNK)))?;
            self.worker
                .run(move |c| {
                    c.prepare_cached("DELETE FROM journal WHERE seq <= ?1")?
                        .execute(params![upto])?;
                    Ok(())
                })
                .await?;
            done = seq_from(upto)?;
        }
        Ok(())
    }

    /// Closes the connection; the last one to close checkpoints the journal's log.
    pub(super) async fn close(&self) {
        self.worker.close().await;
    }

    /// Deletes every row up to `through` in one statement, for start-up.
    pub(super) async fn clear_through(&self, through: u64) -> Result<(), StoreError> {
        let through = seq_value(through)?;
        self.worker
            .run(move |c| {
                c.execute("DELETE FROM journal WHERE seq <= ?1", params![through])?;
                Ok(())
            })
            .await
    }

    /// The highest sequence number stored, 0 when empty.
    pub(super) async fn last_seq(&self) -> Result<u64, StoreError> {
        let last: Option<i64> = self
            .worker
            .run(|c| Ok(c.query_row("SELECT MAX(seq) FROM journal", [], |row| row.get(0))?))
            .await?;
        seq_from(last.unwrap_or(0))
    }

    /// Up to `limit` rows after `after`, in order, with the last one's sequence number.
    pub(super) async fn read_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<ActivationRecord>, u64), StoreError> {
        let from = seq_value(after)?;
        let rows: Vec<(i64, ActivationRecord)> = self
            .worker
            .run(move |c| {
                let mut select = c.prepare(
                    "SELECT seq, at, client_id, machine_name, address, product, application, \
                     minimum_asked, count, result, counted, ticket_id, ticket_valid_until \
                     FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = select
                    .query_map(params![from, limit], record)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut last = after;
        let mut records = Vec::with_capacity(rows.len());
        for (seq, r) in rows {
            last = seq_from(seq)?;
            records.push(r);
        }
        Ok((records, last))
    }
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, ActivationRecord)> {
    Ok((
        row.get(0)?,
        ActivationRecord {
            at: row.get(1)?,
            client_id: row.get(2)?,
            machine_name: row.get(3)?,
            address: row.get(4)?,
            product: row.get(5)?,
            application: row.get(6)?,
            minimum_asked: row.get(7)?,
            count: row.get(8)?,
            result: row.get(9)?,
            counted: row.get(10)?,
            ticket_id: row.get(11)?,
            ticket_valid_until: row.get(12)?,
        },
    ))
}

/// Sequence numbers are u64 in memory and SQLite integers on disk.
pub(super) fn seq_value(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("journal sequence {seq} is out of range")))
}

pub(super) fn seq_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("journal sequence {value} is negative")))
}
