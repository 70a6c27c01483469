//! Criterion benchmark of the vendor service's store: one host admission (replay check,
//! the key's host and activation counts, the answered nonce and the host's record, in one
//! `BEGIN IMMEDIATE` transaction), as `volact vendor serve` runs it for each online host
//! activation (`vendor/admit`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Instant;
use volact_store::vendor::{HostAdmission, VendorStore};
use volact_store_sqlite::VendorSqliteStore;

fn admission(i: u64) -> HostAdmission {
    // Six hosts per key, each activated once: the store holds keys of a realistic shape.
    HostAdmission {
        key_id: format!("hk-{:016x}", i / 6),
        host_id: format!("h-{i:016x}"),
        host_public_key: format!("k4.public.{i:043}"),
        nonce: format!("{i:032x}"),
        at: 1_800_000_000,
        certificate_expires: 1_800_000_000 + 365 * 86_400,
        max_hosts: 6,
        max_activations: 10,
    }
}

fn admit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // VOLACT_BENCH_DIR=/dev/shm measures the CPU cost alone, without the disk's fsync.
    let dir = match std::env::var_os("VOLACT_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = rt
        .block_on(VendorSqliteStore::open(&dir.path().join("vendor.db")))
        .unwrap();
    let mut next = 0u64;
    c.bench_function("vendor/admit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    next += 1;
                    store.admit(&admission(next)).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
}

criterion_group!(benches, admit);
criterion_main!(benches);
