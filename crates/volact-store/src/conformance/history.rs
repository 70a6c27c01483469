//! The dashboard's queries: count history (with revocations, refusals and pruned
//! events), requests per hour, tickets about to end.

use super::TestResult;
use crate::history::DAY_SECS;
use crate::{ActivationRecord, CountHistory, Store};

const HOUR: i64 = 3_600;

fn record(at: i64, client: &str, application: &str, result: &str) -> ActivationRecord {
    let counted = crate::history::COUNTED_RESULTS.contains(&result);
    ActivationRecord {
        at,
        client_id: client.to_owned(),
        machine_name: format!("machine-{client}"),
        address: "192.0.2.7".to_owned(),
        product: format!("{application}-product"),
        application: application.to_owned(),
        minimum_asked: 5,
        count: 1,
        result: result.to_owned(),
        counted,
        ticket_id: (result == "activated").then(|| format!("t-{client}-{at}")),
        ticket_valid_until: (result == "activated").then_some(at + 10 * DAY_SECS),
    }
}

fn series(h: &CountHistory, application: &str) -> Vec<u64> {
    h.series
        .iter()
        .find(|s| s.application == application)
        .map(|s| s.counts.clone())
        .unwrap_or_else(|| vec![0; h.days.len()])
}

/// `count_history` replays the live rule day by day: distinct clients within the
/// window, refusals left out, revoked clients left out of every day.
pub async fn history_counts_distinct_clients_per_day_within_the_window(
    store: &dyn Store,
) -> TestResult {
    let d = |day: i64, hour: i64| day * DAY_SECS + hour * HOUR;
    store
        .record_batch(&[
            record(d(0, 9), "a", "os", "activated"),
            record(d(0, 10), "a", "os", "activated"),
            record(d(1, 9), "b", "os", "count-insufficient"),
            record(d(2, 9), "c", "os", "clock-skew"),
            record(d(2, 9), "x", "office", "activated"),
            record(d(3, 9), "r", "os", "activated"),
        ])
        .await?;
    store.set_revoked("r", true, None, d(4, 0)).await?;
    // Window of 2 days, days 0..=5, taken at noon of day 5.
    let h = store.count_history(d(5, 12), 6, 2 * DAY_SECS).await?;
    assert_eq!(h.days, (0..6).map(|i| i * DAY_SECS).collect::<Vec<_>>());
    // a counts until day 2 10:00 (sampled at day 1 end, not day 2 end); b until day 3 09:00;
    // c was refused; r is revoked and leaves every day.
    assert_eq!(series(&h, "os"), vec![1, 2, 1, 0, 0, 0]);
    assert_eq!(series(&h, "office"), vec![0, 0, 1, 1, 0, 0]);
    assert_eq!(h.partial_days, 0);
    // Today's value is the live rule at `until` itself.
    let h = store.count_history(d(3, 8), 1, 2 * DAY_SECS).await?;
    assert_eq!(series(&h, "os"), vec![1]);
    Ok(())
}

/// Days whose window reaches before the oldest audit event left are marked partial; the
/// inventory's last counted request still shows.
pub async fn history_days_that_depend_on_pruned_events_are_marked_partial(
    store: &dyn Store,
) -> TestResult {
    let d = |day: i64| day * DAY_SECS + 9 * HOUR;
    store
        .record_batch(&[
            record(d(1), "a", "os", "activated"),
            record(d(8), "b", "os", "activated"),
        ])
        .await?;
    assert_eq!(store.prune_events(d(5)).await?, 1);
    let h = store.count_history(d(9), 10, 3 * DAY_SECS).await?;
    // The oldest event left is day 8's; days whose window starts before it may be low.
    assert_eq!(h.partial_days, 10);
    let h = store.count_history(d(19), 10, 3 * DAY_SECS).await?;
    assert_eq!(
        h.partial_days, 1,
        "only day 10, whose window reaches before that event"
    );
    // The inventory keeps each client's last counted request, so a client whose events
    // were pruned still shows on the days that request covers.
    let h = store.count_history(d(3), 4, 3 * DAY_SECS).await?;
    assert_eq!(series(&h, "os"), vec![0, 1, 1, 1]);
    Ok(())
}

/// `requests_by_hour` groups by hour and result from `since`, oldest hour first;
/// `expiring_tickets` lists soonest first, without revoked clients or ticketless ones.
pub async fn requests_by_hour_and_expiring_tickets(store: &dyn Store) -> TestResult {
    store
        .record_batch(&[
            record(HOUR + 5, "a", "os", "activated"),
            record(HOUR + 50, "b", "os", "clock-skew"),
            record(HOUR + 60, "c", "os", "activated"),
            record(3 * HOUR, "d", "os", "count-insufficient"),
            record(10, "old", "os", "activated"),
        ])
        .await?;
    let hours = store.requests_by_hour(HOUR).await?;
    let flat: Vec<(i64, &str, u64)> = hours
        .iter()
        .map(|h| (h.hour, h.result.as_str(), h.n))
        .collect();
    assert_eq!(
        flat,
        vec![
            (HOUR, "activated", 2),
            (HOUR, "clock-skew", 1),
            (3 * HOUR, "count-insufficient", 1)
        ]
    );
    // A later start leaves the earlier hours out.
    let later = store.requests_by_hour(2 * HOUR).await?;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].hour, 3 * HOUR);

    store.set_revoked("c", true, None, 4 * HOUR).await?;
    let expiring = store
        .expiring_tickets(0, HOUR + 10 * DAY_SECS + 100, 10)
        .await?;
    let ids: Vec<&str> = expiring.iter().map(|c| c.client_id.as_str()).collect();
    // Soonest first; c is revoked; b and d hold no ticket.
    assert_eq!(ids, vec!["old", "a"]);
    let first = store.expiring_tickets(0, i64::MAX, 1).await?;
    assert_eq!(first.len(), 1);
    assert!(
        store
            .expiring_tickets(20 * DAY_SECS, i64::MAX, 10)
            .await?
            .is_empty()
    );
    Ok(())
}
