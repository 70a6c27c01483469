//! The `[limits]` section of the host configuration and the limits in force, derived from
//! it and from the process's file-descriptor limit.

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

/// The limits in force on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers, counted from their first byte.
    pub header_read_timeout: Duration,
    /// Time to send a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Largest request head answered with a JSON 431; heads up to twice this are read
    /// (so the answer can be JSON), larger ones are refused by the HTTP parser itself.
    pub max_header_bytes: usize,
    /// Connections open at once, from everyone but the loopback reserve.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// Connections from loopback allowed beyond `max_connections`.
    pub loopback_reserve: usize,
    /// The soft file-descriptor limit the caps were derived from, if known.
    pub fd_limit: Option<u64>,
}

/// File descriptors kept out of the connection caps for everything else the host opens:
/// the store's database, WAL and journal files and its connections, DNS sockets, logs.
pub fn fd_headroom(fd_limit: u64) -> u64 {
    (fd_limit / 8).clamp(64, 1024)
}

impl Limits {
    /// The limits in force for `config` under a soft fd limit of `fd_limit` (`None`: not
    /// known, as on a platform without one). Caps not configured are derived so that
    /// connections, the loopback reserve and [`fd_headroom`] fit under the fd limit;
    /// configured caps that would not fit are lowered, and each such change is returned
    /// as a warning to log.
    pub fn derive(config: &LimitsConfig, fd_limit: Option<u64>) -> (Limits, Vec<String>) {
        let mut warnings = Vec::new();
        let usable = fd_limit.map(|l| {
            let usable = l.saturating_sub(fd_headroom(l));
            usize::try_from(usable).unwrap_or(usize::MAX).max(2)
        });
        let default_reserve = usable.map_or(64, |u| (u / 32).clamp(1, 256));
        let mut reserve = config.loopback_reserve.unwrap_or(default_reserve);
        let default_max = usable.map_or(MAX_DEFAULT_CONNECTIONS, |u| {
            u.saturating_sub(reserve).clamp(1, MAX_DEFAULT_CONNECTIONS)
        });
        let mut max = config.max_connections.unwrap_or(default_max);
        if let (Some(usable), Some(limit)) = (usable, fd_limit)
            && max.saturating_add(reserve) > usable
        {
            reserve = reserve.min(usable / 2);
            let fitted = usable.saturating_sub(reserve).max(1);
            if max > fitted {
                warnings.push(format!(
                    "[limits] max_connections = {max} does not fit under the file-descriptor limit of {limit} with room for the rest of the host; using {fitted} (raise the limit, e.g. LimitNOFILE= in the systemd unit, to allow more)"
                ));
                max = fitted;
            }
        }
        let default_per_address = (max / 8).clamp(1, 256).max(max.min(16));
        let per_address = config
            .max_connections_per_address
            .unwrap_or(default_per_address)
            .min(max.saturating_add(reserve));
        let limits = Limits {
            header_read_timeout: config.header_read_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            max_header_bytes: config.max_header_bytes,
            max_connections: max,
            max_connections_per_address: per_address,
            loopback_reserve: reserve,
            fd_limit,
        };
        (limits, warnings)
    }

    /// How long connections get to finish once told to close (server stop, idle): enough
    /// for a request whose headers are in to send its body and be answered.
    pub fn grace(&self) -> Duration {
        self.body_timeout + self.header_read_timeout
    }
}

/// Raises the soft file-descriptor limit to the hard limit and returns the soft limit in
/// force (`None` where the platform has none or it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!("cannot raise the file-descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_derived_from_a_1024_fd_limit_leave_headroom() {
        let (l, warnings) = Limits::derive(&LimitsConfig::default(), Some(1024));
        assert!(warnings.is_empty());
        let fds = l.max_connections + l.loopback_reserve;
        assert!(fds as u64 + 64 <= 1024, "{l:?}");
        assert!(l.max_connections >= 512, "{l:?}");
        assert!(l.max_connections_per_address < l.max_connections, "{l:?}");
        assert!(l.loopback_reserve >= 1, "{l:?}");
    }

    #[test]
    fn configured_caps_are_lowered_to_fit_the_fd_limit() {
        let config = LimitsConfig {
            max_connections: Some(5000),
            ..LimitsConfig::default()
        };
        let (l, warnings) = Limits::derive(&config, Some(1024));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("5000") && warnings[0].contains("1024"));
        assert!(l.max_connections + l.loopback_reserve <= 1024 - 64);
        // Without an fd limit, what is configured holds.
        let (l, warnings) = Limits::derive(&config, None);
        assert!(warnings.is_empty());
        assert_eq!(l.max_connections, 5000);
    }

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
