//! `GET /metrics`: the engine's metrics in Prometheus' text format, behind the metrics
//! token when one is configured.

use crate::http::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Instant;
use volact_proto::ErrorCode;

/// The metrics route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    if let Some(auth) = &state.metrics_auth {
        let ip = crate::admin::client_ip(request.extensions());
        let presented = crate::admin::bearer(request.headers());
        if let Err(mut e) = auth.check(ip, presented, Instant::now()) {
            if e.code == ErrorCode::Unauthorized {
                e.message = "missing or wrong metrics token; send `Authorization: Bearer TOKEN` with the token from the file named by metrics_token_file".into();
            }
            return crate::admin::AuthRejection(e).into_response();
        }
    }
    let engine = &state.engine;
    let counts = engine.counts().unwrap_or_default();
    engine.metrics().set_count_feed_age(engine.count_feed_age());
    let ready = volact_engine::health::readiness(engine).is_ok();
    let mut response = engine.metrics().render(&counts, ready).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
