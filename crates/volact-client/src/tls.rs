//! Whom a client trusts over `https://`: the system's roots by default, a CA file
//! (`--ca-file`), or one pinned certificate (`--tls-fingerprint`, the SHA-256 of the
//! host's certificate that `volact host init` printed). Always rustls with ring.
//!
//! A pinned certificate is compared by the SHA-256 of its DER, not by name or chain (a
//! self-signed host certificate has neither a CA nor, often, the name the client used);
//! the handshake's signature is still checked against the certificate's key, so only the
//! holder of its private key can answer.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{Error as TlsError, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use volact_core::fingerprint;
use volact_proto::{ApiError, ErrorCode};

/// What a client trusts for `https://` hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// Trust exactly this certificate (SHA-256 of its DER).
    pub fingerprint: Option<[u8; 32]>,
    /// Trust certificates issued by the CAs in this PEM file.
    pub ca_file: Option<PathBuf>,
}

impl TlsTrust {
    /// Trust from the command line's `--tls-fingerprint` and `--ca-file`.
    pub fn from_flags(
        fingerprint: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<TlsTrust, ApiError> {
        Ok(TlsTrust {
            fingerprint: fingerprint.map(fingerprint::parse).transpose()?,
            ca_file: ca_file.map(Path::to_path_buf),
        })
    }
}

/// Makes ring the process's default rustls provider, if none is yet. reqwest is built
/// with TLS but no provider of its own (its default would be aws-lc), so a client built
/// without [`configure`] takes the process default, and panics if there is none: every
/// entry point that may build one (the binary, a serving host, the test kit) calls this.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setup_failed(why: String) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("cannot set up TLS: {why}"))
}

/// The rustls configuration for `trust`, speaking HTTP/2 or HTTP/1.1.
pub fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, ApiError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_failed(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if let Some(pin) = trust.fingerprint {
        Arc::new(Pinned { pin, provider })
    } else if let Some(path) = &trust.ca_file {
        let bad = |why: String| {
            ApiError::with_details(
                ErrorCode::InvalidState,
                format!("cannot use the CA file {}: {why}", path.display()),
                serde_json::json!({ "file": path.display().to_string() }),
            )
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("it holds no CERTIFICATE block".into()));
        }
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
        Arc::new(Explained {
            inner,
            hint: Hint::CaFile,
        })
    } else {
        let inner = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| setup_failed(e.to_string()))?;
        Arc::new(Explained {
            inner: Arc::new(inner),
            hint: Hint::System,
        })
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `builder` with TLS as `trust` says.
pub fn configure(
    builder: reqwest::ClientBuilder,
    trust: &TlsTrust,
) -> Result<reqwest::ClientBuilder, ApiError> {
    install_default_provider();
    Ok(builder.tls_backend_preconfigured(client_config(trust)?))
}

/// Accepts exactly one certificate, by its SHA-256.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let seen = fingerprint::sha256(end_entity.as_ref());
        if seen == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(TlsError::General(format!(
            "the host's certificate has SHA-256 fingerprint {}, not the pinned {}; if the host's certificate was renewed, get the new fingerprint with `volact host status` on the host and pass it with --tls-fingerprint, otherwise something else is answering at that address",
            fingerprint::format(&seen),
            fingerprint::format(&self.pin)
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug, Clone, Copy)]
enum Hint {
    System,
    CaFile,
}

/// A verifier whose refusal says what to do, with the certificate's fingerprint.
#[derive(Debug)]
struct Explained {
    inner: Arc<dyn ServerCertVerifier>,
    hint: Hint,
}

impl ServerCertVerifier for Explained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| {
                let seen = fingerprint::of_certificate(end_entity.as_ref());
                let trusted = match self.hint {
                    Hint::System => "the system's certificate authorities",
                    Hint::CaFile => "the CA file given with --ca-file",
                };
                TlsError::General(format!(
                    "the host's certificate is not trusted by {trusted} ({e}); if the host uses the self-signed certificate `volact host init` made, pass --tls-fingerprint with the fingerprint it printed (`volact host status` on the host shows it; this host presented {seen}), or --ca-file with the CA that issued it"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `e` with its chain of causes (a TLS refusal's reason sits a few levels down).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    chain_after(e.to_string(), e)
}

/// `first`, then the causes of `e` that it does not already say.
pub(crate) fn chain_after(first: String, e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = first;
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
