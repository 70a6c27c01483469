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

pub(super) async fn register_host(
    pool: &SqlitePool,
    host: &volact_store::HostRecord,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO hosts (host_id, name, listen_urls, version, last_seen) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET \
         name = excluded.name, listen_urls = excluded.listen_urls, \
         version = excluded.version, last_seen = excluded.last_seen",
    )
    .bind(host.host_id.as_str())
    .bind(host.name.as_str())
    .bind(host.listen_urls.join("\n"))
    .bind(host.version.as_str())
    .bind(host.last_seen)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn hosts(pool: &SqlitePool) -> Result<Vec<volact_store::HostRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT host_id, name, listen_urls, version, last_seen FROM hosts ORDER BY host_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let urls: &str = row.try_get("listen_urls")?;
            Ok(volact_store::HostRecord {
                host_id: row.try_get("host_id")?,
                name: row.try_get("name")?,
                listen_urls: urls.lines().map(str::to_owned).collect(),
                version: row.try_get("version")?,
                last_seen: row.try_get("last_seen")?,
            })
        })
        .collect()
}

/// Writes rows copied from another store as they are, in one transaction (see
/// [`volact_store::Store::import`]).
pub(super) async fn import(
    pool: &SqlitePool,
    rows: volact_store::ImportRows,
) -> Result<u64, DbError> {
    use volact_store::ImportRows;
    let big = |n: u64| {
        i64::try_from(n).map_err(|_| DbError::Corrupt(format!("{n} is too large to store")))
    };
    let mut tx = pool.begin().await?;
    let mut written = 0;
    match rows {
        ImportRows::Clients(clients) => {
            for c in &clients {
                let done = sqlx::query(
                    "INSERT INTO clients (client_id, machine_name, address, product, application, \
                     first_seen, last_seen, last_counted, last_result, last_count, ticket_id, \
                     ticket_valid_until, revoked, revoked_reason, requests) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (client_id) DO UPDATE SET machine_name = excluded.machine_name, \
                     address = excluded.address, product = excluded.product, \
                     application = excluded.application, first_seen = excluded.first_seen, \
                     last_seen = excluded.last_seen, last_counted = excluded.last_counted, \
                     last_result = excluded.last_result, last_count = excluded.last_count, \
                     ticket_id = excluded.ticket_id, ticket_valid_until = excluded.ticket_valid_until, \
                     revoked = excluded.revoked, revoked_reason = excluded.revoked_reason, \
                     requests = excluded.requests",
                )
                .bind(c.client_id.as_str())
                .bind(c.machine_name.as_str())
                .bind(c.address.as_str())
                .bind(c.product.as_str())
                .bind(c.application.as_str())
                .bind(c.first_seen)
                .bind(c.last_seen)
                .bind(c.last_counted)
                .bind(c.last_result.as_str())
                .bind(i64::from(c.last_count))
                .bind(c.ticket_id.as_deref())
                .bind(c.ticket_valid_until)
                .bind(c.revoked)
                .bind(c.revoked_reason.as_deref())
                .bind(big(c.requests)?)
                .execute(&mut *tx)
                .await?;
                written += done.rows_affected();
            }
        }
        ImportRows::Events(events) => {
            for e in &events {
                // AUTOINCREMENT moves past an id given explicitly, so later events
                // are numbered after the imported ones.
                let done = sqlx::query(
                    "INSERT OR IGNORE INTO events (id, at, client_id, machine_name, address, \
                     product, minimum_asked, count, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(e.id)
                .bind(e.at)
                .bind(e.client_id.as_str())
                .bind(e.machine_name.as_str())
                .bind(e.address.as_str())
                .bind(e.product.as_str())
                .bind(i64::from(e.minimum_asked))
                .bind(i64::from(e.count))
                .bind(e.result.as_str())
                .execute(&mut *tx)
                .await?;
                written += done.rows_affected();
            }
        }
        ImportRows::Clones(clones) => {
            for c in &clones {
                let done = sqlx::query(
                    "INSERT INTO clone_flags (client_id, first_flagged, last_flagged, flags, \
                     machine_name, other_machine_name, address, reason) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET \
                     first_flagged = excluded.first_flagged, last_flagged = excluded.last_flagged, \
                     flags = excluded.flags, machine_name = excluded.machine_name, \
                     other_machine_name = excluded.other_machine_name, \
                     address = excluded.address, reason = excluded.reason",
                )
                .bind(c.client_id.as_str())
                .bind(c.first_flagged)
                .bind(c.last_flagged)
                .bind(big(c.flags)?)
                .bind(c.machine_name.as_str())
                .bind(c.other_machine_name.as_deref())
                .bind(c.address.as_str())
                .bind(c.reason.as_str())
                .execute(&mut *tx)
                .await?;
                written += done.rows_affected();
            }
        }
        ImportRows::Totals(totals) => {
            for (result, n) in &totals {
                let done = sqlx::query(
                    "INSERT INTO result_totals (result, n) VALUES (?, ?) \
                     ON CONFLICT (result) DO UPDATE SET n = excluded.n",
                )
                .bind(result.as_str())
                .bind(big(*n)?)
                .execute(&mut *tx)
                .await?;
                written += done.rows_affected();
            }
        }
    }
    tx.commit().await?;
    Ok(written)
}
