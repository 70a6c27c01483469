//! The clients page (the inventory, with revoke and unrevoke) and the events page (the
//! audit log).

use super::session::forbidden;
use super::{
    Layout, Nav, Session, failure, fmt_date, fmt_opt_time, fmt_relative, fmt_time, render_page,
    result_class, store_failure, url_encode,
};
use crate::http::AppState;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use volact_proto::ErrorCode;
use volact_store::EventFilter;

/// Rows shown at most; more is a sign the filter should be narrower.
const CLIENT_ROWS: u32 = 200;
/// Events shown at most.
const EVENT_ROWS: u32 = 300;

/// The clients page's filter, as the GET form sends it. Empty means any.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct ClientsQuery {
    q: String,
    application: String,
    product: String,
    state: String,
}

impl ClientsQuery {
    /// The filter as a query string, to come back to the same view after a form.
    fn to_query(&self) -> String {
        [
            ("q", &self.q),
            ("application", &self.application),
            ("product", &self.product),
            ("state", &self.state),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(options: impl IntoIterator<Item = (String, String)>, current: &str) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == current,
            value,
            label,
        })
        .collect()
}

struct ClientRow {
    client_id: String,
    machine_name: String,
    address: String,
    product: String,
    first_seen: String,
    first_seen_date: String,
    last_seen: String,
    last_seen_relative: String,
    last_result: String,
    result_class: &'static str,
    state: &'static str,
    ticket_until: String,
    ticket_until_date: String,
    revoked_reason: String,
}

#[derive(Template)]
#[template(path = "dashboard/clients.html")]
struct ClientsPage {
    layout: Layout,
    query: ClientsQuery,
    applications: Vec<Choice>,
    products: Vec<Choice>,
    states: Vec<Choice>,
    rows: Vec<ClientRow>,
    more: bool,
    limit: u32,
    window: String,
}

/// `GET /clients`.
pub async fn clients_page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ClientsQuery>,
) -> Response {
    let engine = &state.engine;
    let now = engine.now().as_second();
    let since = engine.window_start();
    // The admin API's filter; a state the form does not offer means any, as before.
    let wanted = ["active", "stale", "revoked"]
        .contains(&query.state.as_str())
        .then(|| query.state.clone());
    let some = |s: &str| Some(s.to_string());
    let client_query = volact_engine::inventory::ClientQuery {
        application: some(&query.application),
        product: some(&query.product),
        state: wanted,
        search: some(&query.q),
        limit: None,
    };
    let filter = match volact_engine::inventory::client_filter(&client_query, since, CLIENT_ROWS) {
        Ok(f) => f,
        Err(e) => return failure(&e),
    };
    let records = match engine.store().clients(&filter).await {
        Ok(r) => r,
        Err(e) => return store_failure(&e),
    };
    let catalog = engine.catalog();
    let product_name = |id: &str| {
        catalog
            .product(id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let more = records.len() > CLIENT_ROWS as usize;
    let rows = records
        .into_iter()
        .take(CLIENT_ROWS as usize)
        .map(|c| ClientRow {
            state: volact_engine::inventory::client_state(c.revoked, c.last_counted, since)
                .as_str(),
            product: product_name(&c.product),
            first_seen: fmt_time(c.first_seen),
            first_seen_date: fmt_date(c.first_seen),
            last_seen: fmt_time(c.last_seen),
            last_seen_relative: fmt_relative(c.last_seen, now),
            result_class: result_class(&c.last_result),
            last_result: c.last_result,
            ticket_until: fmt_opt_time(c.ticket_valid_until),
            ticket_until_date: c
                .ticket_valid_until
                .map(fmt_date)
                .unwrap_or_else(|| "—".into()),
            revoked_reason: c.revoked_reason.unwrap_or_default(),
            client_id: c.client_id,
            machine_name: c.machine_name,
            address: c.address,
        })
        .collect();
    let page = ClientsPage {
        layout: Layout::new(&state, &session, Nav::Clients),
        applications: choices(
            catalog
                .applications
                .iter()
                .map(|a| (a.id.clone(), a.name.clone())),
            &query.application,
        ),
        products: choices(
            catalog
                .products
                .iter()
                .map(|p| (p.id.clone(), p.name.clone())),
            &query.product,
        ),
        states: choices(
            [
                ("active", "active (counted)"),
                ("stale", "stale (outside the window)"),
                ("revoked", "revoked"),
            ]
            .map(|(v, l)| (v.to_string(), l.to_string())),
            &query.state,
        ),
        query,
        rows,
        more,
        limit: CLIENT_ROWS,
        window: volact_core::util::human(engine.settings().count_window),
    };
    render_page(StatusCode::OK, &page)
}

/// The revoke and unrevoke forms: the client, the CSRF token, and the view to return to.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RevokeForm {
    csrf: String,
    client_id: String,
    q: String,
    application: String,
    product: String,
    state: String,
}

/// `POST /clients/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Response {
    set_revoked(&state, &session, form, true).await
}

/// `POST /clients/unrevoke`.
pub async fn unrevoke(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Response {
    set_revoked(&state, &session, form, false).await
}

async fn set_revoked(
    state: &AppState,
    session: &Session,
    form: RevokeForm,
    revoked: bool,
) -> Response {
    if !session.csrf_ok(&form.csrf) {
        return forbidden(
            "The form's security token is missing or wrong. Reload the page and try again.",
        );
    }
    let engine = &state.engine;
    let reason = revoked.then_some("revoked from the dashboard");
    let message = match engine.set_revoked(&form.client_id, revoked, reason).await {
        Ok(false) => format!("No client {} is known to this host.", form.client_id),
        Ok(true) => {
            let record = engine.store().client(&form.client_id).await.ok().flatten();
            let (machine, application) = record
                .map(|c| (c.machine_name, c.application))
                .unwrap_or_default();
            let count = engine
                .counts()
                .ok()
                .and_then(|c| c.into_iter().find(|(a, _)| *a == application))
                .map(|(_, n)| n)
                .unwrap_or(0);
            let app_name = engine
                .catalog()
                .applications
                .iter()
                .find(|a| a.id == application)
                .map(|a| a.name.clone())
                .unwrap_or(application);
            if revoked {
                format!(
                    "Revoked {machine} ({}). It no longer counts and its renewals are refused; the {app_name} count is now {count}.",
                    form.client_id
                )
            } else {
                format!(
                    "Unrevoked {machine} ({}). It counts again from its next request.",
                    form.client_id
                )
            }
        }
        Err(e) if e.code == ErrorCode::BadRequest => {
            format!("{} is not a client id.", form.client_id)
        }
        Err(e) => return failure(&e),
    };
    session.sessions.set_flash(&session.id, message);
    let back = ClientsQuery {
        q: form.q,
        application: form.application,
        product: form.product,
        state: form.state,
    }
    .to_query();
    let target = if back.is_empty() {
        "/clients".to_string()
    } else {
        format!("/clients?{back}")
    };
    Redirect::to(&target).into_response()
}

/// The events page's filter. Empty means any.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct EventsQuery {
    client: String,
    result: String,
    since: String,
}

struct EventRow {
    at: String,
    client_id: String,
    client_link: String,
    machine_name: String,
    address: String,
    product: String,
    minimum_asked: u32,
    count: u32,
    result: String,
    result_class: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard/events.html")]
struct EventsPage {
    layout: Layout,
    query: EventsQuery,
    results: Vec<Choice>,
    periods: Vec<Choice>,
    rows: Vec<EventRow>,
    more: bool,
    limit: u32,
}

/// Periods offered by the events filter, in seconds (0: all retained events).
const PERIODS: [(&str, &str, i64); 6] = [
    ("1h", "last hour", 3_600),
    ("24h", "last 24 hours", 86_400),
    ("7d", "last 7 days", 7 * 86_400),
    ("30d", "last 30 days", 30 * 86_400),
    ("90d", "last 90 days", 90 * 86_400),
    ("all", "all retained", 0),
];

/// `GET /events`.
pub async fn events_page(
    State(state): State<AppState>,
    session: Session,
    Query(mut query): Query<EventsQuery>,
) -> Response {
    let engine = &state.engine;
    let now = engine.now().as_second();
    if !PERIODS.iter().any(|(k, _, _)| *k == query.since) {
        query.since = "7d".into();
    }
    let period = PERIODS
        .iter()
        .find(|(k, _, _)| *k == query.since)
        .map(|(_, _, s)| *s)
        .unwrap_or(0);
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let filter = EventFilter {
        since: (period > 0).then(|| now - period),
        client_id: some(&query.client).map(|c| c.to_lowercase()),
        result: some(&query.result),
        limit: Some(EVENT_ROWS + 1),
        ..EventFilter::default()
    };
    let events = match engine.store().events(&filter).await {
        Ok(e) => e,
        Err(e) => return store_failure(&e),
    };
    let more = events.len() > EVENT_ROWS as usize;
    let catalog = engine.catalog();
    let rows = events
        .into_iter()
        .take(EVENT_ROWS as usize)
        .map(|e| EventRow {
            at: fmt_time(e.at),
            client_link: format!("/events?client={}&since=all", url_encode(&e.client_id)),
            product: catalog
                .product(&e.product)
                .map(|p| p.name.clone())
                .unwrap_or(e.product),
            result_class: result_class(&e.result),
            client_id: e.client_id,
            machine_name: e.machine_name,
            address: e.address,
            minimum_asked: e.minimum_asked,
            count: e.count,
            result: e.result,
        })
        .collect();
    let results = [
        ("activated".to_string(), "activated".to_string()),
        (
            "cloned-image".to_string(),
            "cloned-image (a flag, not a request)".to_string(),
        ),
    ]
    .into_iter()
    .chain(
        ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), c.as_str().to_string())),
    );
    let page = EventsPage {
        layout: Layout::new(&state, &session, Nav::Events),
        results: choices(results, &query.result),
        periods: choices(
            PERIODS
                .iter()
                .map(|(k, l, _)| (k.to_string(), l.to_string())),
            &query.since,
        ),
        query,
        rows,
        more,
        limit: EVENT_ROWS,
    };
    render_page(StatusCode::OK, &page)
}
