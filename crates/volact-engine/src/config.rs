//! The host's configuration: `D/volact.toml`, then `VOLACT_…` environment variables,
//! then command-line flags, each overriding the one before. Unknown keys in the file are
//! refused with their name and file, so a typo never silently does nothing, and a value
//! out of range is refused with the range and with where it was set.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use volact_core::settings::{Settings, parse_duration};
use volact_core::util::human;
use volact_proto::{ApiError, DEFAULT_PORT, ErrorCode};

/// Every configuration key, as written in the file; the environment variable of a key is
/// `VOLACT_` and the key in capitals, the flag `--` and the key with dashes.
pub const KEYS: [&str; 8] = [
    "listen",
    "renew_interval",
    "retry_interval",
    "ticket_validity",
    "count_window",
    "max_clock_skew",
    "event_retention",
    "metrics_token_file",
];

const DAY: i64 = 86_400;

/// Default time audit events are kept.
pub const DEFAULT_EVENT_RETENTION: SignedDuration = SignedDuration::from_secs(90 * DAY);
/// Allowed range of `event_retention`, in seconds.
pub const EVENT_RETENTION_RANGE: (i64, i64) = (DAY, 3650 * DAY);

/// Configuration as written in the file, the environment or flags: every field optional.
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
    /// How long audit events are kept, e.g. `90d`.
    pub event_retention: Option<String>,
    /// A file holding the token `GET /metrics` requires; without it metrics are open.
    /// Relative paths are taken from the data directory.
    pub metrics_token_file: Option<String>,
    /// `[dns]`: DNS publishing (see [`crate::dns`]); file only.
    pub dns: Option<crate::dns::DnsSection>,
    /// `[limits]`: connection timeouts and caps (see [`crate::limits`]); file only.
    pub limits: Option<crate::limits::LimitsSection>,
    /// `[rate_limits]`: limits on new clients (see [`crate::admission`]); file only.
    pub rate_limits: Option<crate::admission::RateLimitSection>,
    /// `[tls]`: the TLS listener and plain admin (see [`crate::tls_config`]); file only.
    pub tls: Option<crate::tls_config::TlsSection>,
    /// `[storage]`: where the host's data lives (see [`StorageSection`]).
    pub storage: Option<StorageSection>,
    /// `[vendor]`: the vendor's activation service (see [`crate::vendor_config`]); file
    /// only.
    pub vendor: Option<crate::vendor_config::VendorSection>,
}

/// `[storage]`: where the host's data lives. Also `VOLACT_STORAGE_URL` and
/// `--storage-url`; the PostgreSQL password also `VOLACT_STORAGE_PASSWORD` or
/// `PGPASSWORD` (see [`crate::storage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The store's URL, default [`crate::storage::DEFAULT_STORAGE_URL`].
    pub url: Option<String>,
    /// PostgreSQL: connections per host.
    pub pool_size: Option<u32>,
    /// PostgreSQL: a PEM file of the certificate authorities to trust; TLS is then
    /// required and the server's name checked. Relative paths are taken from the data
    /// directory.
    pub ca_file: Option<String>,
    /// PostgreSQL: a file whose first line is the password. Relative paths are taken
    /// from the data directory.
    pub password_file: Option<String>,
    /// PostgreSQL: the password from the environment and its variable; never from the
    /// file (a password belongs in `password_file`, readable by the host's user only).
    #[serde(skip)]
    pub password_env: Option<(String, crate::storage::Secret)>,
}

impl StorageSection {
    /// A section setting only `url`, as the environment or a flag gives it.
    pub fn with_url(url: Option<String>) -> Option<StorageSection> {
        url.map(|url| StorageSection {
            url: Some(url),
            ..StorageSection::default()
        })
    }

    /// Each setting of `over` wins where set.
    fn merge(base: Option<StorageSection>, over: Option<StorageSection>) -> Option<StorageSection> {
        match (base, over) {
            (Some(base), Some(over)) => Some(StorageSection {
                url: over.url.or(base.url),
                pool_size: over.pool_size.or(base.pool_size),
                ca_file: over.ca_file.or(base.ca_file),
                password_file: over.password_file.or(base.password_file),
                password_env: over.password_env.or(base.password_env),
            }),
            (base, over) => over.or(base),
        }
    }
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
        RawConfig::from_toml(&text, path)
    }

    /// Parses the text of a configuration file (`path` only names it in errors); what
    /// [`RawConfig::from_file`] does once the file is read.
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ApiError> {
        toml::from_str(text).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{}: {}", path.display(), e.to_string().trim()),
            )
        })
    }

    /// The `VOLACT_…` variables, looked up with `lookup` (the process environment in
    /// production, a map in tests). Empty values count as unset.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> RawConfig {
        let get = |key: &str| lookup(&env_var(key)).filter(|v| !v.trim().is_empty());
        RawConfig {
            listen: get("listen"),
            renew_interval: get("renew_interval"),
            retry_interval: get("retry_interval"),
            ticket_validity: get("ticket_validity"),
            count_window: get("count_window"),
            max_clock_skew: get("max_clock_skew"),
            event_retention: get("event_retention"),
            metrics_token_file: get("metrics_token_file"),
            dns: None,
            limits: None,
            rate_limits: None,
            storage: {
                let password_env = crate::storage::password_from_env(&lookup);
                let url = get("storage_url");
                (url.is_some() || password_env.is_some()).then(|| StorageSection {
                    url,
                    password_env,
                    ..StorageSection::default()
                })
            },
            tls: None,
            vendor: None,
        }
    }

    /// The value of `key` (one of [`KEYS`], or `storage_url` for `[storage] url`), if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        if key == "storage_url" {
            return self.storage.as_ref().and_then(|s| s.url.as_deref());
        }
        let value = match key {
            "listen" => &self.listen,
            "renew_interval" => &self.renew_interval,
            "retry_interval" => &self.retry_interval,
            "ticket_validity" => &self.ticket_validity,
            "count_window" => &self.count_window,
            "max_clock_skew" => &self.max_clock_skew,
            "event_retention" => &self.event_retention,
            "metrics_token_file" => &self.metrics_token_file,
            _ => &None,
        };
        value.as_deref()
    }

    /// Whether `key` is set: one of [`KEYS`], `storage_url`, or a setting of `[storage]`
    /// as `storage_pool_size`, `storage_ca_file`, `storage_password_file`.
    fn has(&self, key: &str) -> bool {
        let storage = self.storage.as_ref();
        match key {
            "storage_pool_size" => storage.is_some_and(|s| s.pool_size.is_some()),
            "storage_ca_file" => storage.is_some_and(|s| s.ca_file.is_some()),
            "storage_password_file" => storage.is_some_and(|s| s.password_file.is_some()),
            _ => self.get(key).is_some(),
        }
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
            event_retention: over.event_retention.or(self.event_retention),
            metrics_token_file: over.metrics_token_file.or(self.metrics_token_file),
            dns: over.dns.or(self.dns),
            limits: over.limits.or(self.limits),
            rate_limits: over.rate_limits.or(self.rate_limits),
            storage: StorageSection::merge(self.storage, over.storage),
            tls: over.tls.or(self.tls),
            vendor: over.vendor.or(self.vendor),
        }
    }

    /// Resolves defaults and checks every value against its range.
    pub fn resolve(&self) -> Result<HostConfig, ApiError> {
        let bad = |name: &str, why: String| {
            ApiError::with_details(
                ErrorCode::BadRequest,
                format!("{name}: {why}"),
                serde_json::json!({ "setting": name }),
            )
        };
        let duration =
            |name: &str, text: &str| parse_duration(text).map_err(|e| bad(name, e.message));
        let mut settings = Settings::default();
        let fields = [
            (&mut settings.renew_interval, "renew_interval"),
            (&mut settings.retry_interval, "retry_interval"),
            (&mut settings.ticket_validity, "ticket_validity"),
            (&mut settings.count_window, "count_window"),
            (&mut settings.max_clock_skew, "max_clock_skew"),
        ];
        for (slot, name) in fields {
            if let Some(text) = self.get(name) {
                *slot = duration(name, text)?;
            }
        }
        settings.validate()?;
        let event_retention = match &self.event_retention {
            Some(text) => duration("event_retention", text)?,
            None => DEFAULT_EVENT_RETENTION,
        };
        let (min, max) = EVENT_RETENTION_RANGE;
        if !(min..=max).contains(&event_retention.as_secs()) {
            return Err(ApiError::with_details(
                ErrorCode::BadRequest,
                format!(
                    "event_retention is {}; it must be from {} to {}",
                    human(event_retention),
                    human(SignedDuration::from_secs(min)),
                    human(SignedDuration::from_secs(max))
                ),
                serde_json::json!({ "setting": "event_retention", "value_secs": event_retention.as_secs(), "min_secs": min, "max_secs": max }),
            ));
        }
        let listen_text = self
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "listen",
                format!("`{listen_text}` is not IP:PORT (for example 0.0.0.0:7688 or [::]:7688)"),
            )
        })?;
        let metrics_token_file = match self.metrics_token_file.as_deref().map(str::trim) {
            Some("") => return Err(bad("metrics_token_file", "is empty".into())),
            Some(path) => Some(PathBuf::from(path)),
            None => None,
        };
        let limits = match &self.limits {
            Some(section) => section.resolve()?,
            None => crate::limits::LimitsConfig::default(),
        };
        let rate_limits = self
            .rate_limits
            .clone()
            .unwrap_or_default()
            .resolve()
            .map_err(|e| bad("rate_limits", e))?;
        let storage_url = self
            .storage
            .as_ref()
            .and_then(|s| s.url.clone())
            .unwrap_or_else(|| crate::storage::DEFAULT_STORAGE_URL.to_owned());
        // Refused now, with where it was set, rather than when the store is opened.
        let parsed = crate::storage::StorageUrl::parse(&storage_url, Path::new("."))?;
        let storage = self.storage.clone().unwrap_or_default();
        let path = |name: &str, value: &Option<String>| match value.as_deref().map(str::trim) {
            Some("") => Err(bad(name, "is empty".into())),
            Some(p) => Ok(Some(PathBuf::from(p))),
            None => Ok(None),
        };
        let storage = crate::storage::StorageOptions {
            pool_size: storage.pool_size,
            ca_file: path("storage_ca_file", &storage.ca_file)?,
            password_file: path("storage_password_file", &storage.password_file)?,
            password_env: storage.password_env,
        };
        if let Some(size) = storage.pool_size
            && !(1..=volact_store_postgres::MAX_POOL_SIZE).contains(&size)
        {
            return Err(bad(
                "storage_pool_size",
                format!(
                    "[storage] pool_size is {size}; it must be from 1 to {}",
                    volact_store_postgres::MAX_POOL_SIZE
                ),
            ));
        }
        if matches!(parsed, crate::storage::StorageUrl::Sqlite(_)) {
            // A setting that would do nothing is a mistake to point out, not to ignore.
            let set = [
                ("pool_size", storage.pool_size.is_some()),
                ("ca_file", storage.ca_file.is_some()),
                ("password_file", storage.password_file.is_some()),
            ];
            if let Some((name, _)) = set.iter().find(|(_, set)| *set) {
                return Err(bad(
                    &format!("storage_{name}"),
                    format!(
                        "[storage] {name} applies to postgres:// storage only, and the storage url is {storage_url}"
                    ),
                ));
            }
        }
        let tls = match &self.tls {
            Some(section) => section.resolve(listen)?,
            None => crate::tls_config::TlsConfig::default(),
        };
        let vendor = self.vendor.clone().unwrap_or_default().resolve()?;
        Ok(HostConfig {
            vendor,
            listen,
            storage_url,
            storage,
            settings,
            event_retention,
            metrics_token_file,
            limits,
            rate_limits,
            tls,
        })
    }
}

/// The environment variable of `key`: `VOLACT_` and the key in capitals.
pub fn env_var(key: &str) -> String {
    format!("VOLACT_{}", key.to_ascii_uppercase())
}

/// The flag of `key`: `--` and the key with dashes.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the host's data lives (`[storage] url`), a URL for
    /// [`crate::storage::open_store`].
    pub storage_url: String,
    /// The rest of `[storage]` (PostgreSQL's pool, TLS and password).
    pub storage: crate::storage::StorageOptions,
    /// Intervals and limits.
    pub settings: Settings,
    /// How long audit events are kept.
    pub event_retention: SignedDuration,
    /// The file holding the metrics token, if metrics require one.
    pub metrics_token_file: Option<PathBuf>,
    /// Connection timeouts and caps.
    pub limits: crate::limits::LimitsConfig,
    /// Limits on new clients.
    pub rate_limits: volact_core::ratelimit::NewClientLimits,
    /// The TLS listener and whether plain HTTP serves admin to other machines.
    pub tls: crate::tls_config::TlsConfig,
    /// The vendor's activation service: where to renew the certificate, and when.
    pub vendor: crate::vendor_config::VendorConfig,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// Nothing set it.
    Default,
    /// The configuration file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The three places settings come from, kept apart so each value can be traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLayers {
    /// The configuration file.
    pub file_path: PathBuf,
    /// What the file says.
    pub file: RawConfig,
    /// What the environment says.
    pub env: RawConfig,
    /// What the flags say.
    pub flags: RawConfig,
}

impl ConfigLayers {
    /// Reads the file at `file_path` and the environment through `lookup`.
    pub fn load(
        file_path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
        flags: RawConfig,
    ) -> Result<ConfigLayers, ApiError> {
        Ok(ConfigLayers {
            file_path: file_path.to_path_buf(),
            file: RawConfig::from_file(file_path)?,
            env: RawConfig::from_env(lookup),
            flags,
        })
    }

    /// The file, overridden by the environment, overridden by the flags.
    pub fn merged(&self) -> RawConfig {
        self.file
            .clone()
            .merge(self.env.clone())
            .merge(self.flags.clone())
    }

    /// Where the value in force for `key` comes from.
    pub fn source(&self, key: &str) -> Source {
        if self.flags.has(key) {
            Source::Flag(flag(key))
        } else if self.env.has(key) {
            Source::Env(env_var(key))
        } else if self.file.has(key) {
            Source::File(self.file_path.clone())
        } else {
            Source::Default
        }
    }

    /// Resolves the merged configuration; an error names where the bad value was set.
    pub fn resolve(&self) -> Result<HostConfig, ApiError> {
        if let Some(url) = self.flags.get("storage_url")
            && crate::storage::url_has_password(url)
        {
            return Err(ApiError::with_details(
                ErrorCode::BadRequest,
                format!(
                    "--storage-url `{}` holds a password, which every user of this machine can read in the process list; \
                     give the URL without it and put the password in [storage] password_file (a file only the host's user can read) \
                     or in the environment variable {}",
                    crate::storage::redact(url),
                    crate::storage::PASSWORD_ENV
                ),
                serde_json::json!({ "setting": "storage_url", "source": flag("storage_url") }),
            ));
        }
        self.merged().resolve().map_err(|mut e| {
            let key = e.details["setting"].as_str().map(str::to_string);
            if let Some(key) = key {
                let source = self.source(&key);
                if source != Source::Default {
                    e.message = format!("{} (set by {source})", e.message);
                    e.details["source"] = serde_json::Value::String(source.to_string());
                }
            }
            e
        })
    }

    /// Every setting in force, with its value as written and where it came from.
    pub fn report(&self, config: &HostConfig) -> Vec<ConfigEntry> {
        let d = |v: SignedDuration| (human(v), Some(v.as_secs()));
        let s = &config.settings;
        let values = [
            (config.listen.to_string(), None),
            d(s.renew_interval),
            d(s.retry_interval),
            d(s.ticket_validity),
            d(s.count_window),
            d(s.max_clock_skew),
            d(config.event_retention),
            (
                config
                    .metrics_token_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "none (metrics are open)".into()),
                None,
            ),
        ];
        let mut entries: Vec<ConfigEntry> = KEYS
            .iter()
            .zip(values)
            .map(|(key, (value, seconds))| ConfigEntry {
                key: key.to_string(),
                value,
                seconds,
                source: self.source(key).to_string(),
            })
            .collect();
        // `[storage] url` in the file, `VOLACT_STORAGE_URL`, `--storage-url`.
        // The password never: only whether there is one and where it comes from.
        entries.push(ConfigEntry {
            key: "storage_url".into(),
            value: crate::storage::redact(&config.storage_url),
            seconds: None,
            source: self.source("storage_url").to_string(),
        });
        let postgres = matches!(
            crate::storage::StorageUrl::parse(&config.storage_url, Path::new(".")),
            Ok(crate::storage::StorageUrl::Postgres(_))
        );
        if postgres {
            let o = &config.storage;
            let entry = |key: &str, value: String, source: String| ConfigEntry {
                key: key.into(),
                value,
                seconds: None,
                source,
            };
            entries.push(entry(
                "storage_pool_size",
                o.pool_size
                    .unwrap_or(volact_store_postgres::DEFAULT_POOL_SIZE)
                    .to_string(),
                self.source("storage_pool_size").to_string(),
            ));
            entries.push(entry(
                "storage_ca_file",
                o.ca_file.as_ref().map_or_else(
                    || "none (TLS as the URL's sslmode says)".into(),
                    |p| format!("{} (TLS required, server name checked)", p.display()),
                ),
                self.source("storage_ca_file").to_string(),
            ));
            let source = o.password_source(&config.storage_url);
            entries.push(entry(
                "storage_password",
                if source.is_some() {
                    "set (hidden)"
                } else {
                    "none"
                }
                .into(),
                source.unwrap_or_else(|| "default".into()),
            ));
        }
        entries
    }
}

/// One resolved setting, as `volact host config check` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The key.
    pub key: String,
    /// The value in force.
    pub value: String,
    /// The value in seconds, for durations.
    pub seconds: Option<i64>,
    /// Where it came from: `default`, `file PATH`, `environment VAR` or `flag --F`.
    pub source: String,
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

    #[test]
    fn the_storage_url_comes_from_file_environment_or_flag_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volact.toml");
        let layers = |file: &str, env: Option<&str>, flag: Option<&str>| {
            std::fs::write(&path, file).unwrap();
            let env = env.map(str::to_owned);
            ConfigLayers::load(
                &path,
                |name| {
                    (name == "VOLACT_STORAGE_URL")
                        .then(|| env.clone())
                        .flatten()
                },
                RawConfig {
                    storage: StorageSection::with_url(flag.map(str::to_owned)),
                    ..RawConfig::default()
                },
            )
            .unwrap()
        };
        let url = |l: &ConfigLayers| l.resolve().unwrap().storage_url;
        assert_eq!(
            url(&layers("", None, None)),
            crate::storage::DEFAULT_STORAGE_URL
        );
        let file = "[storage]\nurl = \"sqlite://DATA/file.db\"\n";
        assert_eq!(url(&layers(file, None, None)), "sqlite://DATA/file.db");
        let l = layers(file, Some("sqlite://DATA/env.db"), None);
        assert_eq!(url(&l), "sqlite://DATA/env.db");
        assert_eq!(
            l.source("storage_url"),
            Source::Env("VOLACT_STORAGE_URL".into())
        );
        let l = layers(
            file,
            Some("sqlite://DATA/env.db"),
            Some("sqlite://DATA/flag.db"),
        );
        assert_eq!(url(&l), "sqlite://DATA/flag.db");
        assert_eq!(
            l.source("storage_url"),
            Source::Flag("--storage-url".into())
        );

        let e = layers("", Some("mysql://db"), None).resolve().unwrap_err();
        assert!(
            e.message.contains("mysql") && e.message.contains("VOLACT_STORAGE_URL"),
            "{}",
            e.message
        );
        std::fs::write(&path, "[storage]\nurll = \"x\"\n").unwrap();
        let e = RawConfig::from_file(&path).unwrap_err();
        assert!(e.message.contains("urll"), "{}", e.message);
    }

    #[test]
    fn postgres_settings_merge_by_field_and_the_password_is_never_on_a_command_line_or_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volact.toml");
        let layers = |file: &str, env: &[(&str, &str)], flag: Option<&str>| {
            std::fs::write(&path, file).unwrap();
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ConfigLayers::load(
                &path,
                |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
                RawConfig {
                    storage: StorageSection::with_url(flag.map(str::to_owned)),
                    ..RawConfig::default()
                },
            )
            .unwrap()
        };
        let file = "[storage]\nurl = \"postgres://volact@db.example:5432/volact\"\npool_size = 12\n\
                    ca_file = \"pg-ca.pem\"\npassword_file = \"pg-password\"\n";
        // The environment's URL replaces the file's URL only; the file's pool stays.
        let l = layers(
            file,
            &[
                ("VOLACT_STORAGE_URL", "postgres://volact@other:5432/volact"),
                ("PGPASSWORD", "pg-secret"),
            ],
            None,
        );
        let c = l.resolve().unwrap();
        assert_eq!(c.storage_url, "postgres://volact@other:5432/volact");
        assert_eq!(c.storage.pool_size, Some(12));
        assert_eq!(c.storage.ca_file, Some(PathBuf::from("pg-ca.pem")));
        assert_eq!(c.storage.password_file, Some(PathBuf::from("pg-password")));
        let report = l.report(&c);
        let entry = |key: &str| report.iter().find(|e| e.key == key).unwrap().clone();
        assert_eq!(entry("storage_pool_size").value, "12");
        assert!(entry("storage_pool_size").source.starts_with("file "));
        assert!(entry("storage_ca_file").value.contains("pg-ca.pem"));
        // password_file beats PGPASSWORD; VOLACT_STORAGE_PASSWORD beats both.
        assert_eq!(entry("storage_password").source, "file pg-password");
        let text = format!("{report:?}");
        assert!(!text.contains("pg-secret"), "{text}");

        let l = layers(file, &[("VOLACT_STORAGE_PASSWORD", "volact-secret")], None);
        let c = l.resolve().unwrap();
        let report = l.report(&c);
        let password = report.iter().find(|e| e.key == "storage_password").unwrap();
        assert_eq!(password.value, "set (hidden)");
        assert_eq!(password.source, "environment VOLACT_STORAGE_PASSWORD");
        assert!(!format!("{report:?}{c:?}").contains("volact-secret"));

        // In the file (or the environment) a URL may hold a password; it is never shown.
        let l = layers(
            "[storage]\nurl = \"postgres://volact:in-url@db/volact\"\n",
            &[],
            None,
        );
        let c = l.resolve().unwrap();
        let report = l.report(&c);
        assert!(!format!("{report:?}").contains("in-url"));
        let password = report.iter().find(|e| e.key == "storage_password").unwrap();
        assert_eq!(password.source, "the storage URL");

        // On the command line it is refused, and not echoed.
        let e = layers("", &[], Some("postgres://volact:on-flag@db/volact"))
            .resolve()
            .unwrap_err();
        assert!(
            e.message.contains("--storage-url")
                && e.message.contains("password_file")
                && e.message.contains("VOLACT_STORAGE_PASSWORD"),
            "{}",
            e.message
        );
        assert!(!e.to_string().contains("on-flag"), "{e:?}");
        assert!(
            layers("", &[], Some("postgres://volact@db/volact"))
                .resolve()
                .is_ok()
        );

        // Settings that would do nothing, or out of range, are refused with where they are.
        let e = layers("[storage]\npool_size = 4\n", &[], None)
            .resolve()
            .unwrap_err();
        assert!(
            e.message.contains("postgres://") && e.message.contains("file "),
            "{}",
            e.message
        );
        let e = layers(
            "[storage]\nurl = \"postgres://db/v\"\npool_size = 0\n",
            &[],
            None,
        )
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("from 1 to"), "{}", e.message);
        std::fs::write(&path, "[storage]\npassword = \"x\"\n").unwrap();
        assert!(RawConfig::from_file(&path).is_err());
    }

    #[test]
    fn every_key_has_a_field_and_an_environment_variable() {
        let env = RawConfig::from_env(|name| Some(format!("value of {name}")));
        for key in KEYS {
            assert_eq!(
                env.get(key),
                Some(format!("value of {}", env_var(key)).as_str())
            );
        }
        assert_eq!(env_var("event_retention"), "VOLACT_EVENT_RETENTION");
        assert_eq!(flag("event_retention"), "--event-retention");
    }
}
