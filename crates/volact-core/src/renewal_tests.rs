#![allow(clippy::unwrap_used)]

use super::*;
use crate::catalog::{Catalog, demo_source};
use crate::certificate::{activate_host, make_request};

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

const SKEW: SignedDuration = SignedDuration::from_mins(15);

struct Setup {
    root: KeyPair,
    host: KeyPair,
    key_token: String,
    ledger: Ledger,
    cert: String,
}

fn setup(key_exp: Option<Timestamp>) -> Setup {
    let root = KeyPair::from_seed([1; 32]).unwrap();
    let mut n = 0u8;
    let catalog = Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, move || {
        n += 1;
        [n; 24]
    })
    .unwrap();
    let key = HostKey {
        jti: "k1".into(),
        vendor: "Demo Vendor".into(),
        customer: "Acme".into(),
        group: "demo-all".into(),
        seats: None,
        exp: key_exp,
        max_hosts: 2,
        max_activations: 1,
        iat: Timestamp::UNIX_EPOCH,
        usage_reports: false,
        delegation: None,
    };
    let key_token = token::sign(&root, &key).unwrap();
    let host = KeyPair::from_seed([10; 32]).unwrap();
    let now = t0();
    let mut ledger = Ledger::default();
    let request = make_request(&host, &key_token, "activation".into(), now).unwrap();
    let (cert, _) = activate_host(&root, &catalog, &mut ledger, &request, now, 10).unwrap();
    Setup {
        root,
        host,
        key_token,
        ledger,
        cert,
    }
}

fn renew(s: &mut Setup, nonce: &str, at: Timestamp) -> Result<(String, HostCertificate), ApiError> {
    let request = make_renewal_request(&s.host, &s.cert, &s.key_token, nonce.into(), at).unwrap();
    let checked = check_renewal(s.root.public(), &request, at, SKEW)?;
    s.ledger.admit_renewal(&checked, at)?;
    renewed_certificate(&Signer::root(&s.root), &checked, at, 10)
}

#[test]
fn a_renewal_keeps_the_claims_moves_the_validity_and_spends_no_activation() {
    let mut s = setup(None);
    let before = s.ledger.keys.clone();
    let later = util::add(t0(), SignedDuration::from_hours(24 * 5));
    let (token, cert) = renew(&mut s, "r1", later).unwrap();
    let old = verify_certificate(s.root.public(), &s.cert, None).unwrap();
    assert_eq!(cert.iat, later);
    assert_eq!(cert.exp, util::add(later, SignedDuration::from_hours(240)));
    assert_eq!(
        HostCertificate {
            iat: old.iat,
            exp: old.exp,
            ..cert.clone()
        },
        old
    );
    assert_eq!(
        verify_certificate(s.root.public(), &token, Some(s.host.public())).unwrap(),
        cert
    );
    // max_activations is 1 and the host used it: renewing spent nothing.
    assert_eq!(s.ledger.keys, before);
    // The renewed certificate renews in turn.
    s.cert = token;
    renew(&mut s, "r2", later).unwrap();
}

#[test]
fn a_replayed_renewal_is_refused_and_changes_nothing() {
    let mut s = setup(None);
    let request =
        make_renewal_request(&s.host, &s.cert, &s.key_token, "once".into(), t0()).unwrap();
    let checked = check_renewal(s.root.public(), &request, t0(), SKEW).unwrap();
    s.ledger.admit_renewal(&checked, t0()).unwrap();
    let before = s.ledger.clone();
    let e = s.ledger.admit_renewal(&checked, t0()).unwrap_err();
    assert_eq!(e.code, ErrorCode::RequestReplayed);
    assert_eq!(s.ledger, before);
    // The activation's nonce cannot be replayed as a renewal either.
    let e = renew(&mut s, "activation", t0()).unwrap_err();
    assert_eq!(e.code, ErrorCode::RequestReplayed);
}

#[test]
fn a_host_the_ledger_does_not_know_is_refused() {
    let mut s = setup(None);
    s.ledger.keys.clear();
    let e = renew(&mut s, "r", t0()).unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost);
    assert!(
        s.ledger.answered.len() == 1,
        "only the activation is recorded"
    );
}

#[test]
fn a_proof_not_signed_by_the_certified_host_is_refused() {
    let mut s = setup(None);
    let thief = KeyPair::from_seed([66; 32]).unwrap();
    let mut request =
        make_renewal_request(&thief, &s.cert, &s.key_token, "x".into(), t0()).unwrap();
    let e = check_renewal(s.root.public(), &request, t0(), SKEW).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    // Nor a certificate the root did not sign.
    let impostor = KeyPair::from_seed([67; 32]).unwrap();
    let claims = verify_certificate(s.root.public(), &s.cert, None).unwrap();
    let forged = token::sign(&impostor, &claims).unwrap();
    request = make_renewal_request(&s.host, &forged, &s.key_token, "y".into(), t0()).unwrap();
    let e = check_renewal(s.root.public(), &request, t0(), SKEW).unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost);
    s.cert = forged;
    assert!(renew(&mut s, "z", t0()).is_err());
}

#[test]
fn time_expired_certificates_and_expired_host_keys_are_refused() {
    let mut s = setup(None);
    let skewed = util::add(t0(), SignedDuration::from_mins(16));
    let request = make_renewal_request(&s.host, &s.cert, &s.key_token, "a".into(), skewed).unwrap();
    let e = check_renewal(s.root.public(), &request, t0(), SKEW).unwrap_err();
    assert_eq!(e.code, ErrorCode::ClockSkew);
    let after = util::add(t0(), SignedDuration::from_hours(241));
    let e = renew(&mut s, "b", after).unwrap_err();
    assert_eq!(e.code, ErrorCode::HostCertificateExpired);

    let key_exp = util::add(
        Timestamp::from_second(1_800_000_000).unwrap(),
        SignedDuration::from_hours(48),
    );
    let mut s = setup(Some(key_exp));
    // Before the key expires, the renewed certificate ends with the key.
    let (_, cert) = renew(&mut s, "c", util::add(t0(), SignedDuration::from_hours(24))).unwrap();
    assert_eq!(cert.exp, key_exp);
    let e = renew(&mut s, "d", key_exp).unwrap_err();
    assert_eq!(e.code, ErrorCode::HostKeyActivationLimit);
}

#[test]
fn renewal_is_due_before_expiry_and_not_twice_within_the_gap() {
    let exp = Timestamp::from_second(1_800_000_000).unwrap();
    let before = SignedDuration::from_hours(24 * 30);
    assert_eq!(renew_at(exp, before, None), util::add(exp, -before));
    let just = util::add(exp, SignedDuration::from_hours(-24));
    assert_eq!(
        renew_at(exp, before, Some(just)),
        util::add(just, MIN_RENEWAL_GAP)
    );
}

#[test]
fn retries_double_from_a_minute_to_six_hours_with_jitter_below() {
    assert_eq!(retry_wait(1, 0.0), SignedDuration::from_mins(1));
    assert_eq!(retry_wait(2, 0.0), SignedDuration::from_mins(2));
    assert_eq!(retry_wait(30, 0.0), MAX_RETRY);
    assert_eq!(retry_wait(u32::MAX, 0.0), MAX_RETRY);
    let jittered = retry_wait(30, 1.0);
    assert!(jittered < MAX_RETRY && jittered >= SignedDuration::from_mins(270));
}
