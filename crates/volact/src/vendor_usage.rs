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
