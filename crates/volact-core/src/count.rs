//! The count: distinct clients that asked within the count window, per application.
//!
//! Kept as an index in memory so one activation costs O(log n) whatever the number of
//! clients: a map from client to its last counted time, and how many clients were last
//! counted at each second, so the clients that fell out of the window are subtracted
//! from the front without a scan. Clients that fell out stay in the map (their time
//! tells they no longer count) until they are as many as those that count, then they
//! are swept in one pass: a renewal only overwrites its client's time in place.

use std::collections::{BTreeMap, HashMap};

use crate::util::unix_u32;

/// The first second of the count window at `now`: a client last counted at or after it
/// counts.
pub const fn window_start(now: i64, window_secs: i64) -> i64 {
    now.saturating_sub(window_secs)
}

/// Whether a client counts: it is not revoked, and its last counted request (if any) is
/// at or after `window_start` (see [`window_start`]). So a client last counted exactly
/// one window ago (30 days by default) still counts during that second, and no longer
/// one second later. The one definition of "this client counts": the index below, the
/// inventory's states, the dashboard and the store's history follow it, and the store's
/// SQL is tested against it.
pub const fn counts(revoked: bool, last_counted: Option<i64>, window_start: i64) -> bool {
    !revoked
        && match last_counted {
            Some(t) => t >= window_start,
            None => false,
        }
}

/// A client id as 128 bits (the UUID's value), compact enough for millions in memory.
pub type ClientKey = u128;

/// A [`ClientKey`] as the index stores it: four 32-bit parts, aligned to 4 bytes where a
/// `u128` is aligned to 16, so with a [`Stamp`] an entry of the map is 20 bytes instead
/// of 32 (with a million clients, about 25 MB less).
type Key = [u32; 4];

#[allow(clippy::cast_possible_truncation)]
fn key(client: ClientKey) -> Key {
    [
        (client >> 96) as u32,
        (client >> 64) as u32,
        (client >> 32) as u32,
        client as u32,
    ]
}

/// A time as the index stores it: Unix seconds as `u32` (see [`unix_u32`]).
type Stamp = u32;

/// [`counts`] for a client the index holds (revoked clients are removed from it).
fn stamp_counts(t: Stamp, oldest: Stamp) -> bool {
    counts(false, Some(i64::from(t)), i64::from(oldest))
}

/// Stale entries below which no sweep is worth its pass over the map.
const SWEEP_FLOOR: usize = 4096;

#[derive(Debug, Clone, Default)]
struct ApplicationCount {
    /// Every client counted since the last sweep, with its last counted time; those
    /// before `expired` no longer count.
    last: HashMap<Key, Stamp>,
    /// Clients per last counted time, for the times from `expired` on. Seconds shared by
    /// many clients (a busy host) cost one entry; a renewal moves one client between
    /// two entries instead of moving a 24-byte key in an ordered set, which with a
    /// million renewing clients kept a second copy of every key.
    by_time: BTreeMap<Stamp, u32>,
    /// Clients whose time is from `expired` on: the count.
    live: usize,
    /// Times before this were dropped from `by_time`; it only moves forward.
    expired: Stamp,
}

impl ApplicationCount {
    fn count(&self) -> u32 {
        u32::try_from(self.live).unwrap_or(u32::MAX)
    }

    /// Adds a client counted at `t` to `by_time`, if `t` still counts.
    fn enter(&mut self, t: Stamp) {
        if stamp_counts(t, self.expired) {
            *self.by_time.entry(t).or_insert(0) += 1;
            self.live += 1;
        }
    }

    /// Takes a client counted at `t` out of `by_time`, if it was there.
    fn leave(&mut self, t: Stamp) {
        if !stamp_counts(t, self.expired) {
            return;
        }
        if let Some(n) = self.by_time.get_mut(&t) {
            *n -= 1;
            if *n == 0 {
                self.by_time.remove(&t);
            }
            self.live -= 1;
        }
    }

    /// Sets `client`'s time to `at` unless it already has a later one.
    fn set(&mut self, client: Key, at: Stamp) {
        match self.last.get_mut(&client) {
            Some(t) if *t >= at => {}
            Some(t) => {
                let old = std::mem::replace(t, at);
                self.leave(old);
                self.enter(at);
            }
            None => {
                self.last.insert(client, at);
                self.enter(at);
            }
        }
    }

    fn expire(&mut self, oldest: Stamp) {
        if oldest <= self.expired {
            return;
        }
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            self.live -= *entry.get() as usize;
            entry.remove();
        }
        self.expired = oldest;
        // Amortised: a sweep follows at least as many expiries as it removes entries.
        let stale = self.last.len() - self.live;
        if stale >= SWEEP_FLOOR && stale >= self.live {
            self.last.retain(|_, t| stamp_counts(*t, oldest));
            self.last.shrink_to_fit();
        }
    }

    fn remove(&mut self, client: Key) -> bool {
        match self.last.remove(&client) {
            Some(t) => {
                self.leave(t);
                true
            }
            None => false,
        }
    }
}

/// Distinct clients per application within a sliding window. Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct CountIndex {
    window_secs: i64,
    applications: HashMap<String, ApplicationCount>,
}

impl CountIndex {
    /// An empty index with a count window of `window_secs`.
    pub fn new(window_secs: i64) -> CountIndex {
        CountIndex {
            window_secs,
            applications: HashMap::new(),
        }
    }

    fn oldest(&self, now: i64) -> Stamp {
        unix_u32(window_start(now, self.window_secs))
    }

    /// Records that `client` asked for a product of `application` at `at` and returns the
    /// application's count, this client included. A client counts in one application at
    /// a time: asking for another application's product moves it. Only a request dated
    /// before the window of a later one already seen (a clock set back by more than the
    /// window) is stored without counting.
    pub fn observe(&mut self, application: &str, client: ClientKey, at: i64) -> u32 {
        let client = key(client);
        let oldest = self.oldest(at);
        if !self
            .applications
            .get(application)
            .is_some_and(|a| a.last.contains_key(&client))
        {
            for app in self.applications.values_mut() {
                if app.remove(client) {
                    break;
                }
            }
        }
        let app = match self.applications.get_mut(application) {
            Some(app) => app,
            None => self
                .applications
                .entry(application.to_string())
                .or_default(),
        };
        // A late request (older than one already seen) must not move a client backwards.
        app.set(client, unix_u32(at));
        app.expire(oldest);
        app.count()
    }

    /// Brings in a client counted at `at` by another host sharing the count: like
    /// [`CountIndex::observe`], except that a later time already known for the client,
    /// in any application, wins (the other host's record may be older than this host's
    /// latest answer, which is not stored yet).
    pub fn merge(&mut self, application: &str, client: ClientKey, at: i64) {
        let k = key(client);
        let t = unix_u32(at);
        if self
            .applications
            .values()
            .any(|a| a.last.get(&k).is_some_and(|&known| known >= t))
        {
            return;
        }
        self.observe(application, client, at);
    }

    /// Loads a stored client without answering (start-up). Keeps the later time if the
    /// client is already present.
    pub fn load(&mut self, application: &str, client: ClientKey, last_counted: i64) {
        let client = key(client);
        let app = self
            .applications
            .entry(application.to_string())
            .or_default();
        app.set(client, unix_u32(last_counted));
    }

    /// Loads many stored clients of one application at once (start-up): faster than
    /// [`CountIndex::load`] one by one into an empty application, since the map is sized
    /// once and the clients per second are built from one sort. Same result as loading
    /// each in turn.
    pub fn load_many(&mut self, application: &str, clients: Vec<(ClientKey, i64)>) {
        let app = self
            .applications
            .entry(application.to_string())
            .or_default();
        if !app.last.is_empty() {
            for (client, at) in clients {
                self.load(application, client, at);
            }
            return;
        }
        app.last.reserve(clients.len());
        for (client, at) in clients {
            let t = app.last.entry(key(client)).or_insert(unix_u32(at));
            *t = (*t).max(unix_u32(at));
        }
        let expired = app.expired;
        let mut times: Vec<Stamp> = app
            .last
            .values()
            .copied()
            .filter(|&t| stamp_counts(t, expired))
            .collect();
        times.sort_unstable();
        app.live = times.len();
        let mut by_time = Vec::new();
        for t in times {
            match by_time.last_mut() {
                Some((last, n)) if *last == t => *n += 1,
                _ => by_time.push((t, 1u32)),
            }
        }
        app.by_time = by_time.into_iter().collect();
    }

    /// The count of `application` at `now`.
    pub fn count(&mut self, application: &str, now: i64) -> u32 {
        let oldest = self.oldest(now);
        match self.applications.get_mut(application) {
            Some(app) => {
                app.expire(oldest);
                app.count()
            }
            None => 0,
        }
    }

    /// Whether `client` counts in `application` at `now`.
    pub fn contains(&self, application: &str, client: ClientKey, now: i64) -> bool {
        let client = key(client);
        let oldest = self.oldest(now);
        self.applications
            .get(application)
            .and_then(|a| a.last.get(&client))
            .is_some_and(|&t| stamp_counts(t, oldest))
    }

    /// Whether `client` counts in any application at `now`.
    pub fn contains_anywhere(&self, client: ClientKey, now: i64) -> bool {
        let client = key(client);
        let oldest = self.oldest(now);
        self.applications.values().any(|a| {
            a.last
                .get(&client)
                .is_some_and(|&t| stamp_counts(t, oldest))
        })
    }

    /// What a request of `client` for a product of `application` at `now` finds, in one
    /// pass: whether the client counts anywhere, whether it counts in `application`, and
    /// `application`'s count (this client included when it counts there). Observing the
    /// client next returns that count, plus one unless it already counted there — except
    /// after the host's clock went back by more than a window while it ran, when the
    /// index stores the client without counting it (see [`CountIndex::observe`]) and
    /// the answer's count is one more than the index's until the clock catches up.
    pub fn view(&mut self, application: &str, client: ClientKey, now: i64) -> (bool, bool, u32) {
        let client = key(client);
        let oldest = self.oldest(now);
        let mut anywhere = false;
        let mut here = false;
        let mut count = 0;
        for (name, app) in &mut self.applications {
            let counts = app
                .last
                .get(&client)
                .is_some_and(|&t| stamp_counts(t, oldest));
            anywhere |= counts;
            if name == application {
                app.expire(oldest);
                here = counts;
                count = app.count();
            }
        }
        (anywhere, here, count)
    }

    /// Distinct clients counted across all applications at `now` (seats in use).
    pub fn total(&mut self, now: i64) -> u64 {
        let oldest = self.oldest(now);
        self.applications
            .values_mut()
            .map(|a| {
                a.expire(oldest);
                a.live as u64
            })
            .sum()
    }

    /// Drops a client from every count (revocation).
    pub fn remove(&mut self, client: ClientKey) -> bool {
        let client = key(client);
        self.applications.values_mut().any(|a| a.remove(client))
    }

    /// Counts of every application at `now`.
    pub fn counts(&mut self, now: i64) -> Vec<(String, u32)> {
        let oldest = self.oldest(now);
        let mut out: Vec<(String, u32)> = self
            .applications
            .iter_mut()
            .map(|(name, a)| {
                a.expire(oldest);
                (name.clone(), a.count())
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap as Map;

    const DAY: i64 = 86_400;

    #[test]
    fn distinct_clients_within_the_window() {
        let mut idx = CountIndex::new(30 * DAY);
        assert_eq!(idx.observe("os", 1, 0), 1);
        assert_eq!(idx.observe("os", 1, 10), 1);
        assert_eq!(idx.observe("os", 2, 20), 2);
        assert_eq!(idx.observe("office", 3, 20), 1);
        assert_eq!(idx.count("os", 30 * DAY), 2);
        // Client 1 was last seen at 10: gone once 30 days have passed since.
        assert_eq!(idx.count("os", 30 * DAY + 11), 1);
        assert_eq!(idx.count("os", 30 * DAY + 21), 0);
        assert_eq!(idx.total(30 * DAY + 21), 0);
    }

    #[test]
    fn loading_many_equals_loading_each() {
        let items: Vec<(ClientKey, i64)> = (0..500u128)
            .map(|c| (c % 300, (c * 7919 % 1000) as i64))
            .collect();
        let mut one = CountIndex::new(DAY);
        for &(c, t) in &items {
            one.load("os", c, t);
        }
        let mut many = CountIndex::new(DAY);
        many.load_many("os", items.clone());
        for now in [0, 500, 999, DAY + 400] {
            assert_eq!(one.clone().count("os", now), many.clone().count("os", now));
        }
        many.load_many("os", items);
        assert_eq!(many.count("os", 0), 300);
    }

    #[test]
    fn another_hosts_older_record_does_not_move_a_client_back() {
        let mut idx = CountIndex::new(30 * DAY);
        idx.observe("os", 1, 100);
        // Stored by another host before this host's later answer: ignored, in any
        // application.
        idx.merge("office", 1, 90);
        idx.merge("os", 1, 90);
        assert_eq!(idx.counts(100), vec![("os".into(), 1)]);
        // A later one moves it, and a new client enters.
        idx.merge("office", 1, 110);
        idx.merge("os", 2, 105);
        assert_eq!(
            idx.counts(110),
            vec![("office".into(), 1), ("os".into(), 1)]
        );
    }

    #[test]
    fn moving_and_removing() {
        let mut idx = CountIndex::new(30 * DAY);
        idx.observe("os", 1, 0);
        idx.observe("office", 1, 5);
        assert_eq!(idx.count("os", 5), 0);
        assert_eq!(idx.count("office", 5), 1);
        assert!(idx.remove(1));
        assert_eq!(idx.count("office", 5), 0);
    }

    #[test]
    fn clients_out_of_the_window_are_swept_from_memory() {
        let mut idx = CountIndex::new(DAY);
        for c in 0..10_000u128 {
            idx.observe("os", c, c as i64);
        }
        // Fewer fell out than still count: not worth a sweep yet.
        assert_eq!(idx.count("os", DAY + 4_000), 6_000);
        assert_eq!(idx.applications["os"].last.len(), 10_000);
        assert_eq!(idx.observe("os", 20_000, 3 * DAY), 1);
        assert_eq!(idx.applications["os"].last.len(), 1);
        assert!(!idx.contains("os", 7, 3 * DAY));
        assert_eq!(idx.observe("os", 7, 3 * DAY + 1), 2);
        assert!(idx.contains("os", 7, 3 * DAY + 1));
    }

    proptest! {
        /// Requests in any order, moves, removals and reads: the index agrees with the
        /// definition computed by brute force, where each application's window start only
        /// moves forward and a late request never moves a client back.
        #[test]
        fn agrees_with_brute_force_in_any_order(ops in proptest::collection::vec((0u8..5, 0u128..20, 0i64..(90 * DAY)), 1..300)) {
            let window = 30 * DAY;
            let mut idx = CountIndex::new(window);
            let mut last: Map<u128, (u8, i64)> = Map::new();
            let mut start = [i64::MIN; 3];
            let count = |last: &Map<u128, (u8, i64)>, app: u8, start: i64| {
                last.values().filter(|(a, t)| *a == app && *t >= start).count() as u32
            };
            for (op, client, at) in ops {
                match op {
                    0..=2 => {
                        let t = match last.get(&client) {
                            Some(&(a, t)) if a == op => t.max(at),
                            _ => at,
                        };
                        last.insert(client, (op, t));
                        let s = &mut start[usize::from(op)];
                        *s = (*s).max(at - window);
                        prop_assert_eq!(idx.observe(&format!("app{op}"), client, at), count(&last, op, *s));
                    }
                    3 => {
                        let app = (client % 3) as u8;
                        // Reading an application never asked for keeps nothing.
                        let s = &mut start[usize::from(app)];
                        if *s != i64::MIN {
                            *s = (*s).max(at - window);
                        }
                        prop_assert_eq!(idx.count(&format!("app{app}"), at), count(&last, app, *s));
                    }
                    _ => {
                        prop_assert_eq!(idx.remove(client), last.remove(&client).is_some());
                    }
                }
                let now_start = at - window;
                let anywhere = last.get(&client).is_some_and(|&(_, t)| t >= now_start);
                prop_assert_eq!(idx.contains_anywhere(client, at), anywhere);
            }
        }
    }

    proptest! {
        /// The index agrees with the definition: distinct clients whose last request is
        /// within the window, computed by brute force.
        #[test]
        fn agrees_with_brute_force(ops in proptest::collection::vec((0u8..3, 0u128..20, 0i64..(90 * DAY)), 1..200)) {
            let window = 30 * DAY;
            let mut idx = CountIndex::new(window);
            let mut last: Map<u128, (u8, i64)> = Map::new();
            let mut now = 0;
            let mut sorted = ops.clone();
            sorted.sort_by_key(|o| o.2);
            for (app, client, at) in sorted {
                now = at;
                let name = format!("app{app}");
                let got = idx.observe(&name, client, at);
                last.insert(client, (app, at));
                let want = last.values().filter(|(a, t)| *a == app && *t >= at - window).count() as u32;
                prop_assert_eq!(got, want);
            }
            for app in 0u8..3 {
                let want = last.values().filter(|(a, t)| *a == app && *t >= now - window).count() as u32;
                prop_assert_eq!(idx.count(&format!("app{app}"), now), want);
            }
        }
    }
}

#[cfg(test)]
mod predicate_tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_client_counts_through_the_last_second_of_its_window() {
        let window = 30 * DAY;
        let now = 1_800_000_000;
        let start = window_start(now, window);
        assert!(
            counts(false, Some(now - window), start),
            "exactly 30 days ago"
        );
        assert!(
            !counts(false, Some(now - window - 1), start),
            "one second more"
        );
        assert!(counts(false, Some(now), start));
        assert!(!counts(true, Some(now), start), "revoked");
        assert!(!counts(false, None, start), "never counted");
        assert_eq!(window_start(i64::MIN + 1, window), i64::MIN);
        // The index follows the same boundary.
        let mut index = CountIndex::new(window);
        index.observe("os", 1, now - window);
        assert!(index.contains("os", 1, now));
        assert_eq!(index.view("os", 1, now), (true, true, 1));
        assert!(!index.contains("os", 1, now + 1));
        assert_eq!(index.view("os", 1, now + 1), (false, false, 0));
    }
}
