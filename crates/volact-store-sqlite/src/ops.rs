//! Operations around the activation path: cloned-image flags, expiring tickets for
//! metrics, and the write probe behind health checks. None of them runs per request.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::read::int;
use crate::{CloneRecord, CloneSighting, DbError};

pub(super) async fn record_host_event(
    pool: &SqlitePool,
    at: i64,
    result: &str,
    address: &str,
    detail: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO events (at, client_id, machine_name, address, product, minimum_asked, \
         count, result) VALUES (?, '', ?, ?, '', 0, 0, ?)",
    )
    .bind(at)
    .bind(detail)
    .bind(address)
    .bind(result)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn record_clone(
    pool: &SqlitePool,
    sighting: &CloneSighting,
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO clone_flags (client_id, first_flagged, last_flagged, flags, machine_name, \
         other_machine_name, address, reason) VALUES (?, ?, ?, 1, ?, ?, ?, ?) \
         ON CONFLICT (client_id) DO UPDATE SET \
         last_flagged = MAX(clone_flags.last_flagged, excluded.last_flagged), \
         flags = clone_flags.flags + 1, \
         machine_name = excluded.machine_name, \
         other_machine_name = COALESCE(excluded.other_machine_name, clone_flags.other_machine_name), \
         address = excluded.address, \
         reason = excluded.reason",
    )
    .bind(sighting.client_id.as_str())
    .bind(sighting.at)
    .bind(sighting.at)
    .bind(sighting.machine_name.as_str())
    .bind(sighting.other_machine_name.as_deref())
    .bind(sighting.address.as_str())
    .bind(sighting.reason.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (at, client_id, machine_name, address, product, minimum_asked, \
         count, result) VALUES (?, ?, ?, ?, ?, 0, 0, 'cloned-image')",
    )
    .bind(sighting.at)
    .bind(sighting.client_id.as_str())
    .bind(sighting.machine_name.as_str())
    .bind(sighting.address.as_str())
    .bind(sighting.product.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn clones(pool: &SqlitePool, since: i64) -> Result<Vec<CloneRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT client_id, first_flagged, last_flagged, flags, machine_name, \
         other_machine_name, address, reason FROM clone_flags WHERE last_flagged >= ? \
         ORDER BY last_flagged DESC, client_id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CloneRecord {
                client_id: row.try_get("client_id")?,
                first_flagged: row.try_get("first_flagged")?,
                last_flagged: row.try_get("last_flagged")?,
                flags: int(row, "flags")?,
                machine_name: row.try_get("machine_name")?,
                other_machine_name: row.try_get("other_machine_name")?,
                address: row.try_get("address")?,
                reason: row.try_get("reason")?,
            })
        })
        .collect()
}

pub(super) async fn count_expiring_tickets(
    pool: &SqlitePool,
    from: i64,
    to: i64,
) -> Result<u64, DbError> {
    // A scan of the inventory; it runs once a minute for the metrics, never per request,
    // so the hot path's upserts are not slowed by another index.
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM clients WHERE revoked = 0 \
         AND ticket_valid_until >= ? AND ticket_valid_until < ?",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    u64::try_from(n).map_err(|_| DbError::Corrupt(format!("ticket count {n} is negative")))
}

pub(super) async fn probe_write(pool: &SqlitePool, at: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO host_meta (key, value) VALUES ('probe', ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}
