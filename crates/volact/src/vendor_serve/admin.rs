//! The vendor service's admin API under `/v1/admin/…` and its `/metrics`: the bearer
//! token from `DIR/admin.token`, checked as the host checks its own (constant time, wrong
//! tokens slowed down, the right one never locked out).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Json, Router};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use volact_host::admin::{AuthRejection, bearer, client_ip};
use volact_host::http::HttpError;
use volact_proto::{ApiError, ErrorCode};

use super::Service;

/// Proof that a request carries the vendor service's admin token.
#[derive(Debug, Clone, Copy)]
pub struct VendorAdmin {
    /// Where the request came from, for the log.
    pub ip: IpAddr,
}

impl FromRequestParts<Arc<Service>> for VendorAdmin {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(&parts.extensions);
        match service
            .auth
            .check(ip, bearer(&parts.headers), Instant::now())
        {
            Ok(()) => Ok(VendorAdmin { ip }),
            Err(e) => {
                tracing::info!(%ip, code = %e.code, path = %parts.uri.path(), "vendor admin request refused");
                service.metrics.request("admin", e.code.as_str());
                Err(AuthRejection(e))
            }
        }
    }
}

/// What `GET /v1/admin/status` answers.
#[derive(Debug, serde::Serialize)]
struct ServiceStatus {
    vendor: String,
    catalog_version: u64,
    /// `root`, or the delegation's id when a delegated key signs.
    signer: String,
    /// When the delegated signing key's validity ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer_expires: Option<jiff::Timestamp>,
    certificate_days: u32,
    tls: bool,
    version: &'static str,
}

async fn status(
    admin: VendorAdmin,
    State(service): State<Arc<Service>>,
) -> Result<Json<ServiceStatus>, HttpError> {
    tracing::debug!(ip = %admin.ip, "vendor status");
    let (_, catalog) = service.vendor.catalog()?.ok_or_else(|| {
        HttpError(ApiError::new(
            ErrorCode::InvalidState,
            "the vendor directory has no signed catalog any more; sign one with `volact vendor catalog`",
        ))
    })?;
    let (signer, signer_expires) = match &service.signing {
        Some(dir) => {
            let (_, token) = dir.load()?;
            let d: volact_core::delegation::Delegation = volact_core::token::peek(&token)
                .map_err(|e| HttpError(ApiError::new(ErrorCode::InvalidState, e.to_string())))?;
            (d.jti, Some(d.exp))
        }
        None => ("root".to_owned(), None),
    };
    service.metrics.request("admin", "ok");
    Ok(Json(ServiceStatus {
        vendor: catalog.vendor,
        catalog_version: catalog.version,
        signer,
        signer_expires,
        certificate_days: service.days,
        tls: service.tls,
        version: env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(_: VendorAdmin, State(service): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        service.metrics.render(),
    )
}

async fn unknown(_: VendorAdmin) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        "no such admin endpoint; see /v1/admin/status and docs/VENDOR-SERVICE.md",
    ))
}

/// The admin routes and `/metrics`, every one behind the token.
pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/admin", any(unknown))
        .route("/v1/admin/{*rest}", any(unknown))
}
