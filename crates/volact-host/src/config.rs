//! The host's configuration: `D/volact.toml`, overridden by command-line flags. Unknown
//! keys are refused with their name and file, so a typo never silently does nothing.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use volact_core::settings::{Settings, parse_duration};
use volact_proto::{ApiError, DEFAULT_PORT, ErrorCode};

/// Configuration as written in the file or given as flags: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on, e.g. `0.0.0.0:7688`.
    pub listen: Option<String>,
    /// Renewal interval, e.g. `7d`.
    pub renew_interval: Option<String>,
    /// Retry interval while not activated, e.g. `2h`.
    pub retry_interval: Option<String>,
    /// Ticket validity, e.g. `180d`.
    pub ticket_validity: Option<String>,
    /// Count window, e.g. `30d`.
    pub count_window: Option<String>,
    /// Allowed clock difference, e.g. `4h`.
    pub max_clock_skew: Option<String>,
}

impl RawConfig {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn from_file(path: &Path) -> Result<RawConfig, ApiError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RawConfig::default()),
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidState,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        };
        toml::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{}: {}", path.display(), e.to_string().trim()),
            )
        })
    }

    /// Values of `over` win where set.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        RawConfig {
            listen: over.listen.or(self.listen),
            renew_interval: over.renew_interval.or(self.renew_interval),
            retry_interval: over.retry_interval.or(self.retry_interval),
            ticket_validity: over.ticket_validity.or(self.ticket_validity),
            count_window: over.count_window.or(self.count_window),
            max_clock_skew: over.max_clock_skew.or(self.max_clock_skew),
        }
    }

    /// Resolves defaults and checks every value against its range.
    pub fn resolve(&self) -> Result<HostConfig, ApiError> {
        let mut settings = Settings::default();
        let fields = [
            (
                &self.renew_interval,
                &mut settings.renew_interval,
                "renew_interval",
            ),
            (
                &self.retry_interval,
                &mut settings.retry_interval,
                "retry_interval",
            ),
            (
                &self.ticket_validity,
                &mut settings.ticket_validity,
                "ticket_validity",
            ),
            (
                &self.count_window,
                &mut settings.count_window,
                "count_window",
            ),
            (
                &self.max_clock_skew,
                &mut settings.max_clock_skew,
                "max_clock_skew",
            ),
        ];
        for (text, slot, name) in fields {
            if let Some(text) = text {
                *slot = parse_duration(text).map_err(|e| {
                    ApiError::new(ErrorCode::BadRequest, format!("{name}: {}", e.message))
                })?;
            }
        }
        settings.validate()?;
        let listen_text = self
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("listen address `{listen_text}` is not IP:PORT (for example 0.0.0.0:7688 or [::]:7688)"),
            )
        })?;
        Ok(HostConfig { listen, settings })
    }
}

/// Resolved configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Intervals and limits.
    pub settings: Settings,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_ranges_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volact.toml");
        std::fs::write(&path, "renew_intervl = \"7d\"\n").unwrap();
        let e = RawConfig::from_file(&path).unwrap_err();
        assert!(
            e.message.contains("renew_intervl") && e.message.contains("volact.toml"),
            "{}",
            e.message
        );
        std::fs::write(&path, "max_clock_skew = \"3d\"\n").unwrap();
        let e = RawConfig::from_file(&path).unwrap().resolve().unwrap_err();
        assert!(e.message.contains("max_clock_skew"), "{}", e.message);
        let flags = RawConfig {
            max_clock_skew: Some("1h".into()),
            ..RawConfig::default()
        };
        let c = RawConfig::from_file(&path)
            .unwrap()
            .merge(flags)
            .resolve()
            .unwrap();
        assert_eq!(c.settings.max_clock_skew.as_secs(), 3600);
    }
}
