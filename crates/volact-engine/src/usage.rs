//! The host's usage report: a snapshot of its counts that it sends its vendor once a
//! day when its host key asks for reports (see `volact_core::usage`). Built from the
//! store's aggregate queries only, so no client id ever passes through it.

use jiff::Timestamp;
use volact_core::usage::UsageReport;
use volact_proto::{ApiError, ErrorCode};

use crate::engine::Engine;

/// The report of `engine`'s host at `now`, or `None` while it has no certificate (a host
/// that is not activated has no vendor to report to).
pub async fn build_report(
    engine: &Engine,
    now: Timestamp,
) -> Result<Option<UsageReport>, ApiError> {
    let Some(certificate) = engine.certificate() else {
        return Ok(None);
    };
    let store = engine.store();
    let failed = |e: volact_store::StoreError| {
        ApiError::new(
            ErrorCode::StorageFailure,
            format!("cannot read the counts for the usage report: {e}"),
        )
    };
    let since = volact_core::util::add(now, -engine.settings().count_window).as_second();
    let products = store.count_by_product(since).await.map_err(failed)?;
    let applications = store.count_by_application(since).await.map_err(failed)?;
    let clients_known = store.client_total().await.map_err(failed)?;
    let count_scope = store.count_scope().await.map_err(failed)?;
    Ok(Some(UsageReport {
        host_id: engine.host_id().to_owned(),
        key_id: certificate.key_id,
        day: now.to_zoned(jiff::tz::TimeZone::UTC).date(),
        iat: now,
        host_version: env!("CARGO_PKG_VERSION").to_owned(),
        clients_known,
        // Requests refused before their product was known are stored without one.
        products: products
            .into_iter()
            .filter(|(p, _)| !p.is_empty())
            .collect(),
        applications: applications
            .into_iter()
            .filter(|(a, _)| !a.is_empty())
            .collect(),
        count_scope,
    }))
}
