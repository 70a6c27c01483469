//! The PostgreSQL backend against the shared conformance suite, unchanged: each check on
//! a database of its own in one throwaway cluster on loopback.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use volact_store::conformance::TestResult;
use volact_store_postgres::{PgOptions, PgStore};
use volact_testkit::postgres::TestPostgres;

/// A fresh database in the shared cluster, and the cluster (kept alive by the guard).
async fn open(test: &str) -> TestResult<Option<(PgStore, Arc<TestPostgres>)>> {
    let Some(pg) = TestPostgres::shared(test)? else {
        return Ok(None);
    };
    let database = pg.create_database()?;
    let store = PgStore::open(&pg.url(&database), &PgOptions::default()).await?;
    Ok(Some((store, pg)))
}

volact_store::conformance_tests!(optional open);

/// A fresh vendor store, in a database that also holds a host's store: the two schemas
/// share it without touching each other.
async fn open_vendor(
    test: &str,
) -> TestResult<Option<(volact_store_postgres::PgVendorStore, Arc<TestPostgres>)>> {
    let Some(pg) = TestPostgres::shared(test)? else {
        return Ok(None);
    };
    let database = pg.create_database()?;
    let url = pg.url(&database);
    let host = PgStore::open(&url, &PgOptions::default()).await?;
    let vendor = volact_store_postgres::PgVendorStore::open(&url, &PgOptions::default()).await?;
    host.close().await;
    // Opening again finds both schemas current.
    PgStore::open(&url, &PgOptions::default())
        .await?
        .close()
        .await;
    Ok(Some((vendor, pg)))
}

mod vendor {
    use super::open_vendor;
    volact_store::vendor_conformance_tests!(optional open_vendor);
}
