//! Schema migrations, embedded in the binary and applied with sqlx's migrator, which
//! records them in `_sqlx_migrations` with their checksums (an edited shipped migration
//! is refused) and holds an advisory lock meanwhile, so hosts starting together on one
//! database migrate it once.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPool;

use crate::DbError;

/// Every migration, in order. Never edit a shipped one: add the next.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "the registry of hosts",
        include_str!("../migrations/0002_hosts.sql"),
    ),
    (
        3,
        "the count's feed and seat holds",
        include_str!("../migrations/0003_count_feed.sql"),
    ),
    (
        4,
        "totals in shards",
        include_str!("../migrations/0004_total_shards.sql"),
    ),
    (
        5,
        "the store's id",
        include_str!("../migrations/0005_store_id.sql"),
    ),
];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies the migrations the database has not seen yet.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    migrator().run(pool).await?;
    Ok(())
}
