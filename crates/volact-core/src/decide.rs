//! The host's decision on one activation request, as pure functions of the request, what
//! the host knows about the client, its settings and `now`.
//!
//! The host calls them in order: [`parse_request`], [`admit`], then counts the client
//! (see [`crate::count`]) and asks [`outcome`] what to answer.

use crate::catalog::Product;
use crate::certificate::HostCertificate;
use crate::count::ClientKey;
use crate::settings::Settings;
use crate::setup_key::SetupKey;
use crate::ticket::{NotYet, Ticket, ticket_id};
use crate::util::{self, human};
use jiff::Timestamp;
use volact_proto::{ActivationRequest, ApiError, ErrorCode};

/// A request whose fields are well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The client id as 128 bits.
    pub client: ClientKey,
    /// The client id in canonical hyphenated form.
    pub client_id: String,
    /// The setup key.
    pub setup_key: SetupKey,
}

/// Checks every field of a request; the first fault is a `bad-request` naming the field
/// (or `unknown-setup-key` for a malformed setup key).
pub fn parse_request(req: &ActivationRequest) -> Result<ParsedRequest, ApiError> {
    let id = uuid::Uuid::parse_str(req.client_id.trim()).map_err(|_| {
        ApiError::bad_request(
            "client_id",
            "must be a UUID such as 0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10",
        )
    })?;
    if id.is_nil() {
        return Err(ApiError::bad_request(
            "client_id",
            "must not be the nil UUID",
        ));
    }
    if !(1..=1000).contains(&req.minimum_count) {
        return Err(ApiError::bad_request(
            "minimum_count",
            "must be from 1 to 1000",
        ));
    }
    let nonce_ok = (8..=128).contains(&req.nonce.len())
        && req
            .nonce
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'));
    if !nonce_ok {
        return Err(ApiError::bad_request(
            "nonce",
            "must be 8 to 128 characters of letters, digits, `-` or `_`",
        ));
    }
    if req.machine_name.chars().count() > 255 || req.machine_name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "machine_name",
            "must be at most 255 characters, without control characters",
        ));
    }
    if let Some(t) = &req.ticket_id
        && (t.len() > 64 || t.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "ticket_id",
            "must be at most 64 characters",
        ));
    }
    if let Some(f) = &req.machine_fingerprint
        && (!(1..=128).contains(&f.len()) || f.bytes().any(|c| !c.is_ascii_graphic()))
    {
        return Err(ApiError::bad_request(
            "machine_fingerprint",
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    let setup_key = SetupKey::parse(&req.setup_key)?;
    Ok(ParsedRequest {
        client: id.as_u128(),
        client_id: id.hyphenated().to_string(),
        setup_key,
    })
}

/// What the host knows when it admits a request.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The host's certificate.
    pub certificate: &'a HostCertificate,
    /// The product the setup key names.
    pub product: &'a Product,
    /// The client's clock.
    pub client_time: Timestamp,
    /// Whether an administrator revoked the client.
    pub revoked: bool,
    /// Whether the client already counts (so it holds a seat).
    pub counted: bool,
    /// Distinct clients counted across all applications (seats in use).
    pub seats_used: u64,
}

/// Refuses a request that must not be counted: an expired host certificate, a product
/// outside the key group, clocks too far apart, a revoked client, or a new client past
/// the seat cap. Existing clients always renew, whatever the seat cap.
pub fn admit(a: &Admission<'_>, settings: &Settings, now: Timestamp) -> Result<(), ApiError> {
    let cert = a.certificate;
    if now >= cert.exp {
        return Err(ApiError::with_details(
            ErrorCode::HostCertificateExpired,
            format!(
                "this host's certificate expired at {}; the administrator must activate the host again (volact host activate)",
                cert.exp
            ),
            serde_json::json!({ "expired": cert.exp, "host_id": cert.sub }),
        ));
    }
    if !cert.products.iter().any(|p| p == &a.product.id) {
        return Err(ApiError::with_details(
            ErrorCode::ProductNotInKeyGroup,
            format!(
                "product {} is not in key group `{}` of this host's key; install a host key that covers it, or use a setup key of a covered product ({})",
                a.product.id,
                cert.group,
                cert.products.join(", ")
            ),
            serde_json::json!({ "product": a.product.id, "group": cert.group, "products": cert.products }),
        ));
    }
    let skew = a.client_time.duration_since(now);
    if skew.abs() > settings.max_clock_skew {
        return Err(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "the client's clock says {} but the host's says {}: they differ by {}, more than the allowed {}; set the client's clock right (or sync both with NTP) and try again",
                a.client_time,
                now,
                human(skew.abs()),
                human(settings.max_clock_skew)
            ),
            serde_json::json!({
                "client_time": a.client_time,
                "host_time": now,
                "difference_secs": skew.as_secs(),
                "limit_secs": settings.max_clock_skew.as_secs(),
            }),
        ));
    }
    if a.revoked {
        return Err(ApiError::new(
            ErrorCode::ClientRevoked,
            "the host's administrator revoked this client; ask them to run `volact host unrevoke` if that was a mistake",
        ));
    }
    if let Some(cap) = cert.seats
        && !a.counted
        && a.seats_used >= u64::from(cap)
    {
        return Err(ApiError::with_details(
            ErrorCode::SeatLimitReached,
            format!(
                "this host's key allows {cap} seats and all are in use; existing clients still renew. Retire machines (they free their seat after the count window) or ask the vendor for more seats"
            ),
            serde_json::json!({ "seats": cap, "in_use": a.seats_used }),
        ));
    }
    Ok(())
}

/// What the host answers once the client is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Issue a ticket.
    Activate {
        /// When to renew.
        renew_after: Timestamp,
        /// When it ends.
        valid_until: Timestamp,
    },
    /// Not yet.
    NotYet {
        /// When to retry.
        retry_after: Timestamp,
    },
}

/// The minimum that applies: the catalog's, unless the client asks for more.
pub fn minimum(product: &Product, requested: u32) -> u32 {
    product.minimum_count.max(requested)
}

/// Activate when the count has reached the minimum; a ticket never outlives the host's
/// certificate, since the host cannot grant more than it holds.
pub fn outcome(
    count: u32,
    minimum: u32,
    certificate: &HostCertificate,
    settings: &Settings,
    now: Timestamp,
) -> Outcome {
    if count >= minimum {
        let valid_until = util::add(now, settings.ticket_validity).min(certificate.exp);
        let renew_after = util::add(now, settings.renew_interval).min(valid_until);
        Outcome::Activate {
            renew_after,
            valid_until,
        }
    } else {
        Outcome::NotYet {
            retry_after: util::add(now, settings.retry_interval),
        }
    }
}

/// The claims to sign for an outcome.
pub enum Answer {
    /// A ticket.
    Ticket(Ticket),
    /// A "not yet".
    NotYet(NotYet),
}

/// The count a request was answered with and the decision it led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The application's count, this client included.
    pub count: u32,
    /// The minimum that applied.
    pub minimum: u32,
    /// The decision.
    pub outcome: Outcome,
}

/// Builds the claims of the answer; the host's intervals go in, signed, since the client
/// uses no intervals it cannot verify.
pub fn answer(
    parsed: &ParsedRequest,
    req: &ActivationRequest,
    product: &Product,
    counted: Counted,
    host_id: &str,
    settings: &Settings,
    now: Timestamp,
) -> Answer {
    let intervals = Some(settings.intervals());
    let Counted {
        count,
        minimum,
        outcome,
    } = counted;
    match outcome {
        Outcome::Activate {
            renew_after,
            valid_until,
        } => Answer::Ticket(Ticket {
            jti: ticket_id(&parsed.client_id, &req.nonce, now),
            sub: parsed.client_id.clone(),
            product: product.id.clone(),
            application: product.application.clone(),
            count,
            minimum,
            iat: now,
            renew_after,
            exp: valid_until,
            iss: host_id.to_string(),
            nonce: req.nonce.clone(),
            intervals,
        }),
        Outcome::NotYet { retry_after } => Answer::NotYet(NotYet {
            sub: parsed.client_id.clone(),
            product: product.id.clone(),
            application: product.application.clone(),
            count,
            minimum,
            iat: now,
            retry_after,
            iss: host_id.to_string(),
            nonce: req.nonce.clone(),
            intervals,
        }),
    }
}

/// The `count-insufficient` refusal a client shows for a "not yet". Its details carry the
/// application's id (`application`), with the display name apart (`application_name`).
/// The message says when a try can succeed, not who makes it: a one-shot `activate`
/// and an agent go on differently, and each says so.
pub fn count_insufficient(
    count: u32,
    minimum: u32,
    retry_after: Timestamp,
    application: &str,
    application_name: &str,
) -> ApiError {
    ApiError::with_details(
        ErrorCode::CountInsufficient,
        format!(
            "the host has counted {count} of the {minimum} machines {application_name} needs; activation starts once {} more ask. The next try is due at {retry_after}",
            minimum.saturating_sub(count)
        ),
        serde_json::json!({
            "count": count,
            "minimum": minimum,
            "retry_after": retry_after,
            "application": application,
            "application_name": application_name,
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    #[test]
    fn a_ticket_never_outlives_the_host_certificate() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let certificate = HostCertificate {
            sub: "h".into(),
            host_public_key: String::new(),
            vendor: "v".into(),
            key_id: "k".into(),
            customer: "c".into(),
            group: "g".into(),
            products: vec![],
            seats: None,
            iat: now - SignedDuration::from_hours(24 * 365),
            exp: now + SignedDuration::from_hours(24 * 3),
        };
        let settings = Settings::default();
        let Outcome::Activate {
            renew_after,
            valid_until,
        } = outcome(5, 5, &certificate, &settings, now)
        else {
            unreachable!("the count reached the minimum")
        };
        assert_eq!(valid_until, certificate.exp);
        assert_eq!(
            renew_after, certificate.exp,
            "renewal no later than the end"
        );
        let far = HostCertificate {
            exp: now + SignedDuration::from_hours(24 * 3650),
            ..certificate
        };
        assert_eq!(
            outcome(5, 5, &far, &settings, now),
            Outcome::Activate {
                renew_after: now + settings.renew_interval,
                valid_until: now + settings.ticket_validity,
            }
        );
    }
}

#[cfg(test)]
mod count_insufficient_tests {
    use super::count_insufficient;

    #[test]
    fn details_carry_the_application_id_and_its_name_apart() {
        let e = count_insufficient(
            2,
            5,
            jiff::Timestamp::UNIX_EPOCH,
            "acme-suite",
            "Acme Suite",
        );
        assert_eq!(e.details["application"], "acme-suite");
        assert_eq!(e.details["application_name"], "Acme Suite");
        assert!(e.message.contains("Acme Suite"), "{}", e.message);
        assert!(!e.message.contains("retries by itself"), "{}", e.message);
    }
}
