//! The `[tls]` section of `volact.toml`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use volact_proto::{ApiError, ErrorCode};

/// The TLS listener's address when `[tls] listen` is not set: the plain listener's
/// address with the next port (7688 → 7689), or port 0 (any free port) when the plain
/// one asked for 0. Following `listen` keeps a host bound to one interface (or to
/// loopback, in tests) bound there for TLS too.
pub fn default_listen(plain: SocketAddr) -> SocketAddr {
    let port = match plain.port() {
        0 => 0,
        p => p.checked_add(1).unwrap_or(0),
    };
    SocketAddr::new(plain.ip(), port)
}

/// `[tls]` as written in the file (file only: no environment variables or flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Address of the TLS listener, e.g. `0.0.0.0:7689`.
    pub listen: Option<String>,
    /// The certificate chain, PEM (end-entity first); relative to the data directory.
    pub cert_file: Option<String>,
    /// The certificate's private key, PEM; relative to the data directory.
    pub key_file: Option<String>,
    /// Lets the admin API and the dashboard answer over plain HTTP to other machines.
    pub allow_plain_admin: Option<bool>,
}

/// `[tls]` resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The TLS listener, when a certificate is configured.
    pub listener: Option<TlsListenerConfig>,
    /// Whether the plain listener serves the admin API and dashboard to other machines.
    pub allow_plain_admin: bool,
}

/// Where the TLS listener listens and what it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The certificate chain file.
    pub cert_file: PathBuf,
    /// The private key file.
    pub key_file: PathBuf,
}

impl TlsSection {
    /// Checks the section: both files or neither, a valid address (by default
    /// [`default_listen`] of `plain`, the plain listener's).
    pub fn resolve(&self, plain: SocketAddr) -> Result<TlsConfig, ApiError> {
        let bad = |key: &str, why: String| {
            ApiError::with_details(
                ErrorCode::BadRequest,
                format!("[tls] {key}: {why}"),
                serde_json::json!({ "setting": format!("tls.{key}") }),
            )
        };
        let path = |key: &str, v: &Option<String>| -> Result<Option<PathBuf>, ApiError> {
            match v.as_deref().map(str::trim) {
                Some("") => Err(bad(key, "is empty".into())),
                Some(p) => Ok(Some(PathBuf::from(p))),
                None => Ok(None),
            }
        };
        let cert = path("cert_file", &self.cert_file)?;
        let key = path("key_file", &self.key_file)?;
        let listener = match (cert, key) {
            (Some(cert_file), Some(key_file)) => {
                let listen = match self.listen.as_deref() {
                    Some(text) => text.parse().map_err(|_| {
                        bad(
                            "listen",
                            format!("`{text}` is not IP:PORT (for example 0.0.0.0:7689)"),
                        )
                    })?,
                    None => default_listen(plain),
                };
                Some(TlsListenerConfig {
                    listen,
                    cert_file,
                    key_file,
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "key_file",
                    "is missing; cert_file needs the key that goes with it".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "cert_file",
                    "is missing; key_file needs the certificate that goes with it".into(),
                ));
            }
        };
        Ok(TlsConfig {
            listener,
            allow_plain_admin: self.allow_plain_admin.unwrap_or(false),
        })
    }
}

impl TlsConfig {
    /// Relative certificate and key paths taken from `dir`.
    pub fn rooted(mut self, dir: &Path) -> TlsConfig {
        if let Some(l) = &mut self.listener {
            if l.cert_file.is_relative() {
                l.cert_file = dir.join(&l.cert_file);
            }
            if l.key_file.is_relative() {
                l.key_file = dir.join(&l.key_file);
            }
        }
        self
    }
}

/// The `[tls]` section `host init` writes.
pub fn section_text(cert_file: &str, key_file: &str) -> String {
    format!(
        "\n[tls]\n# Everything (activations, admin API, dashboard) over TLS; by default on the\n# address of `listen` with the next port (7689 beside 7688).\n# listen = \"0.0.0.0:7689\"\ncert_file = \"{cert_file}\"\nkey_file = \"{key_file}\"\n# The admin API and dashboard answer over plain HTTP only to this machine (127.0.0.1, ::1).\nallow_plain_admin = false\n"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let s = TlsSection {
            cert_file: Some("tls/cert.pem".into()),
            ..Default::default()
        };
        let plain: SocketAddr = "0.0.0.0:7688".parse().unwrap();
        assert!(s.resolve(plain).unwrap_err().message.contains("key_file"));
        let s = TlsSection {
            cert_file: Some("tls/cert.pem".into()),
            key_file: Some("/k.pem".into()),
            ..Default::default()
        };
        let c = s.resolve(plain).unwrap().rooted(Path::new("/data"));
        let l = c.listener.unwrap();
        assert_eq!(l.cert_file, PathBuf::from("/data/tls/cert.pem"));
        assert_eq!(l.key_file, PathBuf::from("/k.pem"));
        assert_eq!(l.listen.port(), 7689);
        assert!(!c.allow_plain_admin);
        let parsed: TlsSection = toml::from_str(&section_text("a", "b"))
            .map(|t: toml::Table| t["tls"].clone().try_into().unwrap())
            .unwrap();
        assert!(parsed.resolve(plain).unwrap().listener.is_some());
        assert_eq!(default_listen("127.0.0.1:0".parse().unwrap()).port(), 0);
    }
}
