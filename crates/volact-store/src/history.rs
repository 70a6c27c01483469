//! What the dashboard charts: the count as it stood on past days, requests per hour, and
//! tickets about to end; plus the backend-independent sweep that turns counted requests
//! into a daily count series.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds in a UTC day.
pub const DAY_SECS: i64 = 86_400;

/// Result codes of requests that count: the host counted the client and answered with a
/// ticket or with "not yet". Every other result is a refusal before counting. The audit
/// log keeps the result but not the `counted` flag, so history is derived from these.
pub const COUNTED_RESULTS: [&str; 2] = ["activated", "count-insufficient"];

/// The count of each application at the end of each of a run of days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountHistory {
    /// Start of each UTC day (Unix seconds), oldest first.
    pub days: Vec<i64>,
    /// One series per application that counted anyone in the period, by application id.
    pub series: Vec<CountSeries>,
    /// How many of the first days may show too low a count, because audit events they
    /// depend on were already pruned (0 when the log reaches back far enough).
    pub partial_days: usize,
}

/// One application's daily counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountSeries {
    /// Application id.
    pub application: String,
    /// The count on each day of [`CountHistory::days`].
    pub counts: Vec<u64>,
}

/// Requests of one result within one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourlyRequests {
    /// Start of the hour (Unix seconds).
    pub hour: i64,
    /// Result code.
    pub result: String,
    /// Number of requests.
    pub n: u64,
}

/// A counted request of a client, as the sweep needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedAt {
    /// Client id.
    pub client_id: String,
    /// The application the client counts in.
    pub application: String,
    /// When the request was counted (Unix seconds).
    pub at: i64,
}

/// The moments at which each day's count is taken: the last second of each of `days` UTC
/// days ending with the one holding `until`, and `until` itself for that last day.
pub fn sample_points(until: i64, days: u32) -> (Vec<i64>, Vec<i64>) {
    let today = until.div_euclid(DAY_SECS) * DAY_SECS;
    let starts: Vec<i64> = (0..i64::from(days))
        .rev()
        .map(|back| today - back * DAY_SECS)
        .collect();
    let samples = starts
        .iter()
        .map(|&start| (start + DAY_SECS - 1).min(until))
        .collect();
    (starts, samples)
}

/// Counts, for each sample time `E`, the distinct clients of each application that have a
/// counted request at some `t` with `E - window_secs <= t <= E` — the rule of the host's
/// live count (`volact_core::count::counts`, which the test below replays). `counted` may hold several requests per client, in any order. Each client
/// contributes one interval per run of overlapping `[t, t + window]`, added to a
/// difference array, so the cost is O(requests log requests + days).
pub fn sweep(mut counted: Vec<CountedAt>, samples: &[i64], window_secs: i64) -> Vec<CountSeries> {
    counted.sort_by(|a, b| (&a.client_id, a.at).cmp(&(&b.client_id, b.at)));
    let mut diffs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut add = |application: &str, from: i64, to: i64| {
        // Samples are increasing: the counted ones are those within [from, to].
        let lo = samples.partition_point(|&e| e < from);
        let hi = samples.partition_point(|&e| e <= to);
        if lo < hi {
            let diff = diffs
                .entry(application.to_owned())
                .or_insert_with(|| vec![0; samples.len() + 1]);
            diff[lo] += 1;
            diff[hi] -= 1;
        }
    };
    let mut run: Option<(&str, &str, i64, i64)> = None;
    for c in &counted {
        let end = c.at.saturating_add(window_secs);
        run = match run {
            Some((client, app, from, to)) if client == c.client_id && c.at <= to => {
                Some((client, app, from, to.max(end)))
            }
            Some((_, app, from, to)) => {
                add(app, from, to);
                Some((&c.client_id, &c.application, c.at, end))
            }
            None => Some((&c.client_id, &c.application, c.at, end)),
        };
    }
    if let Some((_, app, from, to)) = run {
        add(app, from, to);
    }
    diffs
        .into_iter()
        .map(|(application, diff)| {
            let mut level = 0i64;
            let counts = diff
                .iter()
                .take(samples.len())
                .map(|d| {
                    level += d;
                    u64::try_from(level).unwrap_or(0)
                })
                .collect();
            CountSeries {
                application,
                counts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(client: &str, application: &str, at: i64) -> CountedAt {
        CountedAt {
            client_id: client.into(),
            application: application.into(),
            at,
        }
    }

    #[test]
    fn samples_are_day_ends_and_now() {
        let (starts, samples) = sample_points(3 * DAY_SECS + 100, 3);
        assert_eq!(starts, vec![DAY_SECS, 2 * DAY_SECS, 3 * DAY_SECS]);
        assert_eq!(
            samples,
            vec![2 * DAY_SECS - 1, 3 * DAY_SECS - 1, 3 * DAY_SECS + 100]
        );
    }

    #[test]
    fn sweep_matches_a_brute_force_count() {
        let window = 3 * DAY_SECS;
        let (_, samples) = sample_points(20 * DAY_SECS + 5, 15);
        let requests = vec![
            at("a", "os", 6 * DAY_SECS + 10),
            at("a", "os", 7 * DAY_SECS),
            at("a", "os", 15 * DAY_SECS),
            at("b", "os", 9 * DAY_SECS - 1),
            at("c", "office", 20 * DAY_SECS + 5),
            at("c", "office", 2 * DAY_SECS),
            at("d", "os", 20 * DAY_SECS + 6),
        ];
        let series = sweep(requests.clone(), &samples, window);
        for s in &series {
            for (i, &e) in samples.iter().enumerate() {
                let mut clients: Vec<&str> = requests
                    .iter()
                    .filter(|r| {
                        r.application == s.application
                            && r.at <= e
                            && volact_core::count::counts(
                                false,
                                Some(r.at),
                                volact_core::count::window_start(e, window),
                            )
                    })
                    .map(|r| r.client_id.as_str())
                    .collect();
                clients.dedup();
                assert_eq!(
                    s.counts[i],
                    clients.len() as u64,
                    "{} day {i}",
                    s.application
                );
            }
        }
        let os = series
            .iter()
            .find(|s| s.application == "os")
            .map(|s| s.counts.clone());
        // Days 6..=20: a counts on days 6-9 and 15-17, b on days 8-11; d asked after "now".
        assert_eq!(os, Some(vec![1, 1, 2, 2, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]));
    }
}
