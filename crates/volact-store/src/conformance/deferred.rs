//! `record_batch_deferred` and `sync`: batches stored before they are durable, in order,
//! and one sync covering every batch before its token.

use super::{TestResult, get, rec, refused};
use crate::{EventFilter, Store};

/// Deferred batches land in the order they were handed over, and after a sync with the
/// last token every one of them is readable, as if each had been recorded at once.
pub async fn deferred_batches_land_in_order_after_one_sync(store: &dyn Store) -> TestResult {
    let mut last = 0;
    for i in 0..5_i64 {
        let batch = vec![
            rec(100 + 10 * i, "a"),
            refused(101 + 10 * i, "b", "clock-skew"),
        ];
        let token = store.record_batch_deferred(batch).await?;
        // Tokens never go back: a sync with a later one covers the earlier ones.
        assert!(token >= last, "token {token} after {last}");
        last = token;
    }
    store.sync(last).await?;
    let a = get(store, "a").await?;
    assert_eq!(
        (a.requests, a.last_seen, a.last_counted),
        (5, 140, Some(140))
    );
    let b = get(store, "b").await?;
    assert_eq!((b.requests, b.last_result.as_str()), (5, "clock-skew"));
    let events = store
        .events(&EventFilter {
            oldest_first: true,
            ..EventFilter::default()
        })
        .await?;
    let times: Vec<i64> = events.iter().map(|e| e.at).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "events in the order of their batches");
    assert_eq!(times.len(), 10);
    assert_eq!(
        store.result_totals().await?,
        vec![("activated".into(), 5), ("clock-skew".into(), 5)]
    );
    Ok(())
}

/// A deferred batch is applied before a write that is not an activation: a revocation
/// right after it finds the client and is not overwritten by it.
pub async fn a_revocation_after_a_deferred_batch_lands_after_it(store: &dyn Store) -> TestResult {
    let token = store.record_batch_deferred(vec![rec(10, "a")]).await?;
    assert!(store.set_revoked("a", true, Some("lost"), 20).await?);
    store.sync(token).await?;
    let a = get(store, "a").await?;
    assert!(a.revoked);
    assert!(store.counted_clients(0).await?.is_empty());
    // Syncing again, or with an older token, is harmless.
    store.sync(token).await?;
    store.sync(0).await?;
    assert_eq!(store.client_total().await?, 1);
    Ok(())
}
