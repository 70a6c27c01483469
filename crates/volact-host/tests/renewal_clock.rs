//! Certificate renewal on a virtual clock: a real host (real storage and HTTP) whose
//! clock the test moves, renewing from a vendor service faked in process with the same
//! core rules as `volact vendor serve`. The host renews when due and not before, serves
//! with the renewed certificate at once, and a host whose renewals fail keeps serving
//! until its certificate really expires — and not a second longer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::SignedDuration;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use volact_core::certificate::Ledger;
use volact_core::delegation::Signer;
use volact_core::keys::KeyPair;
use volact_core::renewal::{check_renewal, renewed_certificate};
use volact_engine::Clock;
use volact_engine::clock::ManualClock;
use volact_engine::renewal::{Attempt, Renewal, VendorService};
use volact_proto::{ApiError, ErrorCode, HostRenewalRequest, HostRenewalResponse};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

/// The vendor service, in process: the core's checks, a ledger, 90-day certificates.
struct FakeVendor {
    root: KeyPair,
    clock: Arc<ManualClock>,
    ledger: Mutex<Ledger>,
    down: AtomicBool,
    asked: AtomicU32,
}

#[async_trait::async_trait]
impl VendorService for FakeVendor {
    fn url(&self) -> &str {
        "http://vendor.invalid"
    }

    async fn renew(&self, request: &HostRenewalRequest) -> Result<HostRenewalResponse, ApiError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                ErrorCode::HostUnreachable,
                "cannot reach the vendor service at http://vendor.invalid",
            ));
        }
        let now = self.clock.now();
        let checked = check_renewal(
            self.root.public(),
            request,
            now,
            SignedDuration::from_mins(15),
        )?;
        self.ledger.lock().unwrap().admit_renewal(&checked, now)?;
        let (token, _) = renewed_certificate(&Signer::root(&self.root), &checked, now, 90)?;
        Ok(HostRenewalResponse {
            host_certificate: token,
        })
    }
}

async fn host_and_vendor() -> (TestHost, Arc<FakeVendor>, Renewal) {
    let vendor = TestVendor::with_minimum(7, "demo-office", 1).unwrap();
    let host = TestHost::start(vendor.clone(), TestHostOptions::default())
        .await
        .unwrap();
    let cert = host.running.engine.certificate().unwrap();
    let mut ledger = Ledger::default();
    ledger
        .keys
        .entry(cert.key_id.clone())
        .or_default()
        .insert(cert.sub.clone(), 1);
    let fake = Arc::new(FakeVendor {
        root: vendor.root.clone(),
        clock: host.clock.clone(),
        ledger: Mutex::new(ledger),
        down: AtomicBool::new(false),
        asked: AtomicU32::new(0),
    });
    let renewal = Renewal::new(
        host.running.engine.clone(),
        host.data.clone(),
        fake.clone(),
        SignedDuration::from_hours(30 * 24),
    );
    (host, fake, renewal)
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

#[tokio::test]
async fn the_host_renews_when_due_and_serves_with_the_new_certificate_at_once() {
    let (host, fake, renewal) = host_and_vendor().await;
    let engine = host.running.engine.clone();
    let exp = engine.certificate().unwrap().exp;

    // Not yet: renewal is due 30 days before expiry, and nobody is asked.
    assert_eq!(renewal.attempt().await, Attempt::NotDue(exp - days(30)));
    host.clock.set(exp - days(31));
    assert_eq!(renewal.attempt().await, Attempt::NotDue(exp - days(30)));
    assert_eq!(fake.asked.load(Ordering::SeqCst), 0);

    // Due: renewed for 90 days from now, written, and served at once.
    let now = exp - days(29);
    host.clock.set(now);
    assert_eq!(renewal.attempt().await, Attempt::Renewed(now + days(90)));
    let served = engine.certificate().unwrap();
    assert_eq!((served.iat, served.exp), (now, now + days(90)));
    let (token, on_disk) = host.data.certificate().unwrap().unwrap();
    assert_eq!(on_disk, served);
    assert_eq!(
        engine.info().host_certificate.as_deref(),
        Some(token.as_str())
    );
    assert_eq!(engine.info().certificate_expires, Some(now + days(90)));
    // 90 days left: the next renewal is due 60 days on.
    assert_eq!(renewal.attempt().await, Attempt::NotDue(now + days(60)));
    assert_eq!(fake.asked.load(Ordering::SeqCst), 1);

    // A client's answer carries the new certificate.
    let request: volact_proto::ActivationRequest = serde_json::from_value(serde_json::json!({
        "client_id": uuid::Uuid::new_v4().to_string(),
        "setup_key": host.vendor.setup_key("demo-office"),
        "minimum_count": 1,
        "client_time": now,
        "nonce": "nonce-renewal-1",
        "machine_name": "m1",
    }))
    .unwrap();
    let answer = engine.activate(&request, "127.0.0.1").await.unwrap();
    assert!(answer.ticket.is_some(), "{answer:?}");
    assert_eq!(answer.host_certificate, token);

    // The status and its log say when it was renewed.
    let log = volact_engine::renewal::read_log(&host.data).unwrap();
    assert_eq!(log.last_success, Some(now));
    assert_eq!(log.failures_in_a_row, 0);
    assert!(log.warning().is_none());
}

#[tokio::test]
async fn a_host_whose_renewals_fail_serves_until_its_certificate_really_expires() {
    let (host, fake, renewal) = host_and_vendor().await;
    let engine = host.running.engine.clone();
    let exp = engine.certificate().unwrap().exp;
    fake.down.store(true, Ordering::SeqCst);

    let now = exp - days(2);
    host.clock.set(now);
    let Attempt::Failed(e, next) = renewal.attempt().await else {
        panic!("the renewal did not fail");
    };
    assert_eq!(e.code, ErrorCode::HostUnreachable);
    // A minute, less up to a quarter of jitter.
    assert!(
        next <= now + SignedDuration::from_mins(1) && next >= now + SignedDuration::from_secs(45)
    );
    assert!(
        engine.not_ready(now).is_none(),
        "a failed renewal is no outage"
    );

    // The warning: host status (text and JSON), the dashboard's source, and /metrics.
    let status = volact_engine::status::collect(
        &host.data,
        engine.store().as_ref(),
        &host.data.config(Default::default()).unwrap(),
        now,
    )
    .await
    .unwrap();
    let warning = status
        .certificate_renewal
        .as_ref()
        .and_then(|r| r.warning())
        .unwrap();
    assert!(
        warning.contains("cannot reach the vendor service"),
        "{warning}"
    );
    assert!(status.render_text().contains("WARNING:"));
    let metrics = engine.metrics().render(&[], true);
    assert!(
        metrics.contains("volact_host_certificate_renewal_failures_total 1"),
        "{metrics}"
    );

    // Failing again doubles the wait; the host still serves a second before expiry…
    let now = exp - SignedDuration::from_secs(1);
    host.clock.set(now);
    let Attempt::Failed(_, next) = renewal.attempt().await else {
        panic!("the renewal did not fail");
    };
    assert!(next >= now + SignedDuration::from_secs(90));
    assert!(engine.not_ready(now).is_none());
    let log = volact_engine::renewal::read_log(&host.data).unwrap();
    assert_eq!((log.failures_in_a_row, log.failures_total), (2, 2));

    // …and stops at the expiry, with the code that says so.
    let e = engine.not_ready(exp).unwrap();
    assert_eq!(e.code, ErrorCode::HostCertificateExpired);
    assert_eq!(
        engine.certificate().unwrap().exp,
        exp,
        "the failed renewals changed nothing"
    );

    // The vendor back: the next attempt renews and clears the warning (before expiry).
    fake.down.store(false, Ordering::SeqCst);
    let now = exp - SignedDuration::from_secs(1);
    host.clock.set(now);
    assert_eq!(renewal.attempt().await, Attempt::Renewed(now + days(90)));
    assert!(engine.not_ready(exp).is_none());
    let log = volact_engine::renewal::read_log(&host.data).unwrap();
    assert!(log.warning().is_none());
}
