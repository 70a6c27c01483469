//! Group commit: requests wait in a queue while one transaction is being made durable,
//! then go to the store together, so an fsync is shared by every request that arrived
//! meanwhile instead of paid by each. A request is answered only after its batch commits.

use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ActivationRecord, Store};

/// Largest number of requests committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests that may wait before senders are slowed down.
const QUEUE: usize = 16 * 1024;

struct Pending {
    record: ActivationRecord,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle requests are submitted through.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub(crate) fn start(store: Arc<dyn Store>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Writer { tx }
    }

    /// Stores a record; returns once it is durable.
    pub(crate) async fn submit(&self, record: ActivationRecord) -> Result<(), ApiError> {
        let (done, wait) = oneshot::channel();
        let unavailable = || {
            ApiError::new(
                ErrorCode::StorageFailure,
                "the host's storage writer has stopped; restart the host",
            )
        };
        self.tx
            .send(Pending { record, done })
            .await
            .map_err(|_| unavailable())?;
        match wait.await {
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

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>) {
    let mut records: Vec<ActivationRecord> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<oneshot::Sender<Result<(), String>>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
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
        let result = store
            .record_batch(&records)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, requests = records.len(), "storing a batch of activation requests failed");
        }
        records.clear();
        for done in waiting.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}
