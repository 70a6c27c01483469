//! The host's side of the vendor service: where it is (`[vendor] url`, else the service
//! the host was activated from, else the service URL in the vendor's signed catalog), whom
//! to trust for its TLS (`[vendor] ca_file` / `tls_fingerprint`, else the system's
//! roots), and the one HTTP call every exchange with it goes through: activation,
//! renewal, catalog and revocation fetches, usage reports.

use volact_client::tls::TlsTrust;
use volact_engine::data::HostData;
use volact_proto::{ApiError, ErrorCode, HostActivationRequest, HostActivationResponse};

/// A vendor service as a host reaches it.
#[derive(Debug, Clone)]
pub struct VendorLink {
    /// Its URL, without a trailing `/`.
    pub url: String,
    /// Whom to trust for `https://`.
    pub trust: TlsTrust,
    /// The admin token, sent as a bearer token (the vendor's own tools only).
    pub token: Option<String>,
}

impl VendorLink {
    /// The link to `url` with `trust`.
    pub fn new(url: &str, trust: TlsTrust) -> VendorLink {
        VendorLink {
            url: url.trim().trim_end_matches('/').to_owned(),
            trust,
            token: None,
        }
    }

    /// The vendor service of a serving host, or `None` when it knows none (an offline
    /// host).
    pub fn of_host(
        host: &HostData,
        config: &volact_engine::config::HostConfig,
    ) -> Result<Option<VendorLink>, ApiError> {
        let from_catalog = || host.vendor().ok().and_then(|(_, c)| c.service_url);
        let Some(url) = config
            .vendor
            .url
            .clone()
            .or_else(|| host.vendor_url())
            .or_else(from_catalog)
        else {
            return Ok(None);
        };
        let ca_file = config.vendor.ca_file.as_ref().map(|p| host.dir().join(p));
        let trust =
            TlsTrust::from_flags(config.vendor.tls_fingerprint.as_deref(), ca_file.as_deref())?;
        Ok(Some(VendorLink::new(&url, trust)))
    }

    /// Sends `body` to `path` (or GETs it when `None`) and reads the answer through the
    /// client's size cap; a refusal comes back with the service's code and message.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<T, ApiError> {
        let url = &self.url;
        let builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30));
        let http = volact_client::tls::configure(builder, &self.trust)?
            .build()
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let endpoint = format!("{url}{path}");
        let mut request = match body {
            Some(b) => http.post(&endpoint).json(&b),
            None => http.get(&endpoint),
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            ApiError::new(
                ErrorCode::HostUnreachable,
                format!(
                    "cannot reach the vendor service at {url}: {}; check the URL, the network and the service's certificate ([vendor] ca_file or tls_fingerprint; --vendor-ca-file or --vendor-fingerprint)",
                    volact_client::tls::error_chain(&e)
                ),
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
                    format!(
                        "the vendor service at {url} answered something that is not {what}: {e}"
                    ),
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

    /// Posts `body` (serialized here) to `path`.
    pub async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_value(body)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        self.call(path, Some(body), what).await
    }
}

/// Sends `request` to the vendor service and returns its answer: what
/// `volact host activate --online` does.
pub async fn activate_online(
    link: &VendorLink,
    request: &HostActivationRequest,
) -> Result<HostActivationResponse, ApiError> {
    link.post("/v1/host-activations", request, "a host certificate")
        .await
}
