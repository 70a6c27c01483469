//! Several hosts, one count: two `volact host serve` processes on one PostgreSQL
//! database, each with its own identity and host certificate from one host key. They
//! share the count (a client is counted once whichever host it asks, and every host's
//! view follows the others' within the promised lag), the seat cap, revocations, and
//! the inventory; a host killed with SIGKILL or a database stopped under load loses
//! nothing acknowledged. The tests start their own PostgreSQL (volact-testkit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Fixture, Server, activation_request, provision_with};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use volact_client::admin::AdminClient;
use volact_testkit::postgres::TestPostgres;

/// One product whose count must reach 25, as a KMS workstation's.
const CATALOG: &str = r#"
vendor = "Acme Test Vendor"

[[application]]
id = "acme-os"
name = "Acme OS"

[[product]]
id = "os-workstation"
name = "Acme OS Workstation"
application = "acme-os"
kind = "workstation"

[[key_group]]
id = "all"
name = "Everything"
products = ["os-workstation"]
"#;

const APPLICATION: &str = "acme-os";
const PRODUCT: &str = "os-workstation";
const MINIMUM: u32 = 25;

/// What docs/HIGH-AVAILABILITY.md promises: another host's new client reaches a host's
/// count within this lag, and a revocation every host within [`REVOCATION`].
const LAG: Duration = Duration::from_secs(1);
const REVOCATION: Duration = Duration::from_secs(2);

/// A vendor, one host key, and two hosts activated with it, serving on one database.
struct Site {
    _tmp: tempfile::TempDir,
    fx: Fixture,
    data: [PathBuf; 2],
    storage_url: String,
    hosts: [Option<Server>; 2],
}

impl Site {
    fn new(pg: &TestPostgres, seats: Option<u32>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let fx = provision_with(tmp.path(), "all", CATALOG, seats);
        let second = tmp.path().join("host-b");
        fx.activate_host(&second);
        let storage_url = pg.url(&pg.create_database().unwrap());
        let data = [fx.data.clone(), second];
        let hosts = [
            Some(Server::start(&data[0], &["--storage-url", &storage_url])),
            Some(Server::start(&data[1], &["--storage-url", &storage_url])),
        ];
        Site {
            _tmp: tmp,
            fx,
            data,
            storage_url,
            hosts,
        }
    }

    fn key(&self) -> String {
        self.fx.key(PRODUCT).to_string()
    }

    fn url(&self, host: usize) -> String {
        self.hosts[host].as_ref().unwrap().url.clone()
    }

    fn urls(&self) -> [String; 2] {
        [self.url(0), self.url(1)]
    }

    fn admin(&self, host: usize) -> AdminClient {
        let token = volact_engine::data::HostData::new(self.data[host].clone())
            .admin_token()
            .unwrap();
        AdminClient::new(
            &self.url(host),
            &token,
            &volact_client::tls::TlsTrust::default(),
        )
        .unwrap()
    }

    fn restart(&mut self, host: usize) {
        self.hosts[host] = Some(Server::start(
            &self.data[host],
            &["--storage-url", &self.storage_url],
        ));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn http_client() -> reqwest::Client {
    volact_client::tls::install_default_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn id(n: u64) -> String {
    uuid::Uuid::from_u128(0x2000_0000_0000_4000_8000_0000_0000_0000 + u128::from(n))
        .hyphenated()
        .to_string()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// One activation request; `None` when the host could not be reached (it died).
async fn ask(
    http: &reqwest::Client,
    url: &str,
    client_id: &str,
    key: &str,
) -> Option<(u16, Value)> {
    let (body, _) = activation_request(client_id, key, MINIMUM);
    let response = http
        .post(format!("{url}/v1/activations"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

async fn ask_ok(http: &reqwest::Client, url: &str, client_id: &str, key: &str) -> Value {
    let (status, answer) = ask(http, url, client_id, key).await.unwrap();
    assert_eq!(status, 200, "{client_id} at {url}: {answer:#}");
    answer
}

/// The count the running host answers with now: its live view, as `/metrics` shows it
/// (the status report reads the shared store instead).
async fn live_count(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("volact_application_count{{application=\"{APPLICATION}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until the host at `url` counts `expected`, at most `within`; returns how long
/// it took.
async fn reaches(url: &str, expected: u64, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let now = live_count(url).await;
        if now == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: the host still counts {now}, not {expected}, after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn number(pg: &TestPostgres, database_url: &str, sql: &str) -> u64 {
    let database = database_url.rsplit('/').next().unwrap();
    pg.query(database, sql).unwrap().trim().parse().unwrap()
}

fn stored_ids(pg: &TestPostgres, database_url: &str) -> BTreeSet<String> {
    let database = database_url.rsplit('/').next().unwrap();
    pg.query(
        database,
        "SELECT client_id FROM clients WHERE last_counted IS NOT NULL",
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn two_hosts_on_one_database_share_one_count() {
    let Some(pg) = TestPostgres::shared("two_hosts_on_one_database_share_one_count").unwrap()
    else {
        return;
    };
    let site = Site::new(&pg, None);
    let key = site.key();
    let urls = site.urls();
    let rt = runtime();
    rt.block_on(async {
        let http = http_client();
        let mut worst = Duration::ZERO;
        // 24 clients, each to the host the previous one did not ask: refused with a
        // count rising by one, seen by the other host within the lag.
        for n in 1..=24u64 {
            let (here, there) = ((n % 2) as usize, ((n + 1) % 2) as usize);
            let answer = ask_ok(&http, &urls[here], &id(n), &key).await;
            assert_eq!(answer["result"], "count-insufficient", "{answer:#}");
            assert_eq!(answer["count"], n, "{answer:#}");
            let lag = reaches(&urls[there], n, LAG, "the other host").await;
            worst = worst.max(lag);
        }
        // The 25th activates, on either host.
        let answer = ask_ok(&http, &urls[1], &id(25), &key).await;
        assert_eq!(answer["result"], "activated", "{answer:#}");
        assert_eq!(answer["count"], 25, "{answer:#}");
        for url in &urls {
            worst = worst.max(reaches(url, 25, LAG, "both hosts").await);
        }
        // A client asking both hosts is counted once: renewals change nothing.
        for (host, n) in [(0, 25), (1, 2), (0, 1)] {
            let answer = ask_ok(&http, &urls[host], &id(n), &key).await;
            assert_eq!(answer["result"], "activated", "{answer:#}");
            assert_eq!(answer["count"], 25, "{answer:#}");
        }
        for url in &urls {
            assert_eq!(live_count(url).await, 25);
        }
        // Each host says how fresh its view of the others is.
        for url in &urls {
            let text = reqwest::get(format!("{url}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let age: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("volact_count_feed_age_seconds "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no feed age in\n{text}"));
            assert!(age < LAG.as_secs_f64(), "{age}");
        }
        eprintln!("slowest view of the other host's new client: {worst:?}");
    });
    assert_eq!(
        number(&pg, &site.storage_url, "SELECT count(*) FROM clients"),
        25
    );
    // Both hosts registered in the store.
    assert_eq!(
        number(&pg, &site.storage_url, "SELECT count(*) FROM hosts"),
        2
    );
}

#[test]
fn a_revocation_on_one_host_refuses_the_client_on_the_other_within_two_seconds() {
    let Some(pg) = TestPostgres::shared("a_revocation_on_one_host_refuses").unwrap() else {
        return;
    };
    let site = Site::new(&pg, None);
    let key = site.key();
    let urls = site.urls();
    let rt = runtime();
    rt.block_on(async {
        let http = http_client();
        let victim = id(1);
        ask_ok(&http, &urls[0], &victim, &key).await;
        ask_ok(&http, &urls[1], &victim, &key).await;
        // Revoked on host A: host B refuses it within the promised delay.
        site.admin(0).revoke(&victim, Some("stolen")).await.unwrap();
        let started = Instant::now();
        let took = loop {
            let (status, answer) = ask(&http, &urls[1], &victim, &key).await.unwrap();
            if answer["code"] == "client-revoked" {
                assert_eq!(status, 403, "{answer:#}");
                break started.elapsed();
            }
            assert_eq!(status, 200, "{answer:#}");
            assert!(
                started.elapsed() < REVOCATION,
                "host B still serves the client revoked on host A after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // And lifted on host B: host A serves it again within the same delay.
        site.admin(1).unrevoke(&victim).await.unwrap();
        let started = Instant::now();
        loop {
            let (status, answer) = ask(&http, &urls[0], &victim, &key).await.unwrap();
            if status == 200 {
                break;
            }
            assert_eq!(answer["code"], "client-revoked", "{answer:#}");
            assert!(started.elapsed() < REVOCATION, "still refused on host A");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("revocation on A reached B after {took:?}");
    });
}

#[test]
fn the_seat_cap_holds_across_hosts_under_four_concurrent_loads() {
    let Some(pg) = TestPostgres::shared("the_seat_cap_holds_across_hosts").unwrap() else {
        return;
    };
    const CAP: u64 = 100;
    let site = Site::new(&pg, Some(CAP as u32));
    let key = site.key();
    let urls = site.urls();
    let rt = runtime();
    let (admitted, refused) = rt.block_on(async {
        let http = http_client();
        let mut loads = JoinSet::new();
        // Four loads, 50 fresh clients each, alternating hosts, 4 requests in flight each.
        for load in 0..4usize {
            let (http, key, urls) = (http.clone(), key.clone(), urls.clone());
            loads.spawn(async move {
                let mut answers = Vec::new();
                let ids: Vec<String> = (0..50).map(|_| new_id()).collect();
                for chunk in ids.chunks(4) {
                    let mut inflight = JoinSet::new();
                    for (i, client) in chunk.iter().enumerate() {
                        let (http, key, url) =
                            (http.clone(), key.clone(), urls[(load + i) % 2].clone());
                        let client = client.clone();
                        inflight.spawn(async move { ask(&http, &url, &client, &key).await });
                    }
                    while let Some(done) = inflight.join_next().await {
                        answers.push(done.unwrap().unwrap());
                    }
                }
                answers
            });
        }
        let (mut admitted, mut refused) = (0u64, 0u64);
        while let Some(done) = loads.join_next().await {
            for (status, answer) in done.unwrap() {
                match status {
                    200 => admitted += 1,
                    _ => {
                        assert_eq!(answer["code"], "seat-limit-reached", "{answer:#}");
                        refused += 1;
                    }
                }
            }
        }
        // Both hosts' views settle on the cap, never above it.
        for host in 0..2 {
            reaches(&site.url(host), CAP, LAG, "after the loads").await;
        }
        (admitted, refused)
    });
    assert_eq!((admitted, refused), (CAP, 200 - CAP));
    assert_eq!(
        number(
            &pg,
            &site.storage_url,
            "SELECT count(*) FROM clients WHERE last_counted IS NOT NULL AND NOT revoked"
        ),
        CAP
    );
}

/// Fresh clients, `parallel` at a time, each asking host `n % 2` first and the other
/// when that one cannot be reached (as a client fails over between SRV targets); calls
/// `progress` with the number acknowledged after each answer. Returns the acknowledged
/// ids and the other answers.
async fn failover_load(
    urls: &[String; 2],
    key: &str,
    clients: usize,
    parallel: usize,
    mut progress: impl FnMut(usize),
) -> (BTreeSet<String>, Vec<Value>) {
    let http = http_client();
    let mut acked = BTreeSet::new();
    let mut other = Vec::new();
    let mut tasks = JoinSet::new();
    let mut next = 0;
    loop {
        while tasks.len() < parallel && next < clients {
            let (http, key, urls) = (http.clone(), key.to_string(), urls.clone());
            let first = next % 2;
            next += 1;
            tasks.spawn(async move {
                let client = new_id();
                for url in [&urls[first], &urls[1 - first]] {
                    if let Some(answer) = ask(&http, url, &client, &key).await {
                        return (client, Some(answer));
                    }
                }
                (client, None)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        match done.unwrap() {
            (client, Some((200, _))) => {
                acked.insert(client);
            }
            (_, Some((_, answer))) => other.push(answer),
            (client, None) => other.push(serde_json::json!({ "unreachable": client })),
        }
        progress(acked.len());
    }
    (acked, other)
}

#[test]
fn a_host_killed_under_load_loses_nothing_and_its_clients_carry_on_against_the_other() {
    let Some(pg) = TestPostgres::shared("a_host_killed_under_load").unwrap() else {
        return;
    };
    let mut site = Site::new(&pg, None);
    let key = site.key();
    let urls = site.urls();
    let rt = runtime();
    let mut victim = site.hosts[0].take();
    let (acked, other) = rt.block_on(failover_load(&urls, &key, 240, 8, |acked| {
        if acked >= 60
            && let Some(host) = victim.take()
        {
            host.kill();
        }
    }));
    assert!(victim.is_none(), "the load ended before the kill");
    assert!(other.is_empty(), "{other:#?}");
    assert_eq!(acked.len(), 240, "every client carried on against host B");
    // Host A comes back on the same database: every acknowledged client is there, and
    // both hosts count them all.
    site.restart(0);
    let stored = stored_ids(&pg, &site.storage_url);
    let missing: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    rt.block_on(async {
        for host in 0..2 {
            reaches(
                &site.url(host),
                stored.len() as u64,
                LAG,
                "after the restart",
            )
            .await;
        }
    });
}

#[test]
fn postgres_stopped_under_load_answers_storage_failure_and_loses_nothing() {
    // A cluster of its own: this test stops it.
    let Some(pg) = TestPostgres::start("postgres_stopped_under_load").unwrap() else {
        return;
    };
    let site = Site::new(&pg, None);
    let key = site.key();
    let urls = site.urls();
    let rt = runtime();
    let acked_now = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    // Eight workers, each asking one request at a time (a request waits up to the
    // pool's acquire timeout while the database is down), bounded in count and time.
    let workers: Vec<_> = (0..8usize)
        .map(|worker| {
            let (acked_now, failures, stop, acked) = (
                acked_now.clone(),
                failures.clone(),
                stop.clone(),
                acked.clone(),
            );
            let (key, urls) = (key.clone(), urls.clone());
            rt.spawn(async move {
                let http = http_client();
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut other = Vec::new();
                for n in 0..5_000usize {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let client = new_id();
                    match ask(&http, &urls[(worker + n) % 2], &client, &key).await {
                        Some((200, _)) => {
                            acked.lock().unwrap().insert(client);
                            acked_now.fetch_add(1, Ordering::SeqCst);
                        }
                        Some((503, answer)) if answer["code"] == "storage-failure" => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        answer => other.push(format!("{answer:?}")),
                    }
                }
                other
            })
        })
        .collect();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("activations before the stop", &|| {
        acked_now.load(Ordering::SeqCst) >= 30
    });
    pg.stop().unwrap();
    wait_for("storage-failure answers", &|| {
        failures.load(Ordering::SeqCst) >= 10
    });
    let acked_while_down = acked_now.load(Ordering::SeqCst);
    pg.start_again().unwrap();
    wait_for("activations after the restart", &|| {
        acked_now.load(Ordering::SeqCst) >= acked_while_down + 30
    });
    stop.store(true, Ordering::SeqCst);
    let other: Vec<String> = workers
        .into_iter()
        .flat_map(|w| rt.block_on(w).unwrap())
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:#?}");
    let acked = acked.lock().unwrap().clone();
    let stored = stored_ids(&pg, &site.storage_url);
    let missing: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    eprintln!(
        "{} acknowledged, {} storage-failure answers while PostgreSQL was down",
        acked.len(),
        failures.load(Ordering::SeqCst)
    );
}

/// Two hosts on one database report usage to the vendor service: both reports carry
/// the store's id, and the vendor's dashboard counts their one count once (3 clients,
/// not 3 per host).
#[test]
fn the_vendor_counts_a_shared_count_once() {
    use common::vendor::{
        activate_online, dashboard_login, dashboard_page, host_with_key, issue_key,
        report_every_second, vendor_serve,
    };
    use common::{run, s};
    let Some(pg) = TestPostgres::shared("the_vendor_counts_a_shared_count_once").unwrap() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision_with(tmp.path(), "all", CATALOG, None);
    let (_service, url) = vendor_serve(&fx, &[]);
    let issued = issue_key(&fx, &url, "Shared Corp", "all");
    let storage_url = pg.url(&pg.create_database().unwrap());
    let hosts: Vec<Server> = ["host-a", "host-b"]
        .iter()
        .map(|name| {
            let data = host_with_key(&fx, tmp.path(), name, issued["host_key"].as_str().unwrap());
            activate_online(&data, &url).ok();
            report_every_second(&data);
            Server::start(&data, &["--storage-url", &storage_url])
        })
        .collect();
    let key = fx.key(PRODUCT).to_string();
    let rt = runtime();
    rt.block_on(async {
        let http = http_client();
        for n in 1..=3 {
            // All to one host: the other still reports them, from the shared store.
            let answer = ask_ok(&http, &hosts[0].url, &id(n), &key).await;
            assert_eq!(answer["count"], n, "{answer:#}");
        }
    });
    // Both hosts report the shared count of 3 (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reports: Value = serde_json::from_str(
            &run(&["--json", "vendor", "usage", "--dir", s(&fx.vendor_dir)])
                .ok()
                .stdout,
        )
        .unwrap();
        let full: BTreeSet<&str> = reports
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["products"][PRODUCT].as_u64() == Some(3))
            .filter_map(|r| r["host_id"].as_str())
            .collect();
        if full.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not both hosts report 3: {reports:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(async {
        let (http, cookie) = dashboard_login(&fx, &url).await;
        let overview = dashboard_page(&http, &cookie, format!("{url}/")).await;
        assert!(
            overview.contains(r#"id="stat-clients">3<"#),
            "the overview counts 3 clients: {overview}"
        );
        let page =
            dashboard_page(&http, &cookie, format!("{url}/customer?name=Shared%20Corp")).await;
        assert!(page.contains("3 clients counted"), "{page}");
        assert_eq!(page.matches("count shared (pg-").count(), 2, "{page}");
    });
}
