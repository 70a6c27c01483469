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
//! The answers' signatures are made here too, a batch at a time while the disk flushes
//! it (in shares, one per runtime thread): signed together, tickets cost about a fifth
//! less each than one by one (see `volact_core::token::sign_all`), and the time goes
//! where a batch waits anyway. Each request still gets its own answer's token, and only
//! once its record is durable.
//!
//! Queuing is synchronous so the engine can queue a record while the count is still held
//! for its request (inside `volact_store::count::Count::decide`): records then reach
//! storage in the order their counts were decided, and no answer can include a client
//! whose own record could still be lost.

use crate::health::StorageHealth;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use volact_core::keys::KeyPair;
use volact_core::token::{self, Unsigned};
use volact_proto::{ApiError, ErrorCode};
use volact_store::{ActivationRecord, Store};

/// Largest number of requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// What a request learns of its batch: the signed answer (when it had one to sign), or
/// why the batch could not be stored.
type Outcome = Result<Option<String>, String>;

struct Pending {
    record: ActivationRecord,
    document: Option<Unsigned>,
    done: oneshot::Sender<Outcome>,
}

/// The handle requests are submitted through.
#[derive(Clone)]
pub(crate) struct Writer {
    // Unbounded, because queuing happens while the count is held and must not wait; the
    // queue is bounded in practice by the requests in flight, each waiting for its ack.
    tx: mpsc::UnboundedSender<Pending>,
}

/// A queued record's acknowledgement.
pub(crate) struct Ack(oneshot::Receiver<Outcome>);

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        "the host's storage writer has stopped; restart the host",
    )
}

impl Writer {
    /// Starts the writer task on the current runtime; it signs answers with `key`.
    /// Each batch's outcome goes to `health`, for `/healthz`.
    pub(crate) fn start(store: Arc<dyn Store>, health: Arc<StorageHealth>, key: KeyPair) -> Writer {
        Writer::start_with(store, health, key)
    }

    fn start_with(sink: impl Sink + Clone, health: Arc<StorageHealth>, key: KeyPair) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(sink, rx, health, key));
        Writer { tx }
    }

    /// Queues a record, and the answer to sign once it is stored, without waiting.
    pub(crate) fn enqueue(
        &self,
        record: ActivationRecord,
        document: Option<Unsigned>,
    ) -> Result<Ack, ApiError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                record,
                document,
                done,
            })
            .map_err(|_| unavailable())?;
        Ok(Ack(wait))
    }
}

impl Ack {
    /// Returns once the record is durable, with its answer signed when it had one.
    pub(crate) async fn wait(self) -> Result<Option<String>, ApiError> {
        match self.0.await {
            Ok(Ok(signed)) => Ok(signed),
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

/// Stores and flushes one batch on a task of its own while its answers are signed here:
/// a store whose commit is a round trip to a database (or a flush to disk) leaves the
/// signing to another thread meanwhile, and answers still wait for both.
async fn commit(
    store: impl Sink + Clone,
    batch: Vec<ActivationRecord>,
    documents: Vec<Unsigned>,
    key: Arc<KeyPair>,
) -> Result<Vec<String>, String> {
    let write = tokio::spawn(async move {
        let flush_token = store.store(batch).await?;
        store.flush(flush_token).await
    });
    let signed = sign_spread(&key, documents).await;
    let written = write
        .await
        .map_err(|e| format!("storing the batch stopped: {e}"))?;
    written.and(signed)
}

async fn run(
    store: impl Sink + Clone,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    health: Arc<StorageHealth>,
    key: KeyPair,
) {
    let key = Arc::new(key);
    while let Some(first) = rx.recv().await {
        // Everything that queued while the last batch was being stored and flushed goes
        // into this one: one write and one flush for all of it.
        let mut records = Vec::with_capacity(MAX_BATCH.min(64));
        let mut documents = Vec::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(p) = next {
            records.push(p.record);
            let at = p.document.map(|d| {
                documents.push(d);
                documents.len() - 1
            });
            waiting.push((p.done, at));
            next = if records.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let requests = records.len();
        // Handed over whole: the store encodes it for its journal, or moves it to the
        // thread that writes its database, without copying it.
        let result = commit(store.clone(), records, documents, key.clone()).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, requests, "storing a batch of activation requests failed");
        }
        health.record(result.as_ref().map(|_| ()).map_err(String::as_str));
        deliver(waiting, result);
    }
}

/// Answers every request of a batch with its outcome.
fn deliver(
    waiting: Vec<(oneshot::Sender<Outcome>, Option<usize>)>,
    result: Result<Vec<String>, String>,
) {
    match result {
        Ok(mut signed) => {
            for (done, at) in waiting {
                let answer = at.and_then(|i| signed.get_mut(i)).map(std::mem::take);
                let _ = done.send(Ok(answer));
            }
        }
        Err(e) => {
            for (done, _) in waiting {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

/// Fewest documents worth a task of their own.
const MIN_SHARE: usize = 8;

/// Signs `documents` in shares, one per runtime thread, signed at once: one task signing
/// a whole batch would keep one thread busy while the others wait for its answers.
async fn sign_spread(key: &Arc<KeyPair>, documents: Vec<Unsigned>) -> Result<Vec<String>, String> {
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    let share = documents.len().div_ceil(threads.max(1)).max(MIN_SHARE);
    if documents.len() <= share {
        return Ok(token::sign_all(key, &documents));
    }
    let mut rest = documents;
    let mine: Vec<Unsigned> = rest.drain(..share).collect();
    let mut others = Vec::new();
    while !rest.is_empty() {
        let take = share.min(rest.len());
        let part: Vec<Unsigned> = rest.drain(..take).collect();
        let key = key.clone();
        others.push(tokio::spawn(async move { token::sign_all(&key, &part) }));
    }
    let mut signed = token::sign_all(key, &mine);
    for task in others {
        let part = task
            .await
            .map_err(|e| format!("signing the answers stopped: {e}"))?;
        signed.extend(part);
    }
    Ok(signed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
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

    fn key() -> KeyPair {
        KeyPair::from_seed([9; 32]).unwrap()
    }

    /// A ticket for client `id`, every other one: refusals have nothing to sign.
    fn document(id: usize) -> Option<Unsigned> {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ticket = volact_core::ticket::Ticket {
            jti: format!("t-{id}"),
            sub: format!("client-{id}"),
            product: "p".into(),
            application: "a".into(),
            count: 1,
            minimum: 1,
            iat: now,
            renew_after: now,
            exp: now,
            iss: "h".into(),
            nonce: "n".into(),
            intervals: None,
        };
        (id % 2 == 1).then(|| token::prepare(&ticket).unwrap())
    }

    /// Checks that request `id` got its own ticket, signed by [`key`], or nothing.
    fn check_signed(id: usize, signed: Option<String>) {
        match (document(id), signed) {
            (None, None) => {}
            (Some(_), Some(t)) => {
                let ticket: volact_core::ticket::Ticket =
                    token::verify(key().public(), &t).unwrap();
                assert_eq!(ticket.sub, format!("client-{id}"));
            }
            (wanted, got) => panic!("request {id}: wanted {wanted:?}, got {got:?}"),
        }
    }

    fn answered(ack: &mut Ack) -> bool {
        !matches!(ack.0.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[tokio::test]
    async fn requests_queued_during_a_flush_share_the_next_write_and_flush() {
        let held = Arc::new(Held::default());
        let health = Arc::new(StorageHealth::default());
        let writer = Writer::start_with(held.clone(), health.clone(), key());
        let mut first = writer.enqueue(record(0), document(0)).unwrap();
        held.flushing.notified().await;
        let mut rest: Vec<Ack> = (1..=40)
            .map(|i| writer.enqueue(record(i), document(i)).unwrap())
            .collect();
        tokio::task::yield_now().await;
        // Stored, but not acknowledged until its flush returns; and nothing more is
        // written while the flush runs, so the forty gather into one batch.
        assert!(!answered(&mut first));
        assert_eq!(held.batches.lock().unwrap().len(), 1);
        held.go.notify_one();
        check_signed(0, first.wait().await.unwrap());
        held.flushing.notified().await;
        assert!(rest.iter_mut().all(|a| !answered(a)));
        held.go.notify_one();
        for (i, ack) in (1..).zip(rest) {
            check_signed(i, ack.wait().await.unwrap());
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
        let writer = Writer::start_with(held.clone(), health.clone(), key());
        let acks: Vec<Ack> = (0..3)
            .map(|i| writer.enqueue(record(i), document(i)).unwrap())
            .collect();
        held.flushing.notified().await;
        held.go.notify_one();
        for ack in acks {
            let e = ack.wait().await.unwrap_err();
            assert_eq!(e.code, ErrorCode::StorageFailure);
            assert!(e.message.contains("disk full"), "{}", e.message);
        }
        assert!(health.problem().is_some_and(|f| f.contains("disk full")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn answers_signed_in_shares_come_back_in_order() {
        let key = Arc::new(key());
        let ids: Vec<usize> = (0..75).map(|i| 2 * i + 1).collect();
        let documents: Vec<Unsigned> = ids.iter().filter_map(|&i| document(i)).collect();
        let signed = sign_spread(&key, documents).await.unwrap();
        assert_eq!(signed.len(), ids.len());
        for (&i, token) in ids.iter().zip(signed) {
            check_signed(i, Some(token));
        }
        assert!(sign_spread(&key, Vec::new()).await.unwrap().is_empty());
    }
}
