//! The count behind a trait: which clients count in which application, which are revoked,
//! and how many seats are in use, so the engine does not care whether the count lives in
//! this process ([`MemoryCount`], the embedded default) or in a database shared by
//! several hosts.
//!
//! The engine never reads the count and then writes it in two steps: it hands
//! [`Count::decide`] a closure that receives the view of one client and application,
//! decides with the pure rule (`volact_core::decide::decide`), queues the request's record,
//! and returns the [`Effect`] to apply. The implementation runs the closure with the count
//! held for that client: [`MemoryCount`] under its lock, so two requests cannot both take
//! the last seat and records reach the writer in the order their counts were decided; a
//! shared database inside the transaction that reads the view, applies the effect and
//! records the request, committed once the closure returns.
//!
//! The method is synchronous on purpose: the embedded count answers in well under a
//! microsecond and the engine's fast path stays free of a boxed future per request. A
//! count shared by several hosts (the engine's `SharedCount`) is the same in-memory
//! view kept up to date from the store's [`CountFeed`]; the one thing it cannot decide
//! from memory, a seat under a cap that other hosts fill too, the engine holds in the
//! store before the decision and hands over in [`CountQuery::seats_held`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use volact_core::count::{ClientKey, CountIndex};
use volact_core::decide::CountView;

use crate::feed::{CountChange, CountFeed};
use crate::{ClientFilter, Store, StoreError};

/// Which client and application a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct CountQuery<'a> {
    /// The client.
    pub client: ClientKey,
    /// The application of the requested product.
    pub application: &'a str,
    /// The client's id before a rearm, when the request names one: the view says whether
    /// it is revoked, so a rearm does not launder a revocation.
    pub previous: Option<ClientKey>,
    /// Whether the seats in use are needed (the host's certificate caps seats); counting
    /// them costs a pass over the applications, so they are read only then.
    pub seats: bool,
    /// The seats other clients held when the shared store granted or refused this
    /// client one ([`CountFeed::hold_seat`]): the decision uses it instead of this
    /// host's own total, which may lag the other hosts.
    pub seats_held: Option<u64>,
    /// The host's time (Unix seconds).
    pub at: i64,
}

/// What the count holds about a [`CountQuery`], read with the count held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientView {
    /// The view the pure decision takes.
    pub view: CountView,
    /// Whether [`CountQuery::previous`] names a revoked client.
    pub previous_revoked: bool,
}

/// What to do with the client once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Count the client in the query's application at the query's time (it moves there
    /// from any other application).
    Count,
    /// Leave the count as it was (a refusal).
    Leave,
}

/// The count failed: it cannot answer until the host restarts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the host's count is unavailable: {0}")]
pub struct CountError(pub String);

/// The count of distinct clients per application within the count window, the revoked
/// clients, and the seats in use. See the module documentation for how decisions run.
pub trait Count: Send + Sync + 'static {
    /// Reads the view of `query`, runs `decide` on it with the count held, and applies the
    /// effect it returns before anything else can read or change the count. `decide`
    /// runs exactly once when this returns `Ok`, and whatever it queues (the request's
    /// record) is queued before any later decision reads the count. Returns the effect.
    fn decide(
        &self,
        query: &CountQuery<'_>,
        decide: &mut dyn FnMut(&ClientView) -> Effect,
    ) -> Result<Effect, CountError>;

    /// Whether `client` counts in any application at `at`.
    fn counts_anywhere(&self, client: ClientKey, at: i64) -> Result<bool, CountError>;

    /// The count of every application at `at`, by application id.
    fn counts(&self, at: i64) -> Result<Vec<(String, u32)>, CountError>;

    /// Distinct clients counted across all applications at `at` (seats in use).
    fn seats_used(&self, at: i64) -> Result<u64, CountError>;

    /// Marks `client` revoked: it leaves the count at once and is refused from then on.
    fn revoke(&self, client: ClientKey) -> Result<(), CountError>;

    /// Lifts a revocation: the client counts again from its next request.
    fn unrevoke(&self, client: ClientKey) -> Result<(), CountError>;

    /// Whether `client` is revoked.
    fn is_revoked(&self, client: ClientKey) -> Result<bool, CountError>;

    /// Every revoked client.
    fn revoked(&self) -> Result<Vec<ClientKey>, CountError>;

    /// The store's feed when the count is shared with other hosts (seats are then held
    /// there before a decision); `None` for a count only this host keeps.
    fn feed(&self) -> Option<std::sync::Arc<dyn CountFeed>> {
        None
    }

    /// For a shared count, how long ago its view last caught up with the other hosts
    /// (a read of the feed that succeeded); `None` for a count only this host keeps.
    fn feed_age(&self) -> Option<std::time::Duration> {
        None
    }
}

struct State {
    index: CountIndex,
    revoked: HashSet<ClientKey>,
}

/// The embedded count: an in-memory [`CountIndex`] and the revoked clients under one
/// lock, loaded from the store when the host starts (the store keeps every request, so
/// nothing is lost when the process stops).
pub struct MemoryCount {
    state: Mutex<State>,
}

fn poisoned<T>(_: T) -> CountError {
    CountError("a thread failed while it held the count; restart the host".to_owned())
}

impl MemoryCount {
    /// An empty count with a count window of `window_secs`.
    pub fn new(window_secs: i64) -> MemoryCount {
        MemoryCount {
            state: Mutex::new(State {
                index: CountIndex::new(window_secs),
                revoked: HashSet::new(),
            }),
        }
    }

    /// The count as `store` holds it at `now` (Unix seconds): every client counted within
    /// the window of `window_secs`, and the revoked clients.
    pub async fn load(
        store: &dyn Store,
        window_secs: i64,
        now: i64,
    ) -> Result<MemoryCount, StoreError> {
        let mut index = CountIndex::new(window_secs);
        let since = volact_core::count::window_start(now, window_secs);
        // Streamed and bulk-loaded: a million stored clients must not become a million
        // Strings, nor a million tree insertions, before the host serves.
        let mut loaded: HashMap<String, Vec<(ClientKey, i64)>> = HashMap::new();
        store
            .visit_counted_clients(since, &mut |id, application, last_counted| {
                if let Some(key) = client_key(id) {
                    match loaded.get_mut(application) {
                        Some(v) => v.push((key, last_counted)),
                        None => {
                            loaded.insert(application.to_string(), vec![(key, last_counted)]);
                        }
                    }
                }
            })
            .await?;
        for (application, clients) in loaded {
            index.load_many(&application, clients);
        }
        let filter = ClientFilter {
            revoked: Some(true),
            ..ClientFilter::default()
        };
        let revoked = store
            .clients(&filter)
            .await?
            .iter()
            .filter_map(|c| client_key(&c.client_id))
            .collect();
        Ok(MemoryCount {
            state: Mutex::new(State { index, revoked }),
        })
    }
}

impl MemoryCount {
    /// Brings the view up to date with a client as another host committed it: a
    /// revocation (or its lifting) applies at once; a counted request applies unless
    /// this host has seen a later one of the client. Returns whether the client is known
    /// by a valid id.
    pub fn apply(&self, change: &CountChange) -> Result<bool, CountError> {
        let Some(client) = client_key(&change.client_id) else {
            return Ok(false);
        };
        let mut state = self.state.lock().map_err(poisoned)?;
        let State { index, revoked } = &mut *state;
        if change.revoked {
            if revoked.insert(client) {
                index.remove(client);
            }
            return Ok(true);
        }
        revoked.remove(&client);
        if let Some(at) = change.last_counted {
            index.merge(&change.application, client, at);
        }
        Ok(true)
    }
}

/// A stored client id as a [`ClientKey`], parsed as the engine parses request ids.
fn client_key(id: &str) -> Option<ClientKey> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

impl Count for MemoryCount {
    fn decide(
        &self,
        query: &CountQuery<'_>,
        decide: &mut dyn FnMut(&ClientView) -> Effect,
    ) -> Result<Effect, CountError> {
        let mut state = self.state.lock().map_err(poisoned)?;
        let State { index, revoked } = &mut *state;
        let (counted, counted_here, count) = index.view(query.application, query.client, query.at);
        let seats_used = match query.seats_held {
            Some(held) => held,
            None if query.seats => index.total(query.at),
            None => 0,
        };
        let held = ClientView {
            view: CountView {
                counted,
                counted_here,
                count,
                seats_used,
                revoked: revoked.contains(&query.client),
            },
            previous_revoked: query.previous.is_some_and(|p| revoked.contains(&p)),
        };
        let effect = decide(&held);
        if effect == Effect::Count {
            index.observe(query.application, query.client, query.at);
        }
        Ok(effect)
    }

    fn counts_anywhere(&self, client: ClientKey, at: i64) -> Result<bool, CountError> {
        let state = self.state.lock().map_err(poisoned)?;
        Ok(state.index.contains_anywhere(client, at))
    }

    fn counts(&self, at: i64) -> Result<Vec<(String, u32)>, CountError> {
        Ok(self.state.lock().map_err(poisoned)?.index.counts(at))
    }

    fn seats_used(&self, at: i64) -> Result<u64, CountError> {
        Ok(self.state.lock().map_err(poisoned)?.index.total(at))
    }

    fn revoke(&self, client: ClientKey) -> Result<(), CountError> {
        let mut state = self.state.lock().map_err(poisoned)?;
        state.revoked.insert(client);
        state.index.remove(client);
        Ok(())
    }

    fn unrevoke(&self, client: ClientKey) -> Result<(), CountError> {
        self.state.lock().map_err(poisoned)?.revoked.remove(&client);
        Ok(())
    }

    fn is_revoked(&self, client: ClientKey) -> Result<bool, CountError> {
        Ok(self
            .state
            .lock()
            .map_err(poisoned)?
            .revoked
            .contains(&client))
    }

    fn revoked(&self) -> Result<Vec<ClientKey>, CountError> {
        Ok(self
            .state
            .lock()
            .map_err(poisoned)?
            .revoked
            .iter()
            .copied()
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const DAY: i64 = 86_400;

    fn query(client: ClientKey, application: &str, at: i64) -> CountQuery<'_> {
        CountQuery {
            client,
            application,
            previous: None,
            seats: true,
            seats_held: None,
            at,
        }
    }

    #[test]
    fn the_view_is_what_the_decision_sees_and_the_effect_applies() {
        let count = MemoryCount::new(30 * DAY);
        let mut seen = Vec::new();
        for (client, app, effect) in [
            (1, "os", Effect::Count),
            (2, "os", Effect::Leave),
            (1, "os", Effect::Count),
            (3, "office", Effect::Count),
        ] {
            count
                .decide(&query(client, app, 10), &mut |v| {
                    seen.push(v.view);
                    effect
                })
                .unwrap();
        }
        assert_eq!(seen[0], CountView::default());
        assert_eq!(
            seen[1],
            CountView {
                count: 1,
                seats_used: 1,
                ..CountView::default()
            }
        );
        assert_eq!(
            seen[2],
            CountView {
                counted: true,
                counted_here: true,
                count: 1,
                seats_used: 1,
                revoked: false
            }
        );
        assert_eq!(
            seen[3],
            CountView {
                count: 0,
                seats_used: 1,
                ..CountView::default()
            }
        );
        assert_eq!(
            count.counts(10).unwrap(),
            vec![("office".into(), 1), ("os".into(), 1)]
        );
        assert_eq!(count.seats_used(10).unwrap(), 2);
    }

    #[test]
    fn revoking_leaves_the_count_and_shows_in_the_view() {
        let count = MemoryCount::new(30 * DAY);
        count
            .decide(&query(1, "os", 0), &mut |_| Effect::Count)
            .unwrap();
        count.revoke(1).unwrap();
        assert!(count.is_revoked(1).unwrap());
        assert!(!count.counts_anywhere(1, 0).unwrap());
        let mut q = query(2, "os", 0);
        q.previous = Some(1);
        let mut held = ClientView::default();
        count
            .decide(&q, &mut |v| {
                held = *v;
                Effect::Leave
            })
            .unwrap();
        assert!(held.previous_revoked && !held.view.revoked);
        assert_eq!(count.revoked().unwrap(), vec![1]);
        count.unrevoke(1).unwrap();
        assert!(!count.is_revoked(1).unwrap());
    }

    #[test]
    fn other_hosts_changes_apply_to_the_view() {
        let count = MemoryCount::new(30 * DAY);
        let id = |n: u128| uuid::Uuid::from_u128(n).hyphenated().to_string();
        let change = |n, revoked, last_counted| CountChange {
            client_id: id(n),
            application: "os".into(),
            last_counted,
            revoked,
        };
        assert!(count.apply(&change(1, false, Some(10))).unwrap());
        assert!(count.apply(&change(2, false, None)).unwrap());
        assert_eq!(count.counts(10).unwrap(), vec![("os".into(), 1)]);
        count.apply(&change(1, true, Some(10))).unwrap();
        assert!(count.is_revoked(1).unwrap());
        assert_eq!(count.counts(10).unwrap(), vec![("os".into(), 0)]);
        // Lifted elsewhere: counts again from its stored request.
        count.apply(&change(1, false, Some(10))).unwrap();
        assert!(!count.is_revoked(1).unwrap());
        assert!(count.counts_anywhere(1, 10).unwrap());
        let bad = CountChange {
            client_id: "not-a-uuid".into(),
            ..change(3, false, Some(10))
        };
        assert!(!count.apply(&bad).unwrap());
    }

    #[test]
    fn a_seat_held_in_a_shared_store_decides_instead_of_the_local_total() {
        let count = MemoryCount::new(30 * DAY);
        let mut seen = 0;
        let mut q = query(1, "os", 5);
        q.seats_held = Some(7);
        count
            .decide(&q, &mut |v| {
                seen = v.view.seats_used;
                Effect::Leave
            })
            .unwrap();
        assert_eq!(seen, 7);
    }

    #[test]
    fn two_threads_cannot_both_take_the_last_seat() {
        let count = Arc::new(MemoryCount::new(30 * DAY));
        let cap = 50u64;
        let threads: Vec<_> = (0..4u128)
            .map(|t| {
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut admitted = 0;
                    for i in 0..40u128 {
                        let effect = count
                            .decide(&query(t * 1000 + i + 1, "os", 5), &mut |v| {
                                if v.view.counted || v.view.seats_used < cap {
                                    Effect::Count
                                } else {
                                    Effect::Leave
                                }
                            })
                            .unwrap();
                        admitted += u64::from(effect == Effect::Count);
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, cap);
        assert_eq!(count.seats_used(5).unwrap(), cap);
    }
}
