//! Usage reports, both ends: a serving host whose host key asks for reports sends the
//! vendor service a signed snapshot of its counts once a day (`volact_core::usage`), and
//! the service verifies it along the host's certificate chain and keeps it.

use jiff::Timestamp;
use std::sync::Arc;
use volact_engine::data::HostData;
use volact_engine::engine::Engine;
use volact_proto::{ApiError, ErrorCode, UsageReportReceipt, UsageReportUpload};

use crate::vendor_link::VendorLink;

/// Builds, signs and sends the report of `now`'s day; returns the service's receipt.
pub(crate) async fn send_report(
    link: &VendorLink,
    host: &HostData,
    engine: &Engine,
    now: Timestamp,
) -> Result<UsageReportReceipt, ApiError> {
    let Some(report) = volact_engine::usage::build_report(engine, now).await? else {
        return Err(ApiError::new(
            ErrorCode::HostNotActivated,
            "the host has no certificate, so it has nothing to report",
        ));
    };
    let certificate = engine.current_certificate().ok_or_else(|| {
        ApiError::new(
            ErrorCode::HostNotActivated,
            "the host has no certificate, so it has nothing to report",
        )
    })?;
    let token = volact_core::usage::sign(&host.identity()?, &report)?;
    let upload = UsageReportUpload {
        host_certificate: certificate.0.clone(),
        report: token,
    };
    link.post("/v1/usage-reports", &upload, "a usage report receipt")
        .await
}

/// Starts sending usage reports when the host key asks for them (its signed
/// `usage_reports` flag) and a vendor service is known; `None` otherwise. The day's report
/// goes at start and then every `every` (`[vendor] usage_report_every`, 1 h by default)
/// with the latest counts: the service keeps one per host and day, the latest.
pub(crate) fn start_usage_reports(
    link: Option<&VendorLink>,
    host: &HostData,
    engine: &Arc<Engine>,
    every: std::time::Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let asks = host.host_key().is_ok_and(|(_, key)| key.usage_reports);
    if !asks {
        return None;
    }
    let Some(link) = link.cloned() else {
        tracing::warn!(
            "the host key asks for daily usage reports but no vendor service is known ([vendor] url); none are sent"
        );
        return None;
    };
    tracing::info!(url = %link.url, "sending a daily usage report (counts only) to the vendor service");
    let (host, engine) = (host.clone(), engine.clone());
    Some(tokio::spawn(async move {
        loop {
            let now = engine.now();
            match send_report(&link, &host, &engine, now).await {
                Ok(receipt) => tracing::debug!(day = %receipt.day, "usage report sent"),
                Err(e) => tracing::warn!(
                    code = %e.code,
                    "the usage report was not sent (tried again later): {}",
                    e.message
                ),
            }
            tokio::time::sleep(every).await;
        }
    }))
}

/// The service's side: verifies an uploaded report along the host's certificate chain,
/// checks that its host key asks for reports and that the vendor activated this host,
/// and keeps it.
pub(crate) async fn receive(
    service: &crate::vendor_serve::Service,
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
    axum::extract::State(service): axum::extract::State<Arc<crate::vendor_serve::Service>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Bytes,
) -> Result<axum::Json<UsageReportReceipt>, volact_host::http::HttpError> {
    let answer = async {
        if let Some(refused) = crate::vendor_serve::over_limit(&service, peer) {
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
pub(crate) fn routes() -> axum::Router<Arc<crate::vendor_serve::Service>> {
    axum::Router::new().route("/v1/usage-reports", axum::routing::post(upload))
}
