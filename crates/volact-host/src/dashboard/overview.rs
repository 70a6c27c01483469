//! The overview: each application's count against its products' minimums with 90 days of
//! history, requests per hour, tickets about to end, and cloned-image warnings.

use super::charts::{CountChart, HourCounts, HourlyChart};
use super::{Layout, Nav, Session, fmt_relative, fmt_time, render_page, store_failure};
use crate::http::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use volact_core::catalog::ProductKind;

/// Days of count history shown.
pub const HISTORY_DAYS: u32 = 90;
/// Tickets ending within this many days are listed.
const EXPIRY_DAYS: i64 = 30;
/// Rows of the expiry list.
const EXPIRY_ROWS: u32 = 50;
/// Cloned-image flags raised within this many days are shown.
const CLONE_DAYS: i64 = 30;

struct ProductLine {
    name: String,
    kind: &'static str,
    minimum: u32,
    percent: String,
    class: &'static str,
    state: String,
}

struct AppCard {
    id: String,
    name: String,
    count: u64,
    products: Vec<ProductLine>,
    chart: String,
}

struct ExpiringRow {
    client_id: String,
    machine_name: String,
    product: String,
    valid_until: String,
    relative: String,
}

struct CloneRow {
    client_id: String,
    machines: String,
    address: String,
    reason: &'static str,
    flags: u64,
    last_flagged: String,
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct OverviewPage {
    layout: Layout,
    now: String,
    window: String,
    apps: Vec<AppCard>,
    hourly: String,
    requests_24h: u64,
    expiring: Vec<ExpiringRow>,
    expiring_more: bool,
    renew: String,
    validity: String,
    clones: Vec<CloneRow>,
}

fn kind_name(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Workstation => "workstation",
        ProductKind::Server => "server",
    }
}

/// `GET /`.
pub async fn page(State(state): State<AppState>, session: Session) -> Response {
    match build(&state, &session).await {
        Ok(page) => render_page(StatusCode::OK, &page),
        Err(response) => *response,
    }
}

async fn build(state: &AppState, session: &Session) -> Result<OverviewPage, Box<Response>> {
    let engine = &state.engine;
    let store = engine.store();
    let now = engine.now().as_second();
    let window = engine.settings().count_window.as_secs();
    let fail = |e: volact_store::StoreError| Box::new(store_failure(&e));

    let counts: BTreeMap<String, u32> = engine
        .counts()
        .map_err(|e| Box::new(super::failure(&e)))?
        .into_iter()
        .collect();
    let history = store
        .count_history(now, HISTORY_DAYS, window)
        .await
        .map_err(fail)?;
    let catalog = engine.catalog();
    let certificate = engine.current_certificate();
    let covered: BTreeSet<&str> = certificate
        .as_ref()
        .map(|c| c.1.products.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut apps = Vec::new();
    for app in &catalog.applications {
        let count = u64::from(counts.get(&app.id).copied().unwrap_or(0));
        let products: Vec<_> = catalog
            .products
            .iter()
            .filter(|p| p.application == app.id)
            .collect();
        let lines = products
            .iter()
            .map(|p| {
                let minimum = u64::from(p.minimum_count.max(1));
                let activating = count >= minimum;
                let (class, state) = if !covered.contains(p.id.as_str()) {
                    ("muted", "not in key group".to_string())
                } else if activating {
                    ("ok", "activating".to_string())
                } else {
                    ("warn", format!("waiting: {} more", minimum - count))
                };
                ProductLine {
                    name: p.name.clone(),
                    kind: kind_name(p.kind),
                    minimum: p.minimum_count,
                    percent: format!(
                        "{:.1}",
                        (count.min(minimum) as f64) * 100.0 / minimum as f64
                    ),
                    class,
                    state,
                }
            })
            .collect();
        let series = history
            .series
            .iter()
            .find(|s| s.application == app.id)
            .map(|s| s.counts.clone())
            .unwrap_or_else(|| vec![0; history.days.len()]);
        let minimums: Vec<(String, u32)> = products
            .iter()
            .map(|p| (p.name.clone(), p.minimum_count))
            .collect();
        let chart = CountChart::new(
            format!("{}: count over the last {HISTORY_DAYS} days", app.name),
            &history.days,
            &series,
            &minimums,
            history.partial_days,
        );
        apps.push(AppCard {
            id: app.id.clone(),
            name: app.name.clone(),
            count,
            products: lines,
            chart: chart.render().unwrap_or_default(),
        });
    }

    let hours = hourly(state, now).await.map_err(fail)?;
    let requests_24h = hours.iter().map(|(_, a, b, c)| a + b + c).sum();

    let expiring_records = store
        .expiring_tickets(now, now + EXPIRY_DAYS * 86_400, EXPIRY_ROWS + 1)
        .await
        .map_err(fail)?;
    let expiring_more = expiring_records.len() > EXPIRY_ROWS as usize;
    let expiring = expiring_records
        .into_iter()
        .take(EXPIRY_ROWS as usize)
        .map(|c| {
            let until = c.ticket_valid_until.unwrap_or(now);
            ExpiringRow {
                product: catalog
                    .product(&c.product)
                    .map(|p| p.name.clone())
                    .unwrap_or(c.product),
                client_id: c.client_id,
                machine_name: c.machine_name,
                valid_until: fmt_time(until),
                relative: fmt_relative(until, now),
            }
        })
        .collect();

    let clones = clones(state, now).await.map_err(fail)?;
    Ok(OverviewPage {
        layout: Layout::new(state, session, Nav::Overview),
        now: fmt_time(now),
        window: volact_core::util::human(engine.settings().count_window),
        apps,
        hourly: HourlyChart::new(&hours).render().unwrap_or_default(),
        requests_24h,
        expiring,
        expiring_more,
        renew: volact_core::util::human(engine.settings().renew_interval),
        validity: volact_core::util::human(engine.settings().ticket_validity),
        clones,
    })
}

/// The last 24 hours, the current one included, by outcome.
async fn hourly(state: &AppState, now: i64) -> Result<Vec<HourCounts>, volact_store::StoreError> {
    let current = now.div_euclid(3600) * 3600;
    let first = current - 23 * 3600;
    let mut hours: Vec<HourCounts> = (0..24).map(|i| (first + i * 3600, 0, 0, 0)).collect();
    for r in state.engine.store().requests_by_hour(first).await? {
        let Some(slot) = usize::try_from((r.hour - first) / 3600)
            .ok()
            .and_then(|i| hours.get_mut(i))
        else {
            continue;
        };
        match r.result.as_str() {
            // The audit log also records cloned-image flags; they are not requests.
            "cloned-image" => {}
            "activated" => slot.1 += r.n,
            "count-insufficient" => slot.2 += r.n,
            _ => slot.3 += r.n,
        }
    }
    Ok(hours)
}

/// Clients flagged as cloned images (the same client id from another machine name or
/// fingerprint within a day) in the last [`CLONE_DAYS`] days, most recent first.
async fn clones(state: &AppState, now: i64) -> Result<Vec<CloneRow>, volact_store::StoreError> {
    let records = state
        .engine
        .store()
        .clones(now - CLONE_DAYS * 86_400)
        .await?;
    Ok(records
        .into_iter()
        .map(|c| CloneRow {
            machines: match c.other_machine_name {
                Some(other) if other != c.machine_name => format!("{}, {other}", c.machine_name),
                _ => c.machine_name,
            },
            reason: if c.reason == "machine-fingerprint" {
                "another machine fingerprint"
            } else {
                "another machine name"
            },
            last_flagged: fmt_time(c.last_flagged),
            client_id: c.client_id,
            address: c.address,
            flags: c.flags,
        })
        .collect())
}
