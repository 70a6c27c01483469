//! The store's SQL for "this client counts" (the start-up load, the inventory's states,
//! the count per application) agrees with the one predicate,
//! `volact_core::count::counts`, on generated clients around the window's boundary.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use volact_core::count::{counts, window_start};
use volact_store::{ActivationRecord, ClientFilter, Store};
use volact_store_sqlite::SqliteStore;

const NOW: i64 = 1_800_000_000;
const WINDOW: i64 = 30 * 86_400;

/// One generated client: when it was last counted (relative to `NOW`), if ever, and
/// whether it is revoked.
#[derive(Debug, Clone)]
struct Client {
    last_counted: Option<i64>,
    revoked: bool,
}

fn client() -> impl Strategy<Value = Client> {
    let near = (-WINDOW - 3..=-WINDOW + 3).boxed();
    let far = (-3 * WINDOW..=0i64).boxed();
    (
        prop_oneof![3 => near, 1 => far].prop_map(|o| NOW + o),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(at, counted, revoked)| Client {
            last_counted: counted.then_some(at),
            revoked,
        })
}

fn id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

fn record(i: usize, at: i64, counted: bool) -> ActivationRecord {
    ActivationRecord {
        at,
        client_id: id(i),
        machine_name: format!("pc-{i}"),
        address: "192.0.2.1".to_owned(),
        product: if counted { "p1" } else { "" }.to_owned(),
        application: if counted { "app1" } else { "" }.to_owned(),
        minimum_asked: 1,
        count: u32::from(counted),
        result: if counted {
            "count-insufficient"
        } else {
            "unknown-setup-key"
        }
        .to_owned(),
        counted,
        ticket_id: None,
        ticket_valid_until: None,
    }
}

async fn check(clients: Vec<Client>) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| fail(&e))?;
    let store = SqliteStore::open(&dir.path().join("volact.db"))
        .await
        .map_err(|e| fail(&e))?;
    let batch: Vec<ActivationRecord> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| match c.last_counted {
            Some(at) => record(i, at, true),
            None => record(i, NOW - WINDOW, false),
        })
        .collect();
    store.record_batch(&batch).await.map_err(|e| fail(&e))?;
    for (i, c) in clients.iter().enumerate() {
        if c.revoked {
            store
                .set_revoked(&id(i), true, Some("test"), NOW)
                .await
                .map_err(|e| fail(&e))?;
        }
    }
    let since = window_start(NOW, WINDOW);
    let want: BTreeSet<String> = clients
        .iter()
        .enumerate()
        .filter(|(_, c)| counts(c.revoked, c.last_counted, since))
        .map(|(i, _)| id(i))
        .collect();
    let stale: BTreeSet<String> = clients
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.revoked && !counts(c.revoked, c.last_counted, since))
        .map(|(i, _)| id(i))
        .collect();

    let mut visited = BTreeSet::new();
    store
        .visit_counted_clients(since, &mut |id, _, _| {
            visited.insert(id.to_owned());
        })
        .await
        .map_err(|e| fail(&e))?;
    prop_assert_eq!(&visited, &want, "visit_counted_clients");

    let listed: BTreeSet<String> = store
        .counted_clients(since)
        .await
        .map_err(|e| fail(&e))?
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    prop_assert_eq!(&listed, &want, "counted_clients");

    let filtered = |revoked: bool, counted: bool| ClientFilter {
        revoked: Some(revoked),
        counted_since: Some((since, counted)),
        ..ClientFilter::default()
    };
    let ids = |rows: Vec<volact_store::ClientRecord>| -> BTreeSet<String> {
        rows.into_iter().map(|c| c.client_id).collect()
    };
    let active = ids(store
        .clients(&filtered(false, true))
        .await
        .map_err(|e| fail(&e))?);
    prop_assert_eq!(&active, &want, "the active filter");
    let not_counted = ids(store
        .clients(&filtered(false, false))
        .await
        .map_err(|e| fail(&e))?);
    prop_assert_eq!(&not_counted, &stale, "the stale filter");

    let per_application: u64 = store
        .count_by_application(since)
        .await
        .map_err(|e| fail(&e))?
        .iter()
        .map(|(_, n)| n)
        .sum();
    prop_assert_eq!(per_application, want.len() as u64, "count_by_application");
    store.close().await;
    Ok(())
}

#[test]
#[allow(clippy::unwrap_used)]
fn the_stores_sql_agrees_with_the_predicate() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(client(), 1..24), |clients| {
            runtime.block_on(check(clients))
        })
        .unwrap();
}
