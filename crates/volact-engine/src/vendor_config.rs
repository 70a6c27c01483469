//! The `[vendor]` section of `volact.toml`: the vendor's activation service, which a
//! serving host asks for a renewed certificate before its own expires.

use jiff::SignedDuration;
use serde::Deserialize;
use volact_core::renewal::DEFAULT_RENEW_BEFORE_DAYS;
use volact_proto::{ApiError, ErrorCode};

/// Allowed range of `renew_before_days`.
pub const RENEW_BEFORE_DAYS_RANGE: (u32, u32) = (1, 3650);

/// `[vendor]` as written in the file (file only: no environment variables or flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSection {
    /// The vendor service's URL, e.g. `https://activation.example.com`.
    pub url: Option<String>,
    /// How many days before the host certificate expires the host renews it (default
    /// 30).
    pub renew_before_days: Option<u32>,
    /// Trust the service's TLS certificate when issued by a CA in this PEM file
    /// (relative to the data directory), rather than the system's roots.
    pub ca_file: Option<String>,
    /// Trust exactly the service certificate with this SHA-256 fingerprint.
    pub tls_fingerprint: Option<String>,
    /// How often the day's usage report is sent again with the latest counts (when the
    /// host key asks for reports), e.g. `1h` (the default), `15m`.
    pub usage_report_every: Option<String>,
}

/// Allowed range of `usage_report_every`, in seconds: the service keeps one report per
/// host and day, so this only sets how fresh the day's figures are.
pub const USAGE_REPORT_EVERY_RANGE: (i64, i64) = (1, 24 * 3600);

/// `[vendor]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorConfig {
    /// The vendor service's URL, when configured.
    pub url: Option<String>,
    /// How long before the certificate's expiry the host renews it.
    pub renew_before: SignedDuration,
    /// The CA file to trust for the service's TLS, as written (relative to the data
    /// directory).
    pub ca_file: Option<String>,
    /// The service certificate's fingerprint to trust.
    pub tls_fingerprint: Option<String>,
    /// How often the day's usage report is refreshed.
    pub usage_report_every: std::time::Duration,
}

impl Default for VendorConfig {
    fn default() -> VendorConfig {
        VendorConfig {
            url: None,
            renew_before: SignedDuration::from_hours(i64::from(DEFAULT_RENEW_BEFORE_DAYS) * 24),
            ca_file: None,
            tls_fingerprint: None,
            usage_report_every: std::time::Duration::from_secs(3600),
        }
    }
}

impl VendorSection {
    /// Checks the section: an `http(s)://` URL, a renewal window within its range.
    pub fn resolve(&self) -> Result<VendorConfig, ApiError> {
        let bad = |key: &str, why: String| {
            ApiError::with_details(
                ErrorCode::BadRequest,
                format!("[vendor] {key}: {why}"),
                serde_json::json!({ "setting": format!("vendor_{key}") }),
            )
        };
        let url = match self.url.as_deref().map(str::trim) {
            None => None,
            Some(u) => {
                volact_core::catalog::check_service_url(u).map_err(|why| bad("url", why))?;
                Some(u.trim_end_matches('/').to_string())
            }
        };
        if let Some(f) = &self.tls_fingerprint {
            volact_core::fingerprint::parse(f).map_err(|e| bad("tls_fingerprint", e.message))?;
        }
        let days = self.renew_before_days.unwrap_or(DEFAULT_RENEW_BEFORE_DAYS);
        let (min, max) = RENEW_BEFORE_DAYS_RANGE;
        if !(min..=max).contains(&days) {
            return Err(bad(
                "renew_before_days",
                format!("is {days}; it must be from {min} to {max}"),
            ));
        }
        let usage_report_every = match &self.usage_report_every {
            None => std::time::Duration::from_secs(3600),
            Some(text) => {
                let d = volact_core::settings::parse_duration(text)
                    .map_err(|e| bad("usage_report_every", e.message))?;
                let (min, max) = USAGE_REPORT_EVERY_RANGE;
                if !(min..=max).contains(&d.as_secs()) {
                    return Err(bad(
                        "usage_report_every",
                        format!("is {text}; it must be from 1s to 24h"),
                    ));
                }
                std::time::Duration::from_secs(d.as_secs().unsigned_abs())
            }
        };
        Ok(VendorConfig {
            usage_report_every,
            url,
            renew_before: SignedDuration::from_hours(i64::from(days) * 24),
            ca_file: self.ca_file.clone(),
            tls_fingerprint: self.tls_fingerprint.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_checked_and_defaults_to_thirty_days() {
        let c = VendorSection::default().resolve().unwrap();
        assert_eq!(c, VendorConfig::default());
        assert_eq!(c.renew_before.as_hours(), 30 * 24);
        let c = VendorSection {
            url: Some("http://127.0.0.1:9/".into()),
            renew_before_days: Some(400),
            ..VendorSection::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.renew_before.as_hours(), 400 * 24);
        let e = VendorSection {
            url: Some("ftp://x".into()),
            ..VendorSection::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("[vendor] url"), "{}", e.message);
        let e = VendorSection {
            renew_before_days: Some(0),
            ..VendorSection::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("renew_before_days"), "{}", e.message);
    }
}
