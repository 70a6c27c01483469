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
}

/// `[vendor]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorConfig {
    /// The vendor service's URL, when configured.
    pub url: Option<String>,
    /// How long before the certificate's expiry the host renews it.
    pub renew_before: SignedDuration,
}

impl Default for VendorConfig {
    fn default() -> VendorConfig {
        VendorConfig {
            url: None,
            renew_before: SignedDuration::from_hours(i64::from(DEFAULT_RENEW_BEFORE_DAYS) * 24),
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
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(u) => {
                return Err(bad(
                    "url",
                    format!("`{u}` is not an http:// or https:// URL"),
                ));
            }
        };
        let days = self.renew_before_days.unwrap_or(DEFAULT_RENEW_BEFORE_DAYS);
        let (min, max) = RENEW_BEFORE_DAYS_RANGE;
        if !(min..=max).contains(&days) {
            return Err(bad(
                "renew_before_days",
                format!("is {days}; it must be from {min} to {max}"),
            ));
        }
        Ok(VendorConfig {
            url,
            renew_before: SignedDuration::from_hours(i64::from(days) * 24),
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
        }
        .resolve()
        .unwrap();
        assert_eq!(c.url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.renew_before.as_hours(), 400 * 24);
        let e = VendorSection {
            url: Some("ftp://x".into()),
            renew_before_days: None,
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("[vendor] url"), "{}", e.message);
        let e = VendorSection {
            url: None,
            renew_before_days: Some(0),
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("renew_before_days"), "{}", e.message);
    }
}
