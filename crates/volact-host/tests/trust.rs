//! The trust chain seen from a real client: a host of another vendor cannot activate it,
//! and the client's license state moves with time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jiff::SignedDuration;
use volact_client::{ClientState, activate, install_key, set_host, status};
use volact_core::license::LicenseState;
use volact_engine::Clock;
use volact_proto::ErrorCode;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

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

#[tokio::test]
async fn refusals_about_the_client_come_signed_and_steer_it_within_the_ranges() {
    let vendor = TestVendor::new(1).unwrap();
    let options = TestHostOptions {
        config: volact_engine::config::RawConfig {
            retry_interval: Some("3h".into()),
            max_clock_skew: Some("1h".into()),
            ..Default::default()
        },
        ..TestHostOptions::default()
    };
    let host = TestHost::start(vendor.clone(), options).await.unwrap();
    let now = host.clock.now();
    let mut state = new_client(&vendor, "demo-office", &host, 1);
    // A clock two hours off (asked before the revocation below: a new client id from a
    // revoked machine is refused whatever its clock, and every client of this test runs
    // on one machine): the host refuses, signed, and the client learns the limit.
    let mut other = new_client(&vendor, "demo-office", &host, 2);
    let wrong = now + SignedDuration::from_hours(2);
    let e = activate(&mut other, wrong, "pc2", "nonce-signed-0003".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ClockSkew, "{}", e.message);
    assert_eq!(
        other.last_attempt.unwrap().retry_after,
        Some(wrong + SignedDuration::from_hours(3))
    );
    assert_eq!(other.intervals.unwrap().max_clock_skew_secs, 3600);

    // Known to the host (not yet activated), then revoked by its administrator.
    activate(&mut state, now, "pc1", "nonce-signed-0001".into())
        .await
        .unwrap_err();
    assert!(
        host.running
            .engine
            .set_revoked(&client(1), true, None)
            .await
            .unwrap()
    );
    let e = activate(&mut state, now, "pc1", "nonce-signed-0002".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ClientRevoked, "{}", e.message);
    assert!(e.details.get("signature").is_none(), "{}", e.details);
    assert_eq!(
        state.last_attempt.clone().unwrap().retry_after,
        Some(now + SignedDuration::from_hours(3)),
        "the host's signed retry interval"
    );
    let intervals = state.intervals.unwrap();
    assert_eq!(intervals.retry_interval_secs, 3 * 3600);
    assert_eq!(intervals.max_clock_skew_secs, 3600);

    // On the wire the refusal carries the signed document and the host certificate.
    let (status, body) = ask(&host, &client(1), "demo-office").await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "client-revoked");
    let signature = &body["details"]["signature"];
    assert!(
        signature["refusal"]
            .as_str()
            .unwrap()
            .starts_with("v4.public.")
    );
    assert!(signature["host_certificate"].is_string());
}

#[tokio::test]
async fn a_host_whose_certificate_expired_is_passed_over() {
    let vendor = TestVendor::new(1).unwrap();
    let host = TestHost::start(vendor.clone(), TestHostOptions::default())
        .await
        .unwrap();
    let mut state = new_client(&vendor, "demo-office", &host, 1);
    // Past the certificate's five years.
    host.clock.advance(SignedDuration::from_hours(
        24 * i64::from(volact_core::certificate::DEFAULT_CERTIFICATE_DAYS + 1),
    ));
    let now = host.clock.now();
    let (status, body) = ask(&host, &client(2), "demo-office").await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "host-certificate-expired");
    assert!(body["details"].get("signature").is_none(), "{body}");

    // Pinned: its own error, and the client's own retry.
    let e = activate(&mut state, now, "pc1", "nonce-expired-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostCertificateExpired, "{}", e.message);
    assert_eq!(
        state.last_attempt.clone().unwrap().retry_after,
        Some(now + SignedDuration::from_hours(2))
    );
    assert!(state.intervals.is_none());

    // Found in the host cache: the client goes on to discovery, which lists it.
    volact_client::clear_host(&mut state);
    state.last_host = Some(host.address());
    state.domain = Some("volact.test".into());
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let options = volact_client::ActivateOptions {
        dns_server: Some(dead.local_addr().unwrap()),
        dns_timeout: std::time::Duration::from_millis(300),
        ..volact_client::ActivateOptions::default()
    };
    let e = volact_client::activate_with(
        &mut state,
        now,
        "pc1",
        "nonce-expired-0002".into(),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoHostFound, "{}", e.message);
    assert!(
        e.message.contains(&host.address()) && e.message.contains("host-certificate-expired"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("_volact._tcp.volact.test"),
        "{}",
        e.message
    );
}
