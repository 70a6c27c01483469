//! The host's side of renewal and catalog updates: it renews its certificate from the
//! vendor service (`POST /v1/host-renewals`) and takes newer catalogs from it
//! (`GET /v1/catalog`) or from a file (`volact host import-catalog`).

use std::sync::Arc;
use volact_proto::{ApiError, CatalogResponse, ErrorCode, HostRenewalRequest, HostRenewalResponse};

use crate::vendor_link::VendorLink;

/// Asks the vendor service to renew this host's certificate.
pub(crate) async fn renew_online(
    link: &VendorLink,
    request: &HostRenewalRequest,
) -> Result<HostRenewalResponse, ApiError> {
    link.post("/v1/host-renewals", request, "a host certificate")
        .await
}

/// The vendor service over HTTP(S), as a serving host reaches it.
struct HttpVendor {
    link: VendorLink,
}

#[async_trait::async_trait]
impl volact_engine::renewal::VendorService for HttpVendor {
    fn url(&self) -> &str {
        &self.link.url
    }

    async fn renew(&self, request: &HostRenewalRequest) -> Result<HostRenewalResponse, ApiError> {
        renew_online(&self.link, request).await
    }
}

/// Starts renewing the host certificate in the background from the host's vendor
/// service ([`VendorLink::of_host`]); `None` (and a log line) when the host knows none,
/// as an offline host does.
pub(crate) fn start_renewal(
    link: Option<&VendorLink>,
    host: &volact_engine::data::HostData,
    config: &volact_engine::config::HostConfig,
    engine: &Arc<volact_engine::engine::Engine>,
) -> Option<volact_engine::renewal::RenewalTask> {
    let Some(link) = link else {
        tracing::info!(
            "no vendor service known ([vendor] url): the host certificate is not renewed online; renew it by activating again before it expires"
        );
        return None;
    };
    tracing::info!(url = %link.url, renew_before_days = config.vendor.renew_before.as_hours() / 24, "renewing the host certificate online");
    let renewal = volact_engine::renewal::Renewal::new(
        engine.clone(),
        host.clone(),
        Arc::new(HttpVendor { link: link.clone() }),
        config.vendor.renew_before,
    );
    Some(renewal.start())
}

/// The vendor service's current signed catalog.
pub(crate) async fn fetch_catalog(link: &VendorLink) -> Result<CatalogResponse, ApiError> {
    link.call("/v1/catalog", None, "a catalog").await
}

/// The catalog token in `text`: a bare token, or JSON with a `catalog` field (a vendor
/// bundle, or the service's `/v1/catalog` answer).
fn catalog_token(text: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        return v["catalog"].as_str().map(str::to_string);
    }
    text.starts_with("v4.public.").then(|| text.to_string())
}

/// `volact host import-catalog FILE`.
pub(crate) fn import_catalog_file(
    host: &volact_engine::data::HostData,
    file: &std::path::Path,
) -> Result<volact_core::catalog::Catalog, ApiError> {
    // A catalog is a few kilobytes; a file far larger is not one.
    let bytes = std::fs::read(file).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    if bytes.len() > 1024 * 1024 {
        return Err(ApiError::bad_request(
            "file",
            "is larger than 1 MiB: not a catalog",
        ));
    }
    let token = catalog_token(&String::from_utf8_lossy(&bytes)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "{} holds no catalog; give the vendor directory's catalog.token, a vendor bundle (volact vendor export) or the service's /v1/catalog answer",
                file.display()
            ),
        )
    })?;
    host.import_catalog(&token)
}

/// How often a serving host asks the vendor service for a newer catalog.
const FETCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often it looks for a catalog imported from a file.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a serving host on the vendor's newest catalog: fetched from the vendor service
/// (`[vendor] url`, or the one it was activated from) at start and hourly, and imported
/// by hand with `volact host import-catalog` (looked for every few seconds).
pub(crate) fn start_catalog_updates(
    link: Option<&VendorLink>,
    host: &volact_engine::data::HostData,
    engine: &Arc<volact_engine::engine::Engine>,
) -> tokio::task::JoinHandle<()> {
    let link = link.cloned();
    let (host, engine) = (host.clone(), engine.clone());
    tokio::spawn(async move {
        let mut fetched: Option<std::time::Instant> = None;
        loop {
            if let Some(link) = &link
                && fetched.is_none_or(|t| t.elapsed() >= FETCH_EVERY)
            {
                fetched = Some(std::time::Instant::now());
                fetch_newer(&host, &engine, link).await;
            }
            if let Err(e) = volact_engine::catalog_update::take_newer(&engine, &host).await {
                tracing::warn!("cannot read the installed catalog: {}", e.message);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    })
}

/// Fetches the service's catalog and installs it when it is newer (verified by
/// `import_catalog`); an equal version is the usual answer and says nothing.
async fn fetch_newer(
    host: &volact_engine::data::HostData,
    engine: &volact_engine::engine::Engine,
    link: &VendorLink,
) {
    let url = &link.url;
    let answer = match fetch_catalog(link).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(url, "cannot fetch the vendor's catalog: {}", e.message);
            return;
        }
    };
    let offered: Option<volact_core::catalog::Catalog> =
        volact_core::token::peek(&answer.catalog).ok();
    if offered.is_some_and(|c| c.version <= engine.catalog().version) {
        return;
    }
    if let Err(e) = host.import_catalog(&answer.catalog) {
        tracing::warn!(url, code = %e.code, "the vendor service's catalog was refused: {}", e.message);
    }
}
