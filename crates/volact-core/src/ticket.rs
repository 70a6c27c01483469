//! Activation tickets and signed "not yet" answers, and the client's check of an answer
//! along the whole chain: vendor root → host certificate → ticket.

use crate::certificate::{self, HostCertificate};
use crate::keys::{KeyPair, PublicKey};
use crate::token::{self, Document};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use volact_proto::{ActivationResponse, ActivationResult, ApiError, ErrorCode};

/// An activation ticket's claims: the host activates one client for one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Ticket id.
    pub jti: String,
    /// The client id.
    pub sub: String,
    /// The product.
    pub product: String,
    /// The product's application.
    pub application: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum the product needs.
    pub minimum: u32,
    /// Issued at.
    pub iat: Timestamp,
    /// Renew after this time.
    pub renew_after: Timestamp,
    /// Valid until this time.
    pub exp: Timestamp,
    /// The host id.
    pub iss: String,
    /// The request's nonce.
    pub nonce: String,
}

impl Document for Ticket {
    const TYPE: &'static str = "volact.ticket";
}

/// A signed "not yet": the count is short and the client should retry later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotYet {
    /// The client id.
    pub sub: String,
    /// The product.
    pub product: String,
    /// The product's application.
    pub application: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum the product needs.
    pub minimum: u32,
    /// Answered at.
    pub iat: Timestamp,
    /// Retry at this time.
    pub retry_after: Timestamp,
    /// The host id.
    pub iss: String,
    /// The request's nonce.
    pub nonce: String,
}

impl Document for NotYet {
    const TYPE: &'static str = "volact.not-yet";
}

/// A deterministic ticket id: the same inputs give the same id, so simulations are
/// reproducible, and no two requests (distinct nonces) share one.
pub fn ticket_id(client_id: &str, nonce: &str, iat: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0]);
    h.update(nonce.as_bytes());
    h.update([0]);
    h.update(iat.as_second().to_be_bytes());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(2 + 24);
    id.push_str("t-");
    // Every answer's ticket gets an id: written without a String per byte.
    for b in digest.iter().take(12) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// Signs a ticket with the host's key.
pub fn sign_ticket(host: &KeyPair, ticket: &Ticket) -> Result<String, ApiError> {
    token::sign(host, ticket).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the ticket: {e}"),
        )
    })
}

/// Signs a "not yet" with the host's key.
pub fn sign_not_yet(host: &KeyPair, not_yet: &NotYet) -> Result<String, ApiError> {
    token::sign(host, not_yet).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the answer: {e}"),
        )
    })
}

/// What the client expects an answer to be about.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Its client id.
    pub client_id: &'a str,
    /// Its product.
    pub product: &'a str,
    /// The nonce it sent.
    pub nonce: &'a str,
}

/// An answer whose whole chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedAnswer {
    /// A ticket.
    Ticket {
        /// The ticket's claims.
        ticket: Ticket,
        /// The host certificate that vouches for the signing host.
        certificate: HostCertificate,
    },
    /// A "not yet".
    NotYet {
        /// Its claims.
        not_yet: NotYet,
        /// The host certificate.
        certificate: HostCertificate,
    },
}

fn untrusted(message: String) -> ApiError {
    ApiError::new(ErrorCode::UntrustedHost, message)
}

/// Verifies an activation answer against the vendor root the client ships with: the host
/// certificate chains to `root`, covers the product and was in force when the host
/// signed; the ticket (or "not yet") is signed by that host and names this client,
/// product and nonce. Anything else is `untrusted-host`.
pub fn verify_answer(
    root: &PublicKey,
    answer: &ActivationResponse,
    expected: Expected<'_>,
) -> Result<VerifiedAnswer, ApiError> {
    let host = TrustedHost::verify(root, &answer.host_id, &answer.host_certificate)?;
    signed_answer(host.certificate, &host.key, answer, expected)
}

/// A host certificate that chains to the vendor root, and the host key it certifies: the
/// first half of [`verify_answer`]. It depends only on the root and the certificate's
/// text, so a caller that sees the same certificate again (a fleet of simulated clients
/// of one host) may keep it instead of verifying and parsing the chain once per answer.
#[derive(Debug, Clone)]
pub struct TrustedHost {
    certificate: HostCertificate,
    key: PublicKey,
}

impl TrustedHost {
    /// Verifies `host_certificate` (sent by host `host_id`, named in errors) against `root`.
    pub fn verify(
        root: &PublicKey,
        host_id: &str,
        host_certificate: &str,
    ) -> Result<TrustedHost, ApiError> {
        let certificate = certificate::verify_certificate(root, host_certificate, None).map_err(|e| {
            untrusted(format!(
                "host {host_id} is not trusted: its certificate does not chain to this vendor's root key ({}); it may be an impostor or belong to another vendor",
                e.message
            ))
        })?;
        let key = PublicKey::from_paserk(&certificate.host_public_key)
            .map_err(|_| untrusted("the host certificate carries no usable public key".into()))?;
        if certificate.sub != key.host_id() {
            return Err(untrusted(
                "the host certificate's host id does not match its key".into(),
            ));
        }
        Ok(TrustedHost { certificate, key })
    }

    /// The second half of [`verify_answer`], for an answer whose `host_certificate` is
    /// the one this was verified from.
    pub fn verify_answer(
        &self,
        answer: &ActivationResponse,
        expected: Expected<'_>,
    ) -> Result<VerifiedAnswer, ApiError> {
        signed_answer(self.certificate.clone(), &self.key, answer, expected)
    }
}

/// Checks an answer's signed document against its host's certificate.
fn signed_answer(
    certificate: HostCertificate,
    host_key: &PublicKey,
    answer: &ActivationResponse,
    expected: Expected<'_>,
) -> Result<VerifiedAnswer, ApiError> {
    if !certificate.products.iter().any(|p| p == expected.product) {
        return Err(untrusted(format!(
            "host {} is not entitled to activate product {}",
            certificate.sub, expected.product
        )));
    }
    let check = |sub: &str,
                 product: &str,
                 nonce: &str,
                 iss: &str,
                 iat: Timestamp|
     -> Result<(), ApiError> {
        if sub != expected.client_id
            || product != expected.product
            || nonce != expected.nonce
            || iss != certificate.sub
        {
            return Err(untrusted(
                "the host's answer is not for this request (client id, product, nonce or host differ); it may be a replay".into(),
            ));
        }
        if iat < certificate.iat || iat >= certificate.exp {
            return Err(untrusted(format!(
                "the host signed at {iat}, outside its certificate's validity ({} to {})",
                certificate.iat, certificate.exp
            )));
        }
        Ok(())
    };
    match answer.result {
        ActivationResult::Activated => {
            let text = answer
                .ticket
                .as_deref()
                .ok_or_else(|| untrusted("the host said activated but sent no ticket".into()))?;
            let ticket: Ticket = token::verify(host_key, text).map_err(|e| {
                untrusted(format!(
                    "the ticket does not verify with host {}'s key: {e}",
                    certificate.sub
                ))
            })?;
            check(
                &ticket.sub,
                &ticket.product,
                &ticket.nonce,
                &ticket.iss,
                ticket.iat,
            )?;
            Ok(VerifiedAnswer::Ticket {
                ticket,
                certificate,
            })
        }
        ActivationResult::CountInsufficient => {
            let text = answer
                .not_yet
                .as_deref()
                .ok_or_else(|| untrusted("the host sent an unsigned answer".into()))?;
            let not_yet: NotYet = token::verify(host_key, text).map_err(|e| {
                untrusted(format!(
                    "the answer does not verify with host {}'s key: {e}",
                    certificate.sub
                ))
            })?;
            check(
                &not_yet.sub,
                &not_yet.product,
                &not_yet.nonce,
                &not_yet.iss,
                not_yet.iat,
            )?;
            Ok(VerifiedAnswer::NotYet {
                not_yet,
                certificate,
            })
        }
    }
}

/// Re-verifies a stored ticket (e.g. when the state file is read back).
pub fn verify_stored(
    root: &PublicKey,
    certificate: &str,
    ticket: &str,
) -> Result<(Ticket, HostCertificate), ApiError> {
    let cert = certificate::verify_certificate(root, certificate, None)?;
    let host_key = PublicKey::from_paserk(&cert.host_public_key)
        .map_err(|_| untrusted("bad host key in certificate".into()))?;
    let t: Ticket = token::verify(&host_key, ticket)
        .map_err(|e| untrusted(format!("stored ticket does not verify: {e}")))?;
    if t.iss != cert.sub {
        return Err(untrusted(
            "stored ticket was not signed by the certified host".into(),
        ));
    }
    Ok((t, cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_id_is_t_and_the_first_12_bytes_of_the_digest_in_lowercase_hex() {
        let iat = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut h = Sha256::new();
        h.update(b"c\0n\0");
        h.update(iat.as_second().to_be_bytes());
        let hex: String = h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ticket_id("c", "n", iat), format!("t-{hex}"));
    }
}
