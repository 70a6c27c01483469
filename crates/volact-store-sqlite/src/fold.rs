//! Applying the journal to the database: write-behind for the inventory and the audit
//! log.
//!
//! An activation batch is durable once appended to the journal (see `journal`); a copy
//! stays in memory until it is folded into the database's inventory, audit log and
//! totals, in one transaction with the note of how far the journal is applied. Folding
//! happens in the background every [`FOLD_EVERY`], sooner when [`FOLD_AT`] rows wait,
//! and before any read, so a read sees every write made before it. At start-up the
//! journal's rows the database does not hold yet are applied before anything else, so
//! a crash loses nothing that was acknowledged.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::durable::Durability;
use super::frame::Frame;
use super::journal::Journal;
use super::worker::Worker;
use super::write::{self, Source};
use crate::{ActivationRecord, DbError};

/// The longest an activation waits in the journal before it is folded. Larger folds
/// write a client's row once for all its requests in the fold and share each page written
/// between more activations, so the folding thread spends less per activation; a waiting
/// row costs memory (it is kept as its journal frame) until folded. The figures behind
/// this choice are in docs/PERFORMANCE.md ("The write-behind journal").
const FOLD_EVERY: Duration = Duration::from_millis(5_000);

/// Rows waiting that start a fold before its time.
const FOLD_AT: usize = 131_072;

/// Rows per folding transaction.
const FOLD_MAX: usize = 262_144;

/// Rows waiting beyond which appending waits for a fold: if the disk cannot keep up
/// with the database, activations slow down rather than filling memory.
const MAX_WAITING: usize = 262_144;

/// Sequence numbers are u64 in memory and SQLite integers on disk.
fn seq_value(seq: u64) -> Result<i64, DbError> {
    i64::try_from(seq)
        .map_err(|_| DbError::Corrupt(format!("journal sequence {seq} is out of range")))
}

/// The database side of activation writes: its connection for them, and its flushing.
#[derive(Debug, Clone)]
pub(super) struct Database {
    pub(super) worker: Worker,
    pub(super) durability: Arc<Durability>,
}

impl Database {
    /// Stores the frames' rows after sequence number `after` and the mark of how far the
    /// journal is applied (the last frame's last row) in one transaction, durably.
    pub(super) async fn apply(&self, frames: Vec<Arc<Frame>>, after: u64) -> Result<(), DbError> {
        let Some(through) = frames.last().map(|f| f.last()) else {
            return Ok(());
        };
        let through = seq_value(through)?;
        self.worker
            .run(move |c| {
                let source = Source::Frames {
                    frames: &frames,
                    after,
                };
                write::apply(c, source, Some(through))
            })
            .await?;
        self.durability.sync(self.durability.committed()).await
    }

    /// Stores one batch, without a journal; returns the flush token that makes it
    /// durable.
    pub(super) async fn apply_deferred(
        &self,
        batch: Vec<ActivationRecord>,
    ) -> Result<u64, DbError> {
        self.worker
            .run(move |c| write::apply(c, Source::Records(&batch), None))
            .await?;
        Ok(self.durability.committed())
    }

    /// How far the database holds the journal.
    async fn journal_through(&self) -> Result<u64, DbError> {
        let through = self.worker.run(|c| write::journal_through(c)).await?;
        u64::try_from(through)
            .map_err(|_| DbError::Corrupt(format!("journal sequence {through} is negative")))
    }
}

/// Batches appended to the journal and not yet folded, oldest first, as their frames.
#[derive(Debug, Default)]
struct Waiting {
    batches: VecDeque<Arc<Frame>>,
    rows: usize,
    /// The sequence number of the last row appended, waiting or not: a fold taken from
    /// the queue may still be on its way to the database.
    appended: u64,
}

/// A store's journal and its folding.
#[derive(Debug)]
pub(super) struct Journaled {
    journal: Journal,
    database: Database,
    waiting: Mutex<Waiting>,
    /// The next sequence number; held while appending so rows reach the journal and
    /// the waiting queue in the same order.
    next: tokio::sync::Mutex<u64>,
    /// How far the database holds the journal; held while folding.
    folded: tokio::sync::Mutex<u64>,
    nudge: Arc<Notify>,
    closed: AtomicBool,
    /// The lock marking this store as the journal's owner, released on close.
    lock: Mutex<Option<File>>,
}

fn poisoned() -> DbError {
    DbError::Corrupt("the journal's queue was left inconsistent by a crashed task".to_owned())
}

impl Journaled {
    /// Opens the journal, applies whatever the database does not hold yet, and starts
    /// folding in the background. `lock` is the journal's lock, already taken.
    pub(super) async fn open(
        path: &std::path::Path,
        lock: File,
        database: Database,
    ) -> Result<Arc<Journaled>, DbError> {
        let (journal, frames) = Journal::open(path)?;
        let through = database.journal_through().await?;
        let mut last = through;
        let mut pending = frames
            .into_iter()
            .filter(|f| f.last() > through)
            .map(Arc::new)
            .peekable();
        while pending.peek().is_some() {
            let mut chunk = Vec::new();
            let mut rows = 0;
            while let Some(frame) = pending.next_if(|_| rows < FOLD_MAX) {
                rows += frame.len();
                last = frame.last();
                chunk.push(frame);
            }
            // Each chunk carries its own mark, so a crash midway replays only the rest.
            database.apply(chunk, through).await?;
        }
        journal.restart()?;
        let nudge = Arc::new(Notify::new());
        let journaled = Arc::new(Journaled {
            journal,
            database,
            waiting: Mutex::new(Waiting {
                appended: last,
                ..Waiting::default()
            }),
            next: tokio::sync::Mutex::new(last + 1),
            folded: tokio::sync::Mutex::new(last),
            nudge: nudge.clone(),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        });
        tokio::spawn(run(Arc::downgrade(&journaled), nudge));
        Ok(journaled)
    }

    /// Appends `batch` to the journal; returns the flush token that makes it durable.
    pub(super) async fn append(&self, batch: Vec<ActivationRecord>) -> Result<u64, DbError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let (waiting, token) = {
            let mut next = self.next.lock().await;
            let frame = Frame::encode(*next, &batch)?;
            drop(batch);
            let token = self.journal.append(&frame)?;
            let last = frame.last();
            *next = last + 1;
            let mut waiting = self.waiting.lock().map_err(|_| poisoned())?;
            waiting.rows += frame.len();
            waiting.appended = last;
            waiting.batches.push_back(Arc::new(frame));
            (waiting.rows, token)
        };
        if waiting >= MAX_WAITING {
            self.fold().await?;
        } else if waiting >= FOLD_AT {
            self.nudge.notify_one();
        }
        Ok(token)
    }

    /// Returns once every batch up to `token` is durable in the journal.
    pub(super) async fn sync(&self, token: u64) -> Result<(), DbError> {
        self.journal.sync(token).await
    }

    /// Folds every batch appended before the call into the database. Batches appended
    /// meanwhile wait for the next fold, so under load a fold ends and the next one
    /// gathers many batches, instead of following the writer a batch at a time.
    pub(super) async fn fold(&self) -> Result<(), DbError> {
        let target = self.waiting.lock().map_err(|_| poisoned())?.appended;
        let mut folded = self.folded.lock().await;
        while *folded < target {
            let (taken, rows) = {
                let mut waiting = self.waiting.lock().map_err(|_| poisoned())?;
                let mut taken = Vec::new();
                let mut rows = 0;
                while rows < FOLD_MAX
                    && taken.last().map_or(*folded, |f: &Arc<Frame>| f.last()) < target
                {
                    let Some(frame) = waiting.batches.pop_front() else {
                        break;
                    };
                    waiting.rows -= frame.len();
                    rows += frame.len();
                    taken.push(frame);
                }
                (taken, rows)
            };
            let Some(through) = taken.last().map(|f| f.last()) else {
                return Ok(());
            };
            let started = std::time::Instant::now();
            if let Err(e) = self.database.apply(taken.clone(), *folded).await {
                // Kept in order for the next attempt; the journal still has them too.
                let mut waiting = self.waiting.lock().map_err(|_| poisoned())?;
                waiting.rows += rows;
                for frame in taken.into_iter().rev() {
                    waiting.batches.push_front(frame);
                }
                return Err(e);
            }
            let applied = started.elapsed();
            *folded = through;
            // The rows are in the database now; a failure to delete them only leaves
            // them to be skipped at the next start-up.
            if let Err(e) = self.journal.forget(through) {
                tracing::warn!(error = %e, "could not trim the activation journal");
            }
            tracing::debug!(
                rows,
                applied_ms = applied.as_millis(),
                trimmed_ms = (started.elapsed() - applied).as_millis(),
                "applied the activation journal"
            );
        }
        Ok(())
    }

    /// Rows waiting to be folded.
    fn waiting_rows(&self) -> usize {
        self.waiting.lock().map(|w| w.rows).unwrap_or(0)
    }

    /// Folds what waits, stops folding, closes the journal and releases its lock.
    pub(super) async fn close(&self) -> Result<(), DbError> {
        let folded = self.fold().await;
        self.closed.store(true, Ordering::SeqCst);
        self.nudge.notify_one();
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        folded
    }
}

/// Folds in the background until the store is dropped or closed.
async fn run(journaled: Weak<Journaled>, nudge: Arc<Notify>) {
    loop {
        let nudged = tokio::select! {
            () = nudge.notified() => true,
            () = tokio::time::sleep(FOLD_EVERY) => false,
        };
        let Some(journaled) = journaled.upgrade() else {
            return;
        };
        if journaled.closed.load(Ordering::SeqCst) {
            return;
        }
        // A nudge left over from before the last fold finds few rows: wait for the time.
        if nudged && journaled.waiting_rows() < FOLD_AT {
            continue;
        }
        if let Err(e) = journaled.fold().await {
            tracing::error!(error = %e, "applying the activation journal to the database failed; will retry");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::frame::tests::record;
    use super::super::{SqliteStore, journal, worker};
    use super::*;
    use volact_store::{EventFilter, Store, StoreError, StoreErrorKind};

    /// A database at `dir/volact.db` with its schema, read through `SqliteStore` (which
    /// owns no journal), and a connection to fold into that gives up on a held lock
    /// after `busy`.
    async fn database(
        dir: &tempfile::TempDir,
        busy: Duration,
    ) -> Result<(SqliteStore, Database), DbError> {
        let path = dir.path().join("volact.db");
        let store = SqliteStore::open_database(&path).await?;
        let database = Database {
            worker: Worker::open("fold-test", &path, false, busy, |c| {
                worker::write_pragmas(c, 1_024)
            })
            .await?,
            durability: store.durability.clone(),
        };
        Ok((store, database))
    }

    async fn open_journaled(
        dir: &tempfile::TempDir,
        database: Database,
    ) -> Result<Arc<Journaled>, DbError> {
        let (journal_path, lock_path) = journal::paths(&dir.path().join("volact.db"));
        let lock = journal::lock(&lock_path)?
            .ok_or_else(|| DbError::Corrupt("the test's journal is locked".into()))?;
        Journaled::open(&journal_path, lock, database).await
    }

    /// The audit log's (time, client) pairs, in the order the rows were applied.
    async fn applied(store: &SqliteStore) -> Vec<(i64, String)> {
        let filter = EventFilter {
            oldest_first: true,
            ..EventFilter::default()
        };
        let events = store.events(&filter).await.unwrap();
        events.into_iter().map(|e| (e.at, e.client_id)).collect()
    }

    /// A request of `client` at `at`.
    fn request(at: i64, client: &str) -> ActivationRecord {
        ActivationRecord {
            at,
            client_id: client.to_owned(),
            ..record(at)
        }
    }

    #[tokio::test]
    async fn folds_apply_batches_in_order_and_once() -> Result<(), DbError> {
        let dir = tempfile::tempdir()?;
        let (store, db) = database(&dir, Duration::from_secs(5)).await?;
        let journaled = open_journaled(&dir, db).await?;
        journaled
            .append(vec![request(10, "a"), request(11, "b")])
            .await?;
        journaled.append(vec![request(12, "a")]).await?;
        assert!(applied(&store).await.is_empty(), "nothing folded yet");
        journaled.fold().await?;
        let third = journaled.append(vec![request(13, "a")]).await?;
        journaled.sync(third).await?;
        journaled.fold().await?;
        // A fold with nothing waiting does nothing.
        journaled.fold().await?;
        let order = vec![
            (10, "a".to_owned()),
            (11, "b".to_owned()),
            (12, "a".to_owned()),
            (13, "a".to_owned()),
        ];
        assert_eq!(applied(&store).await, order);
        let a = store.client("a").await.unwrap().unwrap();
        assert_eq!((a.requests, a.last_seen), (3, 13));
        journaled.close().await?;
        drop(journaled);

        // Reopened, the journal's rows are already in the database: none applied twice,
        // and new ones continue after them.
        let (_, db) = database(&dir, Duration::from_secs(5)).await?;
        let journaled = open_journaled(&dir, db).await?;
        journaled.append(vec![request(14, "c")]).await?;
        journaled.fold().await?;
        let mut more = order;
        more.push((14, "c".to_owned()));
        assert_eq!(applied(&store).await, more);
        journaled.close().await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_fold_keeps_its_batches_in_order_for_the_next() -> Result<(), DbError> {
        let dir = tempfile::tempdir()?;
        let (store, db) = database(&dir, Duration::from_millis(50)).await?;
        let journaled = open_journaled(&dir, db).await?;
        journaled.append(vec![request(10, "a")]).await?;
        journaled.append(vec![request(11, "b")]).await?;

        // Another connection holds the write lock (a backup, a CLI command).
        let holder = rusqlite::Connection::open(dir.path().join("volact.db"))?;
        holder.execute_batch("BEGIN IMMEDIATE")?;
        let failed = journaled.fold().await.unwrap_err();
        assert_eq!(
            StoreError::from(failed).kind(),
            StoreErrorKind::Unavailable,
            "a held lock is worth retrying"
        );
        journaled.append(vec![request(12, "a")]).await?;
        holder.execute_batch("COMMIT")?;
        drop(holder);

        journaled.fold().await?;
        assert_eq!(
            applied(&store).await,
            vec![
                (10, "a".to_owned()),
                (11, "b".to_owned()),
                (12, "a".to_owned())
            ]
        );
        let a = store.client("a").await.unwrap().unwrap();
        assert_eq!((a.requests, a.last_seen), (2, 12));
        journaled.close().await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_restart_in_the_middle_of_a_fold_applies_only_the_rest() -> Result<(), DbError> {
        let dir = tempfile::tempdir()?;
        let (store, db) = database(&dir, Duration::from_secs(5)).await?;
        let (journal_path, _) = journal::paths(&dir.path().join("volact.db"));
        // Three batches reach the journal...
        let frames = {
            let (journal, _) = Journal::open(&journal_path)?;
            let batches = [
                vec![request(10, "a"), request(11, "b")],
                vec![request(12, "a")],
                vec![request(13, "c"), request(14, "a")],
            ];
            let mut next = 1;
            let mut frames = Vec::new();
            for batch in batches {
                let frame = Frame::encode(next, &batch)?;
                journal.append(&frame)?;
                next = frame.last() + 1;
                frames.push(Arc::new(frame));
            }
            frames
        };
        // ...and the process dies after the fold's first chunk committed (with its mark).
        db.apply(frames[..2].to_vec(), 0).await?;
        assert_eq!(applied(&store).await.len(), 3);

        let journaled = open_journaled(&dir, db).await?;
        assert_eq!(
            applied(&store).await,
            vec![
                (10, "a".to_owned()),
                (11, "b".to_owned()),
                (12, "a".to_owned()),
                (13, "c".to_owned()),
                (14, "a".to_owned())
            ],
            "the rest once, after what was applied"
        );
        let a = store.client("a").await.unwrap().unwrap();
        assert_eq!((a.requests, a.last_seen), (3, 14));
        journaled.close().await?;
        Ok(())
    }
}
