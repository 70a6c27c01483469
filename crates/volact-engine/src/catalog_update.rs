//! A serving host takes a newer catalog of its vendor without a restart and without
//! being activated again: once `D/vendor.json` holds a newer version (written by
//! `volact host import-catalog` or by the host's own fetch from the vendor service, both
//! through [`crate::data::HostData::import_catalog`], which verifies it and refuses an
//! older one), the engine serves with it, and the products its key group gained are
//! covered by the certificate already installed
//! (`volact_core::certificate::covered_products`).

use crate::data::HostData;
use crate::engine::Engine;
use volact_proto::ApiError;

/// Audit event of a newer catalog taken into service.
pub const UPDATED: &str = "catalog-updated";

/// Serves with the catalog of `data` when it is newer than the engine's; returns its
/// version when it was taken. A catalog that does not verify is refused by
/// [`HostData::vendor`], and an older one is never taken.
pub async fn take_newer(engine: &Engine, data: &HostData) -> Result<Option<u64>, ApiError> {
    let (_, catalog) = data.vendor()?;
    let current = engine.catalog();
    if catalog.vendor != current.vendor || catalog.version <= current.version {
        return Ok(None);
    }
    let version = catalog.version;
    let message = format!(
        "catalog version {version} in service (was {}); products: {}",
        current.version,
        catalog
            .products
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    engine.set_catalog(catalog);
    tracing::info!(version, "{message}");
    let at = engine.now().as_second();
    if let Err(e) = engine
        .store()
        .record_host_event(at, UPDATED, "", &message)
        .await
    {
        tracing::warn!("cannot add the catalog update to the audit log: {e}");
    }
    Ok(Some(version))
}
