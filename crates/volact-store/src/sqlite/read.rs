//! The read path: inventory, audit log, counts and totals.

use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row};

use crate::{ClientFilter, ClientRecord, CountedClient, EventFilter, EventRecord, StoreError};

pub(super) const CLIENT_SELECT: &str = "SELECT client_id, machine_name, address, product, application, \
    first_seen, last_seen, last_counted, last_result, last_count, ticket_id, ticket_valid_until, \
    revoked, revoked_reason, requests FROM clients";

const EVENT_SELECT: &str = "SELECT id, at, client_id, machine_name, address, product, \
    minimum_asked, count, result FROM events";

/// Integers are stored as SQLite's i64; a value out of range for its field can only come
/// from a damaged file or another program, and is reported rather than wrapped.
pub(super) fn int<T: TryFrom<i64>>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value).map_err(|_| {
        StoreError::Corrupt(format!(
            "column {column} holds {value}, out of range for its field"
        ))
    })
}

pub(super) fn client_row(row: &SqliteRow) -> Result<ClientRecord, StoreError> {
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

fn event_row(row: &SqliteRow) -> Result<EventRecord, StoreError> {
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

pub(super) async fn counted_clients(
    pool: &SqlitePool,
    since: i64,
) -> Result<Vec<CountedClient>, StoreError> {
    let rows = sqlx::query(
        "SELECT client_id, application, last_counted FROM clients \
         WHERE last_counted >= ? AND revoked = 0",
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

pub(super) async fn client(
    pool: &SqlitePool,
    client_id: &str,
) -> Result<Option<ClientRecord>, StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(CLIENT_SELECT);
    query.push(" WHERE client_id = ").push_bind(client_id);
    match query.build().fetch_optional(pool).await? {
        Some(row) => Ok(Some(client_row(&row)?)),
        None => Ok(None),
    }
}

pub(super) async fn clients(
    pool: &SqlitePool,
    filter: &ClientFilter,
) -> Result<Vec<ClientRecord>, StoreError> {
    // Only the clauses in use are written, so SQLite can pick an index for them; each
    // combination is a distinct text and gets its own cached statement.
    let mut query = QueryBuilder::<Sqlite>::new(CLIENT_SELECT);
    query.push(" WHERE 1 = 1");
    if let Some(application) = &filter.application {
        query
            .push(" AND application = ")
            .push_bind(application.as_str());
    }
    if let Some(product) = &filter.product {
        query.push(" AND product = ").push_bind(product.as_str());
    }
    if let Some(search) = &filter.search {
        // LIKE ignores case for ASCII letters only, which covers ids, addresses and the
        // usual machine names.
        let pattern = contains_pattern(search);
        query
            .push(" AND (client_id LIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR machine_name LIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR address LIKE ")
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
    // client_id breaks ties so pages of a listing are stable.
    query.push(" ORDER BY last_seen DESC, client_id");
    if let Some(limit) = filter.limit {
        query.push(" LIMIT ").push_bind(i64::from(limit));
    }
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(client_row).collect()
}

pub(super) async fn events(
    pool: &SqlitePool,
    filter: &EventFilter,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(EVENT_SELECT);
    query.push(" WHERE 1 = 1");
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

pub(super) async fn count_by_application(
    pool: &SqlitePool,
    since: i64,
) -> Result<Vec<(String, u64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT application, COUNT(*) AS n FROM clients \
         WHERE last_counted >= ? AND revoked = 0 \
         GROUP BY application ORDER BY application",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("application")?, int(row, "n")?)))
        .collect()
}

pub(super) async fn result_totals(pool: &SqlitePool) -> Result<Vec<(String, u64)>, StoreError> {
    let rows = sqlx::query("SELECT result, n FROM result_totals ORDER BY result")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("result")?, int(row, "n")?)))
        .collect()
}

pub(super) async fn client_total(pool: &SqlitePool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
        .fetch_one(pool)
        .await?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("client count {n} is negative")))
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
