//! The dashboard's pages: all customers, one customer's host keys and hosts, and the
//! service's own facts. Read from the vendor store through [`crate::report`], as
//! the admin API and `volact vendor customers` read it.

use super::usage_chart::UsageChart;
use super::{Layout, Nav, failure};
use crate::report::{CustomerView, KeyView};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::Arc;
use volact_host::dashboard::{
    Session, error_page, fmt_date, fmt_relative, fmt_time, render_page, url_encode,
};
use volact_proto::ApiError;
use volact_store::vendor::{UsageFilter, UsageRecord};

use crate::service::Service;

/// Days the usage charts cover.
const CHART_DAYS: i32 = 60;
/// A certificate ending within this many seconds is shown as a warning.
const SOON: i64 = 30 * 86_400;

/// The time now, and today's date, in UTC.
fn now() -> (i64, jiff::civil::Date) {
    let now = jiff::Timestamp::now();
    (
        now.as_second(),
        now.to_zoned(jiff::tz::TimeZone::UTC).date(),
    )
}

/// Usage reports of the last [`CHART_DAYS`] days (of one customer, or all).
async fn recent_usage(
    service: &Service,
    customer: Option<&str>,
    today: jiff::civil::Date,
) -> Result<Vec<UsageRecord>, ApiError> {
    let from = today
        .checked_sub(jiff::Span::new().days(CHART_DAYS - 1))
        .map(|d| d.to_string())
        .ok();
    let filter = UsageFilter {
        customer: customer.map(str::to_owned),
        from_day: from,
        ..UsageFilter::default()
    };
    crate::report::usage(service.store.as_ref(), &filter).await
}

/// Each host's latest report among `reports`.
fn latest_by_host(reports: &[UsageRecord]) -> BTreeMap<&str, &UsageRecord> {
    let mut latest: BTreeMap<&str, &UsageRecord> = BTreeMap::new();
    for r in reports {
        let keep = latest
            .get(r.host_id.as_str())
            .is_none_or(|l| l.day <= r.day);
        if keep {
            latest.insert(r.host_id.as_str(), r);
        }
    }
    latest
}

fn counted(report: &UsageRecord) -> u64 {
    report
        .products
        .values()
        .fold(0u64, |a, n| a.saturating_add(*n))
}

/// Product ids to the names the catalog gives them.
fn product_names(service: &Service) -> BTreeMap<String, String> {
    match service.vendor.catalog() {
        Ok(Some((_, catalog))) => catalog
            .products
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn chart(
    service: &Service,
    title: String,
    reports: &[UsageRecord],
    today: jiff::civil::Date,
) -> String {
    let names = product_names(service);
    let chart = UsageChart::new(title, reports, today, CHART_DAYS, |id| {
        names.get(id).cloned().unwrap_or_else(|| id.to_owned())
    });
    chart.render().unwrap_or_else(|e| {
        tracing::error!("usage chart failed: {e}");
        String::new()
    })
}

/// The badge class of a certificate that ends at `expires`.
fn expiry_class(expires: i64, now: i64) -> &'static str {
    if expires <= now {
        "bad"
    } else if expires - now <= SOON {
        "warn"
    } else {
        "ok"
    }
}

/// One customer in the list.
struct CustomerRow {
    name: String,
    link: String,
    keys: usize,
    keys_revoked: usize,
    hosts: usize,
    activations: u64,
    counted: u64,
    last_contact: String,
    last_contact_relative: String,
    next_expiry: String,
    expiry_class: &'static str,
}

fn live_hosts(k: &KeyView) -> impl Iterator<Item = &volact_store::vendor::HostRecord> {
    let key_revoked = k.key.revoked_at.is_some();
    k.hosts
        .iter()
        .filter(move |h| !key_revoked && h.revoked_at.is_none())
}

fn customer_row(c: &CustomerView, latest: &BTreeMap<&str, &UsageRecord>, now: i64) -> CustomerRow {
    let hosts: Vec<_> = c.host_keys.iter().flat_map(live_hosts).collect();
    let last = c
        .host_keys
        .iter()
        .flat_map(|k| &k.hosts)
        .map(|h| h.last_contact)
        .max();
    let next = hosts
        .iter()
        .map(|h| h.certificate_expires)
        .filter(|t| *t > now)
        .min();
    CustomerRow {
        name: c.customer.clone(),
        link: url_encode(&c.customer),
        keys: c.host_keys.len(),
        keys_revoked: c
            .host_keys
            .iter()
            .filter(|k| k.key.revoked_at.is_some())
            .count(),
        hosts: hosts.len(),
        activations: hosts.iter().map(|h| u64::from(h.activations)).sum(),
        counted: crate::report::combined_products(
            hosts
                .iter()
                .filter_map(|h| latest.get(h.host_id.as_str()).copied()),
        )
        .values()
        .fold(0u64, |a, n| a.saturating_add(*n)),
        last_contact: last.map(fmt_time).unwrap_or_else(|| "never".into()),
        last_contact_relative: last.map(|t| fmt_relative(t, now)).unwrap_or_default(),
        next_expiry: next.map_or_else(|| "—".into(), fmt_date),
        expiry_class: next.map_or("muted", |t| expiry_class(t, now)),
    }
}

#[derive(Template)]
#[template(path = "vendor/overview.html")]
struct OverviewPage {
    layout: Layout,
    now: String,
    days: i32,
    customers: Vec<CustomerRow>,
    active_keys: usize,
    active_hosts: usize,
    counted: u64,
    chart: String,
}

/// `GET /`: every customer, and usage over all of them.
pub(super) async fn overview(session: Session, State(service): State<Arc<Service>>) -> Response {
    let (now, today) = now();
    let answer = async {
        let customers = crate::report::customers(service.store.as_ref(), None).await?;
        let reports = recent_usage(&service, None, today).await?;
        Ok::<_, ApiError>((customers, reports))
    }
    .await;
    let (customers, reports) = match answer {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let latest = latest_by_host(&reports);
    let rows: Vec<CustomerRow> = customers
        .iter()
        .map(|c| customer_row(c, &latest, now))
        .collect();
    let active_keys = customers
        .iter()
        .flat_map(|c| &c.host_keys)
        .filter(|k| k.key.revoked_at.is_none() && k.key.expires.is_none_or(|e| e > now))
        .count();
    let page = OverviewPage {
        layout: Layout::new(&service, &session, Nav::Customers),
        now: fmt_time(now),
        days: CHART_DAYS,
        active_keys,
        active_hosts: rows.iter().map(|r| r.hosts).sum(),
        counted: rows.iter().map(|r| r.counted).sum(),
        customers: rows,
        chart: chart(&service, "Counted clients per day".into(), &reports, today),
    };
    service.metrics.request("dashboard", "ok");
    render_page(StatusCode::OK, &page)
}

/// A host key on the customer page.
struct KeyRow {
    key_id: String,
    group: String,
    seats: String,
    reports: &'static str,
    created: String,
    expires: String,
    max_hosts: u32,
    max_activations: u32,
    state: &'static str,
    state_label: String,
    state_class: &'static str,
    hosts: Vec<HostRow>,
    /// The key's own usage chart, when the customer has more than one key.
    chart: Option<String>,
}

/// A host on the customer page.
struct HostRow {
    host_id: String,
    activations: u32,
    first_activated: String,
    last_contact: String,
    last_contact_relative: String,
    certificate_expires: String,
    certificate_relative: String,
    certificate_class: &'static str,
    report: String,
    state: &'static str,
    state_class: &'static str,
}

fn key_row(k: &KeyView, latest: &BTreeMap<&str, &UsageRecord>, now: i64) -> KeyRow {
    let key = &k.key;
    let (state, state_label, state_class) = match (key.revoked_at, key.expires) {
        (Some(at), _) => ("revoked", format!("revoked {}", fmt_date(at)), "bad"),
        (None, Some(exp)) if exp <= now => ("expired", format!("expired {}", fmt_date(exp)), "bad"),
        _ => ("in-force", "in force".to_owned(), "ok"),
    };
    let hosts = k
        .hosts
        .iter()
        .map(|h| {
            let (state, state_class) = if h.revoked_at.is_some() || key.revoked_at.is_some() {
                ("revoked", "bad")
            } else if h.certificate_expires <= now {
                ("expired", "bad")
            } else {
                ("active", "ok")
            };
            let report = latest.get(h.host_id.as_str()).map_or_else(
                || {
                    if key.usage_reports {
                        "none yet".to_owned()
                    } else {
                        "off".to_owned()
                    }
                },
                |r| {
                    let shared = crate::report::count_of(r)
                        .strip_prefix("shared:")
                        .map(|id| format!(" · count shared ({id})"))
                        .unwrap_or_default();
                    format!(
                        "{}: {} counted, {} known · {}{shared}",
                        r.day,
                        counted(r),
                        r.clients_known,
                        r.host_version
                    )
                },
            );
            HostRow {
                host_id: h.host_id.clone(),
                activations: h.activations,
                first_activated: fmt_date(h.first_activated),
                last_contact: fmt_time(h.last_contact),
                last_contact_relative: fmt_relative(h.last_contact, now),
                certificate_expires: fmt_date(h.certificate_expires),
                certificate_relative: fmt_relative(h.certificate_expires, now),
                certificate_class: expiry_class(h.certificate_expires, now),
                report,
                state,
                state_class,
            }
        })
        .collect();
    KeyRow {
        key_id: key.key_id.clone(),
        group: key.group.clone(),
        seats: key
            .seats
            .map_or_else(|| "no seat cap".to_owned(), |s| format!("{s} seats")),
        reports: if key.usage_reports { "on" } else { "off" },
        created: fmt_date(key.created),
        expires: key.expires.map_or_else(
            || "no expiry".to_owned(),
            |e| format!("until {}", fmt_date(e)),
        ),
        max_hosts: key.max_hosts,
        max_activations: key.max_activations,
        state,
        state_label,
        state_class,
        hosts,
        chart: None,
    }
}

#[derive(Template)]
#[template(path = "vendor/customer.html")]
struct CustomerPage {
    layout: Layout,
    name: String,
    days: i32,
    keys: Vec<KeyRow>,
    /// `2 host keys, 3 hosts activated, 120 clients counted in the latest reports.`
    summary: String,
    chart: String,
}

/// `1 host` or `2 hosts`.
fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `?name=` of the customer page.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct CustomerQuery {
    #[serde(default)]
    name: String,
}

/// `GET /customer?name=`: one customer's host keys, hosts and usage.
pub(super) async fn customer(
    session: Session,
    State(service): State<Arc<Service>>,
    Query(q): Query<CustomerQuery>,
) -> Response {
    let (now, today) = now();
    let answer = async {
        let found = crate::report::customers(service.store.as_ref(), Some(&q.name)).await?;
        let reports = recent_usage(&service, Some(&q.name), today).await?;
        Ok::<_, ApiError>((found, reports))
    }
    .await;
    let (found, reports) = match answer {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let Some(c) = found.into_iter().find(|c| c.customer == q.name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such customer",
            "The vendor service has no host key for that customer. Go back to the list of customers.",
        );
    };
    let latest = latest_by_host(&reports);
    let row = customer_row(&c, &latest, now);
    let page = CustomerPage {
        layout: Layout::new(&service, &session, Nav::Customers),
        keys: c
            .host_keys
            .iter()
            .map(|k| {
                let mut row = key_row(k, &latest, now);
                // Usage per host key too, when one chart of the customer would mix keys.
                if c.host_keys.len() > 1 {
                    let own: Vec<UsageRecord> = reports
                        .iter()
                        .filter(|r| r.key_id == k.key.key_id)
                        .cloned()
                        .collect();
                    row.chart = Some(chart(
                        &service,
                        format!("Counted clients per day, host key {}", k.key.key_id),
                        &own,
                        today,
                    ));
                }
                row
            })
            .collect(),
        summary: format!(
            "{}, {} activated, {} in the latest reports.",
            plural(row.keys as u64, "host key", "host keys"),
            plural(row.hosts as u64, "host", "hosts"),
            plural(row.counted, "client counted", "clients counted"),
        ),
        chart: chart(
            &service,
            format!("Counted clients per day, {}", c.customer),
            &reports,
            today,
        ),
        name: c.customer,
        days: CHART_DAYS,
    };
    service.metrics.request("dashboard", "ok");
    render_page(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "vendor/service.html")]
struct ServicePage {
    layout: Layout,
    /// (label, value, class).
    facts: Vec<(String, String, &'static str)>,
    sequence: u64,
    /// (kind, id, when, reason).
    revoked: Vec<(String, String, String, String)>,
}

/// `GET /service`: who signs, the catalog, TLS, and what the revocation list holds.
pub(super) async fn service(session: Session, State(service): State<Arc<Service>>) -> Response {
    let (now, _) = now();
    let revocations = match service.store.revocations().await {
        Ok(r) => r,
        Err(e) => {
            return failure(&ApiError::new(
                volact_proto::ErrorCode::StorageFailure,
                format!("the vendor's records could not be read: {e}"),
            ));
        }
    };
    let mut facts: Vec<(String, String, &'static str)> = Vec::new();
    match service.vendor.catalog() {
        Ok(Some((_, catalog))) => {
            facts.push(("Vendor".into(), catalog.vendor.clone(), ""));
            facts.push(("Catalog version".into(), catalog.version.to_string(), ""));
            facts.push(("Products".into(), catalog.products.len().to_string(), ""));
        }
        _ => facts.push(("Catalog".into(), "missing".into(), "bad")),
    }
    match &service.signing {
        Some(dir) => match dir.load() {
            Ok((_, token)) => {
                match volact_core::token::peek::<volact_core::delegation::Delegation>(&token) {
                    Ok(d) => {
                        let class = expiry_class(d.exp.as_second(), now);
                        facts.push(("Signer".into(), format!("delegated key {}", d.jti), ""));
                        facts.push((
                            "Signing key until".into(),
                            format!(
                                "{} ({})",
                                fmt_date(d.exp.as_second()),
                                fmt_relative(d.exp.as_second(), now)
                            ),
                            if class == "ok" { "" } else { "bad" },
                        ));
                    }
                    Err(e) => facts.push(("Signer".into(), e.to_string(), "bad")),
                }
            }
            Err(e) => facts.push(("Signer".into(), e.message, "bad")),
        },
        None => facts.push(("Signer".into(), "the root key, on this machine".into(), "")),
    }
    facts.push((
        "Host certificates".into(),
        format!("valid {} days", service.days),
        "",
    ));
    facts.push((
        "Transport".into(),
        if service.tls {
            "HTTPS".into()
        } else {
            "plain HTTP (loopback only)".into()
        },
        if service.tls { "ok" } else { "" },
    ));
    facts.push(("Version".into(), env!("CARGO_PKG_VERSION").into(), ""));
    let page = ServicePage {
        layout: Layout::new(&service, &session, Nav::Service),
        facts,
        sequence: revocations.sequence,
        revoked: revocations
            .entries
            .iter()
            .map(|e| {
                (
                    e.kind.as_str().to_owned(),
                    e.id.clone(),
                    fmt_time(e.at),
                    e.reason.clone().unwrap_or_default(),
                )
            })
            .collect(),
    };
    service.metrics.request("dashboard", "ok");
    render_page(StatusCode::OK, &page)
}
