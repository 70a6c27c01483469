//! Storage of a volact host: the inventory of every client ever seen, the audit log of
//! activation requests, revocations and result totals.
//!
//! Everything sits behind the [`Store`] trait so the activation rules never see SQL, and
//! a second backend (PostgreSQL, for several hosts sharing one count) can be added without
//! touching them. Backends live in crates of their own (`volact-store-sqlite` is the
//! embedded default) and prove themselves against the [`conformance`] suite (feature
//! `conformance`). Times are Unix seconds (UTC).

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod count;
pub mod feed;
pub mod history;
pub mod private;
mod types;
pub mod vendor;

pub use history::{CountHistory, CountSeries, HourlyRequests};
pub use types::*;

use async_trait::async_trait;

/// What a caller can do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The storage cannot be reached or used now (busy, locked, a failing disk, a full
    /// one, a database that is missing): retry later, or fix the machine.
    Unavailable,
    /// The stored data is damaged or from another version: restore a backup, or use
    /// the version that wrote it.
    Corrupt,
    /// The write contradicts what is stored (a constraint refused it).
    Conflict,
    /// The store cannot do this at all (a write to a store opened read-only, a setting
    /// it does not accept): change the request, not the timing.
    Invalid,
    /// A fault in volact or its driver: report it.
    Internal,
}

/// A storage failure: a kind a caller can act on, and a message that says what to check.
/// Backends map their driver's errors to it; no driver type leaves a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// Storage that cannot be used now.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, message)
    }

    /// Stored data that is damaged or from another version.
    pub fn corrupt(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Corrupt, message)
    }

    /// What a caller can do about it.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// What happened and what to check.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The storage a host needs. Implementations must make [`Store::record_batch`] durable
/// before returning: the host acknowledges activations only after it returns `Ok`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a batch of activation requests in one transaction: updates (or creates)
    /// each client's inventory row, appends one audit event per request, and adds to the
    /// per-result totals. Requests of one batch are applied in order.
    async fn record_batch(&self, batch: &[ActivationRecord]) -> Result<(), StoreError>;

    /// Like [`Store::record_batch`], but may return before the batch is durable: it is
    /// committed, after every batch committed before it, and is durable once
    /// [`Store::sync`] with the returned token returns; nothing may be acknowledged
    /// before its sync. One sync covers every batch before its token, so a writer can
    /// store several batches and flush once. The batch is handed over, so a store that
    /// keeps it (to apply later) need not copy it. The default is durable at once.
    async fn record_batch_deferred(&self, batch: Vec<ActivationRecord>) -> Result<u64, StoreError> {
        self.record_batch(&batch).await?;
        Ok(0)
    }

    /// Finishes pending work and releases what the store holds (connections, locks),
    /// when the host stops. Writes are durable without it. The default does nothing.
    async fn close(&self) {}

    /// Returns once every batch up to `token` (from [`Store::record_batch_deferred`]) is
    /// durable.
    async fn sync(&self, token: u64) -> Result<(), StoreError> {
        let _ = token;
        Ok(())
    }

    /// Every non-revoked client whose last counted request is at or after `since`, for
    /// rebuilding the in-memory count at start-up. Order is unspecified.
    async fn counted_clients(&self, since: i64) -> Result<Vec<CountedClient>, StoreError>;

    /// Calls `visit(client_id, application, last_counted)` for every client
    /// [`Store::counted_clients`] would return, without collecting them, so a host with
    /// a million clients starts without a million rows in memory. Returns how many were
    /// visited. Backends should override this default, which collects first.
    async fn visit_counted_clients(
        &self,
        since: i64,
        visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
    ) -> Result<u64, StoreError> {
        let clients = self.counted_clients(since).await?;
        for c in &clients {
            visit(&c.client_id, &c.application, c.last_counted);
        }
        Ok(clients.len() as u64)
    }

    /// One client's inventory row.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Inventory rows matching a filter, most recently seen first.
    async fn clients(&self, filter: &ClientFilter) -> Result<Vec<ClientRecord>, StoreError>;

    /// Audit events matching a filter, newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError>;

    /// Per-application count of distinct non-revoked clients counted at or after `since`.
    async fn count_by_application(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError>;

    /// The same per product (the product each client last asked for): what a host's
    /// usage report tells the vendor.
    async fn count_by_product(&self, since: i64) -> Result<Vec<(String, u64)>, StoreError>;

    /// Totals of requests by result code since the store was created.
    async fn result_totals(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Marks a client revoked or not. Returns false when the client is unknown.
    async fn set_revoked(
        &self,
        client_id: &str,
        revoked: bool,
        reason: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes audit events older than `before`; returns how many were deleted.
    async fn prune_events(&self, before: i64) -> Result<u64, StoreError>;

    /// Number of clients in the inventory.
    async fn client_total(&self) -> Result<u64, StoreError>;

    /// The count of each application on each of the `days` UTC days ending with the one
    /// holding `until`: at the last second of each day (at `until` for the last day), the
    /// distinct clients, not revoked now, with a counted request within `window_secs`
    /// before — the rule of the live count, replayed from the audit log and inventory.
    async fn count_history(
        &self,
        until: i64,
        days: u32,
        window_secs: i64,
    ) -> Result<CountHistory, StoreError>;

    /// Requests per hour and result at or after `since`, oldest hour first.
    async fn requests_by_hour(&self, since: i64) -> Result<Vec<HourlyRequests>, StoreError>;

    /// Clients, not revoked, whose last ticket ends at or after `from` and before `to`,
    /// soonest first, at most `limit`.
    async fn expiring_tickets(
        &self,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<ClientRecord>, StoreError>;

    /// Records a cloned-image flag in one transaction: creates or updates the client's
    /// flag and appends a `cloned-image` event to the audit log (result totals, which
    /// count requests, are not touched).
    async fn record_clone(&self, sighting: &CloneSighting) -> Result<(), StoreError>;

    /// Clients flagged as cloned images whose latest flag is at or after `since`, most
    /// recently flagged first.
    async fn clones(&self, since: i64) -> Result<Vec<CloneRecord>, StoreError>;

    /// Number of clients, not revoked, whose last ticket ends at or after `from` and
    /// before `to`.
    async fn count_expiring_tickets(&self, from: i64, to: i64) -> Result<u64, StoreError>;

    /// A tiny durable write proving the storage accepts writes, for health checks when
    /// no activation has been stored for a while.
    async fn probe_write(&self, at: i64) -> Result<(), StoreError>;

    /// Appends an audit event about the host itself rather than a client's request (such
    /// as a DNS publishing result, the counterpart of KMS events 12293/12294). Its client
    /// id is empty, `address` names the peer involved and `detail` is kept where a
    /// request's machine name would be. Result totals, which count requests, are not
    /// touched.
    async fn record_host_event(
        &self,
        at: i64,
        result: &str,
        address: &str,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// Creates or replaces the registry row of `host.host_id` (every field, the last
    /// seen time included), so the hosts sharing the store can be listed.
    async fn register_host(&self, host: &HostRecord) -> Result<(), StoreError>;

    /// Every host that ever registered, by host id.
    async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError>;

    /// The feed of the count's changes, for a store that several hosts share; `None`
    /// (the default) for a store only one host uses, whose count lives in that host.
    fn count_feed(&self) -> Option<std::sync::Arc<dyn feed::CountFeed>> {
        None
    }

    /// The id of the count this store holds when several hosts share it (the same for all
    /// of them, and never for another store), so that reports from those hosts can be
    /// told apart from independent hosts' and counted once; `None` (the default) for a
    /// store only one host uses.
    async fn count_scope(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Writes rows copied from another store as they are, in one transaction: clients
    /// and clone flags replace the rows of the same id, events keep their ids (an event
    /// whose id is already stored is left alone, so a copy can be repeated, and later
    /// events get higher ids), totals are set to the values given. Returns how many rows
    /// were written.
    async fn import(&self, rows: ImportRows) -> Result<u64, StoreError>;
}
