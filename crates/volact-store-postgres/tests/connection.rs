//! What the PostgreSQL backend does beyond the shared suite: passwords, a database that
//! goes away and comes back, and several stores (hosts) on one database.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use volact_store::conformance::{TestResult, rec};
use volact_store::{Store, StoreErrorKind};
use volact_store_postgres::{PgOptions, PgStore};
use volact_testkit::postgres::{PASSWORD, TestPostgres};

#[tokio::test]
async fn a_role_with_a_password_needs_it() -> TestResult {
    let Some(pg) = TestPostgres::shared("a_role_with_a_password_needs_it")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let url = pg.password_url(&database);
    let with = |password: Option<&str>| PgOptions {
        password: password.map(str::to_owned),
        ..PgOptions::default()
    };
    let wrong = PgStore::open(&url, &with(Some("not-it")))
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), StoreErrorKind::Invalid, "{wrong}");
    assert!(!wrong.message().contains("not-it"), "{wrong}");
    let store = PgStore::open(&url, &with(Some(PASSWORD))).await?;
    store.record_batch(&[rec(1, "a")]).await?;
    assert_eq!(store.client_total().await?, 1);
    // A password in the URL works too (the configuration decides where it may come from).
    let inline = url.replacen("volact_pw@", &format!("volact_pw:{PASSWORD}@"), 1);
    let second = PgStore::open(&inline, &PgOptions::default()).await?;
    assert_eq!(second.client_total().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_bad_url_or_pool_size_is_refused_without_echoing_the_url() -> TestResult {
    let e = PgStore::open("postgres://u:secret@[bad/db", &PgOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Invalid);
    assert!(!e.message().contains("secret"), "{e}");
    let options = PgOptions {
        pool_size: Some(0),
        ..PgOptions::default()
    };
    let e = PgStore::open("postgres://u@127.0.0.1:1/db", &options)
        .await
        .unwrap_err();
    assert!(e.message().contains("pool_size"), "{e}");
    let options = PgOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..PgOptions::default()
    };
    let e = PgStore::open("postgres://u@127.0.0.1:1/db", &options)
        .await
        .unwrap_err();
    assert!(e.message().contains("ca_file"), "{e}");
    Ok(())
}

#[tokio::test]
async fn writes_fail_while_the_database_is_down_and_succeed_once_it_is_back() -> TestResult {
    let Some(pg) = TestPostgres::start("writes_fail_while_the_database_is_down")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let store = PgStore::open(&pg.url(&database), &PgOptions::default()).await?;
    store.record_batch(&[rec(1, "before")]).await?;

    pg.stop()?;
    let started = Instant::now();
    let down = store.record_batch(&[rec(2, "during")]).await.unwrap_err();
    assert_eq!(down.kind(), StoreErrorKind::Unavailable, "{down}");
    // Refused within the pool's wait, not after a long hang.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store.client_total().await.unwrap_err().kind(),
        StoreErrorKind::Unavailable
    );

    // Same store, no reopening: the pool reconnects.
    pg.start_again()?;
    store.record_batch(&[rec(3, "after")]).await?;
    let mut ids: Vec<String> = store
        .counted_clients(0)
        .await?
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    ids.sort();
    // The batch refused while down was not stored; what was committed before survived
    // the immediate stop.
    assert_eq!(ids, ["after", "before"]);
    Ok(())
}

#[tokio::test]
async fn two_stores_on_one_database_see_each_others_writes_at_once() -> TestResult {
    let Some(pg) = TestPostgres::shared("two_stores_on_one_database")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let url = pg.url(&database);
    // Opened together: the migrator's lock makes one of them create the schema.
    let options = PgOptions::default();
    let (a, b) = tokio::join!(PgStore::open(&url, &options), PgStore::open(&url, &options));
    let (a, b) = (a?, b?);
    a.record_batch(&[rec(10, "x")]).await?;
    assert!(b.client("x").await?.is_some());
    assert!(b.set_revoked("x", true, Some("lost"), 11).await?);
    assert!(a.client("x").await?.unwrap().revoked);
    assert!(a.counted_clients(0).await?.is_empty());
    // One count, one id, whichever host asks; another database is another count.
    let scope = a.count_scope().await?;
    assert!(
        scope.as_deref().is_some_and(|s| s.starts_with("pg-")),
        "{scope:?}"
    );
    assert_eq!(b.count_scope().await?, scope);
    let other = PgStore::open(&pg.url(&pg.create_database()?), &options).await?;
    assert_ne!(other.count_scope().await?, scope);
    Ok(())
}

#[tokio::test]
async fn a_batch_older_than_the_stored_row_changes_only_the_request_total() -> TestResult {
    let Some(pg) = TestPostgres::shared("a_batch_older_than_the_stored_row")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let store = PgStore::open(&pg.url(&database), &PgOptions::default()).await?;
    // Two batches committing out of order (several in flight, or two hosts).
    store.record_batch(&[rec(200, "c")]).await?;
    let mut older = rec(100, "c");
    older.machine_name = "renamed-before".into();
    older.result = "count-insufficient".into();
    store.record_batch(&[older]).await?;
    let row = store.client("c").await?.unwrap();
    assert_eq!(row.last_seen, 200);
    assert_eq!(row.last_counted, Some(200));
    assert_eq!(row.machine_name, "machine-c");
    assert_eq!(row.last_result, "activated");
    assert_eq!(row.ticket_id.as_deref(), Some("ticket-c-200"));
    assert_eq!(row.first_seen, 100);
    assert_eq!(row.requests, 2);
    Ok(())
}
