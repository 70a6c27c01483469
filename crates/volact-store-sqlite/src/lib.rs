//! The embedded SQLite backend of volact's [`Store`]: one database file in WAL mode and
//! a write-behind journal beside it, with the schema's migrations compiled in.
//!
//! Activations are appended to a journal and applied to the database in large batches,
//! each on a connection with a thread of its own ([`worker`]); other writes
//! (revocations, pruning, flags) share one sqlx write connection; a small pool of
//! read-only connections serves queries, so in WAL mode an administrator listing the
//! inventory never delays an activation.

mod durable;
mod error;
mod fold;
mod frame;
mod history;
mod journal;
mod ops;
mod read;
mod schema;
mod vendor;
mod worker;
mod write;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use volact_store::{
    ClientFilter, ClientRecord, CountedClient, EventFilter, EventRecord, Store, StoreError,
};

use error::DbError;
pub use vendor::VendorSqliteStore;
// The records, under the names the backend's modules have always used.
pub(crate) use volact_store::{ActivationRecord, CloneRecord, CloneSighting, HourlyRequests};

/// Long enough to ride out another process (a CLI revoking a client, a backup) holding
/// the write lock, short enough that a stuck lock surfaces as an error, not a hang.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of the connection that applies activations, in KiB: room for the pages
/// one fold changes (the clients of thousands of activations and their audit rows), so
/// each is written once, at commit, rather than spilled to the log midway.
const APPLY_CACHE_KIB: i64 = 8_192;

fn io(e: std::io::Error) -> DbError {
    DbError::Io(e)
}

/// Read connections: queries are short, and the machine may have few cores.
const READ_CONNECTIONS: u32 = 4;

/// Enough for the filter combinations of the listing queries and the few writes that
/// go through sqlx, so none of them is re-prepared.
const STATEMENT_CACHE: usize = 200;

/// The embedded backend: one SQLite file in WAL mode, and beside it a journal that
/// takes activation batches as pure appends (`NAME-journal/`, see [`journal`]).
///
/// When [`Store::record_batch`] (or any other write) returns, the data is on disk and
/// survives the process being killed or the power failing: activation batches in the
/// journal, which is applied to the database in the background and before every read
/// ([`fold`]), everything else in the database. Logs are flushed by [`durable`] rather
/// than inside each commit, so a writer can commit its next batch while the disk
/// flushes the last ([`Store::record_batch_deferred`]).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    durability: Arc<durable::Durability>,
    /// The connection activations are applied to the database through.
    database: fold::Database,
    /// `None` when writing straight to the database.
    journal: Option<Arc<fold::Journaled>>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing (its directory
    /// must exist) and bringing its schema up to date, and its activation journal,
    /// applying whatever the journal holds that the database does not (after a crash).
    ///
    /// One store at a time owns the journal. If another (another process serving the
    /// same directory) holds it, this store writes straight to the database, which is
    /// slower but just as durable, and says so in the log.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(Self::open_with(path, true).await?)
    }

    /// Like [`SqliteStore::open`], but every write goes straight to the database, for
    /// short-lived tools that write in bulk or once (seeding a benchmark, a status
    /// command, an event recorded beside a running host). A journal left by a crash is
    /// still applied first when no other store owns it.
    pub async fn open_direct(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut store = Self::open_with(path, false).await?;
        if let Some(journal) = store.journal.take() {
            journal.close().await?;
        }
        Ok(store)
    }

    async fn open_with(path: &Path, want_journal: bool) -> Result<SqliteStore, DbError> {
        let mut store = Self::open_database(path).await?;
        let (journal_path, lock_path) = journal::paths(path);
        match journal::lock(&lock_path)? {
            Some(lock) => {
                store.journal =
                    Some(fold::Journaled::open(&journal_path, lock, store.database.clone()).await?);
            }
            None if !want_journal => {}
            None => tracing::warn!(
                lock = %lock_path.display(),
                "another volact process owns this database's activation journal; this one writes to the database directly"
            ),
        }
        Ok(store)
    }

    async fn open_database(path: &Path) -> Result<SqliteStore, DbError> {
        // Created private before SQLite opens it, so its logs (which SQLite gives the
        // database file's mode) are private too.
        volact_store::private::prepare_database(path).map_err(io)?;
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(STATEMENT_CACHE);

        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL commits without flushing the log; `durable` flushes it before any
            // write is reported done, which makes every write as durable as FULL would.
            .synchronous(SqliteSynchronous::Normal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Revocations, flags, probes and pruning (activations have their own
            // connection, see `worker`): one connection, kept, its statements prepared.
            .idle_timeout(None)
            .max_lifetime(None)
            // A dead connection shows up as an error on the write itself.
            .test_before_acquire(false)
            // Writers queue behind each other on this single connection, behind chunks of
            // pruning at worst.
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(write_options)
            .await?;

        schema::migrate(&writer).await?;
        let durability = Arc::new(durable::Durability::new(path));
        durability.sync(durability.committed()).await?;
        let database = fold::Database {
            worker: worker::Worker::open("volact-apply", path, false, BUSY_TIMEOUT, |c| {
                worker::write_pragmas(c, APPLY_CACHE_KIB)
            })
            .await?,
            durability: durability.clone(),
        };

        // The reader is opened only now, so the file exists and is already in WAL mode.
        let reader = Self::read_pool(base.read_only(true)).await?;
        // Logs an older version left (before they were private) are narrowed now.
        volact_store::private::narrow_logs(path).map_err(io)?;
        Ok(SqliteStore {
            writer,
            reader,
            durability,
            database,
            journal: None,
        })
    }

    /// Opens an existing database for reading only, for status commands that must not
    /// create or change anything. Fails if the file is missing or its schema is not the
    /// one this version writes; every write method then fails too.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(Self::open_read_only_inner(path).await?)
    }

    async fn open_read_only_inner(path: &Path) -> Result<SqliteStore, DbError> {
        if !path.is_file() {
            return Err(DbError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no database at {}: check the path, or start the host once to create it",
                    path.display()
                ),
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(STATEMENT_CACHE)
            .read_only(true);
        let reader = Self::read_pool(options).await?;
        schema::check_current(&reader).await?;
        let durability = Arc::new(durable::Durability::new(path));
        Ok(SqliteStore {
            // Writes go to read-only connections and fail with SQLite's own "readonly
            // database" error, rather than through a second code path.
            writer: reader.clone(),
            reader,
            database: fold::Database {
                worker: worker::Worker::open("volact-apply", path, true, BUSY_TIMEOUT, |_| Ok(()))
                    .await?,
                durability: durability.clone(),
            },
            durability,
            journal: None,
        })
    }

    async fn read_pool(options: SqliteConnectOptions) -> Result<SqlitePool, DbError> {
        Ok(SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .connect_with(options)
            .await?)
    }

    /// Closes every connection, waiting for those in use to be returned. The last one
    /// to close checkpoints the write-ahead log into the database file, so a copy of the
    /// file alone is complete afterwards. Data is durable without calling this.
    pub async fn close(&self) {
        if let Some(journal) = &self.journal
            && let Err(e) = journal.close().await
        {
            tracing::error!(error = %e, "applying the activation journal before closing failed; it will be applied at the next start");
        }
        self.database.worker.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Makes every write committed so far durable.
    async fn flush(&self) -> Result<(), DbError> {
        self.durability.sync(self.durability.committed()).await
    }

    /// Applies every activation batch stored so far to the database, so a read sees
    /// them, and a write that is not an activation lands after them.
    async fn catch_up(&self) -> Result<(), DbError> {
        match &self.journal {
            Some(journal) => journal.fold().await,
            None => Ok(()),
        }
    }

    /// Runs a query once the database holds every activation stored so far
    /// ([`SqliteStore::catch_up`]): what every read of the trait does first. The query
    /// is a future not yet polled, so nothing of it runs before the catch-up.
    async fn read<T>(
        &self,
        query: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, StoreError> {
        self.catch_up().await?;
        Ok(query.await?)
    }

    /// Runs a write that is not an activation after every activation stored so far (so
    /// it lands after them), then makes it durable before it is reported done.
    async fn write<T>(
        &self,
        write: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, StoreError> {
        self.catch_up().await?;
        let done = write.await?;
        self.flush().await?;
        Ok(done)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_batch(&self, batch: &[ActivationRecord]) -> Result<(), StoreError> {
        let token = self.record_batch_deferred(batch.to_vec()).await?;
        self.sync(token).await
    }

    async fn record_batch_deferred(&self, batch: Vec<ActivationRecord>) -> Result<u64, StoreError> {
        if let Some(journal) = &self.journal {
            return Ok(journal.append(batch).await?);
        }
        Ok(self.database.apply_deferred(batch).await?)
    }

    async fn sync(&self, token: u64) -> Result<(), StoreError> {
        let synced = match &self.journal {
            Some(journal) => journal.sync(token).await,
            None => self.durability.sync(token).await,
        };
        Ok(synced?)
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn counted_clients(&self, since: i64) -> Result<Vec<CountedClient>, StoreError> {
        self.read(read::counted_clients(&self.reader, since)).await
    }

    async fn visit_counted_clients(
        &self,
        since: i64,
        visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
    ) -> Result<u64, StoreError> {
        self.read(read::visit_counted_clients(&self.reader, since, visit))
            .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.read(read::client(&self.reader, client_id)).await
    }

    async fn clients(&self, filter: &ClientFilter) -> Result<Vec<ClientRecord>, StoreError> {
        self.read(read::clients(&self.reader, filter)).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        self.read(read::events(&self.reader, filter)).await
    }

    async fn count_by_application(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(read::count_by(
            &self.reader,
            read::CountBy::Application,
            since,
        ))
        .await
    }

    async fn count_by_product(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(read::count_by(&self.reader, read::CountBy::Product, since))
            .await
    }

    async fn result_totals(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(read::result_totals(&self.reader)).await
    }

    async fn set_revoked(
        &self,
        client_id: &str,
        revoked: bool,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.write(write::set_revoked(
            &self.writer,
            client_id,
            revoked,
            reason,
            at,
        ))
        .await
    }

    async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        self.write(write::prune_events(&self.writer, before)).await
    }

    async fn client_total(&self) -> Result<u64, StoreError> {
        self.read(read::client_total(&self.reader)).await
    }

    async fn count_history(
        &self,
        until: i64,
        days: u32,
        window_secs: i64,
    ) -> Result<volact_store::CountHistory, StoreError> {
        self.read(history::count_history(
            &self.reader,
            until,
            days,
            window_secs,
        ))
        .await
    }

    async fn requests_by_hour(&self, since: i64) -> Result<Vec<HourlyRequests>, StoreError> {
        self.read(history::requests_by_hour(&self.reader, since))
            .await
    }

    async fn expiring_tickets(
        &self,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        self.read(history::expiring_tickets(&self.reader, from, to, limit))
            .await
    }

    async fn record_host_event(
        &self,
        at: i64,
        result: &str,
        address: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.write(ops::record_host_event(
            &self.writer,
            at,
            result,
            address,
            detail,
        ))
        .await
    }

    async fn record_clone(&self, sighting: &CloneSighting) -> Result<(), StoreError> {
        self.write(ops::record_clone(&self.writer, sighting)).await
    }

    async fn clones(&self, since: i64) -> Result<Vec<CloneRecord>, StoreError> {
        // Clone flags are written through the write connection, never the journal, so
        // there is nothing to catch up on.
        Ok(ops::clones(&self.reader, since).await?)
    }

    async fn count_expiring_tickets(&self, from: i64, to: i64) -> Result<u64, StoreError> {
        self.read(ops::count_expiring_tickets(&self.reader, from, to))
            .await
    }

    async fn register_host(&self, host: &volact_store::HostRecord) -> Result<(), StoreError> {
        // Not an activation: straight to the write connection, and durable.
        ops::register_host(&self.writer, host).await?;
        Ok(self.flush().await?)
    }

    async fn hosts(&self) -> Result<Vec<volact_store::HostRecord>, StoreError> {
        Ok(ops::hosts(&self.reader).await?)
    }

    async fn import(&self, rows: volact_store::ImportRows) -> Result<u64, StoreError> {
        self.write(ops::import(&self.writer, rows)).await
    }

    async fn probe_write(&self, at: i64) -> Result<(), StoreError> {
        // Proves the disk takes a write now: no need to wait for activations first.
        ops::probe_write(&self.writer, at).await?;
        Ok(self.flush().await?)
    }
}
