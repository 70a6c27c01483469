//! Usage reports, both ends: a serving host whose host key asks for reports sends the
//! vendor service a signed snapshot of its counts once a day (`volact_core::usage`), and
//! the service verifies it along the host's certificate chain and keeps it.

use jiff::Timestamp;
use std::sync::Arc;
use volact_engine::data::{HostData, write_atomic};
use volact_engine::engine::Engine;
use volact_proto::{ApiError, ErrorCode, UsageReportReceipt, UsageReportUpload};

use crate::vendor_link::VendorLink;

/// How often a serving host looks whether today's report is still to be sent: a failed
/// send is retried at the next look.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a host keeps the day of its last report that the service received.
const SENT_FILE: &str = "usage-report.json";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Sent {
    day: Option<jiff::civil::Date>,
    at: Option<Timestamp>,
}

fn read_sent(host: &HostData) -> Sent {
    std::fs::read(host.dir().join(SENT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

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
    let receipt: UsageReportReceipt = link
        .post("/v1/usage-reports", &upload, "a usage report receipt")
        .await?;
    let sent = Sent {
        day: Some(report.day),
        at: Some(now),
    };
    let json =
        serde_json::to_vec(&sent).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    write_atomic(&host.dir().join(SENT_FILE), &json, false)?;
    Ok(receipt)
}

/// Starts sending daily usage reports when the host key asks for them (its signed
/// `usage_reports` flag) and a vendor service is known; `None` otherwise.
pub(crate) fn start_usage_reports(
    link: Option<&VendorLink>,
    host: &HostData,
    engine: &Arc<Engine>,
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
            let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
            if read_sent(&host).day != Some(today) {
                match send_report(&link, &host, &engine, now).await {
                    Ok(receipt) => tracing::info!(day = %receipt.day, "usage report sent"),
                    Err(e) => tracing::warn!(
                        code = %e.code,
                        "the usage report was not sent (tried again in an hour): {}",
                        e.message
                    ),
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }))
}
