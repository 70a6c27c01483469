//! `GET /metrics` in Prometheus text format.
//!
//! Each engine owns its own recorder (never the process-wide one), so several hosts in one
//! process — tests, the simulator — keep apart. Per-request series are handles registered
//! once and kept in a table by product and result, so a request costs an atomic add and a
//! histogram sample, with no label strings built. Gauges that need the store (clients
//! known, expiring tickets, cloned images) are set by the maintenance task, not per
//! request and not per scrape.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::OnceLock;
use std::time::Instant;
use volact_core::catalog::Catalog;
use volact_proto::ErrorCode;

/// `activated` and every error code.
const RESULTS: usize = ErrorCode::ALL.len() + 1;

/// Latency buckets, in seconds: an activation waits for a group commit (an fsync), so
/// most answers take a few milliseconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const REQUESTS: &str = "volact_activation_requests_total";
const LATENCY: &str = "volact_activation_request_duration_seconds";
const COUNT: &str = "volact_application_count";
const MINIMUM: &str = "volact_product_minimum_count";
const CLIENTS: &str = "volact_clients_known";
const EXPIRING: &str = "volact_tickets_expiring";
const CLONE_FLAGS: &str = "volact_cloned_image_flags_total";
const CLONED: &str = "volact_cloned_image_clients";
const PRUNED: &str = "volact_events_pruned_total";
const READY: &str = "volact_host_ready";
const CONN_OPEN: &str = "volact_connections_open";
const CONN_MAX: &str = "volact_connections_max";
const CONN_REFUSED: &str = "volact_connections_refused_total";
const CONN_TIMED_OUT: &str = "volact_connections_timed_out_total";
const CONN_EVICTED: &str = "volact_connections_evicted_total";
const REQ_REFUSED: &str = "volact_http_requests_refused_total";
const HOST_LAST_SEEN: &str = "volact_store_host_last_seen_seconds";
const FEED_AGE: &str = "volact_count_feed_age_seconds";
const CERT_EXPIRES: &str = "volact_host_certificate_expires_timestamp_seconds";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The request counters of one product, registered on first use.
struct ProductCounters {
    product: String,
    by_result: [OnceLock<Counter>; RESULTS],
}

impl ProductCounters {
    fn new(product: String) -> ProductCounters {
        ProductCounters {
            product,
            by_result: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// What the maintenance task reads from the store for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Clients in the inventory.
    pub clients_known: u64,
    /// Tickets, of clients not revoked, ending within 7 days.
    pub expiring_7d: u64,
    /// Tickets, of clients not revoked, ending within 30 days.
    pub expiring_30d: u64,
    /// Clients flagged as cloned images within the count window.
    pub cloned_clients: u64,
}

/// The host's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    products: Vec<ProductCounters>,
    /// Requests whose product is unknown (malformed, unknown setup key).
    no_product: ProductCounters,
    latency: Histogram,
    applications: Vec<(String, Gauge)>,
    clients_known: Gauge,
    expiring_7d: Gauge,
    expiring_30d: Gauge,
    cloned_clients: Gauge,
    clone_flags: Counter,
    pruned: Counter,
    ready: Gauge,
    connections: ConnectionMetrics,
}

/// The connection series, for the accept loop: handles registered once, cloned cheaply.
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// The cap on connections from everyone (loopback reserve not included).
    pub max: Gauge,
    /// Connections closed at once on accept because the total cap was reached.
    pub refused_total_limit: Counter,
    /// Connections closed at once on accept because their address had its share.
    pub refused_address_limit: Counter,
    /// Accepts that failed (out of file descriptors, for instance).
    pub accept_failed: Counter,
    /// Connections closed for not sending a request's headers in time.
    pub timed_out_header: Counter,
    /// Requests cut for not sending their body in time.
    pub timed_out_body: Counter,
    /// Connections closed after staying idle too long.
    pub timed_out_idle: Counter,
    /// Connections dropped for not finishing within the grace they were given to close
    /// (a peer that does not read its answer).
    pub timed_out_stalled: Counter,
    /// Idle connections closed to make room for a new one when the cap was reached.
    pub evicted: Counter,
    /// Requests refused before reaching a handler: body over the limit.
    pub refused_body_too_large: Counter,
    /// Requests refused before reaching a handler: headers over the limit.
    pub refused_headers_too_large: Counter,
}

fn result_index(result: Result<(), ErrorCode>) -> usize {
    match result {
        Ok(()) => 0,
        Err(code) => ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| i + 1),
    }
}

fn result_label(index: usize) -> &'static str {
    match index.checked_sub(1).and_then(|i| ErrorCode::ALL.get(i)) {
        Some(code) => code.as_str(),
        None => "activated",
    }
}

impl Metrics {
    /// Metrics for a host serving `catalog`.
    pub fn new(catalog: &Catalog) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // Only an empty bucket list fails, and the list above is not empty.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let describe = |name: &'static str, unit: Unit, help: &'static str| {
            recorder.describe_counter(KeyName::from_const_str(name), Some(unit), help.into());
        };
        describe(
            REQUESTS,
            Unit::Count,
            "Activation requests answered, by result code and product.",
        );
        describe(
            LATENCY,
            Unit::Seconds,
            "Time to answer an activation request, storage included.",
        );
        describe(
            COUNT,
            Unit::Count,
            "Distinct clients counted per application within the count window.",
        );
        describe(
            MINIMUM,
            Unit::Count,
            "Minimum count each product needs to activate.",
        );
        describe(CLIENTS, Unit::Count, "Clients in the inventory.");
        describe(
            EXPIRING,
            Unit::Count,
            "Tickets of non-revoked clients ending within the given period.",
        );
        describe(
            CLONE_FLAGS,
            Unit::Count,
            "Cloned-image flags raised since start (one client id, two machines, one day).",
        );
        describe(
            CLONED,
            Unit::Count,
            "Clients flagged as cloned images within the count window.",
        );
        describe(
            PRUNED,
            Unit::Count,
            "Audit events deleted by retention since start.",
        );
        describe(
            READY,
            Unit::Count,
            "1 when the host can serve activations, else 0.",
        );
        describe(CONN_OPEN, Unit::Count, "Client connections open now.");
        describe(
            CONN_MAX,
            Unit::Count,
            "Cap on connections open at once (the loopback reserve comes on top).",
        );
        describe(
            CONN_REFUSED,
            Unit::Count,
            "Connections closed on accept, by reason: total-limit, address-limit, accept-failed.",
        );
        describe(
            CONN_TIMED_OUT,
            Unit::Count,
            "Connections or requests ended by a timeout, by phase: header, body, idle, stalled.",
        );
        describe(
            CONN_EVICTED,
            Unit::Count,
            "Idle connections closed to make room for a new one at the cap.",
        );
        describe(
            REQ_REFUSED,
            Unit::Count,
            "Requests refused before reaching a handler, by reason: body-too-large, headers-too-large.",
        );
        let key = |name: &'static str, labels: Vec<Label>| Key::from_parts(name, labels);
        let gauge = |name: &'static str, labels: Vec<Label>| {
            recorder.register_gauge(&key(name, labels), &METADATA)
        };
        for p in &catalog.products {
            gauge(
                MINIMUM,
                vec![
                    Label::new("product", p.id.clone()),
                    Label::new("application", p.application.clone()),
                ],
            )
            .set(f64::from(p.minimum_count));
        }
        let applications = catalog
            .applications
            .iter()
            .map(|a| {
                let g = gauge(COUNT, vec![Label::new("application", a.id.clone())]);
                g.set(0.0);
                (a.id.clone(), g)
            })
            .collect();
        let expiring = |within: &'static str| gauge(EXPIRING, vec![Label::new("within", within)]);
        let counter = |name: &'static str, label: &'static str, value: &'static str| {
            let c =
                recorder.register_counter(&key(name, vec![Label::new(label, value)]), &METADATA);
            // Present from the start at 0, so a dashboard sees the series before trouble.
            c.increment(0);
            c
        };
        let connections = ConnectionMetrics {
            open: gauge(CONN_OPEN, vec![]),
            max: gauge(CONN_MAX, vec![]),
            refused_total_limit: counter(CONN_REFUSED, "reason", "total-limit"),
            refused_address_limit: counter(CONN_REFUSED, "reason", "address-limit"),
            accept_failed: counter(CONN_REFUSED, "reason", "accept-failed"),
            timed_out_header: counter(CONN_TIMED_OUT, "phase", "header"),
            timed_out_body: counter(CONN_TIMED_OUT, "phase", "body"),
            timed_out_idle: counter(CONN_TIMED_OUT, "phase", "idle"),
            timed_out_stalled: counter(CONN_TIMED_OUT, "phase", "stalled"),
            evicted: recorder.register_counter(&key(CONN_EVICTED, vec![]), &METADATA),
            refused_body_too_large: counter(REQ_REFUSED, "reason", "body-too-large"),
            refused_headers_too_large: counter(REQ_REFUSED, "reason", "headers-too-large"),
        };
        connections.evicted.increment(0);
        Metrics {
            products: catalog
                .products
                .iter()
                .map(|p| ProductCounters::new(p.id.clone()))
                .collect(),
            no_product: ProductCounters::new("none".into()),
            latency: recorder.register_histogram(&key(LATENCY, vec![]), &METADATA),
            applications,
            clients_known: gauge(CLIENTS, vec![]),
            expiring_7d: expiring("7d"),
            expiring_30d: expiring("30d"),
            cloned_clients: gauge(CLONED, vec![]),
            clone_flags: recorder.register_counter(&key(CLONE_FLAGS, vec![]), &METADATA),
            pruned: recorder.register_counter(&key(PRUNED, vec![]), &METADATA),
            ready: gauge(READY, vec![]),
            connections,
            handle: recorder.handle(),
            recorder,
        }
    }

    /// Counts one answered request of the catalog's product number `product` (`None`:
    /// unknown) with `result` (`Ok` for activated).
    pub fn request(&self, product: Option<usize>, result: Result<(), ErrorCode>) {
        let counters = product
            .and_then(|i| self.products.get(i))
            .unwrap_or(&self.no_product);
        let i = result_index(result);
        if let Some(slot) = counters.by_result.get(i) {
            slot.get_or_init(|| {
                let labels = vec![
                    Label::new("result", result_label(i)),
                    Label::new("product", counters.product.clone()),
                ];
                self.recorder
                    .register_counter(&Key::from_parts(REQUESTS, labels), &METADATA)
            })
            .increment(1);
        }
    }

    /// Records how long a request took, from `started`.
    pub fn latency(&self, started: Instant) {
        self.latency.record(started.elapsed().as_secs_f64());
    }

    /// The connection series, for the accept loop.
    pub fn connections(&self) -> ConnectionMetrics {
        self.connections.clone()
    }

    /// Counts a cloned-image flag.
    pub fn clone_flagged(&self) {
        self.clone_flags.increment(1);
    }

    /// Counts audit events deleted by retention.
    pub fn pruned(&self, n: u64) {
        self.pruned.increment(n);
    }

    /// Sets the gauges read from the store.
    pub fn set_store_gauges(&self, g: StoreGauges) {
        // Counts stay far below 2^53, where f64 would lose precision.
        self.clients_known.set(g.clients_known as f64);
        self.expiring_7d.set(g.expiring_7d as f64);
        self.expiring_30d.set(g.expiring_30d as f64);
        self.cloned_clients.set(g.cloned_clients as f64);
    }

    /// Sets, for every host registered in the store (several when they share one
    /// database), the time it was last seen, labelled with its id and name.
    pub fn set_hosts(&self, hosts: &[volact_store::HostRecord]) {
        self.recorder.describe_gauge(
            KeyName::from_const_str(HOST_LAST_SEEN),
            Some(Unit::Seconds),
            "When each host registered in the store was last seen (Unix time)".into(),
        );
        for h in hosts {
            let labels = vec![
                Label::new("host_id", h.host_id.clone()),
                Label::new("name", h.name.clone()),
            ];
            self.recorder
                .register_gauge(&Key::from_parts(HOST_LAST_SEEN, labels), &METADATA)
                // Unix times stay far below 2^53, where f64 would lose precision.
                .set(h.last_seen as f64);
        }
    }

    /// Sets how long ago a shared count last read the other hosts' changes (absent for
    /// a count of this host alone): above a second or two, this host answers with an
    /// older view of the other hosts' clients than the documented lag.
    pub fn set_count_feed_age(&self, age: Option<std::time::Duration>) {
        let Some(age) = age else { return };
        self.recorder.describe_gauge(
            KeyName::from_const_str(FEED_AGE),
            Some(Unit::Seconds),
            "Seconds since this host's count last caught up with the other hosts sharing the store"
                .into(),
        );
        self.recorder
            .register_gauge(&Key::from_name(FEED_AGE), &METADATA)
            .set(age.as_secs_f64());
    }

    /// Sets when the host certificate in force expires (Unix time); without one the
    /// series is absent.
    pub fn set_certificate_expiry(&self, exp: Option<jiff::Timestamp>) {
        let Some(exp) = exp else { return };
        self.gauge(
            CERT_EXPIRES,
            Unit::Seconds,
            "When the host certificate in force expires (Unix time)",
        )
        // Unix times stay far below 2^53, where f64 would lose precision.
        .set(exp.as_second() as f64);
    }

    /// The revocation list in force: its sequence, and whether it revokes this host.
    #[allow(clippy::cast_precision_loss)]
    pub fn set_revocations(&self, sequence: u64, revoked: bool) {
        self.gauge(
            "volact_revocation_list_sequence",
            Unit::Count,
            "Sequence number of the vendor's revocation list the host holds",
        )
        .set(sequence as f64);
        self.gauge(
            "volact_host_revoked",
            Unit::Count,
            "1 when the vendor's revocation list revokes this host (it then activates no client)",
        )
        .set(if revoked { 1.0 } else { 0.0 });
    }

    /// Registers (or finds) the gauge `name` in this host's recorder, described by
    /// `help`: for parts of the host that keep series of their own.
    pub(crate) fn gauge(&self, name: &'static str, unit: Unit, help: &'static str) -> Gauge {
        self.recorder
            .describe_gauge(KeyName::from_const_str(name), Some(unit), help.into());
        self.recorder
            .register_gauge(&Key::from_name(name), &METADATA)
    }

    /// Drains histogram samples into their buckets, so memory does not grow between
    /// scrapes; the maintenance task calls it every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Registers (or finds) the counter `name` with `labels` in this host's recorder,
    /// described by `help`: for parts of the host that keep series of their own.
    pub(crate) fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.recorder.describe_counter(
            KeyName::from_const_str(name),
            Some(Unit::Count),
            help.into(),
        );
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// The text exposition, with the live counts and readiness set first.
    pub fn render(&self, counts: &[(String, u32)], ready: bool) -> String {
        for (application, gauge) in &self.applications {
            let n = counts
                .iter()
                .find(|(a, _)| a == application)
                .map_or(0, |(_, n)| *n);
            gauge.set(f64::from(n));
        }
        self.ready.set(if ready { 1.0 } else { 0.0 });
        self.handle.render()
    }
}

impl crate::engine::Engine {
    /// The row of product `id` in the metrics' table (the products of the catalog the
    /// host started with; products of a newer catalog count under no product until a
    /// restart). Catalogs hold a handful of products, so a scan beats hashing.
    pub(crate) fn product_index(&self, id: &str) -> Option<usize> {
        if id.is_empty() {
            return None;
        }
        self.metrics().products.iter().position(|p| p.product == id)
    }
}
