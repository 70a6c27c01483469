//! The HTTP layer: it only translates between HTTP and the engine.

use crate::auth::AdminAuth;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use volact_engine::config::HostConfig;
use volact_engine::data::HostData;
use volact_engine::engine::Engine;
use volact_proto::{ActivationRequest, ApiError, ErrorCode, MAX_BODY_BYTES};

/// An [`ApiError`] as an HTTP response: the code's status and the error as JSON.
pub struct HttpError(pub ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // `rate-limited` says when to come back in a header too, for HTTP tooling.
        let retry = (self.0.code == ErrorCode::RateLimited)
            .then(|| self.0.details["retry_after_secs"].as_u64())
            .flatten();
        let mut response = (status, Json(self.0)).into_response();
        if let Some(secs) = retry {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The activation engine.
    pub engine: Arc<Engine>,
    /// Admin credentials.
    pub auth: Arc<AdminAuth>,
    /// The data directory.
    pub data: HostData,
    /// The configuration in force.
    pub config: Arc<HostConfig>,
    /// The metrics token's check, when `/metrics` requires one.
    pub metrics_auth: Option<Arc<AdminAuth>>,
}

impl axum::extract::FromRef<AppState> for Arc<Engine> {
    fn from_ref(state: &AppState) -> Arc<Engine> {
        state.engine.clone()
    }
}

/// All routes: activations, host facts, health, admin API, metrics and dashboard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/activations", post(activations))
        .route("/v1/host", get(host))
        .route("/healthz", get(healthz))
        .merge(crate::admin::routes())
        .merge(crate::metrics_route::routes())
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Parses a JSON body, turning every failure into a `bad-request` that names the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::bad_request(
                "body",
                format!("larger than the limit of {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("body", e.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        let why = e.to_string();
        // serde names the missing or unknown field in its message; keep it for the user.
        let field = why
            .split('`')
            .nth(1)
            .filter(|_| why.contains("field"))
            .unwrap_or("body")
            .to_string();
        ApiError::bad_request(&field, format!("invalid JSON: {why}"))
    })
}

async fn activations(
    State(engine): State<Arc<Engine>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let started = std::time::Instant::now();
    let req: ActivationRequest = match parse_json(body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = %e.code, address = %peer.ip(), "activation request refused: {}", e.message);
            engine.metrics().request(None, Err(e.code));
            engine.metrics().latency(started);
            return Err(e.into());
        }
    };
    let answer = engine.activate(&req, &peer.ip().to_string()).await;
    engine.metrics().latency(started);
    Ok(sized_json(&answer?))
}

/// An answer is about 1.5 KB (two signed tokens); written into a buffer that size from
/// the start instead of one that grows from 128 bytes, as axum's `Json` does, copying
/// the answer over and over on the busiest path.
const ANSWER_BYTES: usize = 2048;

/// `value` as a JSON response, like axum's `Json`, serialised into a buffer sized for an
/// activation answer.
fn sized_json(value: &impl serde::Serialize) -> Response {
    let mut body = Vec::with_capacity(ANSWER_BYTES);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => HttpError(ApiError::new(
            ErrorCode::Internal,
            format!("could not write the answer: {e}"),
        ))
        .into_response(),
    }
}

async fn host(State(engine): State<Arc<Engine>>) -> Response {
    Json(engine.info()).into_response()
}

async fn healthz(State(engine): State<Arc<Engine>>) -> Response {
    match volact_engine::health::readiness(&engine) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}: {}\n", e.code, e.message),
        )
            .into_response(),
    }
}

async fn not_found() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /v1/activations, /v1/host, /healthz, /metrics, /v1/admin/…",
    ))
}
