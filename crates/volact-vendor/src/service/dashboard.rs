//! The vendor service's dashboard at `/`: customers, their host keys and hosts, usage over
//! time, and revocation of a host key or a host — server-rendered, in the host
//! dashboard's style and with its sessions (login with the admin token, an HttpOnly
//! SameSite=Strict cookie, a CSRF token in every form, no script, a strict
//! Content-Security-Policy).

mod pages;
mod revoke;
mod usage_chart;

use askama::Template;
use axum::extract::{ConnectInfo, Extension, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use volact_host::dashboard::{
    COOKIE, LoginForm, Session, Sessions, cookie, render_page, set_cookie,
};
use volact_host::listener::ViaTls;
use volact_proto::ErrorCode;

use super::Service;

/// The dashboard's routes. Each call makes a fresh, empty set of sessions.
pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/customer", get(pages::customer))
        .route("/service", get(pages::service))
        .route("/revoke", get(revoke::confirm).post(revoke::revoke))
        .route("/login", get(login_page).post(login))
        // The host dashboard's logout: it needs nothing but the session.
        .route("/logout", post(volact_host::dashboard::logout))
        .route("/dashboard.css", get(volact_host::dashboard::css))
        .layer(Extension(Arc::new(Sessions::default())))
        .layer(middleware::map_response(
            volact_host::dashboard::security_headers,
        ))
}

/// Which entry of the navigation is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nav {
    Customers,
    Service,
}

/// The frame around every page.
#[derive(Debug, Clone)]
struct Layout {
    /// The vendor's name, from its catalog.
    vendor: String,
    nav: Nav,
    csrf: String,
    flash: Option<String>,
}

impl Layout {
    fn new(service: &Service, session: &Session, nav: Nav) -> Layout {
        let vendor = match service.vendor.catalog() {
            Ok(Some((_, catalog))) => catalog.vendor,
            _ => "vendor".to_owned(),
        };
        Layout {
            vendor,
            nav,
            csrf: session.csrf.clone(),
            flash: session.sessions.take_flash(&session.id),
        }
    }

    /// `active` when `which` (`customers`, `service`) is the current page.
    fn active(&self, which: &str) -> &'static str {
        let current = match self.nav {
            Nav::Customers => "customers",
            Nav::Service => "service",
        };
        if current == which { "active" } else { "" }
    }
}

#[derive(Template)]
#[template(path = "vendor/login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_page(session: Result<Session, Response>) -> Response {
    if session.is_ok() {
        return Redirect::to("/").into_response();
    }
    render_page(StatusCode::OK, &LoginPage { error: None })
}

/// `POST /login`: the admin token, checked as the admin API checks it (constant time,
/// wrong tokens slowed down), starts a session.
async fn login(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(sessions): Extension<Arc<Sessions>>,
    tls: Option<Extension<ViaTls>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let presented = Some(form.token.as_str()).filter(|t| !t.trim().is_empty());
    if let Err(e) = service.auth.check(peer.ip(), presented, Instant::now()) {
        service.metrics.request("dashboard-login", e.code.as_str());
        let (status, error) = if e.code == ErrorCode::RateLimited {
            (StatusCode::TOO_MANY_REQUESTS, e.message)
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "That is not the admin token.".to_owned(),
            )
        };
        tracing::info!(ip = %peer.ip(), "vendor dashboard login refused");
        return render_page(status, &LoginPage { error: Some(error) });
    }
    // A fresh id at every login, so an id planted before login is worth nothing.
    if let Some(old) = cookie(&headers, COOKIE) {
        sessions.remove(old);
    }
    match sessions.create(Instant::now()) {
        Ok(id) => {
            service.metrics.request("dashboard-login", "ok");
            tracing::info!(ip = %peer.ip(), "vendor dashboard login");
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&id, tls.is_some()));
            response
        }
        Err(e) => volact_host::dashboard::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            &e.message,
        ),
    }
}

/// A failure reading the vendor's records, as a 500 page.
fn failure(e: &volact_proto::ApiError) -> Response {
    tracing::error!("vendor dashboard: {}: {}", e.code, e.message);
    volact_host::dashboard::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The vendor service could not answer",
        &e.message,
    )
}
