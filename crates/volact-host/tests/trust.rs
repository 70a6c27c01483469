//! The trust chain seen from a real client: a host of another vendor cannot activate it,
//! and the client's license state moves with time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::SignedDuration;
use volact_client::{ClientState, activate, install_key, set_host, status};
use volact_core::license::LicenseState;
use volact_host::Clock;
use volact_host::testkit::{TestHost, TestHostOptions, TestVendor};
use volact_proto::ErrorCode;

fn new_client(vendor: &TestVendor, product: &str, host: &TestHost, n: u32) -> ClientState {
    let mut state = ClientState::default();
    let now = host.clock.now();
    install_key(
        &mut state,
        &vendor.setup_key(product),
        Some(vendor.bundle.clone()),
        now,
        || client(n),
    )
    .unwrap();
    set_host(&mut state, &host.address()).unwrap();
    state
}

#[tokio::test]
async fn a_host_of_another_vendor_is_untrusted_and_nothing_is_stored() {
    let genuine = TestVendor::new(1).unwrap();
    let impostor_vendor = genuine.impostor(66).unwrap();
    let impostor = TestHost::start(impostor_vendor, TestHostOptions::default())
        .await
        .unwrap();
    // The impostor host would activate (minimum 5 reached), but its chain ends at another root.
    for i in 10..14 {
        ask(&impostor, &client(i), "demo-office").await;
    }
    let mut state = new_client(&genuine, "demo-office", &impostor, 1);
    let now = impostor.clock.now();
    let e = activate(&mut state, now, "victim", "nonce-untrusted-1".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost, "{e}");
    assert!(state.ticket.is_none());
    assert_eq!(
        status(&state, now).license.state,
        LicenseState::InitialGrace
    );
}

#[tokio::test]
async fn a_client_moves_through_every_license_state() {
    let vendor = TestVendor::new(1).unwrap();
    let host = TestHost::start(vendor.clone(), TestHostOptions::default())
        .await
        .unwrap();
    let mut state = new_client(&vendor, "demo-office", &host, 1);
    let t0 = host.clock.now();
    assert_eq!(
        status(&ClientState::default(), t0).license.state,
        LicenseState::Unlicensed
    );
    let e = activate(&mut state, t0, "pc1", "nonce-state-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CountInsufficient);
    assert_eq!(e.details["count"], 1);
    assert_eq!(status(&state, t0).license.state, LicenseState::InitialGrace);
    for i in 2..=5 {
        ask(&host, &client(i), "demo-office").await;
    }
    let outcome = activate(&mut state, t0, "pc1", "nonce-state-0002".into())
        .await
        .unwrap();
    assert_eq!(outcome.ticket.count, 5);
    let s = status(&state, t0);
    assert_eq!(s.license.state, LicenseState::Licensed);
    assert_eq!(
        s.license.until,
        Some(t0 + SignedDuration::from_hours(180 * 24))
    );
    let day = |n: i64| t0 + SignedDuration::from_hours(24 * n);
    assert!(status(&state, day(151)).license.expiry_warning);
    assert_eq!(
        status(&state, day(181)).license.state,
        LicenseState::OutOfToleranceGrace
    );
    assert_eq!(
        status(&state, day(211)).license.state,
        LicenseState::Notification
    );
    // Renewal after 7 days issues a new ticket that runs 180 days from then.
    host.clock.advance(SignedDuration::from_hours(7 * 24));
    for i in 2..=5 {
        ask(&host, &client(i), "demo-office").await;
    }
    let renewed = activate(&mut state, day(7), "pc1", "nonce-state-0003".into())
        .await
        .unwrap();
    assert!(renewed.renewed);
    assert_eq!(renewed.ticket.valid_until, day(187));
}

#[tokio::test]
async fn a_cloned_client_counts_once_until_rearmed() {
    let vendor = TestVendor::new(1).unwrap();
    let host = TestHost::start(vendor.clone(), TestHostOptions::default())
        .await
        .unwrap();
    let now = host.clock.now();
    let mut original = new_client(&vendor, "demo-office", &host, 1);
    // A disk image taken after the setup key was installed: the copy has the same id.
    let mut copy = original.clone();
    let e = activate(&mut original, now, "pc1", "nonce-clone-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.details["count"], 1);
    let e = activate(&mut copy, now, "pc1-copy", "nonce-clone-0002".into())
        .await
        .unwrap_err();
    assert_eq!(
        e.details["count"], 1,
        "two machines with one client id count once"
    );
    let report = volact_client::rearm(&mut copy, now, || client(2)).unwrap();
    assert_eq!(report.old_client_id, client(1));
    assert_eq!(status(&copy, now).license.state, LicenseState::InitialGrace);
    let e = activate(&mut copy, now, "pc1-copy", "nonce-clone-0003".into())
        .await
        .unwrap_err();
    assert_eq!(
        e.details["count"], 2,
        "after rearm the copy counts on its own"
    );
}
