//! The vendor service's admin API under `/v1/admin/…` and its `/metrics`: the bearer
//! token from `DIR/admin.token`, checked as the host checks its own (constant time, wrong
//! tokens slowed down, the right one never locked out).

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
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

/// `?customer=` of the customers list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerQuery {
    customer: Option<String>,
}

/// `?customer=&key_id=&from=&to=` of the usage list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    customer: Option<String>,
    key_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, HttpError> {
    q.map(|Query(v)| v)
        .map_err(|e| HttpError(ApiError::bad_request("query", e.body_text())))
}

async fn customers(
    _: VendorAdmin,
    State(service): State<Arc<Service>>,
    q: Result<Query<CustomerQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::report::CustomerView>>, HttpError> {
    let q = query(q)?;
    service.metrics.request("admin", "ok");
    Ok(Json(
        crate::report::customers(service.store.as_ref(), q.customer.as_deref()).await?,
    ))
}

async fn usage(
    _: VendorAdmin,
    State(service): State<Arc<Service>>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Vec<volact_store::vendor::UsageRecord>>, HttpError> {
    let q = query(q)?;
    let filter = volact_store::vendor::UsageFilter {
        key_id: q.key_id,
        customer: q.customer,
        from_day: q.from,
        to_day: q.to,
    };
    service.metrics.request("admin", "ok");
    Ok(Json(
        crate::report::usage(service.store.as_ref(), &filter).await?,
    ))
}

/// The body of `POST /v1/admin/host-keys`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewHostKey {
    pub(crate) customer: String,
    pub(crate) group: String,
    #[serde(default)]
    pub(crate) seats: Option<u32>,
    /// `YYYY-MM-DD` or an RFC 3339 time.
    #[serde(default)]
    pub(crate) expires: Option<String>,
    #[serde(default)]
    pub(crate) max_hosts: Option<u32>,
    #[serde(default)]
    pub(crate) max_activations: Option<u32>,
    #[serde(default)]
    pub(crate) usage_reports: bool,
}

async fn new_host_key(
    admin: VendorAdmin,
    State(service): State<Arc<Service>>,
    body: Result<Json<NewHostKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Json(new) = body.map_err(|e| HttpError(ApiError::bad_request("body", e.body_text())))?;
    let spec = crate::dir::HostKeySpec {
        customer: new.customer,
        group: new.group,
        seats: new.seats,
        expires: new
            .expires
            .as_deref()
            .map(crate::dir::parse_date)
            .transpose()?,
        max_hosts: new
            .max_hosts
            .unwrap_or(volact_core::host_key::DEFAULT_MAX_HOSTS),
        max_activations: new
            .max_activations
            .unwrap_or(volact_core::host_key::DEFAULT_MAX_ACTIVATIONS),
        usage_reports: new.usage_reports,
    };
    let now = volact_core::util::whole_seconds(jiff::Timestamp::now());
    let (token, key, unreachable) = service
        .vendor
        .host_key(spec, now, service.signing.as_ref())?;
    crate::ledger::record_host_key(service.store.as_ref(), &token, &key).await?;
    tracing::info!(ip = %admin.ip, key_id = %key.jti, customer = %key.customer, "host key issued");
    service.metrics.request("admin", "ok");
    Ok(Json(serde_json::json!({
        "host_key": token,
        "claims": key,
        "unreachable_products": unreachable,
    })))
}

/// The body of a revocation.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn revoke(
    admin: VendorAdmin,
    service: &Service,
    kind: volact_store::vendor::RevokedKind,
    id: &str,
    body: Option<Json<RevokeBody>>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let reason = body.and_then(|Json(b)| b.reason);
    let sequence =
        crate::ledger::revoke(service.store.as_ref(), kind, id, reason.as_deref()).await?;
    tracing::info!(ip = %admin.ip, kind = kind.as_str(), %id, sequence, "revoked");
    service.metrics.request("admin", "ok");
    Ok(Json(
        serde_json::json!({ "revoked": id, "kind": kind, "sequence": sequence }),
    ))
}

async fn revoke_host_key(
    admin: VendorAdmin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Option<Json<RevokeBody>>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let kind = volact_store::vendor::RevokedKind::HostKey;
    revoke(admin, &service, kind, &id, body).await
}

async fn revoke_host(
    admin: VendorAdmin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Option<Json<RevokeBody>>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let kind = volact_store::vendor::RevokedKind::Host;
    revoke(admin, &service, kind, &id, body).await
}

async fn revoke_delegation(
    admin: VendorAdmin,
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Option<Json<RevokeBody>>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let kind = volact_store::vendor::RevokedKind::Delegation;
    revoke(admin, &service, kind, &id, body).await
}

async fn unknown(_: VendorAdmin) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        "no such admin endpoint; see /v1/admin/status, /v1/admin/customers, /v1/admin/usage, /v1/admin/host-keys, /v1/admin/host-keys/ID/revoke, /v1/admin/hosts/ID/revoke and docs/VENDOR-SERVICE.md",
    ))
}

/// The admin routes and `/metrics`, every one behind the token.
pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/customers", get(customers))
        .route("/v1/admin/usage", get(usage))
        .route("/v1/admin/host-keys", post(new_host_key))
        .route("/v1/admin/host-keys/{id}/revoke", post(revoke_host_key))
        .route("/v1/admin/hosts/{id}/revoke", post(revoke_host))
        .route("/v1/admin/delegations/{id}/revoke", post(revoke_delegation))
        .route("/metrics", get(metrics))
        .route("/v1/admin", any(unknown))
        .route("/v1/admin/{*rest}", any(unknown))
}
