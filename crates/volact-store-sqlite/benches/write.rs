//! Criterion benchmarks of the store's write path: one group-commit batch of activation
//! records made durable in the journal, as the host's writer sends it and a request
//! waits for it (`store/record_batch`), and the same batch applied straight to the
//! inventory and audit log, as the journal is applied in the background (`store/apply`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use volact_store::{ActivationRecord, Store};
use volact_store_sqlite::SqliteStore;

fn record(i: u64, at: i64) -> ActivationRecord {
    ActivationRecord {
        at,
        client_id: format!("0f8e5a52-8d1c-4f3c-9b1e-{:012x}", i),
        machine_name: format!("bench-{i}"),
        address: "127.0.0.1".into(),
        product: "demo-os-workstation".into(),
        application: "demo-os".into(),
        minimum_asked: 25,
        count: 1000,
        result: "activated".into(),
        counted: true,
        ticket_id: Some(format!("t-{i:024x}")),
        ticket_valid_until: Some(at + 180 * 86_400),
    }
}

fn write_path(c: &mut Criterion) {
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
    let journaled = rt
        .block_on(SqliteStore::open(&dir.path().join("journaled.db")))
        .unwrap();
    let direct = rt
        .block_on(SqliteStore::open_direct(&dir.path().join("direct.db")))
        .unwrap();
    for (name, store, sizes) in [
        ("store/record_batch", &journaled, &[1usize, 64, 512][..]),
        ("store/apply", &direct, &[512, 8192][..]),
    ] {
        let mut group = c.benchmark_group(name);
        for &size in sizes {
            let mut n = 0u64;
            let mut at = 1_800_000_000i64;
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(format!("{size}-records"), |b| {
                b.iter(|| {
                    // Clients recur over 100,000 ids, so most records update an existing row.
                    let batch: Vec<ActivationRecord> = (0..size as u64)
                        .map(|k| record((n + k) % 100_000, at))
                        .collect();
                    n += size as u64;
                    at += 1;
                    rt.block_on(store.record_batch(&batch)).unwrap();
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, write_path);
criterion_main!(benches);
