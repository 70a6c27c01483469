//! The host's decision on one activation request, as pure functions of the request, what
//! the host knows about the client, its settings and `now`.
//!
//! The host calls [`parse_request`], looks the product up, checks it is [`ready`], then
//! reads the count's view of the client and asks [`decide`] (under the count's lock, or
//! in the transaction that records the request): the one function that says whether the
//! client is refused, or counted and activated or told "not yet".

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

/// Why the host cannot serve activations at `now`, if it cannot: it holds no certificate
/// (`host-not-activated`) or its certificate has expired (`host-certificate-expired`).
/// The one check of the certificate's expiry on the way of a request: [`decide`] takes
/// the certificate this returned, and caps every ticket at its expiry.
pub fn ready(
    certificate: Option<&HostCertificate>,
    now: Timestamp,
) -> Result<&HostCertificate, ApiError> {
    match certificate {
        None => Err(ApiError::new(
            ErrorCode::HostNotActivated,
            "this host is not activated, so it cannot activate clients; its administrator must run `volact host activate --data DIR --request-out request.json`, have the vendor sign it, then `volact host activate --data DIR --response response.json`",
        )),
        Some(c) if now >= c.exp => Err(ApiError::with_details(
            ErrorCode::HostCertificateExpired,
            format!(
                "this host's certificate expired at {}; its administrator must activate the host again",
                c.exp
            ),
            serde_json::json!({ "expired": c.exp }),
        )),
        Some(c) => Ok(c),
    }
}

/// What the count knows of one client and its application at `now`, read under the
/// same lock (or in the same transaction) that then counts the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountView {
    /// Whether the client counts in any application (so it holds a seat); see
    /// [`crate::count::counts`].
    pub counted: bool,
    /// Whether the client counts in the application of the requested product.
    pub counted_here: bool,
    /// The application's count at `now`, this client included when `counted_here`.
    pub count: u32,
    /// Distinct clients counted across all applications (seats in use). Read only when
    /// the certificate caps seats; 0 otherwise.
    pub seats_used: u64,
    /// Whether an administrator revoked the client.
    pub revoked: bool,
}

/// Everything one activation decision depends on.
#[derive(Debug)]
pub struct DecisionInput<'a> {
    /// The request as the client sent it (its clock and the minimum it asks for).
    pub request: &'a ActivationRequest,
    /// The product the setup key names.
    pub product: &'a Product,
    /// The host's certificate, in force at `now` (see [`ready`]).
    pub certificate: &'a HostCertificate,
    /// The count's view of the client.
    pub view: CountView,
    /// The host's admission of a client it has not counted (rate limits, machines of
    /// revoked clients: `volact-host`'s `admission`), consulted only when `view.counted`
    /// is false, so renewals never pay for it; `Ok` for a counted client.
    pub new_client: Result<(), ApiError>,
    /// Intervals and limits.
    pub settings: &'a Settings,
    /// The host's time.
    pub now: Timestamp,
}

/// The decision on one request.
#[derive(Debug)]
pub enum Decision {
    /// Refused: the client is not counted, and the error is the answer.
    Refuse(ApiError),
    /// Counted: the client is counted in the product's application (a renewal moves its
    /// time, a new client takes a seat) and answered with the outcome.
    Count(Counted),
}

impl Decision {
    /// Whether the client is to be counted.
    pub fn counts(&self) -> bool {
        matches!(self, Decision::Count(_))
    }
}

/// When a client counts, and when it is activated: the whole rule of one request, once
/// it is well formed ([`parse_request`]), its product known and the host ready
/// ([`ready`]). In order:
///
/// 1. a client the host does not count yet must pass the host's admission of new clients
///    (`new_client`, e.g. `rate-limited`);
/// 2. the product must be in the certificate's key group (`product-not-in-key-group`);
/// 3. the clocks must differ by at most `max_clock_skew` (exactly the limit passes;
///    `clock-skew`);
/// 4. a revoked client is refused (`client-revoked`);
/// 5. a client that does not count yet is refused once the certificate's seats are all
///    in use (`seat-limit-reached`); counted clients always renew.
///
/// Otherwise the client is counted: the application's count is the view's, plus this
/// client unless it already counted there. It is activated once that count reaches the
/// minimum (the catalog's, or more if the client asks for more), with a ticket that
/// never outlives the certificate; else it hears "not yet" and when to retry.
pub fn decide(input: DecisionInput<'_>) -> Decision {
    let DecisionInput {
        request,
        product,
        certificate: cert,
        view,
        new_client,
        settings,
        now,
    } = input;
    if !view.counted
        && let Err(e) = new_client
    {
        return Decision::Refuse(e);
    }
    if !cert.products.iter().any(|p| p == &product.id) {
        return Decision::Refuse(ApiError::with_details(
            ErrorCode::ProductNotInKeyGroup,
            format!(
                "product {} is not in key group `{}` of this host's key; install a host key that covers it, or use a setup key of a covered product ({})",
                product.id,
                cert.group,
                cert.products.join(", ")
            ),
            serde_json::json!({ "product": product.id, "group": cert.group, "products": cert.products }),
        ));
    }
    let client_time = request.client_time;
    let skew = client_time.duration_since(now);
    if skew.abs() > settings.max_clock_skew {
        return Decision::Refuse(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "the client's clock says {} but the host's says {}: they differ by {}, more than the allowed {}; set the client's clock right (or sync both with NTP) and try again",
                client_time,
                now,
                human(skew.abs()),
                human(settings.max_clock_skew)
            ),
            serde_json::json!({
                "client_time": client_time,
                "host_time": now,
                "difference_secs": skew.as_secs(),
                "limit_secs": settings.max_clock_skew.as_secs(),
            }),
        ));
    }
    if view.revoked {
        return Decision::Refuse(ApiError::new(
            ErrorCode::ClientRevoked,
            "the host's administrator revoked this client; ask them to run `volact host unrevoke` if that was a mistake",
        ));
    }
    if let Some(cap) = cert.seats
        && !view.counted
        && view.seats_used >= u64::from(cap)
    {
        return Decision::Refuse(ApiError::with_details(
            ErrorCode::SeatLimitReached,
            format!(
                "this host's key allows {cap} seats and all are in use; existing clients still renew. Retire machines (they free their seat after the count window) or ask the vendor for more seats"
            ),
            serde_json::json!({ "seats": cap, "in_use": view.seats_used }),
        ));
    }
    let count = if view.counted_here {
        view.count
    } else {
        view.count.saturating_add(1)
    };
    let minimum = minimum(product, request.minimum_count);
    Decision::Count(Counted {
        count,
        minimum,
        outcome: outcome(count, minimum, cert, settings, now),
    })
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
            delegation: None,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "decide_tests.rs"]
mod decide_tests;
