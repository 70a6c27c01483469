//! The host page: identity, host key, certificate, intervals and totals, from the same
//! collection `volact host status` prints.

use super::{Layout, Nav, Session, failure, fmt_relative, render_page};
use crate::http::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use volact_engine::status::HostStatus;

struct Fact {
    label: &'static str,
    value: String,
    class: &'static str,
}

fn fact(label: &'static str, value: impl Into<String>) -> Fact {
    Fact {
        label,
        value: value.into(),
        class: "",
    }
}

#[derive(Template)]
#[template(path = "dashboard/host.html")]
struct HostPage {
    layout: Layout,
    identity: Vec<Fact>,
    key: Vec<Fact>,
    certificate: Vec<Fact>,
    intervals: Vec<Fact>,
    totals: Vec<Fact>,
    by_result: Vec<(String, u64, &'static str)>,
    hosts: Vec<SharingHost>,
}

/// A host registered in the store, as the "Hosts sharing the store" card shows it.
struct SharingHost {
    id: String,
    name: String,
    urls: String,
    version: String,
    seen: String,
    /// `bad` when the host has not registered for [`SILENT_AFTER_SECS`].
    class: &'static str,
    this: bool,
}

/// A host registers every 5 s; three missed registrations and more mean it is down or
/// cannot reach the store.
const SILENT_AFTER_SECS: i64 = 30;

fn when(t: Timestamp, now: Timestamp) -> String {
    format!(
        "{} UTC ({})",
        super::fmt_time(t.as_second()),
        fmt_relative(t.as_second(), now.as_second())
    )
}

fn span(secs: u64) -> String {
    volact_core::util::human(jiff::SignedDuration::from_secs(
        i64::try_from(secs).unwrap_or(i64::MAX),
    ))
}

/// `GET /host`.
pub async fn page(State(state): State<AppState>, session: Session) -> Response {
    let engine = &state.engine;
    let now = engine.now();
    let status = match volact_engine::status::collect(
        &state.data,
        engine.store().as_ref(),
        &state.config,
        now,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    let retention = volact_core::util::human(state.config.event_retention);
    render_page(
        StatusCode::OK,
        &build(&state, &session, &status, now, retention),
    )
}

fn build(
    state: &AppState,
    session: &Session,
    s: &HostStatus,
    now: Timestamp,
    retention: String,
) -> HostPage {
    let mut identity = vec![
        fact("Host id", s.host_id.clone()),
        Fact {
            label: "State",
            value: s.state.clone(),
            class: if s.state == "activated" { "ok" } else { "bad" },
        },
        fact("Data directory", s.data.clone()),
    ];
    if let Some(serving) = &s.serving {
        identity.push(fact(
            "Serving",
            format!(
                "{} (pid {}, since {})",
                serving.url,
                serving.pid,
                when(serving.started_at, now)
            ),
        ));
    }
    if let (Some(vendor), Some(version)) = (&s.vendor, s.catalog_version) {
        identity.push(fact("Catalog", format!("{vendor}, version {version}")));
    }
    let key = match &s.host_key {
        Some(k) => vec![
            fact("Key id", k.key_id.clone()),
            fact("Customer", k.customer.clone()),
            fact("Key group", k.group.clone()),
            fact(
                "Seats",
                k.seats
                    .map(|n| format!("{n} clients at most"))
                    .unwrap_or_else(|| "no cap".into()),
            ),
            fact(
                "Expires",
                k.expires
                    .map(|t| when(t, now))
                    .unwrap_or_else(|| "never".into()),
            ),
        ],
        None => vec![fact(
            "Host key",
            "none installed: run `volact host install-key`",
        )],
    };
    let certificate = match &s.certificate {
        Some(c) => vec![
            fact("Issued", when(c.issued, now)),
            Fact {
                label: "Expires",
                value: when(c.expires, now),
                class: if c.valid { "" } else { "bad" },
            },
            fact("Products", c.products.join(", ")),
        ],
        None => vec![fact(
            "Certificate",
            "none: the host is not activated (volact host activate)",
        )],
    };
    let mut certificate = certificate;
    if let Some(r) = &s.certificate_renewal {
        certificate.push(fact("Renewal", volact_engine::status::renewal_line(r)));
        if let Some(warning) = r.warning() {
            certificate.push(Fact {
                label: "Renewal failing",
                value: format!(
                    "{warning}. The host serves with its current certificate until it expires."
                ),
                class: "bad",
            });
        }
    }
    let i = &s.intervals;
    let intervals = vec![
        fact("Count window", span(i.count_window_secs)),
        fact("Renewal interval", span(i.renew_interval_secs)),
        fact("Retry interval", span(i.retry_interval_secs)),
        fact("Ticket validity", span(i.ticket_validity_secs)),
        fact(
            "Allowed clock difference",
            format!("± {}", span(i.max_clock_skew_secs)),
        ),
        fact("Audit events kept", retention),
    ];
    let totals = vec![
        fact("Clients known", s.clients_known.to_string()),
        fact("Requests recorded", s.requests.to_string()),
        fact("Activated", s.activated.to_string()),
        fact("Not yet (count insufficient)", s.not_yet.to_string()),
        fact("Refused", s.refused.to_string()),
    ];
    HostPage {
        layout: Layout::new(state, session, Nav::Host),
        identity,
        key,
        certificate,
        intervals,
        totals,
        by_result: s
            .by_result
            .iter()
            .map(|(k, v)| (k.clone(), *v, super::result_class(k)))
            .collect(),
        hosts: s
            .hosts
            .iter()
            .map(|h| SharingHost {
                id: h.host_id.clone(),
                name: h.name.clone(),
                urls: h.listen_urls.join(", "),
                version: h.version.clone(),
                seen: format!(
                    "{} UTC ({})",
                    super::fmt_time(h.last_seen),
                    fmt_relative(h.last_seen, now.as_second())
                ),
                class: if now.as_second() - h.last_seen > SILENT_AFTER_SECS {
                    "bad"
                } else {
                    ""
                },
                this: h.host_id == s.host_id,
            })
            .collect(),
    }
}
