//! The dashboard served at `/`: server-rendered pages behind a login with the admin token.
//!
//! Everything a page needs is in the binary: askama templates compiled in, one small
//! stylesheet, charts drawn as inline SVG on the server. No script runs and nothing is
//! fetched from elsewhere, so it works on a closed network and under a strict
//! Content-Security-Policy. Every value shown goes through askama's HTML escaping.

pub mod charts;
mod host;
mod inventory;
mod overview;
mod session;

pub use session::{
    COOKIE, CsrfForm, LoginForm, Session, Sessions, cookie, forbidden, logout, set_cookie,
    start_session,
};

use crate::http::AppState;
use askama::Template;
use axum::extract::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use jiff::Timestamp;
use std::sync::Arc;

/// The stylesheet, served at `/dashboard.css` (the vendor service's dashboard uses it too).
pub const CSS: &str = include_str!("../../templates/dashboard/style.css");

/// Dashboard routes. Each call makes a fresh, empty set of sessions, so every host (and
/// every test host in one process) has its own.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/clients", get(inventory::clients_page))
        .route("/clients/revoke", post(inventory::revoke))
        .route("/clients/unrevoke", post(inventory::unrevoke))
        .route("/events", get(inventory::events_page))
        .route("/host", get(host::page))
        .route("/dashboard.css", get(css))
        .layer(Extension(Arc::new(Sessions::default())))
        .layer(middleware::map_response(security_headers))
}

/// Which entry of the navigation is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Counts and charts.
    Overview,
    /// The inventory.
    Clients,
    /// The audit log.
    Events,
    /// Host facts.
    Host,
}

/// The frame around every page: header, navigation, logout, one-time message.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Host id.
    pub host_id: String,
    /// `ok` or `bad`, for the state badge.
    pub state_class: &'static str,
    /// The host's state in words.
    pub state_label: String,
    /// Current page.
    pub nav: Nav,
    /// The session's CSRF token, for the logout form and every other form.
    pub csrf: String,
    /// A message left by the previous action.
    pub flash: Option<String>,
}

impl Layout {
    /// `active` when `which` (`overview`, `clients`, `events`, `host`) is the current page.
    pub fn active(&self, which: &str) -> &'static str {
        let current = match self.nav {
            Nav::Overview => "overview",
            Nav::Clients => "clients",
            Nav::Events => "events",
            Nav::Host => "host",
        };
        if current == which { "active" } else { "" }
    }
}

/// Adds the headers every dashboard answer carries: no framing, no sniffing, no referrer,
/// and a policy that allows only this origin's stylesheet and forms, and no script.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show live counts and carry the CSRF token: never keep them.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `GET /dashboard.css`.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Renders a page with `status`; a template failure becomes a plain 500.
pub fn render_page<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("dashboard template failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the dashboard page could not be rendered; see the host's log\n",
            )
                .into_response()
        }
    }
}

/// A page that says what went wrong, outside the layout (it may come before login).
#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

/// An error page with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render_page(status, &ErrorPage { title, message })
}

/// A storage or engine failure as a 500 page.
pub fn failure(e: &volact_proto::ApiError) -> Response {
    tracing::error!("dashboard: {}: {}", e.code, e.message);
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The host could not answer",
        &e.message,
    )
}

/// A storage failure as a 500 page.
pub fn store_failure(e: &volact_store::StoreError) -> Response {
    failure(&volact_proto::ApiError::new(
        volact_proto::ErrorCode::StorageFailure,
        format!("the host's storage failed: {e}"),
    ))
}

/// `2026-01-05 14:03` (UTC); empty for an impossible time.
pub fn fmt_time(secs: i64) -> String {
    Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// `2026-01-05` (UTC); empty for an impossible time.
pub fn fmt_date(secs: i64) -> String {
    Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `fmt_time` for an optional time, with a dash for none.
pub fn fmt_opt_time(secs: Option<i64>) -> String {
    secs.map(fmt_time).unwrap_or_else(|| "—".into())
}

/// How far `secs` is from `now` in words: `in 3 days`, `5 h ago`, `just now`.
pub fn fmt_relative(secs: i64, now: i64) -> String {
    let d = secs - now;
    let a = d.unsigned_abs();
    let amount = if a < 60 {
        return "just now".into();
    } else if a < 3600 {
        format!("{} min", a / 60)
    } else if a < 2 * 86_400 {
        format!("{} h", a / 3600)
    } else {
        format!("{} days", a / 86_400)
    };
    if d > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// CSS class of a result code's badge.
pub fn result_class(result: &str) -> &'static str {
    match result {
        "activated" => "ok",
        "count-insufficient" => "warn",
        _ => "bad",
    }
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(fmt_relative(100, 100), "just now");
        assert_eq!(fmt_relative(100 + 3 * 86_400, 100), "in 3 days");
        assert_eq!(fmt_relative(0, 7200), "2 h ago");
        assert_eq!(fmt_time(1_767_225_600), "2026-01-01 00:00");
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
