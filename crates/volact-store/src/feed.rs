//! What a store shared by several hosts offers their counts: a feed of the count's
//! changes made by any host, and seat holds that keep a seat cap exact across hosts.
//!
//! Each host keeps its own in-memory view of the count (answering from memory keeps
//! the request path free of database round trips) and follows the feed to learn of the
//! other hosts' clients and revocations. A view may lag the other hosts by one refresh;
//! the seat cap may not lag at all, so a host that would admit a client it does not
//! count yet while its certificate caps seats first holds a seat in the store, where all
//! hosts take their holds under one lock.

use async_trait::async_trait;

use crate::StoreError;

/// Where a reader of the feed stands. Opaque: only the store that handed it out reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition(pub u64);

/// One client as a host committed it: enough to bring a count's view up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountChange {
    /// The client.
    pub client_id: String,
    /// The application it last counted in.
    pub application: String,
    /// Its last counted request (Unix seconds), if it ever counted.
    pub last_counted: Option<i64>,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// The changes since a position, and where to read from next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// Clients changed since the position asked for (some may be repeated from an
    /// earlier page: applying a change twice is harmless).
    pub changes: Vec<CountChange>,
    /// Where to ask from next.
    pub next: FeedPosition,
    /// Whether the page was cut short: ask again at once for the rest.
    pub more: bool,
}

/// The answer to a seat hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatHold {
    /// The client holds a seat (or already counted): `in_use` seats were taken by other
    /// clients when it was granted, fewer than the cap.
    Held {
        /// Seats taken by other clients.
        in_use: u64,
    },
    /// Every seat is taken.
    Full {
        /// Seats taken.
        in_use: u64,
    },
}

/// The feed of a store that several hosts share (see the module documentation).
#[async_trait]
pub trait CountFeed: Send + Sync + 'static {
    /// The position now: every change committed before it is visible to a read that
    /// follows, so a host takes it before loading its count and follows from there.
    async fn position(&self) -> Result<FeedPosition, StoreError>;

    /// The clients changed at or after `from` (every one committed since `from` was
    /// handed out, possibly some before), and the position to ask from next.
    async fn changes(&self, from: FeedPosition) -> Result<FeedPage, StoreError>;

    /// Holds a seat for `client_id` unless `cap` seats are already taken by other
    /// clients: the distinct clients not revoked whose last counted request is at or
    /// after `since`, and the holds of other hosts' requests not yet recorded. Holds
    /// from every host are decided one at a time. A hold lasts until the client's
    /// record is stored (it then counts as a client) or a minute passes.
    async fn hold_seat(
        &self,
        client_id: &str,
        since: i64,
        cap: u64,
    ) -> Result<SeatHold, StoreError>;

    /// Gives back a seat held for a request that was then refused.
    async fn release_seat(&self, client_id: &str) -> Result<(), StoreError>;
}
