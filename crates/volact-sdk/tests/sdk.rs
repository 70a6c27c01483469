//! The SDK against a real host on loopback: install, check, activate, renew in the
//! background, change notices, and each protection a product relies on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;
use volact_sdk::{ErrorCode, License, Reason, State};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

/// Demo Office, with a minimum of 1 so one machine is activated at once.
const PRODUCT: &str = "demo-office";
const APPLICATION: &str = "demo-office";

struct Fixture {
    host: TestHost,
    dir: tempfile::TempDir,
    // Last, so the host is stopped before its runtime goes.
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let vendor = TestVendor::with_minimum(7, PRODUCT, 1).unwrap();
        let host = runtime
            .block_on(TestHost::start_now(vendor, TestHostOptions::default()))
            .unwrap();
        Fixture {
            host,
            dir: tempfile::tempdir().unwrap(),
            runtime,
        }
    }

    fn bundle(&self) -> Vec<u8> {
        serde_json::to_vec(&self.host.vendor.bundle).unwrap()
    }

    fn state(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn license(&self, name: &str) -> License {
        let license = License::open(APPLICATION, self.state(name), self.bundle()).unwrap();
        license
            .install_key(&self.host.vendor.setup_key(PRODUCT))
            .unwrap();
        license.set_host(&self.host.address()).unwrap();
        license
    }

    fn inventory(&self) -> Vec<String> {
        let admin = self.host.admin().unwrap();
        let list = self
            .runtime
            .block_on(admin.clients(&Default::default()))
            .unwrap();
        list.clients.into_iter().map(|c| c.client_id).collect()
    }
}

#[test]
fn a_product_installs_its_key_activates_and_checks_licensed() {
    let f = Fixture::new();
    let license = License::open(APPLICATION, f.state("a.json"), f.bundle()).unwrap();
    let first = license.check();
    assert_eq!(
        (first.state, first.reason),
        (State::Unlicensed, Reason::NoSetupKey)
    );
    let changes = license.subscribe();

    license
        .install_key(&f.host.vendor.setup_key(PRODUCT))
        .unwrap();
    let grace = license.check();
    assert_eq!(
        (grace.state, grace.reason),
        (State::InitialGrace, Reason::NotActivatedYet)
    );
    assert!(grace.until.is_some_and(|t| t > Timestamp::now()));

    license.set_host(&f.host.address()).unwrap();
    let activation = license.activate_now().unwrap();
    assert_eq!(activation.host, f.host.address());
    let check = license.check();
    assert_eq!(
        (check.state, check.reason),
        (State::Licensed, Reason::Activated)
    );
    assert_eq!(check.until, Some(activation.ticket.valid_until));
    assert_eq!(check.product.as_deref(), Some(PRODUCT));
    assert_eq!(f.inventory(), vec![check.client_id.clone().unwrap()]);

    let seen: Vec<State> = changes.try_iter().map(|c| c.state).collect();
    assert_eq!(seen, vec![State::InitialGrace, State::Licensed]);
}

#[test]
fn the_background_renewal_activates_by_itself_and_tells_the_product() {
    let f = Fixture::new();
    let license = f.license("renew.json");
    let changes = license.subscribe();
    let (tx, rx) = std::sync::mpsc::channel();
    license.on_change(move |check| {
        let _ = tx.send(check.state);
    });
    let renewal = license.start_renewal().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut licensed = false;
    while std::time::Instant::now() < deadline {
        if let Ok(check) = changes.recv_timeout(Duration::from_millis(200))
            && check.state == State::Licensed
        {
            licensed = true;
            break;
        }
    }
    let stopped = std::time::Instant::now();
    renewal.stop();
    assert!(licensed, "the renewal did not activate within 20 s");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stop took too long"
    );
    assert!(rx.try_iter().any(|s| s == State::Licensed));
    assert_eq!(license.check().state, State::Licensed);
    assert_eq!(f.inventory().len(), 1);
}

#[test]
fn a_state_copied_to_another_machine_is_unlicensed_there_and_activates_as_itself() {
    let f = Fixture::new();
    let here = f.license("copy.json");
    here.activate_now().unwrap();
    let original = here.check().client_id.unwrap();

    let there = here.on_machine("0123456789abcdef0123456789abcdef");
    let check = there.check_at(Timestamp::now());
    assert_eq!(
        (check.state, check.reason),
        (State::Unlicensed, Reason::StateFromAnotherMachine)
    );
    assert!(
        check.message.contains("another machine"),
        "{}",
        check.message
    );

    there.activate_now().unwrap();
    let check = there.check_at(Timestamp::now());
    assert_eq!(check.state, State::Licensed);
    let own = check.client_id.unwrap();
    assert_ne!(
        own, original,
        "the copy activated under the other machine's id"
    );
    let mut inventory = f.inventory();
    inventory.sort();
    let mut expected = vec![original, own];
    expected.sort();
    assert_eq!(inventory, expected);
}

#[test]
fn an_edited_state_is_unlicensed_and_is_not_sent_to_a_host() {
    let f = Fixture::new();
    let license = f.license("edited.json");
    license.activate_now().unwrap();
    let path = f.state("edited.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["guard"]["rearms"] = serde_json::json!(0);
    json["installed"]["installed_at"] = serde_json::json!("2030-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();

    let check = license.check();
    assert_eq!(
        (check.state, check.reason),
        (State::Unlicensed, Reason::StateEdited)
    );
    let e = license.activate_now().unwrap_err();
    assert_eq!(e.code, ErrorCode::StateTampered);
    // Installing the key again is the way back, with no grace: activation is needed.
    license
        .install_key(&f.host.vendor.setup_key(PRODUCT))
        .unwrap();
    assert_eq!(license.check().state, State::Notification);
    license.activate_now().unwrap();
    assert_eq!(license.check().state, State::Licensed);
}

#[test]
fn a_clock_set_back_is_unlicensed_until_it_is_right() {
    let f = Fixture::new();
    let license = f.license("clock.json");
    license.activate_now().unwrap();
    let now = Timestamp::now();
    let back = license.check_at(now - SignedDuration::from_hours(48));
    assert_eq!(
        (back.state, back.reason),
        (State::Unlicensed, Reason::ClockRollback)
    );
    assert!(
        back.until
            .is_some_and(|t| t >= now - SignedDuration::from_hours(1))
    );
    assert_eq!(license.check_at(now).state, State::Licensed);
}

#[test]
fn a_product_trusts_only_its_own_vendor_and_application() {
    let f = Fixture::new();
    // Another application of the same vendor: its key is refused at install.
    let os = License::open("demo-os", f.state("os.json"), f.bundle()).unwrap();
    let e = os
        .install_key(&f.host.vendor.setup_key(PRODUCT))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownSetupKey);
    assert!(e.message.contains("not this product"), "{}", e.message);
    // An application the bundle does not have cannot be opened.
    let e = License::open("nope", f.state("x.json"), f.bundle()).unwrap_err();
    assert!(e.message.contains("demo-office"), "{}", e.message);
    // A state installed under an impostor's bundle is not this product's licence.
    let impostor = f.host.vendor.impostor(99).unwrap();
    let path = f.state("impostor.json");
    let tool = License::for_state_file(&path, None, Default::default());
    tool.install_key_with(&impostor.setup_key(PRODUCT), Some(impostor.bundle.clone()))
        .unwrap();
    let product = License::open(APPLICATION, &path, f.bundle()).unwrap();
    let check = product.check();
    assert_eq!(
        (check.state, check.reason),
        (State::Unlicensed, Reason::WrongVendor)
    );
    assert_eq!(
        product.activate_now().unwrap_err().code,
        ErrorCode::InvalidState
    );
    // Not a bundle at all.
    let e = License::open(APPLICATION, f.state("y.json"), b"{}".to_vec()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn a_forged_ticket_and_an_unreadable_state_are_not_licences() {
    let f = Fixture::new();
    let license = f.license("forged.json");
    license.activate_now().unwrap();
    let path = f.state("forged.json");
    let good = std::fs::read(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&good).unwrap();
    // A ticket re-signed by anyone but the certified host does not verify.
    let token = json["ticket"]["token"].as_str().unwrap().to_string();
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    json["ticket"]["token"] = serde_json::json!(forged);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let check = license.check();
    assert_ne!(check.state, State::Licensed);
    assert_eq!(check.reason, Reason::NotActivatedYet);

    std::fs::write(&path, b"not json").unwrap();
    let check = license.check();
    assert_eq!(
        (check.state, check.reason),
        (State::Unlicensed, Reason::StateUnreadable)
    );
    assert!(check.message.contains("forged.json"), "{}", check.message);
}

#[test]
fn rearm_is_limited_by_the_vendor() {
    let f = Fixture::new();
    let license = f.license("rearm.json");
    let first = license.check().client_id.unwrap();
    let mut ids = vec![first];
    for n in 1..=3 {
        let report = license.rearm().unwrap();
        assert_eq!(report.rearms, n);
        ids.push(report.client_id);
    }
    let e = license.rearm().unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(e.message.contains("rearm"), "{}", e.message);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}
