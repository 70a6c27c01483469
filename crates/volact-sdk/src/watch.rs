//! Change notices: callbacks and channels that receive each check that differs from the
//! one before.

use crate::check::Check;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

/// A callback registered with [`License::on_change`](crate::License::on_change).
pub(crate) type Callback = std::sync::Arc<dyn Fn(&Check) + Send + Sync>;

#[derive(Clone)]
enum Watcher {
    Callback(Callback),
    Channel(Sender<Check>),
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    watchers: Vec<(u64, Watcher)>,
    last: Option<Check>,
}

/// The watchers of one licence and the last check they were told of.
#[derive(Default)]
pub(crate) struct Watchers {
    registry: Mutex<Registry>,
}

impl Watchers {
    pub(crate) fn add_callback(&self, f: Callback) -> u64 {
        self.add(Watcher::Callback(f))
    }

    pub(crate) fn add_channel(&self) -> Receiver<Check> {
        let (tx, rx) = channel();
        self.add(Watcher::Channel(tx));
        rx
    }

    fn add(&self, watcher: Watcher) -> u64 {
        let Ok(mut registry) = self.registry.lock() else {
            return 0;
        };
        registry.next_id += 1;
        let id = registry.next_id;
        registry.watchers.push((id, watcher));
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.watchers.retain(|(i, _)| *i != id);
        }
    }

    /// Tells every watcher of `check` when it differs from the last check seen. The first
    /// check seen is a change too (from nothing known). Watchers are called outside the
    /// lock, so a callback may call [`License::check`](crate::License::check).
    pub(crate) fn observe(&self, check: &Check) {
        let watchers = {
            let Ok(mut registry) = self.registry.lock() else {
                return;
            };
            if registry
                .last
                .as_ref()
                .is_some_and(|l| !check.differs_from(l))
            {
                return;
            }
            registry.last = Some(check.clone());
            registry.watchers.clone()
        };
        let mut gone = Vec::new();
        for (id, watcher) in watchers {
            match watcher {
                Watcher::Channel(tx) => {
                    if tx.send(check.clone()).is_err() {
                        gone.push(id);
                    }
                }
                Watcher::Callback(f) => {
                    // A callback that panics must not take the licence down with it, nor
                    // stop the others being told.
                    let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(check)));
                    if told.is_err() {
                        tracing::warn!("a licence change callback panicked");
                    }
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
    }
}
