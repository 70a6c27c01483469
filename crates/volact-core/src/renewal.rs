//! Host certificate renewal: the host's signed request, the vendor's checks, the renewed
//! certificate, and when a host asks.
//!
//! A renewal spends no activation: the host proves it holds the identity key its current
//! certificate names, the vendor checks that the certificate chains to its root, that
//! the host key behind it has not expired and that its ledger still knows the host, and
//! signs the same claims with a new validity. The request travels as one signed token:
//! the certificate inside it names the key that must have signed it, so no wire field
//! carries a key the verifier would have to trust on its own.

use crate::certificate::{HostCertificate, Ledger, verify_certificate};
use crate::delegation::Signer;
use crate::host_key::HostKey;
use crate::keys::{KeyPair, PublicKey};
use crate::token::{self, Document};
use crate::util;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use volact_proto::{ApiError, ErrorCode, HostRenewalRequest};

/// Default of how long before its certificate expires a serving host renews it.
pub const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;

/// A host never renews twice within this time, however short its certificates are: a
/// vendor issuing certificates shorter than the renewal window would otherwise be asked
/// again at every pass.
pub const MIN_RENEWAL_GAP: SignedDuration = SignedDuration::from_hours(1);

/// First wait after a failed renewal; it doubles with each failure in a row.
pub const FIRST_RETRY: SignedDuration = SignedDuration::from_mins(1);

/// Longest wait between failed renewals.
pub const MAX_RETRY: SignedDuration = SignedDuration::from_hours(6);

/// The claims of a host's renewal request, signed with the host's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalProof {
    /// The host id, derived from its public key.
    pub host_id: String,
    /// The host's current certificate (token).
    pub host_certificate: String,
    /// The host key token the certificate came from, so the vendor can check its expiry.
    pub host_key: String,
    /// A random value, refused the second time.
    pub nonce: String,
    /// When the request was made.
    pub iat: Timestamp,
}

impl Document for RenewalProof {
    const TYPE: &'static str = "volact.host-renewal-request";
}

/// Builds the host's renewal request for its current certificate.
pub fn make_renewal_request(
    host: &KeyPair,
    certificate: &str,
    host_key: &str,
    nonce: String,
    now: Timestamp,
) -> Result<HostRenewalRequest, ApiError> {
    let proof = RenewalProof {
        host_id: host.public().host_id(),
        host_certificate: certificate.trim().to_string(),
        host_key: host_key.trim().to_string(),
        nonce,
        iat: now,
    };
    let proof = token::sign(host, &proof).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the renewal request: {e}"),
        )
    })?;
    Ok(HostRenewalRequest { proof })
}

/// A renewal request whose signatures, time, certificate and host key all check out;
/// what is left is the ledger ([`Ledger::admit_renewal`]) and signing
/// ([`renewed_certificate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRenewal {
    /// The request's claims.
    pub proof: RenewalProof,
    /// The certificate to renew, verified.
    pub certificate: HostCertificate,
    /// The host key it came from, verified.
    pub key: HostKey,
}

/// Checks a renewal request against the vendor `root` at `now`: the proof is signed by
/// the key the certificate names, dated within `max_skew` of `now`, the certificate
/// verifies along the chain to the root (root or delegated signer) and is still in
/// force, and its host key (issued by the root) has not expired.
pub fn check_renewal(
    root: &PublicKey,
    request: &HostRenewalRequest,
    now: Timestamp,
    max_skew: SignedDuration,
) -> Result<CheckedRenewal, ApiError> {
    // The certificate is read from the unverified proof only to learn which key must
    // have signed the proof; nothing is believed until both verify.
    let claimed: RenewalProof =
        token::peek(&request.proof).map_err(|e| ApiError::bad_request("proof", e.to_string()))?;
    let certificate = verify_certificate(root, &claimed.host_certificate, None)?;
    let host = PublicKey::from_paserk(&certificate.host_public_key).map_err(|_| {
        ApiError::new(
            ErrorCode::UntrustedHost,
            "the host certificate names a host key that is not a k4.public PASERK",
        )
    })?;
    let proof: RenewalProof = token::verify(&host, &request.proof).map_err(|e| {
        ApiError::bad_request(
            "proof",
            format!("not signed by the host the certificate names: {e}"),
        )
    })?;
    if proof.host_id != certificate.sub || proof.host_id != host.host_id() {
        return Err(ApiError::bad_request(
            "proof",
            "the host id does not match the certificate",
        ));
    }
    let skew = proof.iat.duration_since(now).abs();
    if skew > max_skew {
        return Err(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "the host's renewal request is dated {} and the vendor service's clock reads {now}; set the host's clock right (within {} minutes) and it will ask again",
                proof.iat,
                max_skew.as_mins()
            ),
            serde_json::json!({ "request_time": proof.iat, "service_time": now }),
        ));
    }
    // An expired host key says more than the certificate it capped.
    let key: HostKey = crate::host_key::verify_host_key(root, &proof.host_key).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the host key in this renewal request was not issued by this vendor ({e}); check that the host installed the right key"),
        )
    })?;
    if key.jti != certificate.key_id || key.group != certificate.group {
        return Err(ApiError::bad_request(
            "proof",
            "the host key is not the one the certificate was issued for",
        ));
    }
    if let Some(exp) = key.exp
        && exp <= now
    {
        return Err(ApiError::with_details(
            ErrorCode::HostKeyActivationLimit,
            format!(
                "host key {} expired at {exp}; ask the vendor for a new one",
                key.jti
            ),
            serde_json::json!({ "key_id": key.jti, "expired": exp }),
        ));
    }
    if now >= certificate.exp {
        return Err(ApiError::with_details(
            ErrorCode::HostCertificateExpired,
            format!(
                "host certificate of {} expired at {}; an expired certificate is not renewed: activate the host again (volact host activate --online)",
                certificate.sub, certificate.exp
            ),
            serde_json::json!({ "host_id": certificate.sub, "expired": certificate.exp }),
        ));
    }
    Ok(CheckedRenewal {
        proof,
        certificate,
        key,
    })
}

impl Ledger {
    /// The ledger's part of a renewal: refuses a request answered before
    /// (`request-replayed`, the same record as activation requests, so a nonce is used
    /// once whatever it was for) and a host the ledger does not know for the key
    /// (`untrusted-host`); otherwise records the request as answered at `now`. Spends
    /// no activation. The ledger is changed only on success.
    pub fn admit_renewal(
        &mut self,
        renewal: &CheckedRenewal,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let host_id = &renewal.certificate.sub;
        let key_id = &renewal.certificate.key_id;
        let request_id = format!("{host_id} {}", renewal.proof.nonce);
        if let Some(at) = self.answered.get(&request_id) {
            return Err(renewal_replayed(renewal, *at));
        }
        let known = self
            .keys
            .get(key_id)
            .is_some_and(|hosts| hosts.contains_key(host_id));
        if !known {
            return Err(ApiError::with_details(
                ErrorCode::UntrustedHost,
                format!(
                    "host {host_id} is not activated with host key {key_id} in the vendor's records; activate it again (volact host activate --online)"
                ),
                serde_json::json!({ "host_id": host_id, "key_id": key_id }),
            ));
        }
        self.answered.insert(request_id, now);
        Ok(())
    }
}

/// `request-replayed`: the renewal request was answered at `at` already.
pub fn renewal_replayed(renewal: &CheckedRenewal, at: Timestamp) -> ApiError {
    let host_id = &renewal.certificate.sub;
    ApiError::with_details(
        ErrorCode::RequestReplayed,
        format!(
            "this renewal request of host {host_id} was already answered at {at}; the host makes a new request with a new nonce on its next attempt"
        ),
        serde_json::json!({ "host_id": host_id, "nonce": renewal.proof.nonce, "answered_at": at }),
    )
}

/// Signs the renewed certificate: the same claims, issued `now`, valid `days` (at most
/// until the host key expires), signed by `signer` (whose delegation it carries).
pub fn renewed_certificate(
    signer: &Signer<'_>,
    renewal: &CheckedRenewal,
    now: Timestamp,
    days: u32,
) -> Result<(String, HostCertificate), ApiError> {
    let mut exp = util::add(now, SignedDuration::from_hours(i64::from(days) * 24));
    if let Some(key_exp) = renewal.key.exp {
        exp = exp.min(key_exp);
    }
    let cert = HostCertificate {
        iat: now,
        exp,
        delegation: signer.delegation.clone(),
        ..renewal.certificate.clone()
    };
    let token = token::sign(signer.key, &cert)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("could not sign: {e}")))?;
    Ok((token, cert))
}

/// When a host holding a certificate that expires at `exp` should next try to renew it:
/// `renew_before` ahead of the expiry, but never within [`MIN_RENEWAL_GAP`] of its last
/// successful renewal.
pub fn renew_at(
    exp: Timestamp,
    renew_before: SignedDuration,
    last_success: Option<Timestamp>,
) -> Timestamp {
    let due = util::add(exp, -renew_before);
    match last_success {
        Some(t) => due.max(util::add(t, MIN_RENEWAL_GAP)),
        None => due,
    }
}

/// The wait after `failures` failed renewals in a row (1, 2, …): [`FIRST_RETRY`]
/// doubling each time, at most [`MAX_RETRY`], then shortened by up to a quarter by
/// `jitter` (0.0 to 1.0, random), so hosts that failed together do not retry together.
pub fn retry_wait(failures: u32, jitter: f64) -> SignedDuration {
    let factor = 1i64 << failures.saturating_sub(1).min(20);
    let base = FIRST_RETRY
        .as_secs()
        .saturating_mul(factor)
        .min(MAX_RETRY.as_secs());
    let cut = (base as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as i64;
    SignedDuration::from_secs((base - cut).max(1))
}

#[cfg(test)]
#[path = "renewal_tests.rs"]
mod tests;
