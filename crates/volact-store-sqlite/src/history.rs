//! The dashboard's queries: daily count history, requests per hour, expiring tickets.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::read::{CLIENT_SELECT, client_row, int};
use crate::{ClientRecord, DbError, HourlyRequests};
use volact_store::history::{
    COUNTED_RESULTS, CountHistory, CountedAt, DAY_SECS, sample_points, sweep,
};

pub(super) async fn count_history(
    pool: &SqlitePool,
    until: i64,
    days: u32,
    window_secs: i64,
) -> Result<CountHistory, DbError> {
    let (starts, samples) = sample_points(until, days);
    let Some(&first) = samples.first() else {
        return Ok(CountHistory::default());
    };
    let from = first.saturating_sub(window_secs);
    // Only the latest counted request of a client on each day matters to the sweep (the
    // samples are day ends), so the database sends one row per client and day, not one per
    // request. The client's current application and revocation apply to its whole past.
    let day_rows = sqlx::query(
        "SELECT e.client_id AS client_id, c.application AS application, MAX(e.at) AS at \
         FROM events e JOIN clients c ON c.client_id = e.client_id \
         WHERE e.at >= ? AND e.at <= ? AND e.result IN (?, ?) AND c.revoked = 0 \
         GROUP BY e.client_id, e.at / ?",
    )
    .bind(from)
    .bind(until)
    .bind(COUNTED_RESULTS[0])
    .bind(COUNTED_RESULTS[1])
    .bind(DAY_SECS)
    .fetch_all(pool)
    .await?;
    // The inventory's last counted time is never pruned: it keeps the recent days right
    // even when the audit log is kept for a short time.
    let client_rows = sqlx::query(
        "SELECT client_id, application, last_counted AS at FROM clients \
         WHERE revoked = 0 AND last_counted >= ? AND last_counted <= ?",
    )
    .bind(from)
    .bind(until)
    .fetch_all(pool)
    .await?;
    let counted = day_rows
        .iter()
        .chain(client_rows.iter())
        .map(|row| {
            Ok(CountedAt {
                client_id: row.try_get("client_id")?,
                application: row.try_get("application")?,
                at: row.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let series = sweep(counted, &samples, window_secs);

    // Clients older than the oldest event mean events were pruned; a day whose window
    // reaches before that event may have lost requests that counted.
    let oldest: (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT MIN(at) FROM events), (SELECT MIN(first_seen) FROM clients)",
    )
    .fetch_one(pool)
    .await?;
    let partial_days = match oldest {
        (Some(event), Some(client)) if client < event => samples
            .iter()
            .take_while(|&&e| e.saturating_sub(window_secs) < event)
            .count(),
        _ => 0,
    };
    Ok(CountHistory {
        days: starts,
        series,
        partial_days,
    })
}

pub(super) async fn requests_by_hour(
    pool: &SqlitePool,
    since: i64,
) -> Result<Vec<HourlyRequests>, DbError> {
    let rows = sqlx::query(
        "SELECT (at / 3600) * 3600 AS hour, result, COUNT(*) AS n FROM events \
         WHERE at >= ? AND client_id <> '' GROUP BY hour, result ORDER BY hour, result",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HourlyRequests {
                hour: row.try_get("hour")?,
                result: row.try_get("result")?,
                n: int(row, "n")?,
            })
        })
        .collect()
}

pub(super) async fn expiring_tickets(
    pool: &SqlitePool,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<ClientRecord>, DbError> {
    let sql = format!(
        "{CLIENT_SELECT} WHERE revoked = 0 AND ticket_valid_until >= ? \
         AND ticket_valid_until < ? ORDER BY ticket_valid_until, client_id LIMIT ?"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(client_row).collect()
}
