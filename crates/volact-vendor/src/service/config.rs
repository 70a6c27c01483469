//! The vendor service's settings: `service.toml` in the vendor directory (or the file
//! `--config` names), overridden by the command line's flags.
//!
//! ```toml
//! listen = "0.0.0.0:7690"
//! public_url = "https://activation.example.com:7690"
//! signing = "signing"            # from `vendor delegate --out`; relative to the directory
//! days = 365
//! attempts_per_minute = 10
//!
//! [tls]
//! cert_file = "tls/cert.pem"     # PEM chain, end-entity first
//! key_file = "tls/key.pem"
//!
//! [storage]                      # as a host's: sqlite:// (default DATA/vendor.db) or postgres://
//! url = "postgres://volact@db.example.com/vendor"
//! pool_size = 4
//! ca_file = "pg-ca.pem"
//! password_file = "pg-password"  # or VOLACT_STORAGE_PASSWORD / PGPASSWORD
//! ```
//!
//! Plain HTTP is served only on loopback (tests and demos): the admin token crosses the
//! connection, so anywhere else the service needs `[tls]`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use volact_proto::{ApiError, ErrorCode};

/// The service's address when neither the file nor `--listen` names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7690";

/// The settings file looked for in the vendor directory.
pub const CONFIG_FILE: &str = "service.toml";

/// `service.toml` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// Where to listen.
    pub listen: Option<String>,
    /// The URL hosts reach the service at, for `vendor export` to put in the bundle.
    pub public_url: Option<String>,
    /// A delegated signing key's directory.
    pub signing: Option<String>,
    /// Validity of the host certificates it issues, in days.
    pub days: Option<u32>,
    /// Activation attempts a minute per address.
    pub attempts_per_minute: Option<u32>,
    /// TLS.
    #[serde(default)]
    pub tls: ServiceTls,
    /// Where the service keeps its records.
    pub storage: Option<volact_engine::config::StorageSection>,
}

/// `[tls]` of `service.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTls {
    /// The certificate chain (PEM).
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    pub key_file: Option<String>,
}

/// What the command line says; each set flag overrides the file.
#[derive(Debug, Clone, Default)]
pub struct ServiceFlags {
    /// `--config`: another settings file than the directory's `service.toml`.
    pub config: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--signing`.
    pub signing: Option<PathBuf>,
    /// `--days`.
    pub days: Option<u32>,
    /// `--attempts-per-minute`.
    pub attempts_per_minute: Option<u32>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--storage-url` (or `VOLACT_STORAGE_URL`).
    pub storage_url: Option<String>,
}

/// The certificate and key the service presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

/// The settings, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// A delegated signing key's directory, when the service does not sign with the root.
    pub signing: Option<PathBuf>,
    /// Validity of the host certificates it issues, in days.
    pub days: u32,
    /// Activation attempts a minute per address (0: no limit).
    pub attempts_per_minute: u32,
    /// TLS, or `None` for plain HTTP (loopback only).
    pub tls: Option<TlsFiles>,
    /// The store's URL (`DATA` in it is the vendor directory).
    pub storage_url: String,
    /// The store's other settings.
    pub storage: volact_engine::storage::StorageOptions,
}

fn bad(field: &str, why: String) -> ApiError {
    ApiError::with_details(
        ErrorCode::BadRequest,
        format!("the vendor service's setting `{field}` {why}"),
        serde_json::json!({ "field": field }),
    )
}

/// Reads the settings file: `flags.config`, which must exist, or `dir/service.toml`,
/// which may not.
pub fn read_file(dir: &Path, flags: &ServiceFlags) -> Result<ServiceFile, ApiError> {
    let (path, required) = match &flags.config {
        Some(p) => (p.clone(), true),
        None => (dir.join(CONFIG_FILE), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(ServiceFile::default());
        }
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

impl ServiceFile {
    /// Merges the flags over the file and checks the result. Relative paths in the file
    /// are taken from `dir`; the flags' from the working directory, as the shell gave them.
    pub fn resolve(&self, dir: &Path, flags: &ServiceFlags) -> Result<ServiceSettings, ApiError> {
        let listen = match (flags.listen, &self.listen) {
            (Some(a), _) => a,
            (None, Some(text)) => text.parse().map_err(|_| {
                bad(
                    "listen",
                    format!("`{text}` is not an address like 0.0.0.0:7690"),
                )
            })?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .map_err(|_| bad("listen", "default is invalid".into()))?,
        };
        let in_dir = |p: &str| dir.join(p);
        let signing = flags
            .signing
            .clone()
            .or_else(|| self.signing.as_deref().map(in_dir));
        let days = flags
            .days
            .or(self.days)
            .unwrap_or(volact_core::certificate::DEFAULT_CERTIFICATE_DAYS);
        if days == 0 {
            return Err(bad("days", "is 0; give at least 1".into()));
        }
        let attempts_per_minute = flags
            .attempts_per_minute
            .or(self.attempts_per_minute)
            .unwrap_or(super::DEFAULT_ATTEMPTS_PER_MINUTE);
        let cert = flags
            .tls_cert
            .clone()
            .or_else(|| self.tls.cert_file.as_deref().map(in_dir));
        let key = flags
            .tls_key
            .clone()
            .or_else(|| self.tls.key_file.as_deref().map(in_dir));
        let tls = match (cert, key) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(bad(
                    "tls",
                    "names only one of the certificate and the key; give both (cert_file and key_file, or --tls-cert and --tls-key)".into(),
                ));
            }
        };
        if tls.is_none() && !listen.ip().is_loopback() {
            return Err(ApiError::with_details(
                ErrorCode::BadRequest,
                format!(
                    "{listen} is not a loopback address and the service has no TLS certificate: the admin token would cross the network in clear. Give [tls] cert_file and key_file in {CONFIG_FILE} (or --tls-cert and --tls-key), or listen on 127.0.0.1"
                ),
                serde_json::json!({ "field": "listen" }),
            ));
        }
        let (storage_url, storage) = self.storage_settings(dir, flags)?;
        Ok(ServiceSettings {
            listen,
            signing,
            days,
            attempts_per_minute,
            tls,
            storage_url,
            storage,
        })
    }

    /// The store's URL and settings: `--storage-url`, else `[storage] url`, else
    /// `sqlite://DATA/vendor.db`; the password from `VOLACT_STORAGE_PASSWORD`,
    /// `password_file` or `PGPASSWORD`, as a host's.
    pub fn storage_settings(
        &self,
        dir: &Path,
        flags: &ServiceFlags,
    ) -> Result<(String, volact_engine::storage::StorageOptions), ApiError> {
        let section = self.storage.clone().unwrap_or_default();
        let url = flags
            .storage_url
            .clone()
            .or(section.url)
            .unwrap_or_else(|| volact_engine::storage::DEFAULT_VENDOR_STORAGE_URL.to_owned());
        volact_engine::storage::StorageUrl::parse(&url, dir)?;
        let password_env = volact_engine::storage::password_from_env(|var| std::env::var(var).ok());
        let options = volact_engine::storage::StorageOptions {
            pool_size: section.pool_size,
            ca_file: section.ca_file.as_deref().map(|p| dir.join(p)),
            password_file: section.password_file.as_deref().map(|p| dir.join(p)),
            password_env,
        };
        Ok((url, options))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(text: &str) -> ServiceFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_override_the_file_and_relative_paths_are_the_directorys() {
        let f = file(
            "listen = \"127.0.0.1:9000\"\ndays = 30\nsigning = \"sig\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
        );
        let dir = Path::new("/v");
        let s = f.resolve(dir, &ServiceFlags::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.days, 30);
        assert_eq!(s.signing.as_deref(), Some(Path::new("/v/sig")));
        assert_eq!(s.tls.as_ref().unwrap().cert_file, Path::new("/v/c.pem"));
        let flags = ServiceFlags {
            days: Some(7),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..ServiceFlags::default()
        };
        let s = f.resolve(dir, &flags).unwrap();
        assert_eq!((s.days, s.listen.port()), (7, 1));
    }

    #[test]
    fn plain_http_is_refused_off_loopback_and_half_a_tls_pair_is_refused() {
        let off = file("listen = \"0.0.0.0:7690\"\n");
        let e = off
            .resolve(Path::new("/v"), &ServiceFlags::default())
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("TLS"), "{}", e.message);
        let with_tls =
            file("listen = \"0.0.0.0:7690\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n");
        assert!(
            with_tls
                .resolve(Path::new("/v"), &ServiceFlags::default())
                .is_ok()
        );
        let half = file("[tls]\ncert_file = \"c\"\n");
        let e = half
            .resolve(Path::new("/v"), &ServiceFlags::default())
            .unwrap_err();
        assert!(e.message.contains("both"), "{}", e.message);
    }

    #[test]
    fn unknown_settings_and_zero_days_are_refused() {
        assert!(toml::from_str::<ServiceFile>("lisen = \"x\"\n").is_err());
        let e = file("days = 0\n")
            .resolve(Path::new("/v"), &ServiceFlags::default())
            .unwrap_err();
        assert!(e.message.contains("days"), "{}", e.message);
    }
}
