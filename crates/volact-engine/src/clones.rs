//! Cloned disk images: the same client id asking from different machines within a day.
//!
//! A disk image cloned after its setup key was installed carries the client id to every
//! copy, so the copies count as one machine and the count sticks — the most common KMS
//! support case. The engine remembers, per client, a hash of the machine name and
//! fingerprint of its latest request in a sharded in-memory map (O(1) per request, no
//! allocation once the client is known, no storage read), and raises a flag when they
//! change within [`CLONE_WINDOW_SECS`]. Flags are stored by a background task, off the
//! request path; a flag lost in a crash is raised again by the clones' next requests.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
pub use volact_core::clones::{CLONE_WINDOW_SECS, CloneReason};
use volact_core::clones::{Sighting, judge};
use volact_core::count::ClientKey;
use volact_core::util::unix_u32;
use volact_store::{CloneSighting, EventFilter, Store};

/// Independent locks, so concurrent requests of different clients rarely wait.
const SHARDS: usize = 16;

/// Flags waiting to be stored; past this, flags are dropped (and raised again later).
const FLAG_QUEUE: usize = 1024;

/// A [`Sighting`] as the tracker keeps it, in 16 bytes instead of 32: a host with a
/// million clients renewing within a day keeps a million of them. Times are Unix seconds
/// as `u32` (to 2106; earlier or later times are clamped, which only a wildly wrong host
/// clock would meet), hashes are compared for equality only, and 32 bits of them leave a
/// chance in four billion that another machine passes for the same one.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: u32,
    /// 0: never flagged.
    reported: u32,
    name: u32,
    /// 0: no fingerprint sent.
    fingerprint: u32,
}

impl Seen {
    fn pack(s: &Sighting) -> Seen {
        Seen {
            at: unix_u32(s.at),
            reported: if s.reported == i64::MIN {
                0
            } else {
                unix_u32(s.reported).max(1)
            },
            // The tracker hands `judge` hashes already cut to 32 bits.
            name: s.name as u32,
            fingerprint: s.fingerprint as u32,
        }
    }

    fn unpack(self) -> Sighting {
        Sighting {
            at: i64::from(self.at),
            name: u64::from(self.name),
            fingerprint: u64::from(self.fingerprint),
            reported: if self.reported == 0 {
                i64::MIN
            } else {
                i64::from(self.reported)
            },
        }
    }
}

/// A map keyed by client tags (see [`CloneTracker`]), which are hashes already: used as
/// they are.
type TagMap = HashMap<u64, Seen, BuildHasherDefault<TagHasher>>;

/// Passes a client tag through as its own hash.
#[derive(Debug, Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a u64); anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, tag: u64) {
        self.0 = tag;
    }
}

/// Per-client memory of the latest machine, for the last day.
///
/// Clients are keyed by a tag: their id hashed to 64 bits with this process's random
/// keys, 8 bytes instead of 16 (entries of 24 bytes with the [`Seen`]). Two clients share
/// an entry only if their tags collide: for a million clients within a day, a chance of
/// about one in 36 million, which no client can aim for without the keys; a collision
/// can at worst flag one of the two as a clone of the other.
#[derive(Debug)]
pub struct CloneTracker {
    shards: Vec<Mutex<TagMap>>,
    hasher: RandomState,
}

impl Default for CloneTracker {
    fn default() -> Self {
        CloneTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(TagMap::default())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl CloneTracker {
    /// The client's tag (see [`CloneTracker`]).
    fn tag(&self, client: ClientKey) -> u64 {
        self.hasher.hash_one(client)
    }

    fn shard(&self, tag: u64) -> &Mutex<TagMap> {
        // Bits of the tag that the map itself uses neither for the bucket (the low ones)
        // nor for its control bytes (the top seven).
        let i = (tag >> 32) as usize % SHARDS;
        &self.shards[i.min(self.shards.len() - 1)]
    }

    fn hash_name(&self, name: &str) -> u64 {
        // Host names are case-insensitive: PC-01 and pc-01 are one machine. Lowered on
        // the stack and hashed in one call; names are at most 255 characters (checked by
        // the request parser), and a longer one is hashed as its first 1024 bytes.
        let mut buf = [0u8; 1024];
        let name = name.trim().as_bytes();
        let n = name.len().min(buf.len());
        for (to, from) in buf.iter_mut().zip(&name[..n]) {
            *to = from.to_ascii_lowercase();
        }
        u64::from(self.hasher.hash_one(&buf[..n]) as u32)
    }

    /// Records a request of `client` from `machine_name` (and `fingerprint`) at `at`;
    /// returns why it is flagged, when it is: another machine used this client id less
    /// than a day before, and no flag was raised for the client in the last day.
    pub fn observe(
        &self,
        client: ClientKey,
        machine_name: &str,
        fingerprint: Option<&str>,
        at: i64,
    ) -> Option<CloneReason> {
        let name = self.hash_name(machine_name);
        let fingerprint = fingerprint.map_or(0, |f| {
            u64::from(self.hasher.hash_one(f.as_bytes()) as u32 | 1)
        });
        let tag = self.tag(client);
        let mut map = self.shard(tag).lock().unwrap_or_else(|p| p.into_inner());
        match map.entry(tag) {
            Entry::Vacant(v) => {
                v.insert(Seen::pack(&Sighting::first(at, name, fingerprint)));
                None
            }
            Entry::Occupied(o) => {
                let packed = o.into_mut();
                let mut seen = packed.unpack();
                let reason = judge(&mut seen, name, fingerprint, at);
                *packed = Seen::pack(&seen);
                reason
            }
        }
    }

    /// Forgets clients whose latest request is before `before`: they can no longer be
    /// flagged by a comparison with it. Returns how many were forgotten. One shard is
    /// locked at a time, so requests wait at most for a sixteenth of the sweep.
    pub fn forget_before(&self, before: i64) -> usize {
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            let len = map.len();
            map.retain(|_, s| i64::from(s.at) >= before);
            forgotten += len - map.len();
        }
        forgotten
    }

    /// Clients remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The queue of flags to store.
#[derive(Debug, Clone)]
pub(crate) struct CloneFlags {
    tx: mpsc::Sender<CloneSighting>,
}

impl CloneFlags {
    /// Starts the task that stores flags, on the current runtime.
    pub(crate) fn start(store: Arc<dyn Store>) -> CloneFlags {
        let (tx, rx) = mpsc::channel(FLAG_QUEUE);
        tokio::spawn(run(store, rx));
        CloneFlags { tx }
    }

    /// Queues a flag without waiting; false when the queue is full or closed.
    pub(crate) fn raise(&self, sighting: CloneSighting) -> bool {
        self.tx.try_send(sighting).is_ok()
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<CloneSighting>) {
    while let Some(mut sighting) = rx.recv().await {
        if sighting.other_machine_name.is_none() {
            sighting.other_machine_name = other_machine(store.as_ref(), &sighting).await;
        }
        tracing::warn!(
            client_id = %sighting.client_id,
            machine = %sighting.machine_name,
            other_machine = sighting.other_machine_name.as_deref().unwrap_or("?"),
            address = %sighting.address,
            reason = %sighting.reason,
            "cloned image suspected: one client id used by two machines within a day; give each copy its own client id with `volact rearm`"
        );
        if let Err(e) = store.record_clone(&sighting).await {
            tracing::error!(error = %e, client_id = %sighting.client_id, "storing a cloned-image flag failed");
        }
    }
}

/// Another machine name the client used within the day, from the audit log.
async fn other_machine(store: &dyn Store, s: &CloneSighting) -> Option<String> {
    let filter = EventFilter {
        client_id: Some(s.client_id.clone()),
        since: Some(s.at.saturating_sub(CLONE_WINDOW_SECS)),
        limit: Some(100),
        ..EventFilter::default()
    };
    let events = store.events(&filter).await.ok()?;
    events
        .into_iter()
        .map(|e| e.machine_name)
        .find(|name| !name.trim().eq_ignore_ascii_case(s.machine_name.trim()))
}

impl crate::engine::Engine {
    /// Compares a request's machine with the client's previous one and raises a flag
    /// when they differ within a day. Allocates only when a flag is raised.
    pub(crate) fn watch_machine(
        &self,
        parsed: &volact_core::decide::ParsedRequest,
        req: &volact_proto::ActivationRequest,
        address: &str,
        now: jiff::Timestamp,
    ) {
        let at = now.as_second();
        let fingerprint = req.machine_fingerprint.as_deref();
        let Some(reason) =
            self.clone_tracker()
                .observe(parsed.client, &req.machine_name, fingerprint, at)
        else {
            return;
        };
        self.metrics().clone_flagged();
        let product = self
            .catalog()
            .product_for_key(&parsed.setup_key)
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let queued = self.clone_flags().raise(CloneSighting {
            at,
            client_id: parsed.client_id.clone(),
            machine_name: req.machine_name.clone(),
            other_machine_name: None,
            address: address.to_string(),
            product,
            reason: reason.as_str().to_string(),
        });
        if !queued {
            tracing::debug!(client_id = %parsed.client_id, "cloned-image flag dropped: the queue is full");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = CLONE_WINDOW_SECS;

    #[test]
    fn two_names_within_a_day_are_flagged_once_a_day() {
        let t = CloneTracker::default();
        assert_eq!(t.observe(1, "pc-a", None, 0), None);
        assert_eq!(t.observe(1, "PC-A", None, 10), None, "case does not matter");
        assert_eq!(
            t.observe(1, "pc-b", None, 3600),
            Some(CloneReason::MachineName)
        );
        // The clones keep asking in turn: no second flag the same day.
        assert_eq!(t.observe(1, "pc-a", None, 7200), None);
        assert_eq!(
            t.observe(1, "pc-b", None, DAY + 3600),
            Some(CloneReason::MachineName)
        );
    }

    #[test]
    fn a_day_apart_is_a_renamed_machine_not_a_clone() {
        let t = CloneTracker::default();
        assert_eq!(t.observe(2, "pc-a", None, 0), None);
        assert_eq!(t.observe(2, "pc-b", None, DAY), None);
        assert_eq!(t.observe(3, "pc-a", None, 0), None);
        assert_eq!(
            t.observe(4, "pc-b", None, 60),
            None,
            "other clients are apart"
        );
    }

    #[test]
    fn fingerprints_tell_machines_with_one_name_apart() {
        let t = CloneTracker::default();
        assert_eq!(t.observe(5, "pc", Some("f1"), 0), None);
        assert_eq!(
            t.observe(5, "pc", None, 60),
            None,
            "an old client sends none"
        );
        assert_eq!(
            t.observe(5, "pc", Some("f2"), 120),
            Some(CloneReason::MachineFingerprint)
        );
    }

    #[test]
    fn old_sightings_are_forgotten() {
        let t = CloneTracker::default();
        for c in 0..100 {
            t.observe(c, "pc", None, i64::try_from(c).unwrap_or(0));
        }
        assert_eq!(t.forget_before(50), 50);
        assert_eq!(t.len(), 50);
    }

    #[test]
    fn packed_sightings_keep_what_judging_needs() {
        let first = Sighting::first(1_790_000_000, 0xdead_beef, 0);
        let back = Seen::pack(&first).unpack();
        assert_eq!(back.at, first.at);
        assert_eq!(back.name, first.name);
        assert_eq!(back.fingerprint, 0, "no fingerprint stays none");
        assert_eq!(back.reported, i64::MIN, "never flagged stays never");
        let flagged = Sighting {
            reported: 0,
            ..Sighting::first(-5, 1, 3)
        };
        let back = Seen::pack(&flagged).unpack();
        assert_eq!(back.at, 0, "times before 1970 are clamped");
        assert_ne!(back.reported, i64::MIN, "a flag at time 0 is still a flag");
        let late = Seen::pack(&Sighting::first(i64::MAX, 1, 1)).unpack();
        assert_eq!(late.at, i64::from(u32::MAX));
    }
}
