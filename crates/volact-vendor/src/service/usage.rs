//! The service's side of usage reports (`POST /v1/usage-reports`): a report is verified
//! along the host's certificate chain and kept when its host key asks for reports and
//! the vendor activated that host. The host's side is `volact`'s `vendor_usage`.

use jiff::Timestamp;
use std::sync::Arc;
use volact_proto::{ApiError, ErrorCode, UsageReportReceipt, UsageReportUpload};

/// The service's side: verifies an uploaded report along the host's certificate chain,
/// checks that its host key asks for reports and that the vendor activated this host,
/// and keeps it.
pub(crate) async fn receive(
    service: &crate::service::Service,
    upload: &UsageReportUpload,
    now: Timestamp,
) -> Result<UsageReportReceipt, ApiError> {
    let root = service.vendor.root_public()?;
    let (cert, report) =
        volact_core::usage::verify_upload(&root, &upload.host_certificate, &upload.report, now)?;
    let store = service.store.as_ref();
    let failed = |e: volact_store::StoreError| {
        ApiError::new(
            ErrorCode::StorageFailure,
            format!("the usage report could not be kept: {e}; the host sends it again later"),
        )
    };
    let key = store.host_key(&cert.key_id).await.map_err(failed)?;
    if !key.as_ref().is_some_and(|k| k.usage_reports) {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "host key {} does not ask for usage reports, so none is kept",
                cert.key_id
            ),
            serde_json::json!({ "key_id": cert.key_id }),
        ));
    }
    let known = store
        .hosts(Some(&cert.key_id))
        .await
        .map_err(failed)?
        .into_iter()
        .any(|h| h.host_id == cert.sub);
    if !known {
        return Err(volact_core::certificate::unknown_host(
            &cert.key_id,
            &cert.sub,
        ));
    }
    let day = report.day.to_string();
    let record = volact_store::vendor::UsageRecord {
        key_id: report.key_id,
        host_id: report.host_id,
        day: day.clone(),
        received: now.as_second(),
        host_version: report.host_version,
        clients_known: report.clients_known,
        products: report.products,
        applications: report.applications,
        token: upload.report.clone(),
    };
    store.put_usage(&record).await.map_err(failed)?;
    Ok(UsageReportReceipt { day })
}

async fn upload(
    axum::extract::State(service): axum::extract::State<Arc<crate::service::Service>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Bytes,
) -> Result<axum::Json<UsageReportReceipt>, volact_host::http::HttpError> {
    let answer = async {
        if let Some(refused) = crate::service::over_limit(&service, peer) {
            return Err(refused);
        }
        let upload: UsageReportUpload = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("the body is not a usage report upload: {e}"),
            )
        })?;
        receive(
            &service,
            &upload,
            volact_core::util::whole_seconds(Timestamp::now()),
        )
        .await
    }
    .await;
    match &answer {
        Ok(r) => tracing::info!(%peer, day = %r.day, "usage report kept"),
        Err(e) => tracing::info!(%peer, code = %e.code, "usage report refused: {}", e.message),
    }
    service.metrics.request(
        "usage-reports",
        answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"),
    );
    answer.map(axum::Json).map_err(volact_host::http::HttpError)
}

/// The service's usage route.
pub(crate) fn routes() -> axum::Router<Arc<crate::service::Service>> {
    axum::Router::new().route("/v1/usage-reports", axum::routing::post(upload))
}
