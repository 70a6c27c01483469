//! The certificate the TLS listener presents: loaded from PEM files, held behind a
//! [`ResolvesServerCert`] so a renewed certificate replaces it for new connections
//! without a restart, and a self-signed one made by `host init`.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, RwLock};
use volact_proto::{ApiError, ErrorCode};

/// Reads and checks a certificate chain and its key: at least one certificate, a key
/// the ring provider can sign with, and the key matching the certificate.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, ApiError> {
    let bad = |file: &Path, why: String| {
        ApiError::with_details(
            ErrorCode::InvalidState,
            format!(
                "cannot use {} for TLS: {why}; fix the file or point [tls] cert_file and key_file at a certificate and its key (PEM)",
                file.display()
            ),
            serde_json::json!({ "file": file.display().to_string() }),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| bad(cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert_file, "it holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| bad(key_file, e.to_string()))?;
    let key = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        bad(
            key_file,
            format!("{e} (is it the key of {}?)", cert_file.display()),
        )
    })?;
    Ok(Arc::new(key))
}

/// Makes ring the process's default rustls provider if none is yet (see
/// `volact_client::tls::install_default_provider`: reqwest, built without a provider of
/// its own, panics on a client built without one). A serving host calls it, so a process
/// that serves and asks itself over HTTP (tests, the simulator) never meets the panic.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        let _ = provider().install_default();
    }
}

/// The one crypto provider of the tree: ring.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The SHA-256 fingerprint of `key`'s end-entity certificate, `AB:CD:…`.
pub fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| volact_core::fingerprint::of_certificate(c.as_ref()))
        .unwrap_or_default()
}

/// The certificate in force, swapped whole on reload; connections already open keep
/// the one they were made with.
#[derive(Debug)]
pub struct CurrentCert {
    key: RwLock<Arc<CertifiedKey>>,
}

impl CurrentCert {
    /// Holds `key`.
    pub fn new(key: Arc<CertifiedKey>) -> CurrentCert {
        CurrentCert {
            key: RwLock::new(key),
        }
    }

    /// The certificate new connections get.
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the certificate for new connections.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses) and its key, PEM.
pub fn self_signed(names: &[String]) -> Result<(String, String), ApiError> {
    let failed = |e: rcgen::Error| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot make a self-signed certificate: {e}"),
        )
    };
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        format!("volact host {}", names.first().map_or("", String::as_str)),
    );
    params.distinguished_name = dn;
    let now = jiff::Timestamp::now().as_second();
    // Ten years: a pinned self-signed certificate is replaced by hand, not renewed.
    params.not_before = rcgen::date_time_ymd(1970, 1, 1);
    params.not_after = rcgen::date_time_ymd(
        i32::try_from(1970 + now / 31_556_952 + 10).unwrap_or(2100),
        1,
        1,
    );
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The names a host's self-signed certificate covers: this machine's name, `localhost`,
/// the loopback addresses, and `extra` (deduplicated, in that order).
pub fn host_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let machine = volact_engine::dns::config::machine_host_name();
    for n in machine
        .into_iter()
        .chain(["localhost".into(), "127.0.0.1".into(), "::1".into()])
        .chain(extra.iter().map(|s| s.trim().to_string()))
    {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_and_a_wrong_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&host_names(&["volact.example".into()])).unwrap();
        let (_, other_key) = self_signed(&["other".into()]).unwrap();
        let c = dir.path().join("c.pem");
        let k = dir.path().join("k.pem");
        let k2 = dir.path().join("k2.pem");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(&k2, other_key).unwrap();
        let loaded = load(&c, &k).unwrap();
        assert_eq!(fingerprint(&loaded).len(), 95);
        let e = load(&c, &k2).unwrap_err();
        assert!(e.message.contains("k2.pem"), "{}", e.message);
        let e = load(&k, &k).unwrap_err();
        assert!(e.message.contains("no CERTIFICATE"), "{}", e.message);
    }
}
