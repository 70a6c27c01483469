//! The vendor service's renewal and catalog routes, and the host's side of both:
//!
//! - `POST /v1/host-renewals`: a serving host sends its current certificate in a request
//!   signed by its identity key and gets a fresh certificate with the same claims and a
//!   new validity, without spending an activation (see `volact_core::renewal`);
//! - `GET /v1/catalog`: the vendor directory's current signed catalog.

use axum::extract::{ConnectInfo, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use std::net::SocketAddr;
use std::sync::Arc;
use volact_core::certificate::Ledger;
use volact_core::delegation::Signer;
use volact_core::renewal::{self, CheckedRenewal};
use volact_host::http::HttpError;
use volact_proto::{ApiError, CatalogResponse, ErrorCode, HostRenewalRequest, HostRenewalResponse};

use crate::vendor::{SigningDir, VendorDir};
use crate::vendor_serve::{MAX_CLOCK_SKEW, Service, over_limit};

/// The routes, merged into the service's router.
pub(crate) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/host-renewals", post(renew))
        .route("/v1/catalog", get(catalog))
}

/// The ledger's part of a renewal, kept to this one function since the ledger moves
/// into the service's database: refuses a replayed request or a host the ledger does not
/// know, else records the request as answered. Spends no activation.
fn admit_in_ledger(
    vendor: &VendorDir,
    renewal: &CheckedRenewal,
    now: Timestamp,
) -> Result<(), ApiError> {
    let mut ledger: Ledger = vendor.read_ledger()?;
    ledger.admit_renewal(renewal, now)?;
    vendor.write_ledger(&ledger)
}

/// Renews a host certificate: checks the request, admits it in the ledger, signs the
/// renewed certificate with the delegated key in `signing` when given, else the root.
pub(crate) fn renew_host(
    vendor: &VendorDir,
    signing: Option<&SigningDir>,
    request: &HostRenewalRequest,
    now: Timestamp,
    days: u32,
) -> Result<HostRenewalResponse, ApiError> {
    let root = vendor.root()?;
    let delegated = signing.map(SigningDir::load).transpose()?;
    let checked = renewal::check_renewal(root.public(), request, now, MAX_CLOCK_SKEW)?;
    admit_in_ledger(vendor, &checked, now)?;
    let signer = match &delegated {
        Some((key, token)) => Signer {
            key,
            delegation: Some(token.clone()),
        },
        None => Signer::root(&root),
    };
    let (token, _) = renewal::renewed_certificate(&signer, &checked, now, days)?;
    Ok(HostRenewalResponse {
        host_certificate: token,
    })
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
    let _turn = service.ledger.lock().await;
    let answer = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            renew_host(
                &service.vendor,
                service.signing.as_ref(),
                &request,
                now,
                service.days,
            )
        })
        .await
        .map_err(|e| HttpError(ApiError::new(ErrorCode::Internal, e.to_string())))?
    };
    match answer {
        Ok(response) => {
            tracing::info!("host certificate renewed online");
            Ok(Json(response))
        }
        Err(e) => {
            tracing::info!(code = %e.code, "host renewal refused: {}", e.message);
            Err(HttpError(e))
        }
    }
}

async fn catalog(State(service): State<Arc<Service>>) -> Result<Json<CatalogResponse>, HttpError> {
    let service = service.clone();
    let catalog = tokio::task::spawn_blocking(move || service.vendor.catalog())
        .await
        .map_err(|e| HttpError(ApiError::new(ErrorCode::Internal, e.to_string())))?
        .map_err(HttpError)?;
    match catalog {
        Some((token, _)) => Ok(Json(CatalogResponse { catalog: token })),
        None => Err(HttpError(ApiError::new(
            ErrorCode::InvalidState,
            "the vendor has not signed a catalog yet",
        ))),
    }
}

/// Sends `body` to the vendor service at `url` + `path` (or GETs it when `None`) and
/// reads its answer through the client's size cap; a refusal comes back with its code.
pub(crate) async fn call<T: serde::de::DeserializeOwned>(
    url: &str,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
) -> Result<T, ApiError> {
    volact_client::tls::install_default_provider();
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let endpoint = format!("{}{path}", url.trim_end_matches('/'));
    let request = match body {
        Some(b) => http.post(&endpoint).json(&b),
        None => http.get(&endpoint),
    };
    let response = request.send().await.map_err(|e| {
        ApiError::new(
            ErrorCode::HostUnreachable,
            format!("cannot reach the vendor service at {url}: {e}"),
        )
    })?;
    let status = response.status();
    let bytes = volact_client::read_capped(response).await.map_err(|e| {
        ApiError::new(
            ErrorCode::HostUnreachable,
            format!("the vendor service at {url} did not answer usably: {e}"),
        )
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ErrorCode::HostUnreachable,
                format!("the vendor service at {url} answered something that is not {what}: {e}"),
            )
        });
    }
    Err(
        serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| {
            ApiError::new(
                ErrorCode::HostUnreachable,
                format!("the vendor service at {url} answered HTTP {status}"),
            )
        }),
    )
}

/// Asks the vendor service at `url` to renew this host's certificate.
pub(crate) async fn renew_online(
    url: &str,
    request: &HostRenewalRequest,
) -> Result<HostRenewalResponse, ApiError> {
    let body = serde_json::to_value(request)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    call(url, "/v1/host-renewals", Some(body), "a host certificate").await
}

/// The vendor service over HTTP(S), as a serving host reaches it.
struct HttpVendor {
    url: String,
}

#[async_trait::async_trait]
impl volact_engine::renewal::VendorService for HttpVendor {
    fn url(&self) -> &str {
        &self.url
    }

    async fn renew(&self, request: &HostRenewalRequest) -> Result<HostRenewalResponse, ApiError> {
        renew_online(&self.url, request).await
    }
}

/// Starts renewing the host certificate in the background, from `[vendor] url` or else
/// the service the host was activated from online; `None` (and a log line) when the host
/// knows no vendor service, as an offline host does.
pub(crate) fn start_renewal(
    host: &volact_engine::data::HostData,
    config: &volact_engine::config::HostConfig,
    engine: &Arc<volact_engine::engine::Engine>,
) -> Option<volact_engine::renewal::RenewalTask> {
    let Some(url) = config.vendor.url.clone().or_else(|| host.vendor_url()) else {
        tracing::info!(
            "no vendor service known ([vendor] url): the host certificate is not renewed online; renew it by activating again before it expires"
        );
        return None;
    };
    tracing::info!(url = %url, renew_before_days = config.vendor.renew_before.as_hours() / 24, "renewing the host certificate online");
    let renewal = volact_engine::renewal::Renewal::new(
        engine.clone(),
        host.clone(),
        Arc::new(HttpVendor { url }),
        config.vendor.renew_before,
    );
    Some(renewal.start())
}
