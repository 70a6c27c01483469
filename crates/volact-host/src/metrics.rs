//! `GET /metrics` in Prometheus text format.

use crate::http::AppState;
use axum::Router;

/// The metrics route.
pub fn routes() -> Router<AppState> {
    Router::new()
}
