//! The count of a host whose store other hosts share: this host's own in-memory view
//! ([`MemoryCount`]), loaded from the store at start and kept up to date by following the
//! store's feed of the count's changes ([`CountFeed`]) every [`REFRESH`].
//!
//! Why a followed view rather than a query per request: the rule that needs every host's
//! latest word at once is the seat cap, and only for clients not counted yet; the engine
//! holds those seats in the store (see `Engine::activate`). Everything else may lag other
//! hosts by one refresh, which the count's guarantee allows (docs/HIGH-AVAILABILITY.md):
//! a host answers with a count that misses other hosts' brand-new clients for at most
//! [`REFRESH`] plus a read, never one below its own acknowledged requests (those enter the
//! view as they are decided), and a revocation made on any host reaches every host's view
//! within the same delay. Requests are answered from memory, as on one host, and each
//! host reads the database once per refresh however busy it is.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use volact_core::count::ClientKey;
use volact_store::count::{ClientView, Count, CountError, CountQuery, Effect, MemoryCount};
use volact_store::feed::{CountFeed, FeedPosition};
use volact_store::{Store, StoreError, StoreErrorKind};

/// How often a host reads the other hosts' changes.
pub const REFRESH: Duration = Duration::from_millis(250);

/// Pages read in one refresh before the next tick takes over, so a host catching up on a
/// long outage does not hold its refresh forever.
const MAX_PAGES: usize = 50;

/// A count shared with the other hosts of the store (see the module documentation).
pub struct SharedCount {
    local: MemoryCount,
    feed: Arc<dyn CountFeed>,
    position: tokio::sync::Mutex<FeedPosition>,
    /// When the feed was last read in full.
    last_refresh: Mutex<Instant>,
}

fn count_failed(e: CountError) -> StoreError {
    StoreError::new(StoreErrorKind::Internal, e.to_string())
}

impl SharedCount {
    /// The count as the store holds it at `now` (Unix seconds), positioned on the feed
    /// before it was read, so nothing committed meanwhile is missed.
    pub async fn load(
        store: &dyn Store,
        feed: Arc<dyn CountFeed>,
        window_secs: i64,
        now: i64,
    ) -> Result<Arc<SharedCount>, StoreError> {
        let position = feed.position().await?;
        let local = MemoryCount::load(store, window_secs, now).await?;
        Ok(Arc::new(SharedCount {
            local,
            feed,
            position: tokio::sync::Mutex::new(position),
            last_refresh: Mutex::new(Instant::now()),
        }))
    }

    /// Reads the feed from where the view stands and applies every change; returns how
    /// many were applied. The position moves only past changes applied.
    pub async fn refresh(&self) -> Result<u64, StoreError> {
        let applied = self.read().await?;
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Instant::now();
        }
        Ok(applied)
    }

    async fn read(&self) -> Result<u64, StoreError> {
        let mut position = self.position.lock().await;
        let mut applied = 0;
        for _ in 0..MAX_PAGES {
            let page = self.feed.changes(*position).await?;
            for change in &page.changes {
                self.local.apply(change).map_err(count_failed)?;
            }
            applied += page.changes.len() as u64;
            *position = page.next;
            if !page.more {
                break;
            }
        }
        Ok(applied)
    }

    /// Follows the feed every [`REFRESH`] until the count is dropped (the host stops).
    /// A failed read is logged once per outage and retried on the next tick: the view
    /// keeps answering, and writes fail on their own while the store is down.
    pub fn follow(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<SharedCount> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(count) = weak.upgrade() else { return };
                match count.refresh().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("the shared count follows the store again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "cannot read the other hosts' changes to the count: {e}; this host answers from its own view until the store is back"
                        );
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

impl Count for SharedCount {
    fn decide(
        &self,
        query: &CountQuery<'_>,
        decide: &mut dyn FnMut(&ClientView) -> Effect,
    ) -> Result<Effect, CountError> {
        self.local.decide(query, decide)
    }

    fn counts_anywhere(&self, client: ClientKey, at: i64) -> Result<bool, CountError> {
        self.local.counts_anywhere(client, at)
    }

    fn counts(&self, at: i64) -> Result<Vec<(String, u32)>, CountError> {
        self.local.counts(at)
    }

    fn seats_used(&self, at: i64) -> Result<u64, CountError> {
        self.local.seats_used(at)
    }

    fn revoke(&self, client: ClientKey) -> Result<(), CountError> {
        self.local.revoke(client)
    }

    fn unrevoke(&self, client: ClientKey) -> Result<(), CountError> {
        self.local.unrevoke(client)
    }

    fn is_revoked(&self, client: ClientKey) -> Result<bool, CountError> {
        self.local.is_revoked(client)
    }

    fn revoked(&self) -> Result<Vec<ClientKey>, CountError> {
        self.local.revoked()
    }

    fn feed(&self) -> Option<Arc<dyn CountFeed>> {
        Some(self.feed.clone())
    }

    fn feed_age(&self) -> Option<Duration> {
        self.last_refresh.lock().ok().map(|t| t.elapsed())
    }
}
