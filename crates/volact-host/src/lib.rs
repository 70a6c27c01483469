//! The volact host's server: the HTTP layer over the engine (`volact-engine`), which it
//! only translates to and from: activation and admin routes, the dashboard, `/metrics`
//! and `/healthz`, admin authentication, and its own listener with timeouts and
//! connection caps.

pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod http;
pub mod listener;
pub mod metrics_route;
pub mod server;
pub mod tls;
