//! Moving a host's data to another store (`volact host migrate-store`): the inventory,
//! the audit log (event ids kept), cloned-image flags and result totals, copied whole in
//! chunks, with counts of what was read and written per table.
//!
//! A target that already holds data is refused unless forced. Forced, the copy is
//! repeatable: clients, flags and totals are replaced by the source's, and events already
//! there (same id) are left alone, so a copy that stopped halfway can simply be run again.

use serde::Serialize;
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ClientFilter, EventFilter, ImportRows, Store, StoreError};

/// Rows per write to the target: one transaction each, a few megabytes.
const CHUNK: usize = 5_000;

/// What was copied from one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCopy {
    /// Rows read from the source.
    pub source: u64,
    /// Rows written to the target (events already there are not written again).
    pub written: u64,
}

/// What [`copy`] did, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// The inventory.
    pub clients: TableCopy,
    /// The audit log.
    pub events: TableCopy,
    /// Cloned-image flags.
    pub clone_flags: TableCopy,
    /// Totals by result code.
    pub result_totals: TableCopy,
}

fn failed(which: &str, e: StoreError) -> ApiError {
    ApiError::with_details(
        ErrorCode::StorageFailure,
        format!("migrating the store: the {which} store failed: {e}"),
        serde_json::json!({ "store": which, "kind": format!("{:?}", e.kind()) }),
    )
}

/// Whether `store` holds anything a copy would mix with.
pub async fn holds_data(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.client_total().await? > 0
        || !store
            .events(&EventFilter {
                limit: Some(1),
                ..EventFilter::default()
            })
            .await?
            .is_empty()
        || !store.result_totals().await?.is_empty()
        || !store.clones(i64::MIN).await?.is_empty())
}

/// Copies everything from `source` to `target`. Refuses a target holding data unless
/// `force`. The source must not change meanwhile (the caller holds the data directory's
/// lock, so no host serves it).
pub async fn copy(source: &dyn Store, target: &dyn Store, force: bool) -> Result<Copied, ApiError> {
    let from = |e| failed("source", e);
    let to = |e| failed("target", e);
    if !force && holds_data(target).await.map_err(to)? {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the target store already holds data (clients, events or totals); \
             give --force to copy over it (clients, flags and totals are replaced, events \
             already there kept), or choose an empty database",
        ));
    }
    let mut copied = Copied::default();
    let write = |rows: ImportRows| async move { target.import(rows).await.map_err(to) };

    let clients = source
        .clients(&ClientFilter::default())
        .await
        .map_err(from)?;
    copied.clients.source = clients.len() as u64;
    for chunk in clients.chunks(CHUNK) {
        copied.clients.written += write(ImportRows::Clients(chunk.to_vec())).await?;
    }
    drop(clients);

    let mut after = i64::MIN;
    loop {
        let page = source
            .events(&EventFilter {
                after_id: Some(after),
                limit: Some(CHUNK as u32),
                oldest_first: true,
                ..EventFilter::default()
            })
            .await
            .map_err(from)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        copied.events.source += page.len() as u64;
        copied.events.written += write(ImportRows::Events(page)).await?;
    }

    let clones = source.clones(i64::MIN).await.map_err(from)?;
    copied.clone_flags.source = clones.len() as u64;
    for chunk in clones.chunks(CHUNK) {
        copied.clone_flags.written += write(ImportRows::Clones(chunk.to_vec())).await?;
    }

    let totals = source.result_totals().await.map_err(from)?;
    copied.result_totals.source = totals.len() as u64;
    copied.result_totals.written = write(ImportRows::Totals(totals)).await?;
    Ok(copied)
}
