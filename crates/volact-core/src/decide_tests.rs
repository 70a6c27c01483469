//! The rule of one request, case by case: every refusal [`decide`] and [`ready`] can
//! give, and every boundary of the counting and the answer.

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
        delegation: None,
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
        let (counted_anywhere, counted_here, count) = index.view("suite", client, at.as_second());
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
