//! The count's feed and seat holds on PostgreSQL, with several stores (hosts) on one
//! database: every committed change is read exactly once or more, never missed, whatever
//! order concurrent transactions commit in; the seat cap holds under concurrent holds.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use volact_store::Store;
use volact_store::conformance::{TestResult, rec};
use volact_store::feed::{CountFeed, FeedPosition, SeatHold};
use volact_store_postgres::{PgOptions, PgStore};
use volact_testkit::postgres::TestPostgres;

async fn store(pg: &TestPostgres, database: &str) -> PgStore {
    PgStore::open(&pg.url(database), &PgOptions::default())
        .await
        .unwrap()
}

/// Reads the feed from `from` until it is exhausted; returns the client ids seen (with
/// revocation flags) and the next position.
async fn read_all(
    feed: &dyn CountFeed,
    mut from: FeedPosition,
) -> TestResult<(Vec<(String, bool, Option<i64>)>, FeedPosition)> {
    let mut seen = Vec::new();
    loop {
        let page = feed.changes(from).await?;
        seen.extend(
            page.changes
                .into_iter()
                .map(|c| (c.client_id, c.revoked, c.last_counted)),
        );
        from = page.next;
        if !page.more {
            return Ok((seen, from));
        }
    }
}

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn the_feed_shows_every_other_hosts_change_after_its_position() -> TestResult {
    let Some(pg) = TestPostgres::shared("the_feed_shows_every_other_hosts_change")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let a = store(&pg, &database).await;
    let b = store(&pg, &database).await;
    a.record_batch(&[rec(10, &id(1))]).await?;
    let feed = b.count_feed().unwrap();
    let start = feed.position().await?;
    a.record_batch(&[rec(20, &id(2)), rec(21, &id(3))]).await?;
    let (seen, next) = read_all(feed.as_ref(), start).await?;
    let ids: HashSet<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert!(
        ids.contains(id(2).as_str()) && ids.contains(id(3).as_str()),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.2.is_some()), "{seen:?}");

    // A revocation is a change too; nothing new is read twice once past it.
    a.set_revoked(&id(2), true, Some("stolen"), 30).await?;
    let (seen, next) = read_all(feed.as_ref(), next).await?;
    assert!(seen.contains(&(id(2), true, Some(20))), "{seen:?}");
    // Reads repeat only what a transaction still running (in any database of the
    // cluster: other tests share it) may yet change.
    let (again, _) = read_all(feed.as_ref(), next).await?;
    assert!(again.iter().all(|c| seen.contains(c)), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn a_transaction_committing_after_a_later_one_is_not_skipped() -> TestResult {
    let Some(pg) = TestPostgres::shared("a_transaction_committing_after_a_later_one")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let a = store(&pg, &database).await;
    let b = store(&pg, &database).await;
    a.record_batch(&[rec(5, &id(1))]).await?;
    let feed = b.count_feed().unwrap();
    let start = feed.position().await?;
    // An older transaction holds its write open while a younger one commits and the
    // feed is read: the older one's row must appear on a later read.
    let slow = sqlx::PgPool::connect(&pg.url(&database)).await?;
    let mut tx = slow.begin().await?;
    sqlx::query(
        "UPDATE clients SET last_counted = 99, changed = pg_current_xact_id() WHERE client_id = $1",
    )
    .bind(id(1))
    .execute(&mut *tx)
    .await?;
    a.record_batch(&[rec(50, &id(2))]).await?;
    let (seen, next) = read_all(feed.as_ref(), start).await?;
    assert!(seen.iter().any(|s| s.0 == id(2)), "{seen:?}");
    assert!(!seen.iter().any(|s| s.2 == Some(99)), "{seen:?}");
    tx.commit().await?;
    let (seen, _) = read_all(feed.as_ref(), next).await?;
    assert!(seen.contains(&(id(1), false, Some(99))), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn seat_holds_never_exceed_the_cap_across_hosts() -> TestResult {
    let Some(pg) = TestPostgres::shared("seat_holds_never_exceed_the_cap")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let stores = [store(&pg, &database).await, store(&pg, &database).await];
    // Three clients counted already, one revoked (it takes no seat).
    stores[0]
        .record_batch(&[rec(100, &id(1)), rec(100, &id(2)), rec(100, &id(3))])
        .await?;
    stores[0].set_revoked(&id(3), true, None, 100).await?;
    let cap = 10;
    let mut tasks = Vec::new();
    for n in 0..40u32 {
        let feed = stores[(n % 2) as usize].count_feed().unwrap();
        tasks.push(tokio::spawn(async move {
            feed.hold_seat(&id(1000 + n), 50, cap).await
        }));
    }
    let mut held = 0;
    for t in tasks {
        if let SeatHold::Held { in_use } = t.await?? {
            assert!(in_use < cap);
            held += 1;
        }
    }
    assert_eq!(held, 8, "two seats were counted already");
    // A counted client holds its own seat whatever the cap.
    let feed = stores[1].count_feed().unwrap();
    assert_eq!(
        feed.hold_seat(&id(1), 50, cap).await?,
        SeatHold::Held { in_use: 9 }
    );
    assert_eq!(
        feed.hold_seat(&id(5000), 50, cap).await?,
        SeatHold::Full { in_use: 10 }
    );
    // A seat given back is free again; clients counted before `since` take none.
    feed.release_seat(&id(1000)).await?;
    assert!(matches!(
        feed.hold_seat(&id(5000), 50, cap).await?,
        SeatHold::Held { in_use: 9 }
    ));
    assert!(matches!(
        feed.hold_seat(&id(5001), 200, cap).await?,
        SeatHold::Held { in_use: 8 }
    ));
    Ok(())
}

#[tokio::test]
async fn a_host_skips_its_own_writes_but_never_another_hosts_revocation() -> TestResult {
    let Some(pg) = TestPostgres::shared("a_host_skips_its_own_writes")? else {
        return Ok(());
    };
    let database = pg.create_database()?;
    let a = store(&pg, &database).await;
    let b = store(&pg, &database).await;
    let feed = a.count_feed().unwrap();
    let start = feed.position().await?;
    a.record_batch(&[rec(10, &id(1)), rec(10, &id(2))]).await?;
    let (seen, next) = read_all(feed.as_ref(), start).await?;
    assert!(seen.is_empty(), "its own answers are known: {seen:?}");
    // Another host revokes client 1, then this host answers it again (a refusal is
    // stored too) before reading the feed: the revocation still arrives.
    b.set_revoked(&id(1), true, None, 11).await?;
    let mut refused = rec(12, &id(1));
    refused.counted = false;
    refused.result = "client-revoked".into();
    a.record_batch(&[refused]).await?;
    // Another host's later count of client 2 arrives; so does an older one overwritten
    // by this host's newer answer, as the row stands.
    b.record_batch(&[rec(20, &id(2))]).await?;
    let (seen, _) = read_all(feed.as_ref(), next).await?;
    assert!(seen.contains(&(id(1), true, Some(10))), "{seen:?}");
    assert!(seen.contains(&(id(2), false, Some(20))), "{seen:?}");
    Ok(())
}
