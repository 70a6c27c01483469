//! The host never loses an activation it has acknowledged: activations over HTTP, then
//! `kill -9` of the serving `volact` process (after the last answer, and while requests
//! are in flight), a restart on the same data directory, and checks that every
//! acknowledged client is still counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, activation_request, app_count, host_status, provision};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::task::JoinSet;
use volact_engine::storage::{DEFAULT_STORAGE_URL, OpenMode, open_store};
use volact_store::{ClientFilter, ClientRecord};

const APPLICATION: &str = "acme-suite";
const PRODUCT: &str = "suite-desktop";
const MINIMUM: u32 = 3;

fn http_client() -> reqwest::Client {
    // reqwest has TLS without a provider of its own: ring, as in the binary.
    volact_client::tls::install_default_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// One activation request; `Some(answer)` when the host acknowledged it with HTTP 200.
async fn ask(client: reqwest::Client, url: String, body: Value) -> Option<Value> {
    let response = client
        .post(format!("{url}/v1/activations"))
        .json(&body)
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    response.json::<Value>().await.ok()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Sends one request per client id, at most `parallel` at a time; returns the
/// acknowledged answers by client id.
async fn batch(url: &str, key: &str, ids: &[String], parallel: usize) -> BTreeMap<String, Value> {
    let client = http_client();
    let mut acked = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut next = ids.iter();
    loop {
        while tasks.len() < parallel {
            let Some(id) = next.next() else { break };
            let (body, _) = activation_request(id, key, MINIMUM);
            let (client, url, id) = (client.clone(), url.to_string(), id.clone());
            tasks.spawn(async move { (id, ask(client, url, body).await) });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (id, answer) = done.unwrap();
        if let Some(answer) = answer {
            acked.insert(id, answer);
        }
    }
    acked
}

fn count_of(answer: &Value) -> u64 {
    answer["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {answer:#}"))
}

/// What a kill in flight left: the acknowledged answers by client id, and how many
/// requests had been sent but were still unanswered when the host died.
struct Killed {
    acked: BTreeMap<String, Value>,
    in_flight: usize,
}

/// Sends one request per id, all at once, and kills the server with SIGKILL as soon as
/// `kill_after` answers have arrived; returns the acknowledged answers (including any
/// that arrive after the kill) and how many requests never got an answer, which were in
/// flight when the host died: every request was sent before the kill, so an unanswered
/// one died with the host.
fn kill_in_flight(
    rt: &tokio::runtime::Runtime,
    server: Server,
    key: &str,
    ids: &[String],
    kill_after: usize,
) -> Killed {
    let url = server.url.clone();
    let mut server = Some(server);
    let acked = rt.block_on(async {
        let client = http_client();
        let mut acked = BTreeMap::new();
        let mut tasks = JoinSet::new();
        for id in ids {
            let (body, _) = activation_request(id, key, MINIMUM);
            let (client, url, id) = (client.clone(), url.clone(), id.clone());
            tasks.spawn(async move { (id, ask(client, url, body).await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (id, answer) = done.unwrap();
            if let Some(answer) = answer {
                acked.insert(id, answer);
            }
            if acked.len() >= kill_after
                && let Some(s) = server.take()
            {
                s.kill();
            }
        }
        acked
    });
    drop(server);
    assert!(acked.len() >= kill_after, "only {} answered", acked.len());
    let in_flight = ids.len() - acked.len();
    Killed { acked, in_flight }
}

/// Kills the host in flight until a kill leaves at least one request unanswered (a host
/// that answers the whole burst in one group commit before the kill lands proves
/// nothing about requests in flight), at most `tries` times.
fn kill_until_in_flight(
    rt: &tokio::runtime::Runtime,
    data: &std::path::Path,
    key: &str,
    per_try: usize,
    tries: usize,
) -> (Vec<String>, Killed) {
    let mut sent = Vec::new();
    for _ in 0..tries {
        let server = Server::start(data, &[]);
        let ids: Vec<String> = (0..per_try).map(|_| new_id()).collect();
        sent.extend(ids.iter().cloned());
        let killed = kill_in_flight(rt, server, key, &ids, 20);
        if killed.in_flight > 0 {
            return (sent, killed);
        }
    }
    panic!("in {tries} kills the host had always answered every request before it died");
}

/// The clients the store holds after a crash, by client id, read from the data
/// directory the way a restarted host reads it.
fn stored_clients(
    rt: &tokio::runtime::Runtime,
    data: &std::path::Path,
) -> BTreeMap<String, ClientRecord> {
    rt.block_on(async {
        let store = open_store(DEFAULT_STORAGE_URL, data, OpenMode::Serve)
            .await
            .unwrap();
        let clients = store.clients(&ClientFilter::default()).await.unwrap();
        store.close().await;
        clients
            .into_iter()
            .map(|c| (c.client_id.clone(), c))
            .collect()
    })
}

/// Every acknowledged client is in the store, counted for the application, one by one.
#[track_caller]
fn assert_each_stored(
    stored: &BTreeMap<String, ClientRecord>,
    acked: &BTreeMap<String, Value>,
    context: &str,
) {
    for (id, answer) in acked {
        let Some(row) = stored.get(id) else {
            panic!("{context}: client {id} was answered ({answer}) but is not stored");
        };
        assert_eq!(row.application, APPLICATION, "{context}: {id}: {row:?}");
        assert!(
            row.last_counted.is_some(),
            "{context}: {id} is stored but not counted: {row:?}"
        );
    }
}

#[test]
fn acknowledged_activations_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let key = fx.key(PRODUCT).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // --- Phase 1: 40 distinct clients, 8 in flight, all acknowledged; kill -9 at once.
    let server = Server::start(&fx.data, &[]);
    let ids: Vec<String> = (0..40).map(|_| new_id()).collect();
    let acked = rt.block_on(batch(&server.url, &key, &ids, 8));
    server.kill();
    assert_eq!(acked.len(), ids.len(), "every request should be answered");
    // Each new client saw a distinct count: no two requests were counted as one.
    let counts: BTreeSet<u64> = acked.values().map(count_of).collect();
    assert_eq!(counts, (1..=40).collect::<BTreeSet<u64>>(), "{acked:#?}");
    for (id, answer) in &acked {
        let expected = if count_of(answer) >= u64::from(MINIMUM) {
            "activated"
        } else {
            "count-insufficient"
        };
        assert_eq!(answer["result"], expected, "{id}: {answer:#}");
        assert_eq!(answer["application"], APPLICATION);
        assert_eq!(answer["ticket"].is_string(), expected == "activated");
    }

    // Restarted on the same data, the host still knows all 40.
    let status = host_status(&fx.data);
    assert_eq!(app_count(&status, APPLICATION), 40, "{status:#}");
    assert_eq!(status["clients_known"], 40, "{status:#}");
    assert_eq!(status["requests"], 40, "{status:#}");
    assert_each_stored(
        &stored_clients(&rt, &fx.data),
        &acked,
        "after the first kill",
    );

    // --- Phase 2: kill -9 while requests are in flight (at least one left unanswered).
    let (more, killed) = kill_until_in_flight(&rt, &fx.data, &key, 60, 5);
    let acked2 = killed.acked;
    assert_each_stored(
        &stored_clients(&rt, &fx.data),
        &acked2,
        "after the kill in flight",
    );

    // Restart: everything acknowledged before the kill is counted; at most what was sent.
    let status = host_status(&fx.data);
    let after = app_count(&status, APPLICATION);
    let acked_total = (acked.len() + acked2.len()) as u64;
    let sent_total = (ids.len() + more.len()) as u64;
    assert!(
        (acked_total..=sent_total).contains(&after),
        "count {after} after the kill; {acked_total} acknowledged, {sent_total} sent\n{status:#}"
    );
    let known = status["clients_known"].as_u64().unwrap();
    assert!(known >= acked_total, "{status:#}");
    eprintln!(
        "in-flight kill: {} answered, {} in flight; {after} clients counted after the restart",
        acked2.len(),
        killed.in_flight
    );

    // Every acknowledged client, asking again, finds itself counted: the count does not
    // move. A client the host had forgotten would raise it.
    let server = Server::start(&fx.data, &[]);
    let everyone: Vec<String> = acked.keys().chain(acked2.keys()).cloned().collect();
    let again = rt.block_on(batch(&server.url, &key, &everyone, 8));
    assert_eq!(
        again.len(),
        everyone.len(),
        "every renewal should be answered"
    );
    for (id, answer) in &again {
        assert_eq!(count_of(answer), after, "{id}: {answer:#}");
        assert_eq!(answer["result"], "activated", "{id}: {answer:#}");
    }
    // The next new client is counted on top.
    let newcomer = vec![new_id()];
    let next = rt.block_on(batch(&server.url, &key, &newcomer, 1));
    assert_eq!(count_of(&next[&newcomer[0]]), after + 1, "{next:#?}");
    server.kill();

    let status = host_status(&fx.data);
    assert_eq!(app_count(&status, APPLICATION), after + 1, "{status:#}");
}

/// Stricter than "acknowledged clients survive": no acknowledged answer may report a count
/// the host cannot reproduce after a crash. The engine queues each record for storage
/// before it releases the count lock, so records are committed in the order their counts
/// were decided; were it otherwise, a later-decided request could be answered (its count
/// including an earlier client) before that earlier client's record is stored, and
/// `kill -9` would lose it. Racy by nature, so it is tried in several rounds.
#[test]
fn answered_counts_are_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let key = fx.key(PRODUCT).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut acked_before = BTreeMap::new();
    let mut rounds_in_flight = 0;
    for round in 0..40 {
        let server = Server::start(&fx.data, &[]);
        let ids: Vec<String> = (0..60).map(|_| new_id()).collect();
        let Killed { acked, in_flight } = kill_in_flight(&rt, server, &key, &ids, 20);
        rounds_in_flight += usize::from(in_flight > 0);
        let status = host_status(&fx.data);
        let after = app_count(&status, APPLICATION);
        for answer in acked.values() {
            assert!(
                count_of(answer) <= after,
                "round {round}: an answer said count {} but only {after} clients were stored",
                count_of(answer)
            );
        }
        // Not only the total: each client answered in this round or any earlier one is
        // still stored and counted.
        acked_before.extend(acked);
        assert_each_stored(
            &stored_clients(&rt, &fx.data),
            &acked_before,
            &format!("round {round}"),
        );
    }
    eprintln!("{rounds_in_flight} of 40 kills left requests in flight");
    // Kills that land after the whole burst was answered test nothing in flight; most
    // must not.
    assert!(
        rounds_in_flight >= 20,
        "only {rounds_in_flight} of 40 kills left requests in flight"
    );
}
