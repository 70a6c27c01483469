//! The read path: inventory, audit log, counts, totals and the dashboard's queries.

use sqlx::postgres::{PgPool, PgRow, Postgres};
use sqlx::{QueryBuilder, Row};

use crate::{ClientFilter, ClientRecord, CountedClient, DbError, EventFilter, EventRecord};
use volact_store::HourlyRequests;
use volact_store::history::{
    COUNTED_RESULTS, CountHistory, CountedAt, DAY_SECS, sample_points, sweep,
};

const CLIENT_SELECT: &str = "SELECT client_id, machine_name, address, product, application, \
    first_seen, last_seen, last_counted, last_result, last_count, ticket_id, ticket_valid_until, \
    revoked, revoked_reason, requests FROM clients";

const EVENT_SELECT: &str = "SELECT id, at, client_id, machine_name, address, product, \
    minimum_asked, count, result FROM events";

/// Integers are stored as BIGINT; a value out of range for its field can only come from
/// another program, and is reported rather than wrapped.
fn int<T: TryFrom<i64>>(row: &PgRow, column: &str) -> Result<T, DbError> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value).map_err(|_| {
        DbError::Corrupt(format!(
            "column {column} holds {value}, out of range for its field"
        ))
    })
}

fn client_row(row: &PgRow) -> Result<ClientRecord, DbError> {
    Ok(ClientRecord {
        client_id: row.try_get("client_id")?,
        machine_name: row.try_get("machine_name")?,
        address: row.try_get("address")?,
        product: row.try_get("product")?,
        application: row.try_get("application")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        last_counted: row.try_get("last_counted")?,
        last_result: row.try_get("last_result")?,
        last_count: int(row, "last_count")?,
        ticket_id: row.try_get("ticket_id")?,
        ticket_valid_until: row.try_get("ticket_valid_until")?,
        revoked: row.try_get("revoked")?,
        revoked_reason: row.try_get("revoked_reason")?,
        requests: int(row, "requests")?,
    })
}

fn event_row(row: &PgRow) -> Result<EventRecord, DbError> {
    Ok(EventRecord {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        client_id: row.try_get("client_id")?,
        machine_name: row.try_get("machine_name")?,
        address: row.try_get("address")?,
        product: row.try_get("product")?,
        minimum_asked: int(row, "minimum_asked")?,
        count: int(row, "count")?,
        result: row.try_get("result")?,
    })
}

/// A pattern matching `text` anywhere, with LIKE's wildcards in it taken literally.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn count(n: i64, what: &str) -> Result<u64, DbError> {
    u64::try_from(n).map_err(|_| DbError::Corrupt(format!("{what} {n} is negative")))
}

// "This client counts" in SQL: `last_counted >= since AND NOT revoked`, here, in
// `visit_counted_clients`, the clients filter and `count_by_application`; the same as
// `volact_core::count::counts` and the SQLite backend's queries.
pub(crate) async fn counted_clients(
    pool: &PgPool,
    since: i64,
) -> Result<Vec<CountedClient>, DbError> {
    let rows = sqlx::query(
        "SELECT client_id, application, last_counted FROM clients \
         WHERE last_counted >= $1 AND NOT revoked",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CountedClient {
                client_id: row.try_get("client_id")?,
                application: row.try_get("application")?,
                last_counted: row.try_get("last_counted")?,
            })
        })
        .collect()
}

/// Rows per chunk of [`visit_counted_clients`]: a few megabytes at a time.
const VISIT_CHUNK: i64 = 50_000;

/// Every counted client, a chunk at a time in client id order (the primary key's), so a
/// million clients never sit in memory at once.
pub(crate) async fn visit_counted_clients(
    pool: &PgPool,
    since: i64,
    visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
) -> Result<u64, DbError> {
    let mut after = String::new();
    let mut visited = 0;
    loop {
        let rows = sqlx::query(
            "SELECT client_id, application, last_counted FROM clients \
             WHERE client_id > $1 AND last_counted >= $2 AND NOT revoked \
             ORDER BY client_id LIMIT $3",
        )
        .bind(&after)
        .bind(since)
        .bind(VISIT_CHUNK)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let id: &str = row.try_get("client_id")?;
            let application: &str = row.try_get("application")?;
            visit(id, application, row.try_get("last_counted")?);
        }
        visited += rows.len() as u64;
        match rows.last() {
            Some(row) if rows.len() as i64 == VISIT_CHUNK => after = row.try_get("client_id")?,
            _ => return Ok(visited),
        }
    }
}

pub(crate) async fn client(
    pool: &PgPool,
    client_id: &str,
) -> Result<Option<ClientRecord>, DbError> {
    let mut query = QueryBuilder::<Postgres>::new(CLIENT_SELECT);
    query.push(" WHERE client_id = ").push_bind(client_id);
    match query.build().fetch_optional(pool).await? {
        Some(row) => Ok(Some(client_row(&row)?)),
        None => Ok(None),
    }
}

pub(crate) async fn clients(
    pool: &PgPool,
    filter: &ClientFilter,
) -> Result<Vec<ClientRecord>, DbError> {
    let mut query = QueryBuilder::<Postgres>::new(CLIENT_SELECT);
    query.push(" WHERE TRUE");
    if let Some(application) = &filter.application {
        query
            .push(" AND application = ")
            .push_bind(application.as_str());
    }
    if let Some(product) = &filter.product {
        query.push(" AND product = ").push_bind(product.as_str());
    }
    if let Some(search) = &filter.search {
        // ILIKE ignores case as SQLite's LIKE does for ASCII letters (the columns are
        // in the "C" collation, so only those fold).
        let pattern = contains_pattern(search);
        query
            .push(" AND (client_id ILIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR machine_name ILIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR address ILIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(revoked) = filter.revoked {
        query.push(" AND revoked = ").push_bind(revoked);
    }
    match filter.counted_since {
        Some((since, true)) => {
            query.push(" AND last_counted >= ").push_bind(since);
        }
        Some((since, false)) => {
            query
                .push(" AND (last_counted IS NULL OR last_counted < ")
                .push_bind(since)
                .push(")");
        }
        None => {}
    }
    query.push(" ORDER BY last_seen DESC, client_id");
    if let Some(limit) = filter.limit {
        query.push(" LIMIT ").push_bind(i64::from(limit));
    }
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(client_row).collect()
}

pub(crate) async fn events(
    pool: &PgPool,
    filter: &EventFilter,
) -> Result<Vec<EventRecord>, DbError> {
    let mut query = QueryBuilder::<Postgres>::new(EVENT_SELECT);
    query.push(" WHERE TRUE");
    if let Some(since) = filter.since {
        query.push(" AND at >= ").push_bind(since);
    }
    if let Some(after_id) = filter.after_id {
        query.push(" AND id > ").push_bind(after_id);
    }
    if let Some(client_id) = &filter.client_id {
        query
            .push(" AND client_id = ")
            .push_bind(client_id.as_str());
    }
    if let Some(result) = &filter.result {
        query.push(" AND result = ").push_bind(result.as_str());
    }
    query.push(if filter.oldest_first {
        " ORDER BY id"
    } else {
        " ORDER BY id DESC"
    });
    if let Some(limit) = filter.limit {
        query.push(" LIMIT ").push_bind(i64::from(limit));
    }
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(event_row).collect()
}

/// What a count is grouped by: a closed set, so its query is one of two constants.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CountBy {
    /// The client's application.
    Application,
    /// The product the client last asked for.
    Product,
}

/// Distinct non-revoked clients counted at or after `since`, grouped as `by` says.
pub(crate) async fn count_by(
    pool: &PgPool,
    by: CountBy,
    since: i64,
) -> Result<Vec<(String, u64)>, DbError> {
    let sql = match by {
        CountBy::Application => {
            "SELECT application AS k, COUNT(*) AS n FROM clients \
             WHERE last_counted >= $1 AND NOT revoked GROUP BY application ORDER BY application"
        }
        CountBy::Product => {
            "SELECT product AS k, COUNT(*) AS n FROM clients \
             WHERE last_counted >= $1 AND NOT revoked GROUP BY product ORDER BY product"
        }
    };
    let rows = sqlx::query(sql).bind(since).fetch_all(pool).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("k")?, int(row, "n")?)))
        .collect()
}

pub(crate) async fn result_totals(pool: &PgPool) -> Result<Vec<(String, u64)>, DbError> {
    let rows = sqlx::query(
        "SELECT result, SUM(n)::bigint AS n FROM result_totals GROUP BY result ORDER BY result",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("result")?, int(row, "n")?)))
        .collect()
}

/// The database's id (migration 5), the same for every host sharing it.
pub(crate) async fn store_id(pool: &PgPool) -> Result<String, DbError> {
    Ok(sqlx::query_scalar("SELECT id FROM store_identity LIMIT 1")
        .fetch_one(pool)
        .await?)
}

pub(crate) async fn client_total(pool: &PgPool) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
        .fetch_one(pool)
        .await?;
    count(n, "client count")
}

pub(crate) async fn count_history(
    pool: &PgPool,
    until: i64,
    days: u32,
    window_secs: i64,
) -> Result<CountHistory, DbError> {
    let (starts, samples) = sample_points(until, days);
    let Some(&first) = samples.first() else {
        return Ok(CountHistory::default());
    };
    let from = first.saturating_sub(window_secs);
    // One row per client and day (the samples are day ends), as the SQLite backend
    // sends; the client's current application and revocation apply to its whole past.
    let day_rows = sqlx::query(
        "SELECT c.client_id AS client_id, c.application AS application, MAX(e.at) AS at \
         FROM events e JOIN clients c ON c.client_id = e.client_id \
         WHERE e.at >= $1 AND e.at <= $2 AND e.result IN ($3, $4) AND NOT c.revoked \
         GROUP BY c.client_id, e.at / $5",
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
         WHERE NOT revoked AND last_counted >= $1 AND last_counted <= $2",
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

pub(crate) async fn requests_by_hour(
    pool: &PgPool,
    since: i64,
) -> Result<Vec<HourlyRequests>, DbError> {
    let rows = sqlx::query(
        "SELECT (at / 3600) * 3600 AS hour, result, COUNT(*) AS n FROM events \
         WHERE at >= $1 AND client_id <> '' GROUP BY hour, result ORDER BY hour, result",
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

pub(crate) async fn expiring_tickets(
    pool: &PgPool,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<ClientRecord>, DbError> {
    let mut query = QueryBuilder::<Postgres>::new(CLIENT_SELECT);
    query
        .push(" WHERE NOT revoked AND ticket_valid_until >= ")
        .push_bind(from)
        .push(" AND ticket_valid_until < ")
        .push_bind(to)
        .push(" ORDER BY ticket_valid_until, client_id LIMIT ")
        .push_bind(i64::from(limit));
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(client_row).collect()
}

pub(crate) async fn count_expiring_tickets(
    pool: &PgPool,
    from: i64,
    to: i64,
) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM clients WHERE NOT revoked \
         AND ticket_valid_until >= $1 AND ticket_valid_until < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    count(n, "ticket count")
}

pub(crate) async fn clones(pool: &PgPool, since: i64) -> Result<Vec<crate::CloneRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT client_id, first_flagged, last_flagged, flags, machine_name, \
         other_machine_name, address, reason FROM clone_flags WHERE last_flagged >= $1 \
         ORDER BY last_flagged DESC, client_id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(crate::CloneRecord {
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

pub(crate) async fn hosts(pool: &PgPool) -> Result<Vec<volact_store::HostRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT host_id, name, listen_urls, version, last_seen FROM hosts ORDER BY host_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(volact_store::HostRecord {
                host_id: row.try_get("host_id")?,
                name: row.try_get("name")?,
                listen_urls: row.try_get("listen_urls")?,
                version: row.try_get("version")?,
                last_seen: row.try_get("last_seen")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn wildcards_in_search_text_are_literal() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
