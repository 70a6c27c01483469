//! The limits in force on a listener, derived from the `[limits]` section (see
//! [`volact_engine::limits`]) and from the process's file-descriptor limit.

use std::time::Duration;
pub use volact_engine::limits::*;

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
}
