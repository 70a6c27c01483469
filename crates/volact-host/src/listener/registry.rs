//! The open connections: caps per address and in all, the choice of an idle connection
//! to close when the cap is reached, and what each connection's watchdog reads (requests
//! in progress, since when it is idle, when the next request's first byte came).

use super::limits::Limits;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What one address's share is counted by: an IPv4 address, or the /64 of an IPv6 one
/// (one subscriber gets a whole /64, so counting single IPv6 addresses would count
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// One open connection, as its watchdog and the registry see it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    key: AddrKey,
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds from `epoch` to when the last request ended (or the connection opened).
    idle_since: AtomicU64,
    /// Milliseconds from `epoch` (plus one; 0: none) to the first byte read while idle.
    first_byte: AtomicU64,
    evicted: AtomicBool,
    /// Woken when the registry picks this connection to make room.
    pub evict: Notify,
}

impl Conn {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    /// Marks a request as in progress until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Whether bytes of a request have arrived since the connection went idle.
    pub fn has_partial_request(&self) -> bool {
        self.first_byte.load(Ordering::Acquire) != 0
    }

    /// When the connection must close unless a request starts: `idle_timeout` after it
    /// went idle, or `header_read_timeout` after the first byte of a request that has not
    /// reached a handler yet. `None` while a request is in progress.
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle_timeout;
        match self.first_byte.load(Ordering::Acquire) {
            0 => Some(idle),
            first => Some(idle.min(self.at(first - 1) + limits.header_read_timeout)),
        }
    }

    fn idle_since_if_idle(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0 && !self.evicted.load(Ordering::Acquire))
            .then(|| self.idle_since.load(Ordering::Acquire))
    }

    fn saw_bytes(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.first_byte.load(Ordering::Relaxed) == 0
        {
            let now = self.millis(Instant::now()).saturating_add(1);
            let _ = self
                .first_byte
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            conn.first_byte.store(0, Ordering::Release);
            conn.idle_since
                .store(conn.millis(Instant::now()), Ordering::Release);
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The cap on all connections, with nothing idle to close.
    Total,
    /// The address's share.
    Address,
}

/// A connection admitted, and the idle one closed to make room for it, if any.
pub struct Admitted {
    /// The new connection.
    pub conn: Arc<Conn>,
    /// Whether an idle connection was told to close to make room.
    pub evicted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_key: HashMap<AddrKey, usize>,
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Registry {
    /// An empty registry enforcing `limits`.
    pub fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Admits a connection from `ip`, or says why not. At the cap, the connection idle
    /// the longest (no request in progress: an idle keep-alive, or one still trickling
    /// its first request) is told to close to make room: a flood of idle connections
    /// then only ever displaces itself, while connections doing work are never cut.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Refusal> {
        let key = AddrKey::of(ip);
        let loopback = is_loopback(ip);
        let l = &self.limits;
        let mut inner = self.lock();
        let mine = inner.per_key.get(&key).copied().unwrap_or(0);
        if mine >= l.max_connections_per_address {
            return Err(Refusal::Address);
        }
        let open = inner.conns.len();
        let cap = if loopback {
            l.max_connections.saturating_add(l.loopback_reserve)
        } else {
            l.max_connections
        };
        let mut evicted = false;
        if open >= cap {
            let victim = inner
                .conns
                .values()
                .filter_map(|c| c.idle_since_if_idle().map(|since| (since, c.id, c)))
                // Ties (same millisecond) go to the older connection.
                .min_by_key(|(since, id, _)| (*since, *id))
                .map(|(_, _, c)| c.clone());
            match victim {
                Some(v) => {
                    v.evicted.store(true, Ordering::Release);
                    v.evict.notify_one();
                    evicted = true;
                }
                None => return Err(Refusal::Total),
            }
        }
        inner.next_id += 1;
        let now = Instant::now();
        let conn = Arc::new(Conn {
            id: inner.next_id,
            key,
            epoch: self.epoch,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        conn.idle_since.store(conn.millis(now), Ordering::Release);
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_key.entry(key).or_insert(0) += 1;
        Ok(Admitted { conn, evicted })
    }

    /// Forgets a closed connection.
    pub fn release(&self, conn: &Conn) {
        let mut inner = self.lock();
        if inner.conns.remove(&conn.id).is_some()
            && let Some(n) = inner.per_key.get_mut(&conn.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_key.remove(&conn.key);
            }
        }
    }
}

/// An accepted stream that tells its connection's watchdog when request bytes arrive.
pub struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I> Watched<I> {
    /// `io`, watched for `conn`.
    pub fn new(io: I, conn: Arc<Conn>) -> Watched<I> {
        Watched { io, conn }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.saw_bytes();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::listener::limits::LimitsConfig;

    fn limits(max: usize, per_address: usize, reserve: usize) -> Limits {
        let config = LimitsConfig {
            max_connections: Some(max),
            max_connections_per_address: Some(per_address),
            loopback_reserve: Some(reserve),
            ..LimitsConfig::default()
        };
        Limits::derive(&config, None).0
    }

    #[test]
    fn ipv6_is_counted_by_its_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), AddrKey::of([10, 0, 0, 1].into()));
    }

    #[test]
    fn shares_caps_reserve_and_eviction() {
        let r = Registry::new(limits(3, 2, 1));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = r.admit(a).unwrap().conn;
        let _second = r.admit(a).unwrap();
        assert_eq!(r.admit(a).err(), Some(Refusal::Address));
        // A request in progress keeps its connection from being chosen.
        let _busy = first.request();
        let third = r.admit(b).unwrap();
        assert!(!third.evicted);
        // At the cap: the longest idle connection (the second) makes room.
        let fourth = r.admit(b).unwrap();
        assert!(fourth.evicted);
        assert!(_second.conn.evicted.load(Ordering::Acquire));
        r.release(&_second.conn);
        // Loopback has its reserve on top of the cap.
        let lo: IpAddr = [127, 0, 0, 1].into();
        let l = r.admit(lo).unwrap();
        assert!(!l.evicted);
        assert_eq!(r.open(), 4);
        // Nothing idle left to close (the third and fourth go busy) and the reserve used.
        let _b3 = third.conn.request();
        let _b4 = fourth.conn.request();
        let _bl = l.conn.request();
        assert_eq!(r.admit([10, 0, 0, 3].into()).err(), Some(Refusal::Total));
        assert_eq!(r.admit(lo).err(), Some(Refusal::Total));
    }

    #[test]
    fn the_deadline_follows_requests_and_bytes() {
        let l = limits(10, 10, 0);
        let r = Registry::new(l);
        let c = r.admit([10, 0, 0, 1].into()).unwrap().conn;
        let idle = c.deadline(&l).unwrap();
        c.saw_bytes();
        assert!(c.has_partial_request());
        let header = c.deadline(&l).unwrap();
        assert!(header <= idle, "{header:?} {idle:?}");
        let g = c.request();
        assert_eq!(c.deadline(&l), None);
        drop(g);
        assert!(!c.has_partial_request());
        assert!(c.deadline(&l).is_some());
    }
}
