//! The `[limits]` section of the host configuration: connection timeouts and caps, as
//! written and as resolved. The server's listener derives the limits in force from them.

use serde::Deserialize;
use std::time::Duration;
use volact_core::settings::parse_duration;
use volact_proto::{ApiError, ErrorCode};

/// Default time a client has to send a request's headers, from their first byte.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's body, from the end of its headers.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay open with no request in progress.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a request's headers (request line and header fields), in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Allowed range of the timeouts.
pub const TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
/// Allowed range of `max_header_bytes`.
pub const HEADER_BYTES_RANGE: (usize, usize) = (4 * 1024, 1024 * 1024);
/// Default connection caps never go above this, however high the fd limit: each open
/// connection holds buffers, and a host serving a site needs far fewer.
pub const MAX_DEFAULT_CONNECTIONS: usize = 16_384;

/// `[limits]` as written in the configuration file; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Time to send a request's headers from their first byte, e.g. `10s`.
    pub header_read_timeout: Option<String>,
    /// Time to send a request's body once its headers are in, e.g. `10s`.
    pub body_timeout: Option<String>,
    /// Time a connection may stay open with no request in progress, e.g. `30s`.
    pub idle_timeout: Option<String>,
    /// Largest request head (request line and header fields), in bytes.
    pub max_header_bytes: Option<usize>,
    /// Connections open at once, from everyone; default derived from the fd limit.
    pub max_connections: Option<usize>,
    /// Connections open at once from one IPv4 address or one IPv6 /64.
    pub max_connections_per_address: Option<usize>,
    /// Connections from loopback (admin commands, local health checks) allowed beyond
    /// `max_connections`.
    pub loopback_reserve: Option<usize>,
}

/// The resolved `[limits]`: timeouts and sizes fixed; connection caps, where not set, are
/// derived from the fd limit when the host starts ([`Limits::derive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// See [`LimitsSection::header_read_timeout`].
    pub header_read_timeout: Duration,
    /// See [`LimitsSection::body_timeout`].
    pub body_timeout: Duration,
    /// See [`LimitsSection::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`LimitsSection::max_header_bytes`].
    pub max_header_bytes: usize,
    /// See [`LimitsSection::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`LimitsSection::max_connections_per_address`].
    pub max_connections_per_address: Option<usize>,
    /// See [`LimitsSection::loopback_reserve`].
    pub loopback_reserve: Option<usize>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: None,
            max_connections_per_address: None,
            loopback_reserve: None,
        }
    }
}

fn bad(key: &str, why: String, details: serde_json::Value) -> ApiError {
    let mut details = details;
    details["setting"] = serde_json::Value::String(format!("limits.{key}"));
    ApiError::with_details(
        ErrorCode::BadRequest,
        format!("[limits] {key}: {why}"),
        details,
    )
}

impl LimitsSection {
    /// Resolves defaults and checks every value against its range.
    pub fn resolve(&self) -> Result<LimitsConfig, ApiError> {
        let mut c = LimitsConfig::default();
        let timeouts = [
            (
                &mut c.header_read_timeout,
                "header_read_timeout",
                &self.header_read_timeout,
            ),
            (&mut c.body_timeout, "body_timeout", &self.body_timeout),
            (&mut c.idle_timeout, "idle_timeout", &self.idle_timeout),
        ];
        for (slot, key, text) in timeouts {
            let Some(text) = text else { continue };
            let d = parse_duration(text)
                .map_err(|e| bad(key, e.message, serde_json::json!({})))
                .and_then(|d| {
                    d.try_into().map_err(|_| {
                        bad(key, format!("`{text}` is negative"), serde_json::json!({}))
                    })
                })?;
            let (min, max) = TIMEOUT_RANGE;
            if !(min..=max).contains(&d) {
                return Err(bad(
                    key,
                    format!("`{text}` is outside {min:?} to {max:?}"),
                    serde_json::json!({ "min_ms": min.as_millis() as u64, "max_ms": max.as_millis() as u64 }),
                ));
            }
            *slot = d;
        }
        if let Some(n) = self.max_header_bytes {
            let (min, max) = HEADER_BYTES_RANGE;
            if !(min..=max).contains(&n) {
                return Err(bad(
                    "max_header_bytes",
                    format!("{n} is outside {min} to {max}"),
                    serde_json::json!({ "value": n, "min": min, "max": max }),
                ));
            }
            c.max_header_bytes = n;
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
        ] {
            if value == Some(0) {
                return Err(bad(
                    key,
                    "must be at least 1".into(),
                    serde_json::json!({ "value": 0 }),
                ));
            }
        }
        c.max_connections = self.max_connections;
        c.max_connections_per_address = self.max_connections_per_address;
        c.loopback_reserve = self.loopback_reserve;
        Ok(c)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_checked() {
        let s: LimitsSection =
            toml::from_str("header_read_timeout = \"500ms\"\nmax_connections = 10").unwrap();
        let c = s.resolve().unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections, Some(10));
        let s: LimitsSection = toml::from_str("body_timeout = \"2h\"").unwrap();
        let e = s.resolve().unwrap_err();
        assert!(e.message.contains("body_timeout"), "{}", e.message);
        assert_eq!(e.details["setting"], "limits.body_timeout");
        let s: LimitsSection = toml::from_str("max_header_bytes = 10").unwrap();
        assert!(s.resolve().is_err());
        assert!(toml::from_str::<LimitsSection>("max_conections = 1").is_err());
    }
}
