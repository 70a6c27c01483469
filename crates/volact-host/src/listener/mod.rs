//! The host's accept loop, in place of `axum::serve`, so that no peer can hold the host
//! by doing nothing: every phase of a connection has a deadline, connections are capped
//! per address and in all (below the file-descriptor limit), and what is refused or cut
//! is counted and logged at a bounded rate.
//!
//! | phase | bound | on expiry |
//! |---|---|---|
//! | TLS handshake, first bytes | `header_read_timeout` | closed, counted as a header timeout |
//! | request head (HTTP/1) | `header_read_timeout`, hyper's timer | closed |
//! | HTTP/1 keep-alive between requests | `header_read_timeout`: hyper starts the same timer as soon as a connection goes idle (read in hyper 1.x `proto/h1/conn.rs`: `State::idle` sets `notify_read`, and `poll_read_head` arms the timer) | closed |
//! | request head (HTTP/2), no request in progress | `header_read_timeout` from the first byte, `idle_timeout` from idle | GOAWAY, then closed |
//! | request body | `body_timeout` from the end of the head | JSON 408, connection closed |
//! | after being told to close | [`Limits::grace`] | dropped |
//!
//! The loop is generic over a [`Handshake`] that turns an accepted TCP stream into the
//! stream HTTP is spoken on: [`Plain`], or [`crate::tls::Tls`]. A host's two listeners
//! share one [`Connections`]: the caps are the process's (its file descriptors), and
//! `/metrics` counts them together.

mod events;
mod front;
mod limits;
mod registry;

pub use events::{Events, Kind, LOG_EVERY};
pub use front::{Front, Transport, ViaTls, is_local_admin_peer, json_error};
pub use limits::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_HEADER_BYTES, Limits, LimitsConfig, LimitsSection, fd_headroom, raise_fd_limit,
};
pub use registry::{AddrKey, Conn, Refusal, Registry};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use registry::Watched;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use volact_engine::metrics::ConnectionMetrics;

/// How long the loop pauses after a failed accept (out of file descriptors, say), so it
/// does not spin while the condition lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Largest number of concurrent HTTP/2 streams on one connection.
const MAX_STREAMS: u32 = 100;

/// Turns an accepted TCP stream into the stream HTTP is spoken on. It runs inside the
/// connection's task, bounded by `header_read_timeout`.
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Completes the handshake on `tcp`.
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain HTTP: the TCP stream as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// What the listeners of one host share: the connection registry (its caps), where
/// refusals are counted, and the metrics.
#[derive(Clone)]
pub struct Connections {
    limits: Limits,
    events: Arc<Events>,
    registry: Arc<Registry>,
    metrics: Option<ConnectionMetrics>,
}

impl Connections {
    /// Connections under `limits`, counted in `metrics` when given.
    pub fn new(limits: Limits, metrics: Option<ConnectionMetrics>) -> Connections {
        if let Some(m) = &metrics {
            m.max.set(limits.max_connections as f64);
            m.open.set(0.0);
        }
        Connections {
            limits,
            events: Arc::new(Events::new(limits, metrics.clone())),
            registry: Arc::new(Registry::new(limits)),
            metrics,
        }
    }
}

/// What every connection task of one listener shares.
struct Shared<H> {
    limits: Limits,
    front: Front,
    builder: Builder<TokioExecutor>,
    events: Arc<Events>,
    registry: Arc<Registry>,
    handshake: H,
    metrics: Option<ConnectionMetrics>,
}

impl<H> Shared<H> {
    fn update_open(&self) {
        if let Some(m) = &self.metrics {
            m.open.set(self.registry.open() as f64);
        }
    }
}

/// A connection's place in the registry, given back when its task ends, even by a
/// panic, so a failure cannot leak a slot until the cap is full of ghosts.
struct Slot<H> {
    conn: Arc<Conn>,
    shared: Arc<Shared<H>>,
}

impl<H> Drop for Slot<H> {
    fn drop(&mut self) {
        self.shared.registry.release(&self.conn);
        self.shared.update_open();
    }
}

/// hyper's connection settings for `limits`. The HTTP parser's own cap on a request head
/// is twice `max_header_bytes`, so heads between the two get the JSON 431 of [`Front`]
/// and only larger ones meet hyper's bare 431 (HTTP/1) or a refused stream (HTTP/2).
fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let hard_cap = limits.max_header_bytes.saturating_mul(2).max(8192);
    let mut b = Builder::new(TokioExecutor::new());
    // No hyper timer on HTTP/1: its header-read timeout arms and cancels a timer for every
    // request of a keep-alive connection (measured at about 2 % of the host's throughput
    // at 64 connections), and the connection loop's own deadline below already closes a
    // head that is not complete `header_read_timeout` after its first byte.
    b.http1().max_buf_size(hard_cap).keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_cap).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS);
    b
}

/// Serves `router` on `listener` through `handshake` under `limits` until `shutdown`
/// completes; then stops accepting, tells every connection to finish its requests and
/// close, and waits for them (each bounded by [`Limits::grace`]).
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    router: Router,
    limits: Limits,
    metrics: Option<ConnectionMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(
        listener,
        handshake,
        Transport::plain(true, None),
        router,
        Connections::new(limits, metrics),
        shutdown,
    )
    .await
}

/// [`serve`] for one of several listeners sharing `connections`, answering as
/// `transport` says (TLS headers, admin off loopback).
pub async fn serve_on<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    transport: Transport,
    router: Router,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Connections {
        limits,
        events,
        registry,
        metrics,
    } = connections;
    let shared = Arc::new(Shared {
        limits,
        front: Front::new(router, limits, events.clone(), transport),
        builder: builder(&limits),
        events: events.clone(),
        registry,
        handshake,
        metrics,
    });
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut flush = tokio::time::interval(LOG_EVERY);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = flush.tick() => events.flush(false),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match shared.registry.admit(peer.ip()) {
                    Ok(admitted) => {
                        if admitted.evicted {
                            events.note(Kind::Evicted, None, None);
                        }
                        shared.update_open();
                        let shared = shared.clone();
                        let stopped = stopped.clone();
                        tasks.spawn(async move {
                            let slot = Slot { conn: admitted.conn, shared };
                            connection(tcp, peer, &slot.conn, &slot.shared, stopped).await;
                        });
                    }
                    Err(refusal) => {
                        let kind = match refusal {
                            Refusal::Total => Kind::RefusedTotal,
                            Refusal::Address => Kind::RefusedAddress,
                        };
                        events.note(kind, Some(peer.ip()), None);
                        drop(tcp);
                    }
                },
                Err(e) => {
                    events.note(Kind::AcceptFailed, None, Some(e.to_string()));
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    events.flush(true);
    Ok(())
}

/// Counts how a connection ended, from hyper's error.
fn classify(e: &(dyn std::error::Error + 'static), conn: &Conn, peer: SocketAddr, events: &Events) {
    let Some(e) = e.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, "connection ended: {e}");
        return;
    };
    if e.is_timeout() {
        let kind = if conn.has_partial_request() {
            Kind::HeaderTimeout
        } else {
            Kind::IdleTimeout
        };
        events.note(kind, Some(peer.ip()), None);
    } else if e.is_parse_too_large() {
        events.note(Kind::HeadersTooLarge, Some(peer.ip()), None);
    } else {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Serves one connection until it ends, times out, is evicted, or the server stops.
async fn connection<H: Handshake>(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: &Arc<Conn>,
    shared: &Arc<Shared<H>>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let events = &shared.events;
    let io = tokio::select! {
        r = tokio::time::timeout(limits.header_read_timeout, shared.handshake.handshake(tcp)) => match r {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "handshake failed: {e}");
                return;
            }
            Err(_) => {
                events.note(Kind::HeaderTimeout, Some(peer.ip()), None);
                return;
            }
        },
        () = conn.evict.notified() => {
            return;
        }
        _ = stopped.changed() => return,
    };
    let io = TokioIo::new(Watched::new(io, conn.clone()));
    let service = {
        let shared = shared.clone();
        let conn = conn.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = conn.request();
            let shared = shared.clone();
            async move {
                let response = shared.front.call(request, peer).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let served = shared.builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut closing: Option<Instant> = None;
    loop {
        let wake = closing
            .or_else(|| conn.deadline(&limits))
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    classify(e.as_ref(), conn, peer, events);
                }
                return;
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if closing.is_some() {
                    events.note(Kind::Stalled, Some(peer.ip()), None);
                    return;
                }
                if conn.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    if conn.has_partial_request() {
                        // A head still incomplete at its deadline never reached a
                        // handler: closing loses nothing, and a graceful shutdown would
                        // wait for the head.
                        events.note(Kind::HeaderTimeout, Some(peer.ip()), None);
                        return;
                    }
                    events.note(Kind::IdleTimeout, Some(peer.ip()), None);
                    // Nothing is in progress: HTTP/1 closes at once, HTTP/2 says GOAWAY.
                    served.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + limits.header_read_timeout);
                }
            }
            () = conn.evict.notified(), if closing.is_none() => {
                if conn.deadline(&limits).is_some() {
                    // Chosen because nothing is in progress on it: nothing is lost.
                    return;
                }
                // A request began since it was chosen: let it finish first.
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.grace());
            }
            _ = stopped.changed(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.grace());
            }
        }
    }
}
