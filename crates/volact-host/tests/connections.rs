//! The connection shell under attack (finding 1 and 10 of issue 12): trickled headers and
//! bodies, idle and silent connections, oversized heads, `Expect: 100-continue` with a
//! huge body, connection caps — each bounded, answered with a JSON code where an answer
//! is still possible, and counted in `/metrics`. Timeouts are set short through
//! `[limits]`, so each test takes about a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use volact_engine::config::RawConfig;
use volact_host::listener::LimitsSection;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const BODY_TIMEOUT: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_millis(700);
/// Longest any test waits for the host to close a connection; past it, the host held it.
const PATIENCE: Duration = Duration::from_secs(5);

async fn host_with(limits: LimitsSection) -> TestHost {
    let options = TestHostOptions {
        config: RawConfig {
            limits: Some(limits),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap()
}

fn short() -> LimitsSection {
    LimitsSection {
        header_read_timeout: Some("500ms".into()),
        body_timeout: Some("500ms".into()),
        idle_timeout: Some("700ms".into()),
        ..LimitsSection::default()
    }
}

async fn connect(host: &TestHost) -> TcpStream {
    TcpStream::connect(host.running.addr).await.unwrap()
}

/// A connection to the host from another loopback address (`127.0.0.N`).
async fn connect_from(host: &TestHost, n: u8) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, n], 0)))?;
    socket.connect(host.running.addr).await
}

/// Reads until the host closes the connection (EOF or reset) or `PATIENCE` runs out;
/// returns what was read and how long the close took (`None`: still open).
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and JSON body of the one response in `raw`.
fn response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.into()));
    (status, value)
}

#[tokio::test]
async fn trickled_headers_are_closed_after_the_timeout() {
    let host = host_with(short()).await;
    let mut s = connect(&host).await;
    s.write_all(b"POST /v1/activations HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    // One byte every 100 ms: the connection is never quiet, but the head never ends.
    let mut closed = None;
    while started.elapsed() < PATIENCE {
        if s.write_all(b"a").await.is_err() {
            closed = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed = closed.expect("the host held a connection trickling its headers");
    assert!(closed >= HEADER_TIMEOUT / 2, "{closed:?}");
    assert!(closed < HEADER_TIMEOUT * 4, "{closed:?}");
    assert_eq!(
        metric(
            &host,
            "volact_connections_timed_out_total{phase=\"header\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_trickled_body_is_cut_with_a_json_408() {
    let host = host_with(short()).await;
    let mut s = connect(&host).await;
    s.write_all(
        b"POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"client_id\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = None;
    while started.elapsed() < PATIENCE {
        let _ = s.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let closed = closed.expect("the host held a request trickling its body");
    assert!(closed < BODY_TIMEOUT * 4, "{closed:?}");
    let (status, v) = response(&raw);
    assert_eq!(status, 408, "{v}");
    assert_eq!(v["code"], "bad-request", "{v}");
    assert_eq!(v["details"]["reason"], "timeout", "{v}");
    assert_eq!(
        metric(&host, "volact_connections_timed_out_total{phase=\"body\"}").await,
        1.0
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let host = host_with(short()).await;
    let mut s = connect(&host).await;
    s.write_all(b"GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, closed) = read_until_closed(&mut s).await;
    let (status, v) = response(&raw);
    assert_eq!(status, 200, "{v}");
    let closed = closed.expect("the host held an idle keep-alive connection");
    assert!(closed < HEADER_TIMEOUT * 4, "{closed:?}");
    assert_eq!(
        metric(&host, "volact_connections_timed_out_total{phase=\"idle\"}").await,
        1.0
    );
}

#[tokio::test]
async fn silent_connections_are_closed_whatever_they_start() {
    let host = host_with(short()).await;
    // Connected, never a byte: hyper has not even picked HTTP/1 or HTTP/2 yet.
    let mut silent = connect(&host).await;
    // The HTTP/2 preface, then nothing.
    let mut h2 = connect(&host).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Half the HTTP/2 preface, so hyper still cannot tell which protocol it is.
    let mut half = connect(&host).await;
    half.write_all(b"PRI * HTTP/2").await.unwrap();
    for (name, s) in [
        ("silent", &mut silent),
        ("h2", &mut h2),
        ("half", &mut half),
    ] {
        let (_, closed) = read_until_closed(s).await;
        let closed = closed.unwrap_or_else(|| panic!("the host held the {name} connection"));
        assert!(closed < IDLE_TIMEOUT * 4, "{name}: {closed:?}");
    }
    let header = metric(
        &host,
        "volact_connections_timed_out_total{phase=\"header\"}",
    )
    .await;
    let idle = metric(&host, "volact_connections_timed_out_total{phase=\"idle\"}").await;
    assert_eq!(header + idle, 3.0, "header {header}, idle {idle}");
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let host = host_with(short()).await;
    // 20 KB: over the 16 KB limit, read in full and answered with a JSON 431.
    let mut s = connect(&host).await;
    let head = format!(
        "GET /v1/host HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (raw, closed) = read_until_closed(&mut s).await;
    assert!(closed.is_some(), "the connection is closed after a 431");
    let (status, v) = response(&raw);
    assert_eq!(status, 431, "{v}");
    assert_eq!(v["code"], "bad-request", "{v}");
    assert_eq!(v["details"]["field"], "headers", "{v}");
    // 200 KB: refused by the HTTP parser before it is read in full (431, or closed).
    let mut s = connect(&host).await;
    let head = format!(
        "GET /v1/host HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let (raw, closed) = read_until_closed(&mut s).await;
    assert!(closed.is_some(), "the host held a 200 KB head");
    if !raw.is_empty() {
        assert_eq!(response(&raw).0, 431);
    }
    assert!(
        metric(
            &host,
            "volact_http_requests_refused_total{reason=\"headers-too-large\"}"
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn expect_continue_with_a_huge_length_is_refused_at_once() {
    let host = host_with(short()).await;
    let mut s = connect(&host).await;
    s.write_all(
        b"POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (raw, closed) = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("100 Continue"), "{text}");
    let (status, v) = response(&raw);
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["code"], "bad-request", "{v}");
    assert_eq!(v["details"]["bytes"], 104_857_600, "{v}");
    assert!(closed.is_some());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        metric(
            &host,
            "volact_http_requests_refused_total{reason=\"body-too-large\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn wrong_methods_get_a_json_405() {
    let host = host_with(LimitsSection::default()).await;
    let token = host.admin_token().unwrap();
    let client = reqwest::Client::new();
    let cases = [
        (client.get(format!("{}/v1/activations", host.url())), "POST"),
        (
            client
                .post(format!("{}/v1/admin/status", host.url()))
                .bearer_auth(&token),
            "GET",
        ),
        (client.delete(format!("{}/v1/host", host.url())), "GET"),
    ];
    for (request, allowed) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        assert!(r.headers()["allow"].to_str().unwrap().contains(allowed));
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "bad-request", "{v}");
        assert!(v["message"].as_str().unwrap().contains(allowed), "{v}");
        assert!(
            v["details"]["allowed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == allowed),
            "{v}"
        );
    }
    // An extractor's plain-text rejection (here: a form without its content type) is
    // JSON too.
    let r = client
        .post(format!("{}/login", host.url()))
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "bad-request", "{v}");
}

#[tokio::test]
async fn caps_refuse_one_address_and_make_room_for_a_real_client() {
    let host = host_with(LimitsSection {
        max_connections: Some(4),
        max_connections_per_address: Some(2),
        loopback_reserve: Some(0),
        ..short()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from(&host, 2).await.unwrap());
    }
    // Over its address's share: accepted and closed at once.
    let mut third = connect_from(&host, 2).await.unwrap();
    let (_, closed) = read_until_closed(&mut third).await;
    assert!(closed.unwrap() < Duration::from_secs(1));
    for _ in 0..2 {
        held.push(connect_from(&host, 3).await.unwrap());
    }
    // Every slot is held by an idle connection; a real client still gets in, the
    // longest idle one making room.
    let (status, a) = ask(&host, &client(1), "demo-office").await;
    assert_eq!(status, 200, "{a}");
    assert!(
        metric(
            &host,
            "volact_connections_refused_total{reason=\"address-limit\"}"
        )
        .await
            >= 1.0
    );
    assert!(metric(&host, "volact_connections_evicted_total").await >= 1.0);
    drop(held);
}

#[tokio::test]
async fn stopping_lets_a_request_in_progress_finish() {
    let host = host_with(LimitsSection {
        body_timeout: Some("3s".into()),
        ..short()
    })
    .await;
    let now = volact_engine::Clock::now(host.clock.as_ref());
    let body = serde_json::to_vec(&request(
        &client(1),
        &host.vendor.setup_key("demo-office"),
        now,
    ))
    .unwrap();
    let mut s = connect(&host).await;
    let head = format!(
        "POST /v1/activations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    let TestHost { running, dir, .. } = host;
    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the host waits for the request in progress"
    );
    s.write_all(&body[10..]).await.unwrap();
    let (raw, closed) = read_until_closed(&mut s).await;
    let (status, v) = response(&raw);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"], 1, "{v}");
    assert!(closed.is_some(), "closed once answered");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stopped once the request was answered")
        .unwrap()
        .unwrap();
    drop(dir);
}

#[tokio::test]
async fn http2_is_served_through_the_same_checks() {
    let host = host_with(short()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{}/v1/host", host.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 200);
    let r = h2
        .get(format!("{}/v1/activations", host.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "bad-request", "{v}");
    let now = volact_engine::Clock::now(host.clock.as_ref());
    let body = request(&client(1), &host.vendor.setup_key("demo-office"), now);
    let r = h2
        .post(format!("{}/v1/activations", host.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 1, "{v}");
}
