//! TLS on the host: the `[tls]` configuration, the certificate (loaded, reloaded without a
//! restart, or made self-signed by `host init`) and the TLS handshake of the listener.
//!
//! A host has two listeners: `listen` speaks plain HTTP and serves activations (whose
//! trust comes from their signatures) to everyone, but the admin API and the dashboard
//! only to this machine; `[tls] listen` serves everything over TLS (HTTP/1.1 and HTTP/2
//! by ALPN), with `Strict-Transport-Security` on every answer.

pub mod certs;

pub mod reload;

pub use certs::{CurrentCert, fingerprint, host_names, load, self_signed};
pub use volact_engine::tls_config::{TlsConfig, TlsListenerConfig, TlsSection, default_listen};

use crate::listener::Handshake;
use std::sync::Arc;
use tokio::net::TcpStream;
use volact_proto::{ApiError, ErrorCode};

/// The TLS handshake, with the certificate of a [`CurrentCert`].
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    /// A handshake presenting whatever `current` holds when a connection arrives.
    pub fn new(current: Arc<CurrentCert>) -> Result<Tls, ApiError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(certs::provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("TLS set-up failed: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(current);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

impl Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Io> {
        self.acceptor.accept(tcp).await
    }
}

/// Where `host init` puts the self-signed certificate, relative to the data directory.
pub const CERT_FILE: &str = "tls/cert.pem";
/// Where `host init` puts its key, relative to the data directory.
pub const KEY_FILE: &str = "tls/key.pem";

/// What [`init_self_signed`] made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TlsInit {
    /// The certificate file.
    pub cert_file: std::path::PathBuf,
    /// The key file (mode 0600).
    pub key_file: std::path::PathBuf,
    /// The names the certificate covers.
    pub names: Vec<String>,
    /// Its SHA-256 fingerprint, `AB:CD:…`: what clients pin with `--tls-fingerprint`.
    pub fingerprint: String,
    /// Whether a `[tls]` section was added to `volact.toml` (not when one was there).
    pub config_written: bool,
}

/// Makes a self-signed certificate for this machine's names and `extra_names` in
/// `data`'s `tls/` (private modes), and adds a `[tls]` section pointing at it to
/// `volact.toml` unless it has one. An existing certificate is replaced (a serving host
/// picks the new one up without a restart) only with `replace`.
pub fn init_self_signed(
    data: &volact_engine::data::HostData,
    extra_names: &[String],
    replace: bool,
) -> Result<TlsInit, ApiError> {
    let cert_file = data.dir().join(CERT_FILE);
    let key_file = data.dir().join(KEY_FILE);
    if cert_file.exists() && !replace {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "{} exists already; pass --replace to make a new certificate (clients pinning the old fingerprint will need the new one)",
                cert_file.display()
            ),
        ));
    }
    let names = host_names(extra_names);
    let (cert_pem, key_pem) = self_signed(&names)?;
    // The key first: a serving host polling the files reloads once both are new.
    volact_engine::data::write_atomic(&key_file, key_pem.as_bytes(), true)?;
    volact_engine::data::write_atomic(&cert_file, cert_pem.as_bytes(), false)?;
    let key = load(&cert_file, &key_file)?;
    let config_path = data.config_path();
    let existing = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot read {}: {e}", config_path.display()),
            ));
        }
    };
    let has_section = existing
        .parse::<toml::Table>()
        .map(|t| t.contains_key("tls"))
        .unwrap_or(true);
    if !has_section {
        let text = format!(
            "{existing}{}",
            volact_engine::tls_config::section_text(CERT_FILE, KEY_FILE)
        );
        volact_engine::data::write_atomic(&config_path, text.as_bytes(), false)?;
    }
    Ok(TlsInit {
        cert_file,
        key_file,
        names,
        fingerprint: fingerprint(&key),
        config_written: !has_section,
    })
}
