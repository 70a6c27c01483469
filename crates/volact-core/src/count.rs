//! The count: distinct clients that asked within the count window, per application.
//!
//! Kept as an index in memory so one activation costs O(log n) whatever the number of
//! clients: a map from client to its last counted time, and the same pairs ordered by time
//! so clients that fell out of the window are dropped from the front without a scan.

use std::collections::{BTreeSet, HashMap};

/// A client id as 128 bits (the UUID's value), compact enough for millions in memory.
pub type ClientKey = u128;

/// A [`ClientKey`] as the index stores it: two 64-bit halves, aligned to 8 bytes where a
/// `u128` is aligned to 16, so an entry of the map and of the time order is 24 bytes
/// instead of 32 (with a million clients, about 25 MB less).
type Key = [u64; 2];

#[allow(clippy::cast_possible_truncation)]
fn key(client: ClientKey) -> Key {
    [(client >> 64) as u64, client as u64]
}

#[derive(Debug, Default, Clone)]
struct ApplicationCount {
    last: HashMap<Key, i64>,
    by_time: BTreeSet<(i64, Key)>,
}

impl ApplicationCount {
    fn expire(&mut self, oldest: i64) {
        while let Some(&(t, c)) = self.by_time.first() {
            if t >= oldest {
                break;
            }
            self.by_time.pop_first();
            self.last.remove(&c);
        }
    }

    fn remove(&mut self, client: Key) -> bool {
        match self.last.remove(&client) {
            Some(t) => {
                self.by_time.remove(&(t, client));
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

    fn oldest(&self, now: i64) -> i64 {
        now.saturating_sub(self.window_secs)
    }

    /// Records that `client` asked for a product of `application` at `at` and returns the
    /// application's count, this client included. A client counts in one application at
    /// a time: asking for another application's product moves it.
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
        let at = at.max(app.last.get(&client).copied().unwrap_or(i64::MIN));
        app.remove(client);
        app.last.insert(client, at);
        app.by_time.insert((at, client));
        app.expire(oldest);
        u32::try_from(app.last.len()).unwrap_or(u32::MAX)
    }

    /// Loads a stored client without answering (start-up). Keeps the later time if the
    /// client is already present.
    pub fn load(&mut self, application: &str, client: ClientKey, last_counted: i64) {
        let client = key(client);
        let app = self
            .applications
            .entry(application.to_string())
            .or_default();
        if let Some(&t) = app.last.get(&client) {
            if t >= last_counted {
                return;
            }
            app.by_time.remove(&(t, client));
        }
        app.last.insert(client, last_counted);
        app.by_time.insert((last_counted, client));
    }

    /// Loads many stored clients of one application at once (start-up): much faster than
    /// [`CountIndex::load`] one by one into an empty application, since the time order is
    /// built from one sort instead of a million tree insertions. Same result as loading
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
            let t = app.last.entry(key(client)).or_insert(at);
            *t = (*t).max(at);
        }
        app.by_time = app.last.iter().map(|(&c, &t)| (t, c)).collect();
    }

    /// The count of `application` at `now`.
    pub fn count(&mut self, application: &str, now: i64) -> u32 {
        let oldest = self.oldest(now);
        match self.applications.get_mut(application) {
            Some(app) => {
                app.expire(oldest);
                u32::try_from(app.last.len()).unwrap_or(u32::MAX)
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
            .is_some_and(|&t| t >= oldest)
    }

    /// Whether `client` counts in any application at `now`.
    pub fn contains_anywhere(&self, client: ClientKey, now: i64) -> bool {
        let client = key(client);
        let oldest = self.oldest(now);
        self.applications
            .values()
            .any(|a| a.last.get(&client).is_some_and(|&t| t >= oldest))
    }

    /// Distinct clients counted across all applications at `now` (seats in use).
    pub fn total(&mut self, now: i64) -> u64 {
        let oldest = self.oldest(now);
        self.applications
            .values_mut()
            .map(|a| {
                a.expire(oldest);
                a.last.len() as u64
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
                (
                    name.clone(),
                    u32::try_from(a.last.len()).unwrap_or(u32::MAX),
                )
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
    fn moving_and_removing() {
        let mut idx = CountIndex::new(30 * DAY);
        idx.observe("os", 1, 0);
        idx.observe("office", 1, 5);
        assert_eq!(idx.count("os", 5), 0);
        assert_eq!(idx.count("office", 5), 1);
        assert!(idx.remove(1));
        assert_eq!(idx.count("office", 5), 0);
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
