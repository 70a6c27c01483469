//! The host's background upkeep, kept off the request path:
//!
//! - every hour, audit events older than `event_retention` are deleted (in chunks, so
//!   activation batches interleave with them) and old cloned-image sightings forgotten;
//! - every minute, the gauges that need the store are refreshed (clients known, tickets
//!   expiring, cloned images, the hosts registered and when each was last seen) and a
//!   tiny write probes the storage for `/healthz`;
//! - every few seconds, histogram samples are folded into their buckets.
//!
//! Each runs once at start too. Times come from the engine's clock, so a test moving a
//! [`crate::ManualClock`] and asking for a pass with [`Maintenance::run_now`] sees
//! retention applied without waiting an hour.

use crate::clones::CLONE_WINDOW_SECS;
use crate::engine::Engine;
use crate::metrics::StoreGauges;
use jiff::SignedDuration;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use volact_proto::{ApiError, ErrorCode};

/// How often retention is enforced.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often store-backed gauges and the storage probe run.
pub const GAUGES_EVERY: Duration = Duration::from_secs(60);
/// How often histogram samples are folded.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What one full pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Audit events deleted.
    pub pruned: u64,
    /// Cloned-image sightings forgotten.
    pub forgotten: usize,
    /// The gauges read from the store.
    pub gauges: StoreGauges,
}

/// The running upkeep task.
#[derive(Debug)]
pub struct Maintenance {
    trigger: mpsc::Sender<oneshot::Sender<Result<Pass, ApiError>>>,
    task: JoinHandle<()>,
}

fn storage(e: volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the host's storage failed: {e}"),
    )
}

impl Maintenance {
    /// Starts the task on the current runtime.
    pub fn start(engine: Arc<Engine>, retention: SignedDuration) -> Maintenance {
        let (trigger, rx) = mpsc::channel(4);
        let task = tokio::spawn(run(engine, retention, rx));
        Maintenance { trigger, task }
    }

    /// Runs a full pass now, in the task, and returns what it did.
    pub async fn run_now(&self) -> Result<Pass, ApiError> {
        let stopped = || ApiError::new(ErrorCode::Internal, "the maintenance task has stopped");
        let (reply, answer) = oneshot::channel();
        self.trigger.send(reply).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stops the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn every(period: Duration) -> tokio::time::Interval {
    // The first tick is one period away: the start-up pass below has just done the work.
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

async fn run(
    engine: Arc<Engine>,
    retention: SignedDuration,
    mut trigger: mpsc::Receiver<oneshot::Sender<Result<Pass, ApiError>>>,
) {
    // One full pass at start, before any pass asked for is served: a caller of `run_now`
    // then knows no earlier background pass can still overwrite its result (a timer's
    // first tick is not ready on its first poll, so "immediate" ticks would race it).
    if let Err(e) = pass(&engine, retention).await {
        tracing::warn!(error = %e.message, "the start-up maintenance pass failed");
    }
    let (mut prune_tick, mut gauge_tick, mut upkeep_tick) =
        (every(PRUNE_EVERY), every(GAUGES_EVERY), every(UPKEEP_EVERY));
    loop {
        tokio::select! {
            _ = upkeep_tick.tick() => engine.metrics().upkeep(),
            _ = gauge_tick.tick() => {
                if let Err(e) = refresh(&engine).await {
                    tracing::warn!(error = %e.message, "refreshing the metrics from storage failed");
                }
            }
            _ = prune_tick.tick() => {
                if let Err(e) = prune(&engine, retention).await {
                    tracing::warn!(error = %e.message, "deleting old audit events failed; retrying within the hour");
                }
            }
            asked = trigger.recv() => match asked {
                Some(reply) => {
                    let _ = reply.send(pass(&engine, retention).await);
                }
                None => return,
            },
        }
    }
}

/// A full pass: retention, gauges, probe, upkeep.
pub async fn pass(engine: &Engine, retention: SignedDuration) -> Result<Pass, ApiError> {
    let (pruned, forgotten) = prune(engine, retention).await?;
    let gauges = refresh(engine).await?;
    engine.metrics().upkeep();
    Ok(Pass {
        pruned,
        forgotten,
        gauges,
    })
}

/// Deletes audit events older than `retention` and forgets sightings older than a day.
pub async fn prune(engine: &Engine, retention: SignedDuration) -> Result<(u64, usize), ApiError> {
    let now = engine.now().as_second();
    let forgotten = engine
        .clone_tracker()
        .forget_before(now.saturating_sub(CLONE_WINDOW_SECS));
    let before = now.saturating_sub(retention.as_secs());
    let pruned = engine.store().prune_events(before).await.map_err(storage)?;
    engine.metrics().pruned(pruned);
    if pruned > 0 {
        tracing::info!(
            deleted = pruned,
            retention_days = retention.as_secs() / 86_400,
            "deleted audit events older than the retention"
        );
    }
    Ok((pruned, forgotten))
}

/// Probes the storage with a write and reads the store-backed gauges.
pub async fn refresh(engine: &Engine) -> Result<StoreGauges, ApiError> {
    let store = engine.store();
    let now = engine.now().as_second();
    let probe = store.probe_write(now).await;
    match &probe {
        Ok(()) => engine.storage_health().record(Ok(())),
        Err(e) => engine.storage_health().record(Err(&e.to_string())),
    }
    probe.map_err(storage)?;
    let day = 86_400;
    let window = engine.settings().count_window.as_secs();
    let gauges = StoreGauges {
        clients_known: store.client_total().await.map_err(storage)?,
        expiring_7d: store
            .count_expiring_tickets(now, now.saturating_add(7 * day))
            .await
            .map_err(storage)?,
        expiring_30d: store
            .count_expiring_tickets(now, now.saturating_add(30 * day))
            .await
            .map_err(storage)?,
        cloned_clients: store
            .clones(now.saturating_sub(window))
            .await
            .map_err(storage)?
            .len() as u64,
    };
    engine.metrics().set_store_gauges(gauges);
    engine
        .metrics()
        .set_hosts(&store.hosts().await.map_err(storage)?);
    Ok(gauges)
}
