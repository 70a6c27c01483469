//! The client's check of a host's answer along the whole chain: vendor root → host
//! certificate → ticket, "not yet" or refusal. Pure: the client's clock comes in
//! [`Expected::now`].
//!
//! A certified host is trusted to sign, not to grant whatever it likes: its certificate
//! must be in force by the client's own clock, a ticket must end within the certificate
//! and within the design's longest validity, and it must count at least the machines the
//! client's own signed catalog asks for. Every failure is `untrusted-host` (or
//! `host-certificate-expired`), with a reason that says what to do.

use crate::certificate::{self, HostCertificate};
use crate::keys::PublicKey;
use crate::refusal::{self, Refusal};
use crate::settings::{RANGES, Settings};
use crate::ticket::{NotYet, Ticket};
use crate::token;
use crate::util::{self, human};
use jiff::{SignedDuration, Timestamp};
use volact_proto::{ActivationResponse, ActivationResult, ApiError, ErrorCode, HostIntervals};

/// The longest a ticket may be valid, from its issue: the design's upper bound of the
/// ticket validity (3650 days).
pub const MAX_TICKET_VALIDITY: SignedDuration = SignedDuration::from_secs(RANGES[2].max);

/// Slack for the time a request takes, on top of the allowed clock difference.
const IN_FLIGHT: SignedDuration = SignedDuration::from_mins(1);

/// What the client expects an answer to be about, and what it knows itself.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Its client id.
    pub client_id: &'a str,
    /// Its product.
    pub product: &'a str,
    /// The nonce it sent.
    pub nonce: &'a str,
    /// The product's minimum count in the client's own signed catalog: a ticket that
    /// counts fewer machines (or says the product needs fewer) is refused.
    pub minimum: u32,
    /// The client's clock.
    pub now: Timestamp,
    /// The clock difference the client allows: its own setting, or the intervals of a
    /// host it verified before.
    pub max_skew: SignedDuration,
    /// The client's own catalog, verified against the same root (its product's bundle),
    /// when it has one: a product its key group gained in a catalog newer than the host
    /// certificate is then covered too (see [`certificate::covered_products`]). Never a
    /// catalog the client has not verified itself.
    pub catalog: Option<&'a crate::catalog::Catalog>,
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

/// A refusal whose whole chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRefusal {
    /// Its claims.
    pub refusal: Refusal,
    /// The host certificate.
    pub certificate: HostCertificate,
}

impl VerifiedRefusal {
    /// How long the host asks the client to wait, measured on the host's own clock (so a
    /// clock-skew refusal means the same on a wrong client clock), held to the design's
    /// range of the retry interval.
    pub fn retry_interval(&self) -> SignedDuration {
        let r = &RANGES[1];
        let secs = self
            .refusal
            .retry_after
            .duration_since(self.refusal.iat)
            .as_secs()
            .clamp(r.min, r.max);
        SignedDuration::from_secs(secs)
    }
}

fn untrusted(message: String) -> ApiError {
    ApiError::new(ErrorCode::UntrustedHost, message)
}

/// Verifies an activation answer against the vendor root the client ships with: the host
/// certificate chains to `root`, is in force by the client's clock, covers the product
/// and was in force when the host signed; the ticket (or "not yet") is signed by that
/// host, names this client, product and nonce, and stays within what the certificate and
/// the design allow. Anything else is `untrusted-host` or `host-certificate-expired`; a
/// genuine ticket that this machine's clock cannot use is `clock-skew`.
pub fn verify_answer(
    root: &PublicKey,
    answer: &ActivationResponse,
    expected: Expected<'_>,
) -> Result<VerifiedAnswer, ApiError> {
    TrustedHost::verify(root, &answer.host_id, &answer.host_certificate)?
        .verify_answer(answer, expected)
}

/// Verifies the signature a host attached to a refusal (see [`refusal`]): the chain, the
/// certificate in force, and a document for this request with the refusal's own code.
/// A refusal without one is `untrusted-host`.
pub fn verify_refusal(
    root: &PublicKey,
    error: &ApiError,
    expected: Expected<'_>,
) -> Result<VerifiedRefusal, ApiError> {
    let signature = refusal::signature_of(error).ok_or_else(|| {
        untrusted(format!(
            "the host refused with `{}` but did not sign the refusal, so it may not come from a genuine host and is ignored; other hosts are tried, and this client retries on its own schedule",
            error.code
        ))
    })?;
    let host_id = token::peek::<Refusal>(&signature.refusal)
        .map(|r| r.iss)
        .unwrap_or_else(|_| "?".into());
    TrustedHost::verify(root, &host_id, &signature.host_certificate)?.verify_refusal(
        &signature.refusal,
        error.code,
        expected,
    )
}

/// A host certificate that chains to the vendor root, and the host key it certifies: the
/// first half of [`verify_answer`]. It depends only on the root and the certificate's
/// text, so a caller that sees the same certificate again (a fleet of simulated clients
/// of one host) may keep it instead of verifying and parsing the chain once per answer;
/// what depends on the clock is checked per answer.
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
        let host_id = util::printable(host_id);
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
        let certificate = &self.certificate;
        in_force(certificate, expected)?;
        let covered = certificate::covered_products(certificate, expected.catalog);
        if !covered.iter().any(|p| p == expected.product) {
            return Err(untrusted(format!(
                "host {} is not entitled to activate product {} (its certificate covers {}); it cannot activate this client, so other hosts are tried",
                certificate.sub,
                expected.product,
                covered.join(", ")
            )));
        }
        match answer.result {
            ActivationResult::Activated => {
                let text = answer.ticket.as_deref().ok_or_else(|| {
                    untrusted(format!(
                        "host {} said activated but sent no ticket; report this to its administrator",
                        certificate.sub
                    ))
                })?;
                let ticket: Ticket = token::verify(&self.key, text).map_err(|e| {
                    untrusted(format!(
                        "the ticket does not verify with host {}'s key: {e}",
                        certificate.sub
                    ))
                })?;
                let product = Some(ticket.product.as_str());
                self.for_this_request(&ticket.sub, product, &ticket.nonce, &ticket.iss, expected)?;
                signed_in_force(certificate, ticket.iat)?;
                check_ticket(&ticket, certificate, expected)?;
                Ok(VerifiedAnswer::Ticket {
                    ticket,
                    certificate: certificate.clone(),
                })
            }
            ActivationResult::CountInsufficient => {
                let text = answer.not_yet.as_deref().ok_or_else(|| {
                    untrusted(format!(
                        "host {} sent an unsigned \"not yet\"",
                        certificate.sub
                    ))
                })?;
                let not_yet: NotYet = token::verify(&self.key, text).map_err(|e| {
                    untrusted(format!(
                        "the answer does not verify with host {}'s key: {e}",
                        certificate.sub
                    ))
                })?;
                let product = Some(not_yet.product.as_str());
                self.for_this_request(
                    &not_yet.sub,
                    product,
                    &not_yet.nonce,
                    &not_yet.iss,
                    expected,
                )?;
                signed_in_force(certificate, not_yet.iat)?;
                Ok(VerifiedAnswer::NotYet {
                    not_yet,
                    certificate: certificate.clone(),
                })
            }
        }
    }

    /// Verifies a signed refusal (`token`) of a refusal whose code is `code`.
    pub fn verify_refusal(
        &self,
        token: &str,
        code: ErrorCode,
        expected: Expected<'_>,
    ) -> Result<VerifiedRefusal, ApiError> {
        let certificate = &self.certificate;
        // A clock-skew refusal says this machine's clock is wrong, so that clock cannot
        // judge the certificate; the host's own signing time still must lie within it.
        if code != ErrorCode::ClockSkew {
            in_force(certificate, expected)?;
        }
        let refusal: Refusal = token::verify(&self.key, token).map_err(|e| {
            untrusted(format!(
                "the refusal does not verify with host {}'s key: {e}",
                certificate.sub
            ))
        })?;
        self.for_this_request(
            &refusal.sub,
            refusal.product.as_deref(),
            &refusal.nonce,
            &refusal.iss,
            expected,
        )?;
        if refusal.code != code || !refusal::is_signed(code) {
            return Err(untrusted(format!(
                "host {} refused with `{code}` but signed `{}`; the refusal is ignored",
                certificate.sub, refusal.code
            )));
        }
        // Not compared with this machine's clock: a clock-skew refusal is about exactly
        // that, and the nonce already ties the refusal to this request.
        signed_in_force(certificate, refusal.iat)?;
        Ok(VerifiedRefusal {
            refusal,
            certificate: certificate.clone(),
        })
    }

    /// The document names this client, its product (when it names one), its nonce and
    /// the certified host.
    fn for_this_request(
        &self,
        sub: &str,
        product: Option<&str>,
        nonce: &str,
        iss: &str,
        expected: Expected<'_>,
    ) -> Result<(), ApiError> {
        if sub != expected.client_id
            || product.is_some_and(|p| p != expected.product)
            || nonce != expected.nonce
            || iss != self.certificate.sub
        {
            return Err(untrusted(
                "the host's answer is not for this request (client id, product, nonce or host differ); it may be a replay".into(),
            ));
        }
        Ok(())
    }
}

/// The certificate is in force by the client's clock: not expired (a ticket can never
/// outlive its certificate, so an expired one activates nothing), and not issued further
/// in the future than the allowed clock difference.
fn in_force(certificate: &HostCertificate, expected: Expected<'_>) -> Result<(), ApiError> {
    let now = expected.now;
    if now >= certificate.exp {
        return Err(ApiError::with_details(
            ErrorCode::HostCertificateExpired,
            format!(
                "host {}'s certificate expired at {} (this machine's clock says {now}), so it can no longer activate anyone; its administrator must activate the host again (volact host activate). Other hosts are tried meanwhile; if this machine's clock is wrong, set it right",
                certificate.sub, certificate.exp
            ),
            serde_json::json!({ "host_id": certificate.sub, "expired": certificate.exp, "client_time": now }),
        ));
    }
    if certificate.iat > util::add(now, expected.max_skew) {
        return Err(untrusted(format!(
            "host {}'s certificate was issued at {}, later than this machine's clock ({now}) allows (by more than {}); set this machine's clock right, or the host is not genuine",
            certificate.sub,
            certificate.iat,
            human(expected.max_skew)
        )));
    }
    Ok(())
}

/// The host signed while its certificate was in force.
fn signed_in_force(certificate: &HostCertificate, iat: Timestamp) -> Result<(), ApiError> {
    if iat < certificate.iat || iat >= certificate.exp {
        return Err(untrusted(format!(
            "host {} signed at {iat}, outside its certificate's validity ({} to {}); the answer is not trusted",
            certificate.sub, certificate.iat, certificate.exp
        )));
    }
    Ok(())
}

/// What a ticket may claim: times in order, no longer than its certificate nor the
/// design's maximum, at least the machines the client's catalog asks for, and usable on
/// this machine's clock.
fn check_ticket(
    ticket: &Ticket,
    certificate: &HostCertificate,
    expected: Expected<'_>,
) -> Result<(), ApiError> {
    check_ticket_shape(ticket, certificate)?;
    if ticket.minimum < expected.minimum || ticket.count < ticket.minimum {
        return Err(ApiError::with_details(
            ErrorCode::UntrustedHost,
            format!(
                "host {} sent a ticket counting {} of {} machines, but this product needs at least {} by the vendor's catalog; a genuine host does not activate below the minimum, so the ticket is refused and other hosts are tried. Report this host to the vendor",
                ticket.iss, ticket.count, ticket.minimum, expected.minimum
            ),
            serde_json::json!({ "count": ticket.count, "ticket_minimum": ticket.minimum, "catalog_minimum": expected.minimum }),
        ));
    }
    // A genuine host's own allowed difference, signed in the ticket, is the fairest
    // measure; the client's own applies to a ticket that does not say.
    let skew = ticket.intervals.as_ref().map_or(expected.max_skew, |i| {
        Settings::from_intervals_clamped(i).max_clock_skew
    });
    let limit = skew.saturating_add(IN_FLIGHT);
    let now = expected.now;
    let difference = ticket.iat.duration_since(now);
    if ticket.exp <= now || difference.abs() > limit {
        return Err(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "host {} issued a ticket at {} valid until {}, but this machine's clock says {now}; set the clock right (or sync it and the host's with NTP) and activate again",
                ticket.iss, ticket.iat, ticket.exp
            ),
            serde_json::json!({
                "client_time": now,
                "host_time": ticket.iat,
                "valid_until": ticket.exp,
                "difference_secs": difference.as_secs(),
                "limit_secs": limit.as_secs(),
            }),
        ));
    }
    Ok(())
}

/// The checks of a ticket that need no clock: its times in order, within its certificate
/// and within the design's longest validity.
fn check_ticket_shape(ticket: &Ticket, certificate: &HostCertificate) -> Result<(), ApiError> {
    if !(ticket.iat <= ticket.renew_after && ticket.renew_after <= ticket.exp) {
        return Err(untrusted(format!(
            "host {} sent a ticket whose times are out of order (issued {}, renew after {}, valid until {}); report this to the host's administrator",
            ticket.iss, ticket.iat, ticket.renew_after, ticket.exp
        )));
    }
    if ticket.exp > certificate.exp {
        return Err(untrusted(format!(
            "host {} sent a ticket valid until {}, after its own certificate ends ({}); a host cannot grant more than it holds, so the ticket is refused. Report this host to the vendor",
            ticket.iss, ticket.exp, certificate.exp
        )));
    }
    let validity = ticket.exp.duration_since(ticket.iat);
    if validity > MAX_TICKET_VALIDITY {
        return Err(untrusted(format!(
            "host {} sent a ticket valid for {}, longer than the {} any volact ticket may last; the ticket is refused. Report this host to the vendor",
            ticket.iss,
            human(validity),
            human(MAX_TICKET_VALIDITY)
        )));
    }
    Ok(())
}

/// Re-verifies a stored ticket (e.g. when the state file is read back): the chain, and
/// the checks that need no clock, so a ticket put into the file by hand cannot claim more
/// than one received from a host could.
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
    signed_in_force(&cert, t.iat)?;
    check_ticket_shape(&t, &cert)?;
    Ok((t, cert))
}

/// The intervals a verified document carries, held to the design's ranges.
pub fn signed_intervals(intervals: Option<&HostIntervals>) -> Option<HostIntervals> {
    intervals.map(|i| Settings::from_intervals_clamped(i).intervals())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "verify_tests.rs"]
mod tests;
