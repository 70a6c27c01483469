//! `License::check()` on an activated licence: read the state, verify its seal and the
//! ticket's whole chain. The target is under 100 µs (issue 16).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use volact_sdk::{License, State};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

fn check(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let vendor = TestVendor::with_minimum(7, "demo-office", 1).unwrap();
    let host = runtime
        .block_on(TestHost::start_now(vendor, TestHostOptions::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = serde_json::to_vec(&host.vendor.bundle).unwrap();
    let license = License::open("demo-office", dir.path().join("licence.json"), bundle).unwrap();
    license
        .install_key(&host.vendor.setup_key("demo-office"))
        .unwrap();
    license.set_host(&host.address()).unwrap();
    license.activate_now().unwrap();
    assert_eq!(license.check().state, State::Licensed);

    // A check after the first in a process: the chain's bytes are compared with those
    // already verified.
    c.bench_function("check_licensed", |b| {
        b.iter(|| std::hint::black_box(license.check()))
    });
    // The first check of a process (a product's start): both signatures of the chain
    // (host certificate, ticket) verified.
    c.bench_function("check_licensed_first_in_process", |b| {
        b.iter(|| {
            volact_client::forget_verified();
            std::hint::black_box(license.check())
        })
    });
    // One Ed25519 verification, the unit the first check is made of, to read the figures
    // above on another machine.
    let root =
        volact_core::keys::PublicKey::from_paserk(&host.vendor.bundle.root_public_key).unwrap();
    c.bench_function("one_signature_verification", |b| {
        b.iter(|| {
            std::hint::black_box(volact_core::token::verify::<volact_core::catalog::Catalog>(
                &root,
                &host.vendor.bundle.catalog,
            ))
        })
    });
    c.bench_function("check_no_state_file", |b| {
        let empty = License::open(
            "demo-office",
            dir.path().join("none.json"),
            serde_json::to_vec(&host.vendor.bundle).unwrap(),
        )
        .unwrap();
        b.iter(|| std::hint::black_box(empty.check()))
    });
    // From nothing to licensed against a host on loopback: open with the bundle, install
    // the setup key, pin the host, activate, check. Each iteration is a new machine (a
    // new state file, so a new client id in the host's inventory).
    let mut group = c.benchmark_group("first_activation");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(8));
    let bundle = serde_json::to_vec(&host.vendor.bundle).unwrap();
    let key = host.vendor.setup_key("demo-office");
    let mut n = 0u64;
    group.bench_function("open_install_activate_check", |b| {
        b.iter(|| {
            n += 1;
            let license = License::open(
                "demo-office",
                dir.path().join(format!("first-{n}.json")),
                bundle.clone(),
            )
            .unwrap();
            license.install_key(&key).unwrap();
            license.set_host(&host.address()).unwrap();
            license.activate_now().unwrap();
            assert_eq!(license.check().state, State::Licensed);
        })
    });
    group.finish();
    drop(host);
}

criterion_group!(benches, check);
criterion_main!(benches);
