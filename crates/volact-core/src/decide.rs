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

/// The rule of one request, case by case: every refusal [`decide`] and [`ready`] can give,
/// and every boundary of the counting and the answer.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod decide_tests {
    use super::*;
    use crate::catalog::ProductKind;
    use crate::count::CountIndex;
    use jiff::SignedDuration;

    const DAY: i64 = 86_400;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn product(kind: ProductKind) -> Product {
        Product {
            id: "suite-pro".into(),
            name: "Suite Pro".into(),
            application: "suite".into(),
            kind,
            minimum_count: kind.default_minimum(),
            grace_days: 30,
            setup_key: SetupKey::generate([7; 24]),
            rearm_limit: None,
        }
    }

    fn certificate(seats: Option<u32>) -> HostCertificate {
        HostCertificate {
            sub: "host-1".into(),
            host_public_key: String::new(),
            vendor: "acme".into(),
            key_id: "k".into(),
            customer: "c".into(),
            group: "office".into(),
            products: vec!["suite-pro".into()],
            seats,
            iat: now() - SignedDuration::from_hours(24),
            exp: now() + SignedDuration::from_hours(24 * 3650),
        }
    }

    fn request(minimum_count: u32, client_time: Timestamp) -> ActivationRequest {
        ActivationRequest {
            client_id: "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10".into(),
            setup_key: String::new(),
            minimum_count,
            client_time,
            nonce: "nonce-1234".into(),
            machine_name: "pc-1".into(),
            ticket_id: None,
            machine_fingerprint: None,
            previous_client_id: None,
        }
    }

    /// One case: what the count shows, and what the host must answer.
    struct Case {
        name: &'static str,
        kind: ProductKind,
        seats: Option<u32>,
        in_group: bool,
        asked_minimum: u32,
        skew_secs: i64,
        view: CountView,
        new_client: Option<ErrorCode>,
        want: Result<(u32, u32, bool), ErrorCode>,
    }

    const NEW: CountView = CountView {
        counted: false,
        counted_here: false,
        count: 0,
        seats_used: 0,
        revoked: false,
    };

    const RENEWING: CountView = CountView {
        counted: true,
        counted_here: true,
        count: 1,
        seats_used: 1,
        revoked: false,
    };

    fn base(name: &'static str) -> Case {
        Case {
            name,
            kind: ProductKind::Workstation,
            seats: None,
            in_group: true,
            asked_minimum: 1,
            skew_secs: 0,
            view: NEW,
            new_client: None,
            want: Ok((1, 25, false)),
        }
    }

    fn run(case: &Case) -> Decision {
        let mut cert = certificate(case.seats);
        if !case.in_group {
            cert.products = vec!["other".into()];
        }
        let settings = Settings::default();
        let req = request(
            case.asked_minimum,
            now() + SignedDuration::from_secs(case.skew_secs),
        );
        let product = product(case.kind);
        decide(DecisionInput {
            request: &req,
            product: &product,
            certificate: &cert,
            view: case.view,
            new_client: match case.new_client {
                Some(code) => Err(ApiError::new(code, "refused by admission")),
                None => Ok(()),
            },
            settings: &settings,
            now: now(),
        })
    }

    #[test]
    fn every_refusal_and_every_boundary() {
        let limit = Settings::default().max_clock_skew.as_secs();
        let cases = [
            // The count against the minimum: 24/25 and 25/25 (workstations), 4/5 and 5/5
            // (servers); the client itself is the one that makes the count.
            Case {
                view: CountView { count: 23, ..NEW },
                want: Ok((24, 25, false)),
                ..base("24 of 25: not yet")
            },
            Case {
                view: CountView { count: 24, ..NEW },
                want: Ok((25, 25, true)),
                ..base("25 of 25: activated")
            },
            Case {
                kind: ProductKind::Server,
                view: CountView { count: 3, ..NEW },
                want: Ok((4, 5, false)),
                ..base("4 of 5: not yet")
            },
            Case {
                kind: ProductKind::Server,
                view: CountView { count: 4, ..NEW },
                want: Ok((5, 5, true)),
                ..base("5 of 5: activated")
            },
            // A renewal is already in the count: it does not add itself again.
            Case {
                view: CountView {
                    count: 25,
                    ..RENEWING
                },
                want: Ok((25, 25, true)),
                ..base("a renewal at 25 stays 25")
            },
            Case {
                view: CountView {
                    count: 24,
                    ..RENEWING
                },
                want: Ok((24, 25, false)),
                ..base("a renewal at 24 stays 24")
            },
            // A client counted in another application moves: it adds itself here.
            Case {
                view: CountView {
                    counted: true,
                    counted_here: false,
                    count: 24,
                    seats_used: 30,
                    revoked: false,
                },
                want: Ok((25, 25, true)),
                ..base("moving from another application")
            },
            // The minimum: the catalog's, or more when the client asks for more.
            Case {
                kind: ProductKind::Server,
                asked_minimum: 6,
                view: CountView { count: 4, ..NEW },
                want: Ok((5, 6, false)),
                ..base("asked minimum above the catalog's")
            },
            Case {
                kind: ProductKind::Server,
                asked_minimum: 2,
                view: CountView { count: 4, ..NEW },
                want: Ok((5, 5, true)),
                ..base("asked minimum below the catalog's")
            },
            // Clock skew: exactly the limit passes, one second more is refused, both ways.
            Case {
                skew_secs: limit,
                ..base("skew of exactly the limit, ahead")
            },
            Case {
                skew_secs: -limit,
                ..base("skew of exactly the limit, behind")
            },
            Case {
                skew_secs: limit + 1,
                want: Err(ErrorCode::ClockSkew),
                ..base("skew one second past the limit, ahead")
            },
            Case {
                skew_secs: -limit - 1,
                want: Err(ErrorCode::ClockSkew),
                ..base("skew one second past the limit, behind")
            },
            // The seat cap: a new client takes the last seat, the next is refused, a
            // counted client renews whatever the seats.
            Case {
                seats: Some(10),
                view: CountView {
                    seats_used: 9,
                    ..NEW
                },
                ..base("the last seat")
            },
            Case {
                seats: Some(10),
                view: CountView {
                    seats_used: 10,
                    ..NEW
                },
                want: Err(ErrorCode::SeatLimitReached),
                ..base("seat cap reached: new client refused")
            },
            Case {
                seats: Some(10),
                view: CountView {
                    seats_used: 12,
                    ..RENEWING
                },
                want: Ok((1, 25, false)),
                ..base("seat cap reached: counted client renews")
            },
            Case {
                seats: None,
                view: CountView {
                    seats_used: 1_000_000,
                    ..NEW
                },
                ..base("no seat cap")
            },
            // Revoked, whether it counted or not (a revoked client is out of the count).
            Case {
                view: CountView {
                    revoked: true,
                    ..NEW
                },
                want: Err(ErrorCode::ClientRevoked),
                ..base("revoked")
            },
            Case {
                in_group: false,
                want: Err(ErrorCode::ProductNotInKeyGroup),
                ..base("product outside the key group")
            },
            // Admission of new clients, before everything else; never for counted ones.
            Case {
                new_client: Some(ErrorCode::RateLimited),
                in_group: false,
                want: Err(ErrorCode::RateLimited),
                ..base("admission refuses a new client first")
            },
            Case {
                new_client: Some(ErrorCode::RateLimited),
                want: Ok((1, 25, false)),
                view: RENEWING,
                ..base("admission is not asked about a counted client")
            },
            // Order: the key group before the clocks, the clocks before a revocation, a
            // revocation before the seats.
            Case {
                in_group: false,
                skew_secs: limit + 1,
                want: Err(ErrorCode::ProductNotInKeyGroup),
                ..base("key group before skew")
            },
            Case {
                skew_secs: limit + 1,
                view: CountView {
                    revoked: true,
                    ..NEW
                },
                want: Err(ErrorCode::ClockSkew),
                ..base("skew before revoked")
            },
            Case {
                seats: Some(1),
                view: CountView {
                    revoked: true,
                    seats_used: 1,
                    ..NEW
                },
                want: Err(ErrorCode::ClientRevoked),
                ..base("revoked before seats")
            },
        ];
        for case in &cases {
            let got = match run(case) {
                Decision::Refuse(e) => Err(e.code),
                Decision::Count(c) => Ok((
                    c.count,
                    c.minimum,
                    matches!(c.outcome, Outcome::Activate { .. }),
                )),
            };
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn refusals_carry_their_numbers() {
        let limit = Settings::default().max_clock_skew.as_secs();
        let Decision::Refuse(e) = run(&Case {
            skew_secs: -limit - 1,
            ..base("skew")
        }) else {
            unreachable!("refused")
        };
        assert_eq!(e.details["difference_secs"], -limit - 1);
        assert_eq!(e.details["limit_secs"], limit);
        let Decision::Refuse(e) = run(&Case {
            seats: Some(10),
            view: CountView {
                seats_used: 11,
                ..NEW
            },
            ..base("seats")
        }) else {
            unreachable!("refused")
        };
        assert_eq!(
            (e.details["seats"].as_u64(), e.details["in_use"].as_u64()),
            (Some(10), Some(11))
        );
        let Decision::Refuse(e) = run(&Case {
            in_group: false,
            ..base("group")
        }) else {
            unreachable!("refused")
        };
        assert_eq!(e.details["product"], "suite-pro");
        assert_eq!(e.details["group"], "office");
    }

    #[test]
    fn answers_carry_their_times() {
        let settings = Settings::default();
        let Decision::Count(c) = run(&Case {
            view: CountView { count: 24, ..NEW },
            ..base("activated")
        }) else {
            unreachable!("counted")
        };
        assert!(
            c.outcome
                == Outcome::Activate {
                    renew_after: now() + settings.renew_interval,
                    valid_until: now() + settings.ticket_validity
                }
        );
        let Decision::Count(c) = run(&base("not yet")) else {
            unreachable!("counted")
        };
        assert!(
            c.outcome
                == Outcome::NotYet {
                    retry_after: now() + settings.retry_interval
                }
        );
    }

    #[test]
    fn the_host_serves_only_with_a_certificate_in_force() {
        assert_eq!(
            ready(None, now()).unwrap_err().code,
            ErrorCode::HostNotActivated
        );
        let mut cert = certificate(None);
        cert.exp = now();
        let e = ready(Some(&cert), now()).unwrap_err();
        assert_eq!(e.code, ErrorCode::HostCertificateExpired);
        assert_eq!(e.details["expired"], serde_json::json!(now()));
        cert.exp = now() + SignedDuration::from_secs(1);
        assert_eq!(ready(Some(&cert), now()).unwrap(), &cert);
        // The last second of the certificate: the ticket ends with it.
        let settings = Settings::default();
        let req = request(1, now());
        let product = product(ProductKind::Server);
        let Decision::Count(c) = decide(DecisionInput {
            request: &req,
            product: &product,
            certificate: &cert,
            view: CountView { count: 4, ..NEW },
            new_client: Ok(()),
            settings: &settings,
            now: now(),
        }) else {
            unreachable!("counted")
        };
        assert!(
            c.outcome
                == Outcome::Activate {
                    renew_after: cert.exp,
                    valid_until: cert.exp
                }
        );
    }

    /// The count's side of the rule: a client last counted exactly one window (30 days)
    /// ago still counts at that second, so it renews at the seat cap and does not add
    /// itself; one second later it is a new client again.
    #[test]
    fn a_client_last_counted_exactly_one_window_ago() {
        let settings = Settings::default();
        let window = settings.count_window.as_secs();
        assert_eq!(window, 30 * DAY);
        let client = 0x0f8e5a52_8d1c_4f3c_9b1e_3f1d2c7a9e10;
        let then = now().as_second() - window;
        let cert = certificate(Some(1));
        let product = product(ProductKind::Server);
        for (at, counted, want) in [
            (now(), true, Ok(2)),
            (
                now() + SignedDuration::from_secs(1),
                false,
                Err(ErrorCode::SeatLimitReached),
            ),
        ] {
            let mut index = CountIndex::new(window);
            index.observe("suite", client, then);
            // Someone else holds the only seat once this client is out.
            index.observe("suite", 99, at.as_second());
            let (counted_anywhere, counted_here, count) =
                index.view("suite", client, at.as_second());
            assert_eq!(
                (counted_anywhere, counted_here),
                (counted, counted),
                "at {at}"
            );
            let view = CountView {
                counted: counted_anywhere,
                counted_here,
                count,
                seats_used: index.total(at.as_second()),
                revoked: false,
            };
            let got = match decide(DecisionInput {
                request: &request(1, at),
                product: &product,
                certificate: &cert,
                view,
                new_client: Ok(()),
                settings: &settings,
                now: at,
            }) {
                Decision::Count(c) => {
                    // What the decision counted is what the index then counts.
                    assert_eq!(c.count, index.observe("suite", client, at.as_second()));
                    Ok(c.count)
                }
                Decision::Refuse(e) => Err(e.code),
            };
            assert_eq!(got, want, "at {at}");
        }
    }
}
