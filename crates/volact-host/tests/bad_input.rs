//! Bad input never crashes the host, never changes the count, and is answered with
//! `bad-request` (naming the field) or the specific code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use volact_engine::Clock;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

#[tokio::test]
async fn malformed_requests_are_refused_and_change_nothing() {
    let host = TestHost::start(TestVendor::new(1).unwrap(), TestHostOptions::default())
        .await
        .unwrap();
    let key = host.vendor.setup_key("demo-office");
    let now = host.clock.now();
    // One good request first, so there is a count to protect.
    let (_, a) = ask(&host, &client(1), "demo-office").await;
    assert_eq!(a["count"], 1);

    let good = request(&client(2), &key, now);
    let with = |field: &str, value: serde_json::Value| {
        let mut r = good.clone();
        r[field] = value;
        serde_json::to_vec(&r).unwrap()
    };
    let without = |field: &str| {
        let mut r = good.clone();
        r.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&r).unwrap()
    };
    let mistyped = {
        let mut chars: Vec<char> = key.chars().collect();
        chars[0] = if chars[0] == 'B' { 'C' } else { 'B' };
        chars.into_iter().collect::<String>()
    };
    let stranger = volact_core::setup_key::SetupKey::generate([77; 24]).to_string();
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        (
            "not JSON",
            b"{this is not json".to_vec(),
            "bad-request",
            None,
        ),
        ("empty body", Vec::new(), "bad-request", None),
        ("JSON array", b"[1,2,3]".to_vec(), "bad-request", None),
        (
            "missing client_id",
            without("client_id"),
            "bad-request",
            Some("client_id"),
        ),
        (
            "missing nonce",
            without("nonce"),
            "bad-request",
            Some("nonce"),
        ),
        (
            "wrong type",
            with("minimum_count", serde_json::json!("twenty")),
            "bad-request",
            None,
        ),
        (
            "negative minimum",
            with("minimum_count", serde_json::json!(-1)),
            "bad-request",
            None,
        ),
        (
            "minimum too large",
            with("minimum_count", serde_json::json!(5000)),
            "bad-request",
            Some("minimum_count"),
        ),
        (
            "bad client id",
            with("client_id", serde_json::json!("me")),
            "bad-request",
            Some("client_id"),
        ),
        (
            "nil client id",
            with(
                "client_id",
                serde_json::json!(uuid::Uuid::nil().to_string()),
            ),
            "bad-request",
            Some("client_id"),
        ),
        (
            "bad time",
            with("client_time", serde_json::json!("yesterday")),
            "bad-request",
            None,
        ),
        (
            "short nonce",
            with("nonce", serde_json::json!("x")),
            "bad-request",
            Some("nonce"),
        ),
        (
            "control chars",
            with("machine_name", serde_json::json!("a\u{0007}b")),
            "bad-request",
            Some("machine_name"),
        ),
        (
            "unknown field",
            with("admin", serde_json::json!(true)),
            "bad-request",
            Some("admin"),
        ),
        (
            "garbage ticket id",
            with("ticket_id", serde_json::json!("x".repeat(500))),
            "bad-request",
            Some("ticket_id"),
        ),
        (
            "garbage setup key",
            with("setup_key", serde_json::json!("v4.public.garbage")),
            "unknown-setup-key",
            None,
        ),
        (
            "mistyped setup key",
            with("setup_key", serde_json::json!(mistyped)),
            "unknown-setup-key",
            None,
        ),
        (
            "setup key of nobody",
            with("setup_key", serde_json::json!(stranger)),
            "unknown-setup-key",
            None,
        ),
        (
            "oversized body",
            with("machine_name", serde_json::json!("m".repeat(64 * 1024))),
            "bad-request",
            Some("body"),
        ),
    ];
    for (name, body, code, field) in cases {
        let (status, a) = post_raw(&host, body, "application/json").await;
        // A body over the limit is refused before it is read: 413, still `bad-request`.
        let expected = if name == "oversized body" { 413 } else { 400 };
        assert_eq!(status, expected, "{name}: {a}");
        assert_eq!(a["code"], code, "{name}: {a}");
        assert!(!a["message"].as_str().unwrap().is_empty(), "{name}");
        if let Some(field) = field {
            assert_eq!(a["details"]["field"], field, "{name}: {a}");
        }
    }
    // Nothing was counted, and the host still works.
    assert_eq!(count(&host, "demo-office"), 1);
    let (_, a) = ask(&host, &client(2), "demo-office").await;
    assert_eq!(a["count"], 2);
    // Unknown endpoints and methods answer in the same JSON shape.
    let r = reqwest::get(format!("{}/v1/nothing", host.url()))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let a: serde_json::Value = r.json().await.unwrap();
    assert_eq!(a["code"], "not-found");
}

#[tokio::test]
async fn garbage_keys_certificates_and_bundles_are_refused_without_harm() {
    let vendor = TestVendor::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = volact_engine::data::HostData::new(dir.path().join("host"));
    data.init([9; 32]).unwrap();
    assert!(data.install_key("garbage", Some(&vendor.bundle)).is_err());
    assert!(
        data.install_key("v4.public.AAAA", Some(&vendor.bundle))
            .is_err()
    );
    // A host key signed by someone else.
    let other = TestVendor::new(2).unwrap();
    let e = data
        .install_key(
            &other.host_key("demo-all", None).unwrap(),
            Some(&vendor.bundle),
        )
        .unwrap_err();
    assert_eq!(e.code, volact_proto::ErrorCode::BadRequest);
    // A tampered bundle.
    let mut bundle = vendor.bundle.clone();
    bundle.root_public_key = other.bundle.root_public_key.clone();
    let e = data
        .install_key(&vendor.host_key("demo-all", None).unwrap(), Some(&bundle))
        .unwrap_err();
    assert_eq!(e.code, volact_proto::ErrorCode::UntrustedHost);
    // A good key, then garbage and foreign certificates.
    data.install_key(
        &vendor.host_key("demo-all", None).unwrap(),
        Some(&vendor.bundle),
    )
    .unwrap();
    let now = volact_testkit::test_epoch();
    for cert in ["", "garbage", "v4.public.AAAA"] {
        let r = volact_proto::HostActivationResponse {
            host_certificate: cert.into(),
        };
        assert!(data.install_certificate(&r, now).is_err());
    }
    let request = data.activation_request("n1234567".into(), now).unwrap();
    let (foreign, _) = volact_core::certificate::activate_host(
        &other.root,
        &other.catalog,
        &mut Default::default(),
        &volact_core::certificate::make_request(
            &data.identity().unwrap(),
            &other.host_key("demo-all", None).unwrap(),
            "n".into(),
            now,
        )
        .unwrap(),
        now,
        365,
    )
    .unwrap();
    let e = data
        .install_certificate(
            &volact_proto::HostActivationResponse {
                host_certificate: foreign,
            },
            now,
        )
        .unwrap_err();
    assert_eq!(e.code, volact_proto::ErrorCode::UntrustedHost);
    assert!(data.certificate().unwrap().is_none());
    // The genuine one installs.
    let (cert, _) = volact_core::certificate::activate_host(
        &vendor.root,
        &vendor.catalog,
        &mut Default::default(),
        &request,
        now,
        365,
    )
    .unwrap();
    data.install_certificate(
        &volact_proto::HostActivationResponse {
            host_certificate: cert,
        },
        now,
    )
    .unwrap();
    assert!(data.certificate().unwrap().is_some());
}
