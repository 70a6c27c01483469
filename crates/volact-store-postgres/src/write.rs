//! The write path: activation batches, revocations, pruning, flags and probes. Every
//! write is one transaction committed before it returns, so what a host acknowledges is
//! in the database (with PostgreSQL's default `synchronous_commit = on`, on its disk).

use sqlx::postgres::PgPool;

use crate::{ActivationRecord, CloneSighting, DbError};

/// Deleting this many events per statement keeps each pruning step short, so batches
/// of other hosts wait little for the rows it locks.
const PRUNE_CHUNK: i64 = 10_000;

// One statement for every client of a batch, from arrays: a round trip per batch, not
// per request. An empty product means the setup key was unknown: the request says
// nothing about what the client runs, so what is known is kept. A row older than the
// stored one (two batches of one host committing out of order, or two hosts) changes only
// the request total: the inventory shows each client's latest request. The rows are sorted by
// client id, so two hosts' batches lock shared clients in the same order and never
// deadlock.
const UPSERT_CLIENTS: &str = "INSERT INTO clients (client_id, machine_name, address, product, \
    application, first_seen, last_seen, last_counted, last_result, last_count, ticket_id, \
    ticket_valid_until, revoked, revoked_reason, requests, writer) \
    SELECT client_id, machine_name, address, product, application, first_seen, last_seen, \
    last_counted, last_result, last_count, ticket_id, ticket_valid_until, FALSE, NULL, requests, \
    CASE WHEN last_counted IS NULL THEN NULL ELSE $14::bigint END \
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
    $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::text[], $12::bigint[], \
    $13::bigint[]) AS u(client_id, machine_name, address, product, application, first_seen, \
    last_seen, last_counted, last_result, last_count, ticket_id, ticket_valid_until, requests) \
    ORDER BY client_id \
    ON CONFLICT (client_id) DO UPDATE SET \
    machine_name = CASE WHEN excluded.last_seen >= clients.last_seen THEN excluded.machine_name \
        ELSE clients.machine_name END, \
    address = CASE WHEN excluded.last_seen >= clients.last_seen THEN excluded.address \
        ELSE clients.address END, \
    product = CASE WHEN excluded.product = '' OR excluded.last_seen < clients.last_seen \
        THEN clients.product ELSE excluded.product END, \
    application = CASE WHEN excluded.product = '' OR excluded.last_seen < clients.last_seen \
        THEN clients.application ELSE excluded.application END, \
    first_seen = LEAST(excluded.first_seen, clients.first_seen), \
    last_seen = GREATEST(excluded.last_seen, clients.last_seen), \
    last_counted = GREATEST(excluded.last_counted, clients.last_counted), \
    last_result = CASE WHEN excluded.last_seen >= clients.last_seen THEN excluded.last_result \
        ELSE clients.last_result END, \
    last_count = CASE WHEN excluded.last_seen >= clients.last_seen THEN excluded.last_count \
        ELSE clients.last_count END, \
    ticket_id = CASE WHEN excluded.ticket_id IS NOT NULL \
        AND excluded.last_seen >= clients.last_seen THEN excluded.ticket_id ELSE clients.ticket_id END, \
    ticket_valid_until = CASE WHEN excluded.ticket_valid_until IS NOT NULL \
        AND excluded.last_seen >= clients.last_seen THEN excluded.ticket_valid_until \
        ELSE clients.ticket_valid_until END, \
    requests = clients.requests + excluded.requests, \
    writer = CASE WHEN excluded.last_counted IS NOT NULL \
        AND excluded.last_counted >= COALESCE(clients.last_counted, excluded.last_counted) \
        AND excluded.last_seen >= clients.last_seen THEN excluded.writer ELSE clients.writer END, \
    changed = pg_current_xact_id()";

// Identity values are drawn as rows are inserted, in the order of the SELECT: the
// batch's order.
const INSERT_EVENTS: &str = "INSERT INTO events (at, client_id, machine_name, address, product, \
    minimum_asked, count, result) \
    SELECT at, client_id, machine_name, address, product, minimum_asked, count, result \
    FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
    $7::bigint[], $8::text[]) WITH ORDINALITY \
    AS u(at, client_id, machine_name, address, product, minimum_asked, count, result, i) \
    ORDER BY i";

// Into one of the shards of each result (migration 0004), so batches committing at once,
// from one host or several, rarely wait for each other's row.
const ADD_TOTALS: &str = "INSERT INTO result_totals (result, shard, n) \
    SELECT result, $3, n FROM UNNEST($1::text[], $2::bigint[]) AS u(result, n) ORDER BY result \
    ON CONFLICT (result, shard) DO UPDATE SET n = result_totals.n + excluded.n";

/// Rows per result in `result_totals`.
const TOTAL_SHARDS: u32 = 16;

/// The shard of the next batch: consecutive batches of a process take consecutive
/// shards, and processes start at different ones.
fn next_shard() -> i16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id());
    // Below 16, so it fits.
    i16::try_from(n % TOTAL_SHARDS).unwrap_or(0)
}

/// What a batch's requests from one client do to its inventory row, merged so the row
/// is written once however many requests it holds (one statement cannot update a row
/// twice): the same row as applying them one by one.
#[derive(Debug)]
struct ClientUpdate<'a> {
    first_at: i64,
    last: &'a ActivationRecord,
    product: Option<(&'a str, &'a str)>,
    counted: Option<i64>,
    ticket_id: Option<&'a str>,
    ticket_valid_until: Option<i64>,
    requests: i64,
}

impl<'a> ClientUpdate<'a> {
    fn new(r: &'a ActivationRecord) -> ClientUpdate<'a> {
        let mut update = ClientUpdate {
            first_at: r.at,
            last: r,
            product: None,
            counted: None,
            ticket_id: None,
            ticket_valid_until: None,
            requests: 0,
        };
        update.add(r);
        update
    }

    fn add(&mut self, r: &'a ActivationRecord) {
        self.last = r;
        if !r.product.is_empty() {
            self.product = Some((&r.product, &r.application));
        }
        if r.counted {
            self.counted = Some(r.at);
        }
        if let Some(id) = &r.ticket_id {
            self.ticket_id = Some(id);
        }
        if let Some(until) = r.ticket_valid_until {
            self.ticket_valid_until = Some(until);
        }
        self.requests += 1;
    }
}

/// Each client's requests merged, sorted by client id.
fn merge(batch: &[ActivationRecord]) -> Vec<ClientUpdate<'_>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    // Stable: a client's requests stay in batch order.
    order.sort_by(|&a, &b| batch[a].client_id.cmp(&batch[b].client_id));
    let mut updates: Vec<ClientUpdate<'_>> = Vec::new();
    for i in order {
        let r = &batch[i];
        match updates.last_mut() {
            Some(u) if u.last.client_id == r.client_id => u.add(r),
            _ => updates.push(ClientUpdate::new(r)),
        }
    }
    updates
}

/// `sql` with each parameter `$n` renumbered `$(n + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// The three writes of a batch as one statement (data-modifying CTEs): one round trip
/// and one implicit transaction instead of five round trips (begin, three writes,
/// commit), which is most of what a batch waits for besides PostgreSQL's own work.
static RECORD_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH c AS ({UPSERT_CLIENTS}), e AS ({}), t AS ({}) SELECT 1",
        renumber(INSERT_EVENTS, 14),
        renumber(ADD_TOTALS, 22)
    )
});

/// Stores a batch in one transaction: the inventory rows, one audit event per request,
/// the per-result totals.
pub(crate) async fn record_batch(
    pool: &PgPool,
    writer: i64,
    batch: &[ActivationRecord],
) -> Result<(), DbError> {
    if batch.is_empty() {
        return Ok(());
    }
    let updates = merge(batch);
    let column =
        |f: &dyn Fn(&ClientUpdate<'_>) -> String| updates.iter().map(f).collect::<Vec<_>>();
    let ids = column(&|u| u.last.client_id.clone());
    let machines = column(&|u| u.last.machine_name.clone());
    let addresses = column(&|u| u.last.address.clone());
    let products = column(&|u| u.product.map_or("", |p| p.0).to_owned());
    let applications = column(&|u| u.product.map_or("", |p| p.1).to_owned());
    let results = column(&|u| u.last.result.clone());
    let first: Vec<i64> = updates.iter().map(|u| u.first_at).collect();
    let last: Vec<i64> = updates.iter().map(|u| u.last.at).collect();
    let counted: Vec<Option<i64>> = updates.iter().map(|u| u.counted).collect();
    let counts: Vec<i64> = updates.iter().map(|u| i64::from(u.last.count)).collect();
    let tickets: Vec<Option<String>> = updates
        .iter()
        .map(|u| u.ticket_id.map(str::to_owned))
        .collect();
    let until: Vec<Option<i64>> = updates.iter().map(|u| u.ticket_valid_until).collect();
    let requests: Vec<i64> = updates.iter().map(|u| u.requests).collect();

    let mut totals: Vec<(&str, i64)> = Vec::new();
    for r in batch {
        // A batch holds a handful of distinct result codes: a linear scan beats hashing.
        match totals.iter_mut().find(|(result, _)| *result == r.result) {
            Some((_, n)) => *n += 1,
            None => totals.push((&r.result, 1)),
        }
    }
    let events = |f: &dyn Fn(&ActivationRecord) -> String| batch.iter().map(f).collect::<Vec<_>>();

    sqlx::query(sqlx::AssertSqlSafe(RECORD_BATCH.as_str()))
        .bind(&ids)
        .bind(&machines)
        .bind(&addresses)
        .bind(&products)
        .bind(&applications)
        .bind(&first)
        .bind(&last)
        .bind(&counted)
        .bind(&results)
        .bind(&counts)
        .bind(&tickets)
        .bind(&until)
        .bind(&requests)
        .bind(writer)
        .bind(batch.iter().map(|r| r.at).collect::<Vec<i64>>())
        .bind(events(&|r| r.client_id.clone()))
        .bind(events(&|r| r.machine_name.clone()))
        .bind(events(&|r| r.address.clone()))
        .bind(events(&|r| r.product.clone()))
        .bind(
            batch
                .iter()
                .map(|r| i64::from(r.minimum_asked))
                .collect::<Vec<i64>>(),
        )
        .bind(
            batch
                .iter()
                .map(|r| i64::from(r.count))
                .collect::<Vec<i64>>(),
        )
        .bind(events(&|r| r.result.clone()))
        .bind(
            totals
                .iter()
                .map(|(r, _)| (*r).to_owned())
                .collect::<Vec<String>>(),
        )
        .bind(totals.iter().map(|(_, n)| *n).collect::<Vec<i64>>())
        .bind(next_shard())
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn set_revoked(
    pool: &PgPool,
    client_id: &str,
    revoked: bool,
    reason: Option<&str>,
    // The schema keeps no revocation time, as SQLite's: the inventory shows the state.
    _at: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE clients SET revoked = $1, revoked_reason = $2, changed = pg_current_xact_id(), \
             revoked_changed = pg_current_xact_id() WHERE client_id = $3",
    )
    .bind(revoked)
    .bind(reason)
    .bind(client_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn prune_events(pool: &PgPool, before: i64) -> Result<u64, DbError> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(PRUNE_CHUNK)
        .execute(pool)
        .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < PRUNE_CHUNK.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

pub(crate) async fn record_host_event(
    pool: &PgPool,
    at: i64,
    result: &str,
    address: &str,
    detail: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO events (at, client_id, machine_name, address, product, minimum_asked, \
         count, result) VALUES ($1, '', $2, $3, '', 0, 0, $4)",
    )
    .bind(at)
    .bind(detail)
    .bind(address)
    .bind(result)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn record_clone(pool: &PgPool, sighting: &CloneSighting) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO clone_flags (client_id, first_flagged, last_flagged, flags, machine_name, \
         other_machine_name, address, reason) VALUES ($1, $2, $2, 1, $3, $4, $5, $6) \
         ON CONFLICT (client_id) DO UPDATE SET \
         last_flagged = GREATEST(clone_flags.last_flagged, excluded.last_flagged), \
         flags = clone_flags.flags + 1, \
         machine_name = excluded.machine_name, \
         other_machine_name = COALESCE(excluded.other_machine_name, clone_flags.other_machine_name), \
         address = excluded.address, \
         reason = excluded.reason",
    )
    .bind(sighting.client_id.as_str())
    .bind(sighting.at)
    .bind(sighting.machine_name.as_str())
    .bind(sighting.other_machine_name.as_deref())
    .bind(sighting.address.as_str())
    .bind(sighting.reason.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (at, client_id, machine_name, address, product, minimum_asked, \
         count, result) VALUES ($1, $2, $3, $4, $5, 0, 0, 'cloned-image')",
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

pub(crate) async fn probe_write(pool: &PgPool, at: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO host_meta (key, value) VALUES ('probe', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn register_host(
    pool: &PgPool,
    host: &volact_store::HostRecord,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO hosts (host_id, name, listen_urls, version, last_seen) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host_id) DO UPDATE SET \
         name = excluded.name, listen_urls = excluded.listen_urls, \
         version = excluded.version, last_seen = excluded.last_seen",
    )
    .bind(host.host_id.as_str())
    .bind(host.name.as_str())
    .bind(&host.listen_urls)
    .bind(host.version.as_str())
    .bind(host.last_seen)
    .execute(pool)
    .await?;
    Ok(())
}

fn big(n: u64) -> Result<i64, DbError> {
    i64::try_from(n).map_err(|_| DbError::Corrupt(format!("{n} is too large to store")))
}

/// Writes rows copied from another store as they are, one statement per table (see
/// [`volact_store::Store::import`]).
pub(crate) async fn import(pool: &PgPool, rows: volact_store::ImportRows) -> Result<u64, DbError> {
    use volact_store::ImportRows;
    let mut tx = pool.begin().await?;
    let written = match rows {
        ImportRows::Clients(c) => {
            let text = |f: &dyn Fn(&volact_store::ClientRecord) -> String| {
                c.iter().map(f).collect::<Vec<_>>()
            };
            let optional_text = |f: &dyn Fn(&volact_store::ClientRecord) -> Option<String>| {
                c.iter().map(f).collect::<Vec<_>>()
            };
            let requests = c
                .iter()
                .map(|c| big(c.requests))
                .collect::<Result<Vec<_>, _>>()?;
            sqlx::query(
                "INSERT INTO clients (client_id, machine_name, address, product, application, \
                 first_seen, last_seen, last_counted, last_result, last_count, ticket_id, \
                 ticket_valid_until, revoked, revoked_reason, requests) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::text[], \
                 $12::bigint[], $13::boolean[], $14::text[], $15::bigint[]) \
                 ON CONFLICT (client_id) DO UPDATE SET machine_name = excluded.machine_name, \
                 address = excluded.address, product = excluded.product, \
                 application = excluded.application, first_seen = excluded.first_seen, \
                 last_seen = excluded.last_seen, last_counted = excluded.last_counted, \
                 last_result = excluded.last_result, last_count = excluded.last_count, \
                 ticket_id = excluded.ticket_id, ticket_valid_until = excluded.ticket_valid_until, \
                 revoked = excluded.revoked, revoked_reason = excluded.revoked_reason, \
                 requests = excluded.requests, changed = pg_current_xact_id()",
            )
            .bind(text(&|c| c.client_id.clone()))
            .bind(text(&|c| c.machine_name.clone()))
            .bind(text(&|c| c.address.clone()))
            .bind(text(&|c| c.product.clone()))
            .bind(text(&|c| c.application.clone()))
            .bind(c.iter().map(|c| c.first_seen).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.last_seen).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.last_counted).collect::<Vec<_>>())
            .bind(text(&|c| c.last_result.clone()))
            .bind(
                c.iter()
                    .map(|c| i64::from(c.last_count))
                    .collect::<Vec<_>>(),
            )
            .bind(optional_text(&|c| c.ticket_id.clone()))
            .bind(c.iter().map(|c| c.ticket_valid_until).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.revoked).collect::<Vec<_>>())
            .bind(optional_text(&|c| c.revoked_reason.clone()))
            .bind(requests)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        }
        ImportRows::Events(e) => {
            let text = |f: &dyn Fn(&volact_store::EventRecord) -> String| {
                e.iter().map(f).collect::<Vec<_>>()
            };
            let done = sqlx::query(
                "INSERT INTO events (id, at, client_id, machine_name, address, product, \
                 minimum_asked, count, result) OVERRIDING SYSTEM VALUE \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[]) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(e.iter().map(|e| e.id).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(text(&|e| e.client_id.clone()))
            .bind(text(&|e| e.machine_name.clone()))
            .bind(text(&|e| e.address.clone()))
            .bind(text(&|e| e.product.clone()))
            .bind(
                e.iter()
                    .map(|e| i64::from(e.minimum_asked))
                    .collect::<Vec<_>>(),
            )
            .bind(e.iter().map(|e| i64::from(e.count)).collect::<Vec<_>>())
            .bind(text(&|e| e.result.clone()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Ids given explicitly do not move the identity's sequence: move it past
            // them (never back), so later events are numbered after the imported ones.
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('events', 'id'), \
                 GREATEST(MAX(id), nextval(pg_get_serial_sequence('events', 'id')))) FROM events",
            )
            .execute(&mut *tx)
            .await?;
            done
        }
        ImportRows::Clones(c) => {
            let flags = c
                .iter()
                .map(|c| big(c.flags))
                .collect::<Result<Vec<_>, _>>()?;
            sqlx::query(
                "INSERT INTO clone_flags (client_id, first_flagged, last_flagged, flags, \
                 machine_name, other_machine_name, address, reason) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                 $5::text[], $6::text[], $7::text[], $8::text[]) \
                 ON CONFLICT (client_id) DO UPDATE SET first_flagged = excluded.first_flagged, \
                 last_flagged = excluded.last_flagged, flags = excluded.flags, \
                 machine_name = excluded.machine_name, \
                 other_machine_name = excluded.other_machine_name, \
                 address = excluded.address, reason = excluded.reason",
            )
            .bind(c.iter().map(|c| c.client_id.clone()).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.first_flagged).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.last_flagged).collect::<Vec<_>>())
            .bind(flags)
            .bind(c.iter().map(|c| c.machine_name.clone()).collect::<Vec<_>>())
            .bind(
                c.iter()
                    .map(|c| c.other_machine_name.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(c.iter().map(|c| c.address.clone()).collect::<Vec<_>>())
            .bind(c.iter().map(|c| c.reason.clone()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?
            .rows_affected()
        }
        ImportRows::Totals(t) => {
            let n = t
                .iter()
                .map(|(_, n)| big(*n))
                .collect::<Result<Vec<_>, _>>()?;
            let results: Vec<String> = t.iter().map(|(r, _)| r.clone()).collect();
            // Set, not added: the shards of each result are replaced by one row.
            sqlx::query("DELETE FROM result_totals WHERE result = ANY($1)")
                .bind(&results)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO result_totals (result, shard, n) \
                 SELECT result, 0, n FROM UNNEST($1::text[], $2::bigint[]) AS u(result, n)",
            )
            .bind(&results)
            .bind(n)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        }
    };
    tx.commit().await?;
    Ok(written)
}

#[cfg(test)]
mod renumber_tests {
    use super::renumber;

    #[test]
    fn parameters_move_by_the_offset_and_nothing_else_changes() {
        assert_eq!(
            renumber("SELECT $1, $2::text[], $10 FROM t WHERE a = '$'", 13),
            "SELECT $14, $15::text[], $23 FROM t WHERE a = '$'"
        );
        assert!(super::RECORD_BATCH.contains("$25"));
        assert!(!super::RECORD_BATCH.contains("$26"));
    }
}
