//! Group commit: requests wait in a queue while one batch is being stored and flushed
//! to disk, then go to the store together, so one write and one flush are shared by
//! every request that arrived meanwhile instead of paid by each. A request is answered
//! only once its batch is durable.
//!
//! Storing and flushing are one stage, not two overlapping ones: with the store's
//! journal, storing a batch is one write to the page cache, and starting it only when
//! the previous flush has returned is what makes batches large (a second stage
//! appending while the disk flushes appended one or two requests at a time under load,
//! a system call each). A store writing its database directly (the fallback when
//! another process holds the journal) commits and flushes one after the other.
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

    #[cfg(test)]
    fn start_with(sink: impl Sink, health: Arc<StorageHealth>) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(sink, rx, health));
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

/// What the writer needs of storage: a seam, so tests can hold a write or a flush.
#[async_trait::async_trait]
trait Sink: Send + Sync + 'static {
    /// Stores a batch; returns the token that [`Sink::flush`] makes durable.
    async fn store(&self, batch: Vec<ActivationRecord>) -> Result<u64, String>;
    /// Returns once every batch up to `token` is durable.
    async fn flush(&self, token: u64) -> Result<(), String>;
}

#[async_trait::async_trait]
impl Sink for Arc<dyn Store> {
    async fn store(&self, batch: Vec<ActivationRecord>) -> Result<u64, String> {
        self.record_batch_deferred(batch)
            .await
            .map_err(|e| e.to_string())
    }

    async fn flush(&self, token: u64) -> Result<(), String> {
        self.sync(token).await.map_err(|e| e.to_string())
    }
}

async fn run(
    store: impl Sink,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    health: Arc<StorageHealth>,
) {
    let mut records: Vec<ActivationRecord> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<oneshot::Sender<Result<(), String>>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        // Everything that queued while the last batch was being stored and flushed goes
        // into this one: one write and one flush for all of it.
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
        let result = match store.store(batch).await {
            Ok(token) => store.flush(token).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, requests, "storing a batch of activation requests failed");
        }
        health.record(result.as_ref().map(|_| ()).map_err(String::as_str));
        for done in waiting.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    /// Records the batches it is given; each flush waits for the test's go-ahead.
    #[derive(Default)]
    struct Held {
        batches: Mutex<Vec<Vec<String>>>,
        flushing: Notify,
        go: Notify,
        fail: Mutex<Option<String>>,
    }

    #[async_trait::async_trait]
    impl Sink for Arc<Held> {
        async fn store(&self, batch: Vec<ActivationRecord>) -> Result<u64, String> {
            let ids = batch.into_iter().map(|r| r.client_id).collect();
            let mut batches = self.batches.lock().map_err(|e| e.to_string())?;
            batches.push(ids);
            Ok(batches.len() as u64)
        }

        async fn flush(&self, _token: u64) -> Result<(), String> {
            self.flushing.notify_one();
            self.go.notified().await;
            match self.fail.lock().map_err(|e| e.to_string())?.clone() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    fn record(id: usize) -> ActivationRecord {
        ActivationRecord {
            at: 0,
            client_id: format!("client-{id}"),
            machine_name: String::new(),
            address: String::new(),
            product: String::new(),
            application: String::new(),
            minimum_asked: 0,
            count: 0,
            result: "activated".into(),
            counted: true,
            ticket_id: None,
            ticket_valid_until: None,
        }
    }

    fn answered(ack: &mut Ack) -> bool {
        !matches!(ack.0.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[tokio::test]
    async fn requests_queued_during_a_flush_share_the_next_write_and_flush() {
        let held = Arc::new(Held::default());
        let health = Arc::new(StorageHealth::default());
        let writer = Writer::start_with(held.clone(), health.clone());
        let mut first = writer.enqueue(record(0)).unwrap();
        held.flushing.notified().await;
        let mut rest: Vec<Ack> = (1..=40)
            .map(|i| writer.enqueue(record(i)).unwrap())
            .collect();
        tokio::task::yield_now().await;
        // Stored, but not acknowledged until its flush returns; and nothing more is
        // written while the flush runs, so the forty gather into one batch.
        assert!(!answered(&mut first));
        assert_eq!(held.batches.lock().unwrap().len(), 1);
        held.go.notify_one();
        first.wait().await.unwrap();
        held.flushing.notified().await;
        assert!(rest.iter_mut().all(|a| !answered(a)));
        held.go.notify_one();
        for ack in rest {
            ack.wait().await.unwrap();
        }
        let batches = held.batches.lock().unwrap().clone();
        let expected: Vec<Vec<String>> = vec![
            vec!["client-0".into()],
            (1..=40).map(|i| format!("client-{i}")).collect(),
        ];
        assert_eq!(
            batches, expected,
            "one write for the first request, one for the forty queued behind its flush, in order"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_answers_every_request_of_its_batch_with_storage_failure() {
        let held = Arc::new(Held::default());
        *held.fail.lock().unwrap() = Some("disk full".into());
        let health = Arc::new(StorageHealth::default());
        let writer = Writer::start_with(held.clone(), health.clone());
        let acks: Vec<Ack> = (0..3).map(|i| writer.enqueue(record(i)).unwrap()).collect();
        held.flushing.notified().await;
        held.go.notify_one();
        for ack in acks {
            let e = ack.wait().await.unwrap_err();
            assert_eq!(e.code, ErrorCode::StorageFailure);
            assert!(e.message.contains("disk full"), "{}", e.message);
        }
        assert!(health.problem().is_some_and(|f| f.contains("disk full")));
    }
}
