//! The PostgreSQL backend of volact's [`Store`]: several hosts share one inventory, one
//! audit log, one revocation list and the totals, kept in a database an organisation
//! already knows how to replicate and fail over.
//!
//! Every write is one transaction, committed before the call returns: nothing a host
//! acknowledges waits in memory. [`Store::record_batch_deferred`] is therefore the
//! trait's default (commit, then a no-op [`Store::sync`]). Reads see every write
//! committed before them, by this host or another. The connection pool reconnects on
//! its own, so a host rides out a database restart: writes fail with
//! [`StoreErrorKind::Unavailable`](volact_store::StoreErrorKind::Unavailable) while it
//! is down and succeed again once it is back.

mod error;
mod feed;
mod read;
mod schema;
mod vendor;
mod write;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use volact_store::feed::{CountFeed, FeedPage, FeedPosition, SeatHold};
use volact_store::{
    ActivationRecord, ClientFilter, ClientRecord, CloneRecord, CloneSighting, CountHistory,
    CountedClient, EventFilter, EventRecord, HostRecord, HourlyRequests, Store, StoreError,
};

use error::DbError;
pub use vendor::PgVendorStore;

/// Connections per host when the configuration names no pool size: enough for the
/// writer, the maintenance pass and a few administrators at once.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// The largest pool size accepted; PostgreSQL's own default limit is 100 connections for
/// every host together.
pub const MAX_POOL_SIZE: u32 = 256;

/// A pooled connection idle this long is pinged before it is used.
const PING_WHEN_IDLE: Duration = Duration::from_millis(500);

/// After the database failed to answer, every pooled connection is pinged before use
/// for this long, however recently it was used: a connection the server dropped is then
/// found out and replaced rather than failing the first write after the database is back.
const PING_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// How long a request waits for a connection before failing: long enough to ride out a
/// burst, short enough that an unreachable database answers `storage-failure` quickly
/// rather than holding clients.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the database, beyond its URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections in the pool ([`DEFAULT_POOL_SIZE`] when `None`).
    pub pool_size: Option<u32>,
    /// A PEM file of the certificate authorities to trust: TLS is then required and the
    /// server's certificate must name the URL's host (`sslmode=verify-full`).
    pub ca_file: Option<PathBuf>,
    /// The password, when the URL holds none (read from a file or the environment by the
    /// caller, never from a command line).
    pub password: Option<String>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// The PostgreSQL backend: a pool of connections to one database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This store's mark on the client rows it writes, so its feed skips them (the
    /// host already knows its own answers); random per process.
    writer: i64,
}

/// A random mark for a store's rows, from the standard library's per-process random keys.
fn random_writer() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish().cast_signed()
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user@host:port/database`),
    /// checks it can be reached, and brings its schema up to date. Fails with
    /// `Unavailable` when it cannot be reached and `Invalid` when a setting is wrong
    /// (the URL, the password, the CA file).
    pub async fn open(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let connect = Self::connect_options(url, options)?;
        let size = options.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if !(1..=MAX_POOL_SIZE).contains(&size) {
            return Err(StoreError::new(
                volact_store::StoreErrorKind::Invalid,
                format!("pool_size is {size}; it must be from 1 to {MAX_POOL_SIZE}"),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection the server dropped (a restart, a failover) is found out
            // before it is used, not by the write that gets it: one that sat idle is
            // pinged first. One in steady use is not, since a ping is a round trip per
            // batch (about a tenth of the host's throughput on PostgreSQL); if the
            // server went away in the moment since its last use, that one batch
            // answers `storage-failure` and its clients retry; and for a while after
            // any failure every connection is pinged, so one the server dropped while
            // in steady use (the count feed's, every 250 ms) is not handed to the first
            // write after the database is back.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE
                        || error::unavailable_within(PING_AFTER_FAILURE)
                    {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(DbError::from)?;
        schema::migrate(&pool).await?;
        Ok(PgStore {
            pool,
            writer: random_writer(),
        })
    }

    /// The driver's options for `url` and `options`. The URL's own `sslmode` holds
    /// unless a CA file is given, which makes it `verify-full`.
    pub(crate) fn connect_options(
        url: &str,
        options: &PgOptions,
    ) -> Result<PgConnectOptions, StoreError> {
        let invalid = |why: String| StoreError::new(volact_store::StoreErrorKind::Invalid, why);
        // The driver's message may quote the URL, password included: keep it out.
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|_| invalid("the PostgreSQL URL is not valid; write it as postgres://USER@HOST:PORT/DATABASE".to_owned()))?
            .application_name("volact");
        if let Some(password) = &options.password {
            connect = connect.password(password);
        }
        if let Some(ca) = &options.ca_file {
            if !ca.is_file() {
                return Err(invalid(format!(
                    "ca_file {} is not a readable file",
                    ca.display()
                )));
            }
            connect = connect
                .ssl_mode(PgSslMode::VerifyFull)
                .ssl_root_cert(ca.as_path());
        }
        Ok(connect)
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PgStore {
    async fn record_batch(&self, batch: &[ActivationRecord]) -> Result<(), StoreError> {
        Ok(write::record_batch(&self.pool, self.writer, batch).await?)
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }

    async fn counted_clients(&self, since: i64) -> Result<Vec<CountedClient>, StoreError> {
        Ok(read::counted_clients(&self.pool, since).await?)
    }

    async fn visit_counted_clients(
        &self,
        since: i64,
        visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
    ) -> Result<u64, StoreError> {
        Ok(read::visit_counted_clients(&self.pool, since, visit).await?)
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        Ok(read::client(&self.pool, client_id).await?)
    }

    async fn clients(&self, filter: &ClientFilter) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(read::clients(&self.pool, filter).await?)
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        Ok(read::events(&self.pool, filter).await?)
    }

    async fn count_by_application(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(read::count_by(&self.pool, read::CountBy::Application, since).await?)
    }

    async fn count_by_product(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(read::count_by(&self.pool, read::CountBy::Product, since).await?)
    }

    async fn result_totals(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(read::result_totals(&self.pool).await?)
    }

    async fn set_revoked(
        &self,
        client_id: &str,
        revoked: bool,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        Ok(write::set_revoked(&self.pool, client_id, revoked, reason, at).await?)
    }

    async fn prune_events(&self, before: i64) -> Result<u64, StoreError> {
        Ok(write::prune_events(&self.pool, before).await?)
    }

    async fn client_total(&self) -> Result<u64, StoreError> {
        Ok(read::client_total(&self.pool).await?)
    }

    async fn count_history(
        &self,
        until: i64,
        days: u32,
        window_secs: i64,
    ) -> Result<CountHistory, StoreError> {
        Ok(read::count_history(&self.pool, until, days, window_secs).await?)
    }

    async fn requests_by_hour(&self, since: i64) -> Result<Vec<HourlyRequests>, StoreError> {
        Ok(read::requests_by_hour(&self.pool, since).await?)
    }

    async fn expiring_tickets(
        &self,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(read::expiring_tickets(&self.pool, from, to, limit).await?)
    }

    async fn record_clone(&self, sighting: &CloneSighting) -> Result<(), StoreError> {
        Ok(write::record_clone(&self.pool, sighting).await?)
    }

    async fn clones(&self, since: i64) -> Result<Vec<CloneRecord>, StoreError> {
        Ok(read::clones(&self.pool, since).await?)
    }

    async fn count_expiring_tickets(&self, from: i64, to: i64) -> Result<u64, StoreError> {
        Ok(read::count_expiring_tickets(&self.pool, from, to).await?)
    }

    async fn register_host(&self, host: &HostRecord) -> Result<(), StoreError> {
        Ok(write::register_host(&self.pool, host).await?)
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        Ok(read::hosts(&self.pool).await?)
    }

    async fn count_scope(&self) -> Result<Option<String>, StoreError> {
        Ok(Some(read::store_id(&self.pool).await?))
    }

    fn count_feed(&self) -> Option<std::sync::Arc<dyn CountFeed>> {
        Some(std::sync::Arc::new(self.clone()))
    }

    async fn import(&self, rows: volact_store::ImportRows) -> Result<u64, StoreError> {
        Ok(write::import(&self.pool, rows).await?)
    }

    async fn probe_write(&self, at: i64) -> Result<(), StoreError> {
        Ok(write::probe_write(&self.pool, at).await?)
    }

    async fn record_host_event(
        &self,
        at: i64,
        result: &str,
        address: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        Ok(write::record_host_event(&self.pool, at, result, address, detail).await?)
    }
}

#[async_trait]
impl CountFeed for PgStore {
    async fn position(&self) -> Result<FeedPosition, StoreError> {
        Ok(feed::current(&self.pool).await?)
    }

    async fn changes(&self, from: FeedPosition) -> Result<FeedPage, StoreError> {
        Ok(feed::changes(&self.pool, self.writer, from).await?)
    }

    async fn hold_seat(
        &self,
        client_id: &str,
        since: i64,
        cap: u64,
    ) -> Result<SeatHold, StoreError> {
        Ok(feed::hold_seat(&self.pool, client_id, since, cap).await?)
    }

    async fn release_seat(&self, client_id: &str) -> Result<(), StoreError> {
        Ok(feed::release_seat(&self.pool, client_id).await?)
    }
}
