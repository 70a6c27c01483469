//! What the accept loop refuses or cuts: counted in `/metrics` at once, logged as one
//! summary line per kind at most every [`LOG_EVERY`], so a flood cannot flood the log.

use super::limits::Limits;
use metrics::Counter;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use volact_engine::metrics::ConnectionMetrics;

/// Shortest time between two log lines of one kind.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A kind of refusal or timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Closed on accept: the total cap was reached and no idle connection could go.
    RefusedTotal,
    /// Closed on accept: the address had its share.
    RefusedAddress,
    /// `accept` failed (out of file descriptors, for instance).
    AcceptFailed,
    /// The request's headers did not arrive in time.
    HeaderTimeout,
    /// The request's body did not arrive in time.
    BodyTimeout,
    /// The connection stayed idle too long.
    IdleTimeout,
    /// The connection did not finish within its grace once told to close.
    Stalled,
    /// An idle connection closed to make room for a new one.
    Evicted,
    /// A body over the limit, refused with 413.
    BodyTooLarge,
    /// Headers over the limit, refused with 431.
    HeadersTooLarge,
}

const KINDS: usize = 10;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    /// What a summary line says happened, after the number.
    fn what(self, limits: &Limits) -> String {
        match self {
            Kind::RefusedTotal => format!(
                "connections refused: {} were open, the cap (raise [limits] max_connections or the fd limit)",
                limits.max_connections
            ),
            Kind::RefusedAddress => format!(
                "connections refused: their address already had {} open, its share ([limits] max_connections_per_address)",
                limits.max_connections_per_address
            ),
            Kind::AcceptFailed => "accepts failed".into(),
            Kind::HeaderTimeout => format!(
                "connections closed: request headers not sent within {:?} ([limits] header_read_timeout)",
                limits.header_read_timeout
            ),
            Kind::BodyTimeout => format!(
                "requests cut: body not sent within {:?} ([limits] body_timeout)",
                limits.body_timeout
            ),
            Kind::IdleTimeout => format!(
                "connections closed after {:?} idle ([limits] idle_timeout)",
                limits.idle_timeout
            ),
            Kind::Stalled => format!(
                "connections dropped: not finished {:?} after being told to close (a peer not reading its answer?)",
                limits.grace()
            ),
            Kind::Evicted => format!(
                "idle connections closed to make room at the cap of {} connections",
                limits.max_connections
            ),
            Kind::BodyTooLarge => format!(
                "requests refused: body over {} bytes",
                volact_proto::MAX_BODY_BYTES
            ),
            Kind::HeadersTooLarge => format!(
                "requests refused: headers over {} bytes ([limits] max_header_bytes)",
                limits.max_header_bytes
            ),
        }
    }

    /// Ordinary events (keep-alive connections going idle) are not worth a warning.
    fn is_ordinary(self) -> bool {
        matches!(self, Kind::IdleTimeout)
    }
}

#[derive(Debug, Default)]
struct Gate {
    pending: u64,
    since: Option<Instant>,
    last_logged: Option<Instant>,
    latest: Option<IpAddr>,
    detail: Option<String>,
}

/// Counts and logs refusals and timeouts.
pub struct Events {
    limits: Limits,
    counters: Option<[Counter; KINDS]>,
    gates: [Mutex<Gate>; KINDS],
}

impl Events {
    /// Events of a listener with `limits`, counted in `metrics` when given.
    pub fn new(limits: Limits, metrics: Option<ConnectionMetrics>) -> Events {
        let counters = metrics.map(|m| {
            [
                m.refused_total_limit,
                m.refused_address_limit,
                m.accept_failed,
                m.timed_out_header,
                m.timed_out_body,
                m.timed_out_idle,
                m.timed_out_stalled,
                m.evicted,
                m.refused_body_too_large,
                m.refused_headers_too_large,
            ]
        });
        Events {
            limits,
            counters,
            gates: std::array::from_fn(|_| Mutex::new(Gate::default())),
        }
    }

    /// Counts one event of `kind` from `peer`; logs a summary if the last one of its
    /// kind is [`LOG_EVERY`] old.
    pub fn note(&self, kind: Kind, peer: Option<IpAddr>, detail: Option<String>) {
        if let Some(c) = self.counters.as_ref().and_then(|c| c.get(kind.index())) {
            c.increment(1);
        }
        let Some(gate) = self.gates.get(kind.index()) else {
            return;
        };
        let now = Instant::now();
        let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
        g.pending += 1;
        g.since.get_or_insert(now);
        if peer.is_some() {
            g.latest = peer;
        }
        if detail.is_some() {
            g.detail = detail;
        }
        if g.last_logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.log(kind, &mut g, now);
        }
    }

    /// Logs what is pending of every kind whose last line is [`LOG_EVERY`] old (or of
    /// every kind, with `all`), so the tail of a flood is not left unsaid.
    pub fn flush(&self, all: bool) {
        let now = Instant::now();
        for (i, gate) in self.gates.iter().enumerate() {
            let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
            let due = all
                || g.last_logged
                    .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
            if g.pending > 0
                && due
                && let Some(kind) = KIND_ORDER.get(i)
            {
                self.log(*kind, &mut g, now);
            }
        }
    }

    fn log(&self, kind: Kind, g: &mut Gate, now: Instant) {
        let n = std::mem::take(&mut g.pending);
        let secs = g
            .since
            .take()
            .map_or(0, |s| now.duration_since(s).as_secs());
        g.last_logged = Some(now);
        let latest = g
            .latest
            .take()
            .map(|a| format!("; latest from {a}"))
            .unwrap_or_default();
        let detail = g
            .detail
            .take()
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        let what = kind.what(&self.limits);
        if kind.is_ordinary() {
            tracing::debug!(count = n, "{n} {what} over {secs} s{latest}{detail}");
        } else {
            tracing::warn!(count = n, "{n} {what} over {secs} s{latest}{detail}");
        }
    }
}

/// The kinds in the order of [`Kind::index`].
const KIND_ORDER: [Kind; KINDS] = [
    Kind::RefusedTotal,
    Kind::RefusedAddress,
    Kind::AcceptFailed,
    Kind::HeaderTimeout,
    Kind::BodyTimeout,
    Kind::IdleTimeout,
    Kind::Stalled,
    Kind::Evicted,
    Kind::BodyTooLarge,
    Kind::HeadersTooLarge,
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_index_order() {
        for (i, k) in KIND_ORDER.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn a_flood_makes_one_line_per_period() {
        let (limits, _) = Limits::derive(&Default::default(), Some(1024));
        let events = Events::new(limits, None);
        for _ in 0..1000 {
            events.note(Kind::RefusedAddress, Some([127, 0, 0, 2].into()), None);
        }
        let g = events.gates[Kind::RefusedAddress.index()].lock().unwrap();
        // The first event logged at once; the other 999 wait for the next line.
        assert_eq!(g.pending, 999);
        assert!(g.last_logged.is_some());
    }
}
