//! Every way the client's check of the chain refuses an answer, each next to an answer
//! that passes (so no refusal here can come from a broken fixture).

use super::*;
use crate::keys::KeyPair;
use crate::refusal::{self, Refused};
use crate::ticket::{sign_not_yet, sign_ticket};
use volact_proto::ActivationResult;

const CLIENT: &str = "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10";
const PRODUCT: &str = "demo-os-server";
const NONCE: &str = "nonce-0001";

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

struct Chain {
    root: KeyPair,
    host: KeyPair,
    certificate: HostCertificate,
}

impl Chain {
    /// A host certified by root seed 1 from `t0 - 1 day` for `valid` days.
    fn new(valid: i64) -> Chain {
        let root = KeyPair::from_seed([1; 32]).unwrap();
        let host = KeyPair::from_seed([2; 32]).unwrap();
        let certificate = HostCertificate {
            sub: host.public().host_id(),
            host_public_key: host.public().to_paserk(),
            vendor: "Demo Vendor".into(),
            key_id: "k1".into(),
            customer: "Acme".into(),
            group: "servers".into(),
            products: vec![PRODUCT.into()],
            seats: None,
            iat: t0() - days(1),
            exp: t0() - days(1) + days(valid),
            delegation: None,
        };
        Chain {
            root,
            host,
            certificate,
        }
    }

    fn root(&self) -> PublicKey {
        self.root.public().clone()
    }

    fn certificate_token(&self) -> String {
        token::sign(&self.root, &self.certificate).unwrap()
    }

    /// A genuine ticket issued at `iat`: count 5 of 5, 180 days.
    fn ticket(&self, iat: Timestamp) -> Ticket {
        Ticket {
            jti: "t-1".into(),
            sub: CLIENT.into(),
            product: PRODUCT.into(),
            application: "demo-os".into(),
            count: 5,
            minimum: 5,
            iat,
            renew_after: iat + days(7),
            exp: iat + days(180),
            iss: self.host.public().host_id(),
            nonce: NONCE.into(),
            intervals: Some(Settings::default().intervals()),
        }
    }

    fn answer(&self, ticket: &Ticket) -> ActivationResponse {
        ActivationResponse {
            result: ActivationResult::Activated,
            count: ticket.count,
            minimum: ticket.minimum,
            product: PRODUCT.into(),
            application: "demo-os".into(),
            host_id: ticket.iss.clone(),
            host_time: ticket.iat,
            intervals: Settings::default().intervals(),
            retry_after: None,
            ticket: Some(sign_ticket(&self.host, ticket).unwrap()),
            not_yet: None,
            host_certificate: self.certificate_token(),
            revocation_list: None,
        }
    }

    fn refusal(&self, code: ErrorCode, iat: Timestamp) -> ApiError {
        let error = ApiError::new(code, "refused");
        let who = Refused {
            client_id: CLIENT,
            nonce: NONCE,
            product: Some(PRODUCT),
        };
        let claims = refusal::claims(
            &error,
            who,
            &self.host.public().host_id(),
            &Settings::default(),
            iat,
        )
        .unwrap();
        let signed = refusal::sign(&self.host, &claims).unwrap();
        refusal::attach(error, signed, &self.certificate_token(), claims.retry_after)
    }
}

fn expected(now: Timestamp) -> Expected<'static> {
    Expected {
        client_id: CLIENT,
        product: PRODUCT,
        nonce: NONCE,
        minimum: 5,
        now,
        max_skew: SignedDuration::from_hours(4),
        catalog: None,
    }
}

/// The answer is refused with `code`, and the message says `why`.
fn refused(result: Result<impl std::fmt::Debug, ApiError>, code: ErrorCode, why: &str) {
    let e = result.expect_err("refused");
    assert_eq!(e.code, code, "{}", e.message);
    assert!(e.message.contains(why), "`{why}` not in: {}", e.message);
}

#[test]
fn a_genuine_ticket_and_not_yet_verify() {
    let chain = Chain::new(365);
    let ticket = chain.ticket(t0());
    let verified = verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())).unwrap();
    assert_eq!(
        verified,
        VerifiedAnswer::Ticket {
            ticket,
            certificate: chain.certificate.clone()
        }
    );
    let not_yet = NotYet {
        sub: CLIENT.into(),
        product: PRODUCT.into(),
        application: "demo-os".into(),
        count: 1,
        minimum: 5,
        iat: t0(),
        retry_after: t0() + SignedDuration::from_hours(2),
        iss: chain.host.public().host_id(),
        nonce: NONCE.into(),
        intervals: None,
    };
    let mut answer = chain.answer(&chain.ticket(t0()));
    answer.result = ActivationResult::CountInsufficient;
    answer.ticket = None;
    answer.not_yet = Some(sign_not_yet(&chain.host, &not_yet).unwrap());
    assert!(verify_answer(&chain.root(), &answer, expected(t0())).is_ok());
    answer.not_yet = None;
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "unsigned",
    );
}

#[test]
fn a_key_the_vendor_never_certified_is_untrusted() {
    let chain = Chain::new(365);
    // A certificate signed by another root.
    let mut answer = chain.answer(&chain.ticket(t0()));
    let other = KeyPair::from_seed([66; 32]).unwrap();
    answer.host_certificate = token::sign(&other, &chain.certificate).unwrap();
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "does not chain to this vendor's root key",
    );
    // A genuine certificate, but the ticket signed by a key it does not certify.
    let mut answer = chain.answer(&chain.ticket(t0()));
    answer.ticket = Some(sign_ticket(&other, &chain.ticket(t0())).unwrap());
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "does not verify with host",
    );
}

#[test]
fn a_product_outside_the_certificate_is_untrusted() {
    let mut chain = Chain::new(365);
    chain.certificate.products = vec!["demo-office".into()];
    let answer = chain.answer(&chain.ticket(t0()));
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "not entitled to activate product demo-os-server",
    );
}

#[test]
fn a_signing_time_outside_the_certificate_is_untrusted() {
    let chain = Chain::new(365);
    // Signed an hour before the certificate was issued, or an hour after it ended, by a
    // client clock inside its validity.
    let hour = SignedDuration::from_hours(1);
    let (start, end) = (chain.certificate.iat, chain.certificate.exp);
    for (signed, now) in [(start - hour, start + hour), (end + hour, end - hour)] {
        let mut ticket = chain.ticket(signed);
        ticket.exp = ticket.exp.min(end);
        ticket.renew_after = ticket.renew_after.min(ticket.exp);
        refused(
            verify_answer(&chain.root(), &chain.answer(&ticket), expected(now)),
            ErrorCode::UntrustedHost,
            "outside its certificate's validity",
        );
    }
}

#[test]
fn activated_without_a_ticket_is_untrusted() {
    let chain = Chain::new(365);
    let mut answer = chain.answer(&chain.ticket(t0()));
    answer.ticket = None;
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "said activated but sent no ticket",
    );
}

#[test]
fn an_expired_certificate_activates_nothing_even_with_a_back_dated_ticket() {
    let chain = Chain::new(30);
    let expired = chain.certificate.exp;
    let now = expired + SignedDuration::from_hours(1);
    // Back-dated to the certificate's last second: within 4 hours of the client's clock.
    let mut ticket = chain.ticket(expired - SignedDuration::from_secs(1));
    refused(
        verify_answer(&chain.root(), &chain.answer(&ticket), expected(now)),
        ErrorCode::HostCertificateExpired,
        "volact host activate",
    );
    // Even with a ticket that ends with its certificate.
    ticket.exp = expired;
    ticket.renew_after = expired;
    refused(
        verify_answer(&chain.root(), &chain.answer(&ticket), expected(now)),
        ErrorCode::HostCertificateExpired,
        "expired at",
    );
}

#[test]
fn a_certificate_from_the_future_is_untrusted() {
    let chain = Chain::new(365);
    let now = chain.certificate.iat - SignedDuration::from_hours(5);
    let answer = chain.answer(&chain.ticket(chain.certificate.iat));
    refused(
        verify_answer(&chain.root(), &answer, expected(now)),
        ErrorCode::UntrustedHost,
        "set this machine's clock right",
    );
}

#[test]
fn a_certified_host_cannot_grant_more_than_it_holds_or_the_design_allows() {
    // Past the certificate's end.
    let chain = Chain::new(90);
    let answer = chain.answer(&chain.ticket(t0()));
    refused(
        verify_answer(&chain.root(), &answer, expected(t0())),
        ErrorCode::UntrustedHost,
        "after its own certificate ends",
    );
    // A hundred years, from a certificate of two hundred.
    let chain = Chain::new(200 * 365);
    let mut ticket = chain.ticket(t0());
    ticket.exp = t0() + days(100 * 365);
    refused(
        verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())),
        ErrorCode::UntrustedHost,
        "longer than the 3650d",
    );
    ticket.exp = t0() + days(3650);
    assert!(verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())).is_ok());
    // Times out of order.
    let mut ticket = chain.ticket(t0());
    ticket.renew_after = ticket.exp + days(1);
    refused(
        verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())),
        ErrorCode::UntrustedHost,
        "out of order",
    );
}

#[test]
fn a_ticket_below_the_catalogs_minimum_is_untrusted() {
    let chain = Chain::new(365);
    for (count, minimum) in [(1, 1), (4, 4), (4, 5), (1, 5)] {
        let mut ticket = chain.ticket(t0());
        ticket.count = count;
        ticket.minimum = minimum;
        refused(
            verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())),
            ErrorCode::UntrustedHost,
            "needs at least 5 by the vendor's catalog",
        );
    }
    let mut ticket = chain.ticket(t0());
    ticket.count = 5;
    ticket.minimum = 5;
    assert!(verify_answer(&chain.root(), &chain.answer(&ticket), expected(t0())).is_ok());
}

#[test]
fn a_genuine_ticket_far_from_the_clients_clock_is_clock_skew_and_a_replay_untrusted() {
    let chain = Chain::new(365);
    let answer = chain.answer(&chain.ticket(t0()));
    refused(
        verify_answer(
            &chain.root(),
            &answer,
            expected(t0() + SignedDuration::from_hours(6)),
        ),
        ErrorCode::ClockSkew,
        "set the clock right",
    );
    let mut other = expected(t0());
    other.nonce = "nonce-0002";
    refused(
        verify_answer(&chain.root(), &answer, other),
        ErrorCode::UntrustedHost,
        "replay",
    );
}

#[test]
fn refusals_count_only_signed_for_this_request_with_their_own_code() {
    let chain = Chain::new(365);
    let root = chain.root();
    let signed = chain.refusal(ErrorCode::ClientRevoked, t0());
    let verified = verify_refusal(&root, &signed, expected(t0())).unwrap();
    assert_eq!(verified.refusal.code, ErrorCode::ClientRevoked);
    assert_eq!(verified.retry_interval(), SignedDuration::from_hours(2));
    assert!(
        refusal::without_signature(signed.clone())
            .details
            .get("signature")
            .is_none()
    );

    refused(
        verify_refusal(
            &root,
            &ApiError::new(ErrorCode::ClientRevoked, "x"),
            expected(t0()),
        ),
        ErrorCode::UntrustedHost,
        "did not sign the refusal",
    );
    let mut relabelled = signed.clone();
    relabelled.code = ErrorCode::SeatLimitReached;
    refused(
        verify_refusal(&root, &relabelled, expected(t0())),
        ErrorCode::UntrustedHost,
        "but signed `client-revoked`",
    );
    let mut other = expected(t0());
    other.nonce = "nonce-0002";
    refused(
        verify_refusal(&root, &signed, other),
        ErrorCode::UntrustedHost,
        "replay",
    );
    let impostor = KeyPair::from_seed([66; 32]).unwrap();
    refused(
        verify_refusal(impostor.public(), &signed, expected(t0())),
        ErrorCode::UntrustedHost,
        "does not chain",
    );
    // A host whose certificate has expired signs nothing the client acts on, except that
    // a clock-skew refusal cannot be judged by the clock it says is wrong.
    let late = chain.certificate.exp + days(400);
    refused(
        verify_refusal(&root, &signed, expected(late)),
        ErrorCode::HostCertificateExpired,
        "expired",
    );
    let skew = chain.refusal(ErrorCode::ClockSkew, t0());
    assert!(verify_refusal(&root, &skew, expected(late)).is_ok());
    // Only refusals about the client are signed.
    assert!(
        refusal::claims(
            &ApiError::new(ErrorCode::RateLimited, "slow down"),
            Refused {
                client_id: CLIENT,
                nonce: NONCE,
                product: None
            },
            "h",
            &Settings::default(),
            t0()
        )
        .is_none()
    );
}

#[test]
fn a_stored_ticket_claims_no_more_than_a_received_one() {
    let chain = Chain::new(200 * 365);
    let mut ticket = chain.ticket(t0());
    let cert = chain.certificate_token();
    assert!(
        verify_stored(
            &chain.root(),
            &cert,
            &sign_ticket(&chain.host, &ticket).unwrap()
        )
        .is_ok()
    );
    ticket.exp = t0() + days(100 * 365);
    let e = verify_stored(
        &chain.root(),
        &cert,
        &sign_ticket(&chain.host, &ticket).unwrap(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost);
}
