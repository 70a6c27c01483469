//! Helpers shared by the host's integration tests: raw activation requests over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use jiff::Timestamp;
use serde_json::{Value, json};
use volact_core::catalog::{CatalogSource, KeyGroup, demo_source};
use volact_testkit::TestHost;

/// A fixed client id for client number `n`.
pub fn client(n: u32) -> String {
    uuid::Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0000 + u128::from(n))
        .hyphenated()
        .to_string()
}

/// The body of an activation request.
pub fn request(client_id: &str, setup_key: &str, client_time: Timestamp) -> Value {
    json!({
        "client_id": client_id,
        "setup_key": setup_key,
        "minimum_count": 1,
        "client_time": client_time,
        "nonce": format!("nonce{}", uuid::Uuid::new_v4().simple()),
        "machine_name": format!("machine-{client_id}"),
    })
}

/// Posts a raw body; returns the status and the JSON answer.
pub async fn post_raw(host: &TestHost, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/activations", host.url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the host answers");
    let status = response.status().as_u16();
    // Every answer, activation or refusal, says it is JSON.
    let declared = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("a body");
    assert_eq!(declared, "application/json", "{status}: {text}");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a JSON answer, got {status}: {text}"));
    (status, value)
}

/// Asks the host to activate `client_id` for `product`, with the client's clock at the host's time.
pub async fn ask(host: &TestHost, client_id: &str, product: &str) -> (u16, Value) {
    let now = volact_engine::Clock::now(host.clock.as_ref());
    ask_at(host, client_id, product, now).await
}

/// Like [`ask`] with the client's clock at `client_time`.
pub async fn ask_at(
    host: &TestHost,
    client_id: &str,
    product: &str,
    client_time: Timestamp,
) -> (u16, Value) {
    let key = host.vendor.setup_key(product);
    let body = serde_json::to_vec(&request(client_id, &key, client_time)).unwrap();
    post_raw(host, body, "application/json").await
}

/// The current count of an application, from the engine.
pub fn count(host: &TestHost, application: &str) -> u32 {
    host.running
        .engine
        .counts()
        .unwrap()
        .into_iter()
        .find(|(a, _)| a == application)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

/// The demo catalog plus a key group that holds only the Demo OS products.
pub fn catalog_with_os_only_group() -> CatalogSource {
    let mut source = demo_source();
    source.key_groups.push(KeyGroup {
        id: "os-only".into(),
        name: "Demo OS only".into(),
        products: vec!["demo-os-workstation".into(), "demo-os-server".into()],
    });
    source
}

/// The value of the series `name{labels}` in `/metrics` (0 when absent).
pub async fn metric(host: &TestHost, series: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", host.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
