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
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use std::net::SocketAddr;
use std::sync::Arc;
use volact_host::dashboard::{LoginForm, Session, Sessions, render_page, start_session};
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

/// `POST /login`: the host dashboard's login, with the service's admin token.
async fn login(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(sessions): Extension<Arc<Sessions>>,
    tls: Option<Extension<ViaTls>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match start_session(
        &service.auth,
        peer,
        &sessions,
        tls.is_some(),
        &headers,
        &form,
    ) {
        Ok(started) => {
            service.metrics.request("dashboard-login", "ok");
            tracing::info!(ip = %peer.ip(), "vendor dashboard login");
            started
        }
        Err((status, error)) => {
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                ErrorCode::RateLimited
            } else {
                ErrorCode::Unauthorized
            };
            service.metrics.request("dashboard-login", code.as_str());
            tracing::info!(ip = %peer.ip(), "vendor dashboard login refused");
            render_page(status, &LoginPage { error: Some(error) })
        }
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
