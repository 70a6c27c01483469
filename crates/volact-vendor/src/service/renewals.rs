//! The service's renewal and catalog routes (the host's side is `volact`'s
//! `vendor_renew`):
//!
//! - `POST /v1/host-renewals`: a serving host sends its current certificate in a request
//!   signed by its identity key and gets a fresh certificate with the same claims and a
//!   new validity, without spending an activation (see `volact_core::renewal`);
//! - `GET /v1/catalog`: the vendor directory's current signed catalog, which serving
//!   hosts fetch (hourly) to take a newer one.

use axum::extract::{ConnectInfo, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use std::net::SocketAddr;
use std::sync::Arc;
use volact_host::http::HttpError;
use volact_proto::{ApiError, CatalogResponse, ErrorCode, HostRenewalRequest, HostRenewalResponse};

use crate::service::{Service, over_limit};

/// The routes, merged into the service's router.
pub(crate) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/host-renewals", post(renew))
        .route("/v1/catalog", get(catalog))
}

async fn renew(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<HostRenewalResponse>, HttpError> {
    if let Some(refused) = over_limit(&service, peer) {
        return Err(HttpError(refused));
    }
    let request: HostRenewalRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError(ApiError::new(
            ErrorCode::BadRequest,
            format!("the body is not a host renewal request: {e}"),
        ))
    })?;
    let now = volact_core::util::whole_seconds(Timestamp::now());
    let answer = crate::ledger::renew(
        &service.vendor,
        service.store.as_ref(),
        service.signing.as_ref(),
        &request,
        now,
        service.days,
    )
    .await;
    match answer {
        Ok(response) => {
            tracing::info!(%peer, "host certificate renewed online");
            service.metrics.request("host-renewals", "ok");
            Ok(Json(response))
        }
        Err(e) => {
            tracing::info!(%peer, code = %e.code, "host renewal refused: {}", e.message);
            service.metrics.request("host-renewals", e.code.as_str());
            Err(HttpError(e))
        }
    }
}

async fn catalog(State(service): State<Arc<Service>>) -> Result<Json<CatalogResponse>, HttpError> {
    let reader = service.clone();
    let catalog = tokio::task::spawn_blocking(move || reader.vendor.catalog())
        .await
        .map_err(|e| HttpError(ApiError::new(ErrorCode::Internal, e.to_string())))?
        .map_err(HttpError)?;
    service.metrics.request("catalog", "ok");
    match catalog {
        Some((token, _)) => Ok(Json(CatalogResponse { catalog: token })),
        None => Err(HttpError(ApiError::new(
            ErrorCode::InvalidState,
            "the vendor has not signed a catalog yet",
        ))),
    }
}
