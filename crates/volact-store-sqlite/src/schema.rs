//! Schema migrations, embedded in the binary.
//!
//! `sqlx::migrate!` would need sqlx's `macros` feature, so the migrations are listed by
//! hand; sqlx's migrator still records them in `_sqlx_migrations` with their checksums,
//! which catches a migration edited after it shipped.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqlitePool;

use crate::DbError;

/// Every migration, in order. Never edit a shipped one: add the next.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "clone flags and health probe",
        include_str!("../migrations/0002_clone_flags.sql"),
    ),
    (
        3,
        "write-behind: no index moved by each activation",
        include_str!("../migrations/0003_write_behind.sql"),
    ),
    (
        4,
        "the registry of hosts",
        include_str!("../migrations/0004_hosts.sql"),
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
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), DbError> {
    migrator().run(pool).await?;
    Ok(())
}

/// Checks, without changing anything, that the database has exactly the migrations this
/// version knows, so a read-only reader does not misread an older or newer layout.
pub(super) async fn check_current(pool: &SqlitePool) -> Result<(), DbError> {
    let has_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if has_table == 0 {
        return Err(DbError::Corrupt(
            "this file is not a volact database (it has no schema history); \
             check the path, or start the host once on it to create the schema"
                .to_owned(),
        ));
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    let expected: Vec<i64> = MIGRATIONS.iter().map(|&(version, _, _)| version).collect();
    if applied != expected {
        let newest = |v: &[i64]| v.last().copied().unwrap_or(0);
        return Err(DbError::Corrupt(format!(
            "the database schema is at version {} but this version of volact expects {}; \
             start the host of the matching version once to bring the schema up to date",
            newest(&applied),
            newest(&expected),
        )));
    }
    Ok(())
}
