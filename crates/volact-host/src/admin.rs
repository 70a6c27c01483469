//! The admin API under `/v1/admin/…` (bearer token).

use crate::http::AppState;
use axum::Router;

/// Admin routes; every one requires the admin token.
pub fn routes() -> Router<AppState> {
    Router::new()
}
