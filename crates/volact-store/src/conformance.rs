//! The behaviour every [`Store`] backend must have, as functions over `&dyn Store`.
//!
//! Each function expects an empty store. A backend's test file runs them all, each as a
//! test of its own on a fresh store, with
//! `volact_store::conformance_tests!(open_fn);`, where `open_fn` is an
//! `async fn() -> TestResult<(S, G)>` giving a fresh store `S: Store` and a guard `G`
//! that keeps its storage alive (a temporary directory, say). The backend's dev
//! dependencies need `volact-store` with the `conformance` feature, and `tokio`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::error::Error;

mod deferred;
mod history;
pub mod vendor;

pub use deferred::*;
pub use history::*;

use crate::{ActivationRecord, ClientFilter, ClientRecord, CloneSighting, EventFilter, Store};

/// What a conformance check returns: `Err` on a store failure, a panic on a wrong answer.
pub type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// Runs every conformance check, each as a `#[tokio::test]` on a fresh store from `$open`.
///
/// `conformance_tests!(optional open_fn)` is for a backend whose tests need an outside
/// program (a database server): `open_fn(test_name)` returns `TestResult<Option<(S, G)>>`, and
/// `None` (after it has reported the skip) passes the check without running it.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@names @each $open);
    };
    (optional $open:path) => {
        $crate::conformance_tests!(@names @optional $open);
    };
    (@names @ $how:ident $open:path) => {
        $crate::conformance_tests!(@ $how $open;
            upsert_semantics,
            batch_is_applied_in_order,
            one_batch_equals_one_request_at_a_time,
            revoked_clients_do_not_count,
            count_window_boundaries,
            client_filters,
            event_filters,
            prune_events,
            result_totals_add_up,
            concurrent_batches_all_land,
            events_oldest_first_for_following,
            clone_flags,
            expiring_tickets_are_counted,
            write_probe,
            host_events,
            deferred_batches_land_in_order_after_one_sync,
            a_revocation_after_a_deferred_batch_lands_after_it,
            history_counts_distinct_clients_per_day_within_the_window,
            history_days_that_depend_on_pruned_events_are_marked_partial,
            requests_by_hour_and_expiring_tickets,
            hosts_register_and_are_listed,
            imported_rows_read_back_whole_and_a_repeat_changes_nothing,
        );
    };
    (@each $open:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::conformance::TestResult {
                let (store, _guard) = $open().await?;
                $crate::conformance::$name(&store).await
            }
        )*
    };
    (@optional $open:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::conformance::TestResult {
                let Some((store, _guard)) = $open(stringify!($name)).await? else {
                    return Ok(());
                };
                $crate::conformance::$name(&store).await
            }
        )*
    };
}

/// A counted, activated request for `client` of product `p1` in application `app1`.
pub fn rec(at: i64, client: &str) -> ActivationRecord {
    ActivationRecord {
        at,
        client_id: client.to_owned(),
        machine_name: format!("machine-{client}"),
        address: "192.0.2.1".to_owned(),
        product: "p1".to_owned(),
        application: "app1".to_owned(),
        minimum_asked: 25,
        count: 30,
        result: "activated".to_owned(),
        counted: true,
        ticket_id: Some(format!("ticket-{client}-{at}")),
        ticket_valid_until: Some(at + 1000),
    }
}

/// A request refused before counting, as for an unknown setup key.
pub fn refused(at: i64, client: &str, result: &str) -> ActivationRecord {
    ActivationRecord {
        product: String::new(),
        application: String::new(),
        count: 0,
        result: result.to_owned(),
        counted: false,
        ticket_id: None,
        ticket_valid_until: None,
        ..rec(at, client)
    }
}

fn ids<'a>(clients: impl IntoIterator<Item = &'a crate::ClientRecord>) -> Vec<String> {
    clients.into_iter().map(|c| c.client_id.clone()).collect()
}

async fn get(store: &dyn Store, client: &str) -> TestResult<crate::ClientRecord> {
    store
        .client(client)
        .await?
        .ok_or_else(|| format!("client {client} is missing").into())
}

/// first_seen is kept, last_counted moves only on counted requests, a ticket and a
/// product are kept when a request brings none, requests are counted.
pub async fn upsert_semantics(store: &dyn Store) -> TestResult {
    store.record_batch(&[]).await?;
    assert_eq!(store.client_total().await?, 0);
    assert_eq!(store.client("c1").await?, None);

    let mut first = rec(100, "c1");
    first.machine_name = "m1".into();
    first.address = "10.0.0.1".into();
    store.record_batch(&[first]).await?;
    let c = get(store, "c1").await?;
    assert_eq!(c.client_id, "c1");
    assert_eq!(c.machine_name, "m1");
    assert_eq!(c.address, "10.0.0.1");
    assert_eq!((c.product.as_str(), c.application.as_str()), ("p1", "app1"));
    assert_eq!(
        (c.first_seen, c.last_seen, c.last_counted),
        (100, 100, Some(100))
    );
    assert_eq!((c.last_result.as_str(), c.last_count), ("activated", 30));
    assert_eq!(c.ticket_id.as_deref(), Some("ticket-c1-100"));
    assert_eq!(c.ticket_valid_until, Some(1100));
    assert!(!c.revoked);
    assert_eq!(c.revoked_reason, None);
    assert_eq!(c.requests, 1);

    // Unknown setup key, not counted, no ticket: product, counted time and ticket stay.
    let mut second = refused(200, "c1", "unknown-setup-key");
    second.machine_name = "m2".into();
    second.address = "10.0.0.2".into();
    store.record_batch(&[second]).await?;
    let c = get(store, "c1").await?;
    assert_eq!(c.machine_name, "m2");
    assert_eq!(c.address, "10.0.0.2");
    assert_eq!((c.product.as_str(), c.application.as_str()), ("p1", "app1"));
    assert_eq!(
        (c.first_seen, c.last_seen, c.last_counted),
        (100, 200, Some(100))
    );
    assert_eq!(
        (c.last_result.as_str(), c.last_count),
        ("unknown-setup-key", 0)
    );
    assert_eq!(c.ticket_id.as_deref(), Some("ticket-c1-100"));
    assert_eq!(c.ticket_valid_until, Some(1100));
    assert_eq!(c.requests, 2);

    // A known product replaces the stored one, a new ticket replaces the old.
    let mut third = rec(300, "c1");
    third.product = "p2".into();
    third.application = "app2".into();
    store.record_batch(&[third]).await?;
    let c = get(store, "c1").await?;
    assert_eq!((c.product.as_str(), c.application.as_str()), ("p2", "app2"));
    assert_eq!(
        (c.first_seen, c.last_seen, c.last_counted),
        (100, 300, Some(300))
    );
    assert_eq!(c.ticket_id.as_deref(), Some("ticket-c1-300"));
    assert_eq!(c.ticket_valid_until, Some(1300));
    assert_eq!(c.requests, 3);

    // Each ticket field is kept on its own when the request lacks it.
    let mut fourth = rec(400, "c1");
    fourth.ticket_id = None;
    fourth.ticket_valid_until = Some(9999);
    store.record_batch(&[fourth]).await?;
    let c = get(store, "c1").await?;
    assert_eq!(c.ticket_id.as_deref(), Some("ticket-c1-300"));
    assert_eq!(c.ticket_valid_until, Some(9999));

    // A client first seen on a refused request is never counted and has no ticket.
    store
        .record_batch(&[refused(500, "c2", "clock-skew")])
        .await?;
    let c = get(store, "c2").await?;
    assert_eq!(
        (c.first_seen, c.last_seen, c.last_counted),
        (500, 500, None)
    );
    assert_eq!((c.product.as_str(), c.application.as_str()), ("", ""));
    assert_eq!((c.ticket_id, c.ticket_valid_until), (None, None));
    assert_eq!(c.requests, 1);

    assert_eq!(store.client_total().await?, 2);
    Ok(())
}

/// Requests of one batch apply in order, also when a client appears several times and
/// across the statement boundaries a backend may cut a large batch at.
pub async fn batch_is_applied_in_order(store: &dyn Store) -> TestResult {
    let mut ticket = refused(20, "x", "activated");
    ticket.ticket_id = Some("t20".into());
    ticket.ticket_valid_until = Some(2020);
    let mut unknown = refused(30, "x", "unknown-setup-key");
    unknown.machine_name = "last-name".into();
    store.record_batch(&[rec(10, "x"), ticket, unknown]).await?;
    let c = get(store, "x").await?;
    assert_eq!(
        (c.first_seen, c.last_seen, c.last_counted),
        (10, 30, Some(10))
    );
    assert_eq!(c.ticket_id.as_deref(), Some("t20"));
    assert_eq!(c.machine_name, "last-name");
    assert_eq!(c.last_result, "unknown-setup-key");
    assert_eq!(c.requests, 3);

    // 301 requests; "y" at many positions, with its product changing each time.
    let batch: Vec<ActivationRecord> = (0..301)
        .map(|i| {
            let at = 1000 + i;
            if i % 7 == 0 || i == 63 || i == 64 || i == 300 {
                let mut r = rec(at, "y");
                r.product = format!("p{i}");
                r.counted = i % 2 == 0;
                r
            } else {
                rec(at, &format!("z{i}"))
            }
        })
        .collect();
    store.record_batch(&batch).await?;
    let y = get(store, "y").await?;
    assert_eq!((y.first_seen, y.last_seen), (1000, 1300));
    assert_eq!(y.product, "p300");
    assert_eq!(y.last_counted, Some(1300));
    let y_requests = batch.iter().filter(|r| r.client_id == "y").count();
    assert_eq!(y.requests, u64::try_from(y_requests)?);

    // Events are numbered in batch order: newest first is the batch reversed.
    let events = store.events(&EventFilter::default()).await?;
    assert_eq!(events.len(), 3 + 301);
    let ats: Vec<i64> = events.iter().rev().map(|e| e.at).collect();
    let expected: Vec<i64> = [10, 20, 30].into_iter().chain(1000..1301).collect();
    assert_eq!(ats, expected);
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    let first = &events[events.len() - 1];
    assert_eq!(first.client_id, "x");
    assert_eq!(first.machine_name, "machine-x");
    assert_eq!(first.address, "192.0.2.1");
    assert_eq!(first.product, "p1");
    assert_eq!((first.minimum_asked, first.count), (25, 30));
    assert_eq!(first.result, "activated");
    Ok(())
}

/// A store may merge a client's requests within a batch (one inventory write per
/// client); the rows must be those of applying the requests one by one. A fixed
/// pseudo-random mix of products, unknown keys, refusals, tickets and machine names,
/// applied as one batch to clients `a…` and one request at a time to clients `b…`.
pub async fn one_batch_equals_one_request_at_a_time(store: &dyn Store) -> TestResult {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut sequence = Vec::new();
    for i in 0..400_i64 {
        let client = next(12);
        let mut r = rec(5_000 + i, &format!("{client}"));
        match next(5) {
            0 => {
                r.product = String::new();
                r.application = String::new();
                r.result = "unknown-setup-key".into();
                r.counted = false;
                r.ticket_id = None;
                r.ticket_valid_until = None;
            }
            1 => {
                r.result = "count-insufficient".into();
                r.ticket_id = None;
                r.ticket_valid_until = None;
            }
            2 => r.product = format!("p{}", next(3)),
            3 => r.counted = false,
            _ => {}
        }
        r.machine_name = format!("m{}", next(3));
        r.count = u32::try_from(next(40))?;
        sequence.push(r);
    }
    let renamed = |prefix: &str| -> Vec<ActivationRecord> {
        sequence
            .iter()
            .map(|r| ActivationRecord {
                client_id: format!("{prefix}{}", r.client_id),
                ..r.clone()
            })
            .collect()
    };
    store.record_batch(&renamed("a")).await?;
    for r in renamed("b") {
        store.record_batch(&[r]).await?;
    }
    for client in 0..12 {
        let a = get(store, &format!("a{client}")).await?;
        let b = get(store, &format!("b{client}")).await?;
        assert_eq!(
            ClientRecord {
                client_id: b.client_id.clone(),
                ..a
            },
            b
        );
    }
    Ok(())
}

/// Revoked clients are listed but not counted; revocation survives new requests;
/// unknown clients cannot be revoked.
pub async fn revoked_clients_do_not_count(store: &dyn Store) -> TestResult {
    let mut b1 = rec(100, "b1");
    b1.application = "app2".into();
    store
        .record_batch(&[rec(100, "a1"), rec(100, "a2"), rec(100, "a3"), b1])
        .await?;
    let counts = store.count_by_application(0).await?;
    assert_eq!(counts, vec![("app1".into(), 3), ("app2".into(), 1)]);

    assert!(store.set_revoked("a2", true, Some("stolen"), 150).await?);
    assert!(!store.set_revoked("nobody", true, Some("x"), 150).await?);
    assert_eq!(store.client("nobody").await?, None);

    let c = get(store, "a2").await?;
    assert!(c.revoked);
    assert_eq!(c.revoked_reason.as_deref(), Some("stolen"));

    // A new request from a revoked client does not lift the revocation.
    store.record_batch(&[rec(200, "a2")]).await?;
    let c = get(store, "a2").await?;
    assert!(c.revoked);
    assert_eq!(c.revoked_reason.as_deref(), Some("stolen"));
    assert_eq!(c.last_counted, Some(200));

    let counts = store.count_by_application(0).await?;
    assert_eq!(counts, vec![("app1".into(), 2), ("app2".into(), 1)]);
    let mut counted = ids_of_counted(store, 0).await?;
    counted.sort();
    assert_eq!(counted, vec!["a1", "a3", "b1"]);

    // Revoking everyone in an application removes it from the counts.
    assert!(store.set_revoked("b1", true, None, 250).await?);
    assert_eq!(get(store, "b1").await?.revoked_reason, None);
    let counts = store.count_by_application(0).await?;
    assert_eq!(counts, vec![("app1".into(), 2)]);

    assert!(store.set_revoked("a2", false, None, 300).await?);
    let c = get(store, "a2").await?;
    assert!(!c.revoked);
    assert_eq!(c.revoked_reason, None);
    let counts = store.count_by_application(0).await?;
    assert_eq!(counts, vec![("app1".into(), 3)]);
    Ok(())
}

async fn ids_of_counted(store: &dyn Store, since: i64) -> TestResult<Vec<String>> {
    Ok(store
        .counted_clients(since)
        .await?
        .into_iter()
        .map(|c| c.client_id)
        .collect())
}

/// Counts include a client counted exactly at `since` and exclude earlier ones and
/// never-counted ones.
pub async fn count_window_boundaries(store: &dyn Store) -> TestResult {
    let mut server = rec(300, "s1");
    server.product = "p-server".into();
    store
        .record_batch(&[
            rec(100, "old"),
            rec(200, "edge"),
            server,
            refused(400, "never", "count-insufficient"),
        ])
        .await?;
    // "old" asks again without counting: its counted time stays at 100.
    store
        .record_batch(&[refused(500, "old", "clock-skew")])
        .await?;

    assert_eq!(
        store.count_by_application(200).await?,
        vec![("app1".into(), 2)]
    );
    assert_eq!(
        store.count_by_application(0).await?,
        vec![("app1".into(), 3)]
    );
    assert_eq!(store.count_by_application(301).await?, vec![]);
    assert_eq!(
        store.count_by_product(200).await?,
        vec![("p-server".into(), 1), ("p1".into(), 1)]
    );
    assert_eq!(
        store.count_by_product(0).await?,
        vec![("p-server".into(), 1), ("p1".into(), 2)]
    );
    assert_eq!(store.count_by_product(301).await?, vec![]);

    let mut counted = store.counted_clients(200).await?;
    counted.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    assert_eq!(counted.len(), 2);
    assert_eq!(counted[0].client_id, "edge");
    assert_eq!(counted[0].application, "app1");
    assert_eq!(counted[0].last_counted, 200);
    assert_eq!(counted[1].client_id, "s1");
    assert_eq!(counted[1].last_counted, 300);
    assert!(store.counted_clients(301).await?.is_empty());
    // Visiting sees exactly what listing returns.
    let mut visited = Vec::new();
    let n = store
        .visit_counted_clients(200, &mut |id, app, at| {
            visited.push((id.to_owned(), app.to_owned(), at));
        })
        .await?;
    visited.sort();
    let listed: Vec<(String, String, i64)> = counted
        .iter()
        .map(|c| (c.client_id.clone(), c.application.clone(), c.last_counted))
        .collect();
    assert_eq!(visited, listed);
    assert_eq!(n, 2);
    Ok(())
}

/// Every field of [`ClientFilter`], alone and combined, and the listing order.
pub async fn client_filters(store: &dyn Store) -> TestResult {
    let mut alpha = rec(100, "id-alpha");
    alpha.machine_name = "Desk-ALPHA".into();
    alpha.address = "10.1.1.1".into();
    let mut beta = rec(200, "id-beta");
    beta.machine_name = "desk_beta".into();
    beta.address = "10.2.2.2".into();
    beta.product = "p2".into();
    let mut gamma = rec(300, "id-gamma");
    gamma.machine_name = "srv 100%".into();
    gamma.address = "fd00::1".into();
    gamma.product = "p-server".into();
    gamma.application = "app2".into();
    let mut delta = refused(400, "id-delta", "unknown-setup-key");
    delta.machine_name = "deskXbeta".into();
    store.record_batch(&[alpha, beta, gamma, delta]).await?;
    store
        .set_revoked("id-beta", true, Some("gone"), 450)
        .await?;

    let list =
        |filter: ClientFilter| async move { TestResult::Ok(ids(&store.clients(&filter).await?)) };

    // Newest first.
    assert_eq!(
        list(ClientFilter::default()).await?,
        ["id-delta", "id-gamma", "id-beta", "id-alpha"]
    );
    assert_eq!(
        list(ClientFilter {
            application: Some("app1".into()),
            ..Default::default()
        })
        .await?,
        ["id-beta", "id-alpha"]
    );
    assert_eq!(
        list(ClientFilter {
            application: Some("".into()),
            ..Default::default()
        })
        .await?,
        ["id-delta"]
    );
    assert_eq!(
        list(ClientFilter {
            product: Some("p2".into()),
            ..Default::default()
        })
        .await?,
        ["id-beta"]
    );
    assert!(
        list(ClientFilter {
            product: Some("nothing".into()),
            ..Default::default()
        })
        .await?
        .is_empty()
    );

    let search = |text: &str| ClientFilter {
        search: Some(text.into()),
        ..Default::default()
    };
    // Case-insensitive, over id, machine name and address.
    assert_eq!(
        list(search("DESK")).await?,
        ["id-delta", "id-beta", "id-alpha"]
    );
    assert_eq!(list(search("ALPHA")).await?, ["id-alpha"]);
    assert_eq!(list(search("10.2.")).await?, ["id-beta"]);
    assert_eq!(list(search("fd00:")).await?, ["id-gamma"]);
    // LIKE wildcards in the text are taken literally.
    assert_eq!(list(search("_")).await?, ["id-beta"]);
    assert_eq!(list(search("k_b")).await?, ["id-beta"]);
    assert_eq!(list(search("%")).await?, ["id-gamma"]);
    assert!(list(search("1%0")).await?.is_empty());
    assert!(list(search("\\")).await?.is_empty());
    assert_eq!(list(search("")).await?.len(), 4);

    assert_eq!(
        list(ClientFilter {
            revoked: Some(true),
            ..Default::default()
        })
        .await?,
        ["id-beta"]
    );
    assert_eq!(
        list(ClientFilter {
            revoked: Some(false),
            ..Default::default()
        })
        .await?,
        ["id-delta", "id-gamma", "id-alpha"]
    );

    // Counted since 200: beta and gamma; not: alpha (earlier) and delta (never).
    assert_eq!(
        list(ClientFilter {
            counted_since: Some((200, true)),
            ..Default::default()
        })
        .await?,
        ["id-gamma", "id-beta"]
    );
    assert_eq!(
        list(ClientFilter {
            counted_since: Some((200, false)),
            ..Default::default()
        })
        .await?,
        ["id-delta", "id-alpha"]
    );

    assert_eq!(
        list(ClientFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await?,
        ["id-delta", "id-gamma"]
    );
    assert!(
        list(ClientFilter {
            limit: Some(0),
            ..Default::default()
        })
        .await?
        .is_empty()
    );

    assert_eq!(
        list(ClientFilter {
            application: Some("app1".into()),
            product: Some("p2".into()),
            search: Some("BETA".into()),
            revoked: Some(true),
            counted_since: Some((200, true)),
            limit: Some(5),
        })
        .await?,
        ["id-beta"]
    );
    assert!(
        list(ClientFilter {
            application: Some("app1".into()),
            revoked: Some(false),
            counted_since: Some((150, true)),
            ..Default::default()
        })
        .await?
        .is_empty()
    );

    // Rows come back whole.
    let all = store.clients(&ClientFilter::default()).await?;
    assert_eq!(all[2], get(store, "id-beta").await?);
    assert_eq!(all[2].revoked_reason.as_deref(), Some("gone"));
    Ok(())
}

/// Every field of [`EventFilter`], alone and combined; newest first.
pub async fn event_filters(store: &dyn Store) -> TestResult {
    store
        .record_batch(&[
            rec(100, "a"),
            refused(100, "b", "clock-skew"),
            rec(200, "b"),
        ])
        .await?;
    store
        .record_batch(&[refused(300, "a", "clock-skew"), rec(400, "c")])
        .await?;

    let all = store.events(&EventFilter::default()).await?;
    let shape: Vec<(i64, &str, &str)> = all
        .iter()
        .map(|e| (e.at, e.client_id.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            (400, "c", "activated"),
            (300, "a", "clock-skew"),
            (200, "b", "activated"),
            (100, "b", "clock-skew"),
            (100, "a", "activated"),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let id_of = |i: usize| all[i].id;
    let select = |filter: EventFilter| async move {
        TestResult::Ok(
            store
                .events(&filter)
                .await?
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
        )
    };

    assert_eq!(
        select(EventFilter {
            since: Some(200),
            ..Default::default()
        })
        .await?,
        [id_of(0), id_of(1), id_of(2)]
    );
    assert_eq!(
        select(EventFilter {
            after_id: Some(id_of(2)),
            ..Default::default()
        })
        .await?,
        [id_of(0), id_of(1)]
    );
    assert_eq!(
        select(EventFilter {
            client_id: Some("a".into()),
            ..Default::default()
        })
        .await?,
        [id_of(1), id_of(4)]
    );
    assert_eq!(
        select(EventFilter {
            result: Some("clock-skew".into()),
            ..Default::default()
        })
        .await?,
        [id_of(1), id_of(3)]
    );
    assert_eq!(
        select(EventFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await?,
        [id_of(0), id_of(1)]
    );
    assert_eq!(
        select(EventFilter {
            since: Some(100),
            after_id: Some(id_of(4)),
            client_id: Some("b".into()),
            result: Some("activated".into()),
            limit: Some(10),
            oldest_first: false,
        })
        .await?,
        [id_of(2)]
    );
    assert!(
        select(EventFilter {
            client_id: Some("nobody".into()),
            ..Default::default()
        })
        .await?
        .is_empty()
    );
    assert!(
        select(EventFilter {
            after_id: Some(id_of(0)),
            ..Default::default()
        })
        .await?
        .is_empty()
    );
    Ok(())
}

/// Pruning deletes exactly the events before the cut, in any number, and touches
/// neither the inventory nor the totals; ids are not reused afterwards.
pub async fn prune_events(store: &dyn Store) -> TestResult {
    assert_eq!(store.prune_events(1_000).await?, 0);

    // More than one pruning chunk's worth, so a chunked delete is exercised.
    let total: i64 = 25_000;
    let batch: Vec<ActivationRecord> = (0..total)
        .map(|i| rec(i, &format!("c{}", i % 1000)))
        .collect();
    for chunk in batch.chunks(500) {
        store.record_batch(chunk).await?;
    }
    let newest_before = store
        .events(&EventFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    let clients_before = store.clients(&ClientFilter::default()).await?;
    let totals_before = store.result_totals().await?;

    let cut = 20_001;
    assert_eq!(store.prune_events(cut).await?, u64::try_from(cut)?);
    assert_eq!(store.prune_events(cut).await?, 0);

    let left = store.events(&EventFilter::default()).await?;
    assert_eq!(left.len(), usize::try_from(total - cut)?);
    assert!(left.iter().all(|e| e.at >= cut));
    assert_eq!(left.last().map(|e| e.at), Some(cut));
    assert_eq!(left.first(), newest_before.first());
    assert_eq!(
        store.clients(&ClientFilter::default()).await?,
        clients_before
    );
    assert_eq!(store.result_totals().await?, totals_before);

    // Everything goes; the next event still gets a higher id than any before.
    let last_id = newest_before.first().map_or(0, |e| e.id);
    assert_eq!(
        store.prune_events(i64::MAX).await?,
        u64::try_from(total - cut)?
    );
    assert!(store.events(&EventFilter::default()).await?.is_empty());
    store.record_batch(&[rec(total, "after")]).await?;
    let after = store.events(&EventFilter::default()).await?;
    assert_eq!(after.len(), 1);
    assert!(after[0].id > last_id);
    Ok(())
}

/// Totals add up per result code across batches, sorted by code.
pub async fn result_totals_add_up(store: &dyn Store) -> TestResult {
    assert!(store.result_totals().await?.is_empty());
    store
        .record_batch(&[
            rec(1, "a"),
            rec(2, "b"),
            refused(3, "c", "clock-skew"),
            rec(4, "a"),
        ])
        .await?;
    store
        .record_batch(&[
            refused(5, "d", "unknown-setup-key"),
            rec(6, "e"),
            refused(7, "c", "clock-skew"),
        ])
        .await?;
    assert_eq!(
        store.result_totals().await?,
        vec![
            ("activated".into(), 4),
            ("clock-skew".into(), 2),
            ("unknown-setup-key".into(), 1),
        ]
    );
    Ok(())
}

/// Batches sent at once from many tasks are all stored, none lost or merged wrongly.
pub async fn concurrent_batches_all_land(store: &dyn Store) -> TestResult {
    let tasks: u32 = 8;
    let batches: u32 = 20;
    let per_batch: u32 = 50;
    let mut work = Vec::new();
    for task in 0..tasks {
        work.push(async move {
            for b in 0..batches {
                let batch: Vec<ActivationRecord> = (0..per_batch)
                    .map(|i| rec(i64::from(b), &format!("t{task}-c{i}")))
                    .collect();
                store.record_batch(&batch).await?;
            }
            TestResult::Ok(())
        });
    }
    for outcome in futures_join_all(work).await {
        outcome?;
    }
    let expected = u64::from(tasks * per_batch);
    assert_eq!(store.client_total().await?, expected);
    assert_eq!(
        store.count_by_application(0).await?,
        vec![("app1".into(), expected)]
    );
    let c = get(store, "t3-c7").await?;
    assert_eq!(c.requests, u64::from(batches));
    assert_eq!(
        store.result_totals().await?,
        vec![("activated".into(), expected * u64::from(batches))]
    );
    Ok(())
}

/// Polls all futures together on the current task: they interleave at every await, which
/// is what makes the batches reach the store concurrently.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// `oldest_first` with `after_id` and `limit` reads the log forward in pages, so a
/// follower misses nothing however many events arrived since it last looked.
pub async fn events_oldest_first_for_following(store: &dyn Store) -> TestResult {
    let batch: Vec<ActivationRecord> = (0..10).map(|i| rec(i, &format!("c{i}"))).collect();
    store.record_batch(&batch).await?;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .events(&EventFilter {
                after_id: Some(after),
                limit: Some(3),
                oldest_first: true,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page.iter().map(|e| e.at));
    }
    assert_eq!(seen, (0..10).collect::<Vec<i64>>());
    Ok(())
}

fn sighting(at: i64, client: &str, other: Option<&str>) -> CloneSighting {
    CloneSighting {
        at,
        client_id: client.to_owned(),
        machine_name: format!("clone-of-{client}-{at}"),
        other_machine_name: other.map(str::to_owned),
        address: "192.0.2.9".to_owned(),
        product: "p1".to_owned(),
        reason: "machine-name".to_owned(),
    }
}

/// A flag is one row per client, updated by later flags, listed by latest flag, with a
/// `cloned-image` event each time and no change to the request totals.
pub async fn clone_flags(store: &dyn Store) -> TestResult {
    assert!(store.clones(0).await?.is_empty());
    store.record_clone(&sighting(100, "a", Some("m1"))).await?;
    store.record_clone(&sighting(50, "b", None)).await?;
    store.record_clone(&sighting(200, "a", None)).await?;
    let all = store.clones(0).await?;
    assert_eq!(ids_of_clones(&all), ["a", "b"]);
    let a = &all[0];
    assert_eq!((a.first_flagged, a.last_flagged, a.flags), (100, 200, 2));
    assert_eq!(a.machine_name, "clone-of-a-200");
    // A later flag that does not know the other machine keeps the one known.
    assert_eq!(a.other_machine_name.as_deref(), Some("m1"));
    assert_eq!(a.reason, "machine-name");
    assert_eq!(ids_of_clones(&store.clones(150).await?), ["a"]);
    let events = store
        .events(&EventFilter {
            result: Some("cloned-image".into()),
            ..Default::default()
        })
        .await?;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].client_id, "a");
    assert_eq!(events[0].product, "p1");
    assert!(store.result_totals().await?.is_empty());
    Ok(())
}

fn ids_of_clones(clones: &[crate::CloneRecord]) -> Vec<&str> {
    clones.iter().map(|c| c.client_id.as_str()).collect()
}

/// Tickets ending in `[from, to)` are counted; revoked clients are not.
pub async fn expiring_tickets_are_counted(store: &dyn Store) -> TestResult {
    // rec() issues tickets valid until at + 1000.
    store
        .record_batch(&[
            rec(0, "a"),
            rec(500, "b"),
            rec(600, "c"),
            refused(700, "d", "clock-skew"),
        ])
        .await?;
    store.set_revoked("c", true, None, 800).await?;
    assert_eq!(store.count_expiring_tickets(1000, 1500).await?, 1);
    assert_eq!(store.count_expiring_tickets(1000, 1501).await?, 2);
    assert_eq!(store.count_expiring_tickets(1001, 5000).await?, 1);
    assert_eq!(store.count_expiring_tickets(0, i64::MAX).await?, 2);
    assert_eq!(store.count_expiring_tickets(2000, 3000).await?, 0);
    Ok(())
}

/// The health probe's write succeeds repeatedly and changes nothing visible.
pub async fn write_probe(store: &dyn Store) -> TestResult {
    store.probe_write(1).await?;
    store.probe_write(2).await?;
    assert_eq!(store.client_total().await?, 0);
    assert!(store.events(&EventFilter::default()).await?.is_empty());
    Ok(())
}

/// A host event lands in the audit log, filterable by its result, without a client or
/// a change to the request totals.
pub async fn host_events(store: &dyn Store) -> TestResult {
    store.record_batch(&[rec(10, "c1")]).await?;
    store
        .record_host_event(20, "dns-publish-failed", "127.0.0.1:53", "NOTAUTH")
        .await?;
    let filter = EventFilter {
        result: Some("dns-publish-failed".into()),
        ..EventFilter::default()
    };
    let events = store.events(&filter).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id, "");
    assert_eq!(events[0].machine_name, "NOTAUTH");
    assert_eq!(events[0].address, "127.0.0.1:53");
    assert_eq!(store.events(&EventFilter::default()).await?.len(), 2);
    assert_eq!(store.client_total().await?, 1);
    let totals: u64 = store.result_totals().await?.iter().map(|(_, n)| n).sum();
    assert_eq!(totals, 1, "host events are not requests");
    Ok(())
}

/// A host's registration replaces its row whole; every host is listed, by id.
pub async fn hosts_register_and_are_listed(store: &dyn Store) -> TestResult {
    assert!(store.hosts().await?.is_empty());
    let host = |id: &str, at: i64, urls: &[&str]| crate::HostRecord {
        host_id: id.to_owned(),
        name: format!("machine-{id}"),
        listen_urls: urls.iter().map(|u| (*u).to_owned()).collect(),
        version: "0.1.0".to_owned(),
        last_seen: at,
    };
    store
        .register_host(&host("b", 10, &["http://10.0.0.2:7688"]))
        .await?;
    store
        .register_host(&host("a", 20, &["http://10.0.0.1:7688"]))
        .await?;
    let mut again = host("b", 30, &["http://10.0.0.2:7688", "https://10.0.0.2:7689"]);
    again.version = "0.2.0".to_owned();
    store.register_host(&again).await?;
    let no_urls = host("c", 40, &[]);
    store.register_host(&no_urls).await?;
    assert_eq!(
        store.hosts().await?,
        vec![host("a", 20, &["http://10.0.0.1:7688"]), again, no_urls]
    );
    // The registry is not the inventory or the audit log.
    assert_eq!(store.client_total().await?, 0);
    assert!(store.events(&EventFilter::default()).await?.is_empty());
    Ok(())
}

/// Rows imported from another store read back exactly; importing them again changes
/// nothing; events recorded afterwards get higher ids than the imported ones.
pub async fn imported_rows_read_back_whole_and_a_repeat_changes_nothing(
    store: &dyn Store,
) -> TestResult {
    use crate::{CloneRecord, EventRecord, ImportRows};
    // An existing client the import replaces.
    store.record_batch(&[rec(1, "a")]).await?;
    let mut a = get(store, "a").await?;
    a.machine_name = "imported-a".into();
    a.first_seen = 0;
    a.requests = 40;
    a.revoked = true;
    a.revoked_reason = Some("moved".into());
    let mut b = a.clone();
    b.client_id = "b".into();
    b.revoked = false;
    b.revoked_reason = None;
    b.last_counted = None;
    b.ticket_id = None;
    b.ticket_valid_until = None;
    let event = |id: i64, client: &str| EventRecord {
        id,
        at: 100 + id,
        client_id: client.to_owned(),
        machine_name: format!("m-{client}"),
        address: "192.0.2.3".into(),
        product: "p1".into(),
        minimum_asked: 25,
        count: 3,
        result: "activated".into(),
    };
    let before = store.events(&EventFilter::default()).await?;
    let high = before.first().map_or(0, |e| e.id) + 1000;
    let events = vec![event(high, "a"), event(high + 5, "b")];
    let flag = CloneRecord {
        client_id: "b".into(),
        first_flagged: 5,
        last_flagged: 9,
        flags: 3,
        machine_name: "clone".into(),
        other_machine_name: Some("orig".into()),
        address: "192.0.2.4".into(),
        reason: "machine-fingerprint".into(),
    };
    let totals = vec![("activated".to_owned(), 70), ("clock-skew".to_owned(), 2)];
    let imports = || {
        [
            ImportRows::Clients(vec![a.clone(), b.clone()]),
            ImportRows::Events(events.clone()),
            ImportRows::Clones(vec![flag.clone()]),
            ImportRows::Totals(totals.clone()),
        ]
    };
    let mut written = Vec::new();
    for rows in imports() {
        written.push(store.import(rows).await?);
    }
    assert_eq!(written, [2, 2, 1, 2]);
    let check = || async {
        assert_eq!(get(store, "a").await?, a);
        assert_eq!(get(store, "b").await?, b);
        assert_eq!(store.client_total().await?, 2);
        let stored = store
            .events(&EventFilter {
                after_id: Some(high - 1),
                oldest_first: true,
                ..EventFilter::default()
            })
            .await?;
        assert_eq!(stored, events);
        assert_eq!(store.clones(0).await?, vec![flag.clone()]);
        assert_eq!(store.result_totals().await?, totals);
        TestResult::Ok(())
    };
    check().await?;
    // Again: the same rows, nothing doubled; no event written twice.
    let mut again = Vec::new();
    for rows in imports() {
        again.push(store.import(rows).await?);
    }
    assert_eq!(again[1], 0, "events already there are left alone");
    check().await?;
    // Counted from the imported rows: a is revoked, b never counted.
    assert!(store.counted_clients(0).await?.is_empty());
    // The next event is numbered after the imported ones.
    store.record_batch(&[rec(500, "c")]).await?;
    let newest = store
        .events(&EventFilter {
            limit: Some(1),
            ..EventFilter::default()
        })
        .await?;
    assert!(newest[0].id > high + 5, "{newest:?}");
    Ok(())
}
