//! The count's feed and seat holds ([`volact_store::feed`]) on PostgreSQL.
//!
//! Positions are transaction ids (`xid8`, see migration 0003): a page is read in one
//! repeatable-read snapshot together with the oldest transaction that snapshot still
//! sees running, which becomes the next position. Rows of transactions that were
//! running may be read again on the next page; none is ever skipped.

use sqlx::Row;
use sqlx::postgres::PgPool;

use volact_store::feed::{CountChange, FeedPage, FeedPosition, SeatHold};

use crate::DbError;

/// Rows per page: a host catching up after a long pause reads in steps of this many.
const PAGE: i64 = 20_000;

/// One lock for every seat hold of the database: holds are rare (only new clients under
/// a seat cap take one) and must be decided one at a time across hosts.
const SEAT_LOCK: i64 = 0x766f_6c61_6374_5345; // "volactSE"

/// How long a hold lasts when its request is never recorded (seconds, by the database's
/// clock, which every host shares).
const HOLD_SECS: f64 = 60.0;

fn position(text: &str) -> Result<FeedPosition, DbError> {
    text.parse()
        .map(FeedPosition)
        .map_err(|_| DbError::Corrupt(format!("transaction id {text:?} is not a number")))
}

pub(crate) async fn current(pool: &PgPool) -> Result<FeedPosition, DbError> {
    let text: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
    position(&text)
}

/// Rows a reader needs: written by another store (or by none: an import), or revoked or
/// restored since the position, whoever wrote them after.
const NOT_MINE: &str = "(writer IS DISTINCT FROM $2 OR revoked_changed >= $1::text::xid8)";

pub(crate) async fn changes(
    pool: &PgPool,
    writer: i64,
    from: FeedPosition,
) -> Result<FeedPage, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let xmin: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(&mut *tx)
        .await?;
    let xmin = position(&xmin)?;
    let select = format!(
        "SELECT client_id, application, last_counted, revoked, changed::text AS changed \
         FROM clients WHERE changed >= $1::text::xid8 AND {NOT_MINE} ORDER BY changed LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .bind(from.0.to_string())
        .bind(writer)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut last = from;
    for row in &rows {
        changes.push(change(row)?);
        last = position(&row.try_get::<String, _>("changed")?)?;
    }
    let more = rows.len() >= PAGE as usize;
    let next = if !more {
        xmin
    } else if last > from {
        // A full page: the rest starts at its last transaction (read again in part).
        last.min(xmin)
    } else {
        // One transaction wrote more rows than a page (an import): read all of its rows,
        // then go past it.
        let rest = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT client_id, application, last_counted, revoked FROM clients \
             WHERE changed = $1::text::xid8 AND {NOT_MINE}"
        )))
        .bind(from.0.to_string())
        .bind(writer)
        .fetch_all(&mut *tx)
        .await?;
        changes.clear();
        for row in &rest {
            changes.push(change(row)?);
        }
        FeedPosition(from.0.saturating_add(1)).min(xmin)
    };
    tx.commit().await?;
    Ok(FeedPage {
        changes,
        next,
        more,
    })
}

fn change(row: &sqlx::postgres::PgRow) -> Result<CountChange, DbError> {
    Ok(CountChange {
        client_id: row.try_get("client_id")?,
        application: row.try_get("application")?,
        last_counted: row.try_get("last_counted")?,
        revoked: row.try_get("revoked")?,
    })
}

pub(crate) async fn hold_seat(
    pool: &PgPool,
    client_id: &str,
    since: i64,
    cap: u64,
) -> Result<SeatHold, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEAT_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM seat_holds WHERE held_at < extract(epoch FROM clock_timestamp()) - $1",
    )
    .bind(HOLD_SECS)
    .execute(&mut *tx)
    .await?;
    // UNION: a client both held and recorded takes one seat.
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM ( \
             SELECT client_id FROM clients \
             WHERE NOT revoked AND last_counted >= $2 AND client_id <> $1 \
             UNION SELECT client_id FROM seat_holds WHERE client_id <> $1) s) AS in_use, \
         EXISTS (SELECT 1 FROM clients \
             WHERE client_id = $1 AND NOT revoked AND last_counted >= $2) AS counted",
    )
    .bind(client_id)
    .bind(since)
    .fetch_one(&mut *tx)
    .await?;
    let in_use: i64 = row.try_get("in_use")?;
    let in_use = in_use.unsigned_abs();
    let counted: bool = row.try_get("counted")?;
    let answer = if counted {
        SeatHold::Held { in_use }
    } else if in_use < cap {
        sqlx::query(
            "INSERT INTO seat_holds (client_id, held_at) \
             VALUES ($1, extract(epoch FROM clock_timestamp())) \
             ON CONFLICT (client_id) DO UPDATE SET held_at = excluded.held_at",
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        SeatHold::Held { in_use }
    } else {
        SeatHold::Full { in_use }
    };
    tx.commit().await?;
    Ok(answer)
}

pub(crate) async fn release_seat(pool: &PgPool, client_id: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM seat_holds WHERE client_id = $1")
        .bind(client_id)
        .execute(pool)
        .await?;
    Ok(())
}
