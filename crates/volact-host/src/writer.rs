//! Group commit: requests wait in a queue while one transaction is being committed,
//! then go to the store together, so a commit is shared by every request that arrived
//! meanwhile instead of paid by each. Committing and flushing to disk are two stages:
//! while the disk flushes one batch, the next is already being committed, and one flush
//! covers every batch committed before it. A request is answered only once its batch is
//! durable.
//!
//! Queuing is synchronous so the engine can queue a record while it still holds the
//! count lock: records then reach storage in the order their counts were decided, and no
//! answer can include a client whose own record could still be lost.

use crate::health::StorageHealth;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ActivationRecord, Store};

/// Largest number of requests committed in one transaction.
const MAX_BATCH: usize = 1024;

struct Pending {
    record: ActivationRecord,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle requests are submitted through.
#[derive(Clone)]
pub(crate) struct Writer {
    // Unbounded, because queuing happens under the count lock and must not wait; the
    // queue is bounded in practice by the requests in flight, each waiting for its ack.
    tx: mpsc::UnboundedSender<Pending>,
}

/// A queued record's acknowledgement.
pub(crate) struct Ack(oneshot::Receiver<Result<(), String>>);

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        "the host's storage writer has stopped; restart the host",
    )
}

impl Writer {
    /// Starts the writer task on the current runtime.
    /// Each batch's outcome goes to `health`, for `/healthz`.
    pub(crate) fn start(store: Arc<dyn Store>, health: Arc<StorageHealth>) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx, health));
        Writer { tx }
    }

    /// Queues a record without waiting.
    pub(crate) fn enqueue(&self, record: ActivationRecord) -> Result<Ack, ApiError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { record, done })
            .map_err(|_| unavailable())?;
        Ok(Ack(wait))
    }
}

impl Ack {
    /// Returns once the record is durable.
    pub(crate) async fn wait(self) -> Result<(), ApiError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::StorageFailure,
                format!(
                    "the host could not store this request, so it was not answered: {e}; try again, and check the host's disk"
                ),
            )),
            Err(_) => Err(unavailable()),
        }
    }
}

/// A batch committed but perhaps not yet durable, and who waits for it.
struct Committed {
    token: Result<u64, String>,
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    health: Arc<StorageHealth>,
) {
    // Committing and flushing are two stages: while the disk flushes batch k, this loop
    // already commits batch k+1 (see the store's `record_batch_deferred`).
    let (committed, to_acknowledge) = mpsc::unbounded_channel();
    tokio::spawn(acknowledge(store.clone(), to_acknowledge, health));
    let mut records: Vec<ActivationRecord> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut waiting = Vec::with_capacity(MAX_BATCH.min(64));
        let mut next = Some(first);
        while let Some(p) = next {
            records.push(p.record);
            waiting.push(p.done);
            next = if records.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let requests = records.len();
        // Handed over whole: the store keeps the batch until it has applied it.
        let batch = std::mem::replace(&mut records, Vec::with_capacity(MAX_BATCH.min(64)));
        let token = store
            .record_batch_deferred(batch)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &token {
            tracing::error!(error = %e, requests, "storing a batch of activation requests failed");
        }
        let _ = committed.send(Committed { token, waiting });
    }
}

/// Waits until committed batches are durable, one flush for all that are waiting, and
/// answers their requests in commit order.
async fn acknowledge(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Committed>,
    health: Arc<StorageHealth>,
) {
    let mut batches: Vec<Committed> = Vec::new();
    while let Some(first) = rx.recv().await {
        batches.push(first);
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let through = batches
            .iter()
            .filter_map(|b| b.token.as_ref().ok())
            .copied()
            .max();
        let synced = match through {
            Some(token) => store.sync(token).await.map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Err(e) = &synced {
            tracing::error!(error = %e, "flushing activation requests to disk failed");
        }
        for batch in batches.drain(..) {
            let result = match (batch.token, &synced) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e.clone()),
                (Ok(_), Ok(())) => Ok(()),
            };
            health.record(result.as_ref().map(|_| ()).map_err(String::as_str));
            for done in batch.waiting {
                let _ = done.send(result.clone());
            }
        }
    }
}
