//! `volact host seed-clients` (the `bench-seed` feature): fills a host's inventory with
//! counted clients for benchmarks. Never in a release build: in a real host's hands it
//! lifts any application past its minimum in one command.

use crate::output::Output;
use std::path::Path;
use volact_engine::data::HostData;
use volact_engine::storage::{OpenMode, open_configured};
use volact_proto::{ApiError, ErrorCode};
use volact_sim::load;
use volact_store::ActivationRecord;

/// Mixed into the seed of seeded client ids, so a bench run with its default seed sends
/// new clients to a seeded host; `volact bench --seed` with the mixed value (reported as
/// `bench_seed`) renews the seeded ones.
const SEEDED_IDS: u64 = 0xC0FF_EE00;

/// Rows per transaction when seeding: large, so a million clients take seconds.
const SEED_BATCH: usize = 20_000;

/// `volact host seed-clients`: writes `count` counted clients of the catalog's first
/// product straight into the host's store, spread over the last 29 days so all of them
/// count when the host starts. For benchmarks; the host must not be running.
pub async fn seed_clients(
    data: &Path,
    storage: crate::cli::StorageFlag,
    count: u64,
    seed: u64,
    out: Output,
) -> Result<(), ApiError> {
    let host = HostData::new(data);
    let (_, catalog) = host.vendor()?;
    // Refused while a host serves the directory: its count would not know these clients.
    let _lock = host.lock("seeding clients")?;
    let product = catalog
        .products
        .first()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidState, "the catalog lists no product"))?;
    let config = host.config(storage.into())?;
    let store = open_configured(&config, host.dir(), OpenMode::Direct).await?;
    let bench_seed = seed ^ SEEDED_IDS;
    let now = volact_engine::whole_seconds(jiff::Timestamp::now()).as_second();
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(SEED_BATCH);
    for i in 0..count {
        let at = now - i64::try_from(i % (29 * 86_400)).unwrap_or(0);
        batch.push(ActivationRecord {
            at,
            client_id: load::client_id(bench_seed, i),
            machine_name: format!("seeded-{i}"),
            address: "127.0.0.1".into(),
            product: product.id.clone(),
            application: product.application.clone(),
            minimum_asked: product.minimum_count,
            count: 0,
            result: "activated".into(),
            counted: true,
            ticket_id: None,
            ticket_valid_until: None,
        });
        if batch.len() == SEED_BATCH || i + 1 == count {
            store.record_batch(&batch).await.map_err(|e| {
                ApiError::new(ErrorCode::StorageFailure, format!("seeding failed: {e}"))
            })?;
            batch.clear();
        }
    }
    store.close().await;
    let report = serde_json::json!({
        "clients": count,
        "product": product.id,
        "seconds": started.elapsed().as_secs_f64(),
        "bench_seed": bench_seed,
    });
    out.result(&report, || {
        format!(
            "Seeded {count} clients of {} in {:.1} s.\nRenew them with: volact bench --url URL --setup-key KEY --clients {count} --seed {bench_seed}\n",
            product.id,
            started.elapsed().as_secs_f64()
        )
    });
    Ok(())
}
