//! The dashboard served at `/`: server-rendered pages behind a login with the admin token.

use crate::http::AppState;
use axum::Router;

/// Dashboard routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
