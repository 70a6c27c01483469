//! The read path: inventory, audit log, counts and totals.

use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row};

use crate::{ClientFilter, ClientRecord, CountedClient, DbError, EventFilter, EventRecord};

pub(super) const CLIENT_SELECT: &str = "SELECT client_id, machine_name, address, product, application, \
    first_seen, last_seen, last_counted, last_result, last_count, ticket_id, ticket_valid_until, \
    revoked, revoked_reason, requests FROM clients";

const EVENT_SELECT: &str = "SELECT id, at, client_id, machine_name, address, product, \
    minimum_asked, count, result FROM events";

/// Integers are stored as SQLite's i64; a value out of range for its field can only come
/// from a damaged file or another program, and is reported rather than wrapped.
pub(super) fn int<T: TryFrom<i64>>(row: &SqliteRow, column: &str) -> Result<T, DbError> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value).map_err(|_| {
        DbError::Corrupt(format!(
            "column {column} holds {value}, out of range for its field"
        ))
    })
}

pub(super) fn client_row(row: &SqliteRow) -> Result<ClientRecord, DbError> {
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

fn event_row(row: &SqliteRow) -> Result<EventRecord, DbError> {
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

// "This client counts" in SQL: `last_counted >= since AND revoked = 0`, here, in
// `visit_counted_clients`, the clients filter and `count_by_application`. It must say what
// `volact_core::count::counts` says; tests/count_predicate.rs checks that it does.
pub(super) async fn counted_clients(
    pool: &SqlitePool,
    since: i64,
) -> Result<Vec<CountedClient>, DbError> {
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

/// Rows per chunk of [`visit_counted_clients`]: one chunk comes back as one string of
/// about 7 MB.
const VISIT_CHUNK: i64 = 100_000;

/// Every counted client, a chunk of the table at a time. sqlx hands each row from its
/// connection thread to the caller as a message of its own, which for a million rows
/// costs seconds of thread switching; so each chunk is packed into one string by SQLite
/// and unpacked here. Items are `LEN:APPLICATION` `LEN:ID:LAST_COUNTED`, joined by commas,
/// with LEN the length in bytes, so any text reads back intact. (Grouping by application
/// instead would make SQLite sort every chunk.)
pub(super) async fn visit_counted_clients(
    pool: &SqlitePool,
    since: i64,
    visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
) -> Result<u64, DbError> {
    let mut after = i64::MIN;
    let mut visited = 0;
    loop {
        let row = sqlx::query(
            "SELECT max(rowid) AS last_row, group_concat( \
                 CASE WHEN last_counted >= ?2 AND revoked = 0 \
                 THEN length(CAST(application AS BLOB)) || ':' || application \
                   || length(CAST(client_id AS BLOB)) || ':' || client_id || ':' || last_counted \
                 END, ',') AS items \
             FROM (SELECT rowid, client_id, application, last_counted, revoked FROM clients \
                   WHERE rowid > ?1 ORDER BY rowid LIMIT ?3)",
        )
        .bind(after)
        .bind(since)
        .bind(VISIT_CHUNK)
        .fetch_one(pool)
        .await?;
        let Some(last_row) = row.try_get::<Option<i64>, _>("last_row")? else {
            return Ok(visited);
        };
        after = last_row;
        let items: Option<&str> = row.try_get("items")?;
        visited += unpack(items.unwrap_or(""), visit)?;
    }
}

fn unpack(
    mut items: &str,
    visit: &mut (dyn for<'a, 'b> FnMut(&'a str, &'b str, i64) + Send),
) -> Result<u64, DbError> {
    let corrupt = || DbError::Corrupt("unreadable chunk of counted clients".to_owned());
    // `LEN:TEXT` at the start of `s`: the text and what follows it.
    let field = |s: &'_ str| -> Option<(usize, usize)> {
        let (len, _) = s.split_once(':')?;
        let start = len.len() + 1;
        let end = start.checked_add(len.parse().ok()?)?;
        s.get(start..end).map(|_| (start, end))
    };
    let mut n = 0;
    while !items.is_empty() {
        let (a0, a1) = field(items).ok_or_else(corrupt)?;
        let application = items.get(a0..a1).ok_or_else(corrupt)?;
        let rest = items.get(a1..).ok_or_else(corrupt)?;
        let (i0, i1) = field(rest).ok_or_else(corrupt)?;
        let id = rest.get(i0..i1).ok_or_else(corrupt)?;
        let rest = rest
            .get(i1..)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(corrupt)?;
        let (at, rest) = rest.split_once(',').unwrap_or((rest, ""));
        visit(id, application, at.parse().map_err(|_| corrupt())?);
        n += 1;
        items = rest;
    }
    Ok(n)
}

pub(super) async fn client(
    pool: &SqlitePool,
    client_id: &str,
) -> Result<Option<ClientRecord>, DbError> {
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
) -> Result<Vec<ClientRecord>, DbError> {
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
) -> Result<Vec<EventRecord>, DbError> {
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

/// What a count is grouped by: a closed set, so its query is one of two constants.
#[derive(Debug, Clone, Copy)]
pub(super) enum CountBy {
    /// The client's application.
    Application,
    /// The product the client last asked for.
    Product,
}

/// Distinct non-revoked clients counted at or after `since`, grouped as `by` says.
pub(super) async fn count_by(
    pool: &SqlitePool,
    by: CountBy,
    since: i64,
) -> Result<Vec<(String, u64)>, DbError> {
    let sql = match by {
        CountBy::Application => {
            "SELECT application AS k, COUNT(*) AS n FROM clients \
             WHERE last_counted >= ? AND revoked = 0 GROUP BY application ORDER BY application"
        }
        CountBy::Product => {
            "SELECT product AS k, COUNT(*) AS n FROM clients \
             WHERE last_counted >= ? AND revoked = 0 GROUP BY product ORDER BY product"
        }
    };
    let rows = sqlx::query(sql).bind(since).fetch_all(pool).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("k")?, int(row, "n")?)))
        .collect()
}

pub(super) async fn result_totals(pool: &SqlitePool) -> Result<Vec<(String, u64)>, DbError> {
    let rows = sqlx::query("SELECT result, n FROM result_totals ORDER BY result")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("result")?, int(row, "n")?)))
        .collect()
}

pub(super) async fn client_total(pool: &SqlitePool) -> Result<u64, DbError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
        .fetch_one(pool)
        .await?;
    u64::try_from(n).map_err(|_| DbError::Corrupt(format!("client count {n} is negative")))
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn packed_clients_unpack_whatever_their_ids() {
        let mut seen = Vec::new();
        let n = super::unpack("3:app2:a,:5,4:a:p,7:b:c,d:e:-3", &mut |id, app, at| {
            seen.push((id.to_owned(), app.to_owned(), at));
        })
        .unwrap_or(0);
        assert_eq!(n, 2);
        assert_eq!(seen[0], ("a,".to_owned(), "app".to_owned(), 5));
        assert_eq!(seen[1], ("b:c,d:e".to_owned(), "a:p,".to_owned(), -3));
        assert!(super::unpack("3:app9:short:1", &mut |_, _, _| {}).is_err());
        assert!(super::unpack("x", &mut |_, _, _| {}).is_err());
    }

    #[test]
    fn wildcards_in_search_text_are_literal() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
