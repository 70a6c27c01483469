//! Catalog updates (issue 18, point 7), with real processes on loopback: the vendor adds
//! a product to a key group; a serving host takes the newer catalog (imported from a
//! file, or fetched from `volact vendor serve`) without a restart or a new activation,
//! and a client of the new product is activated on the same host certificate; an older
//! catalog is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::vendor::vendor_serve;

use common::{CATALOG_TOML, Fixture, Server, activation_request, http, provision, run, s};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use volact_core::catalog::VendorBundle;

/// The test catalog with product `sketch` (minimum 1) added to key group `office`.
fn catalog_v2() -> String {
    CATALOG_TOML
        .replace(
            "[[key_group]]\nid = \"office\"",
            "[[product]]\nid = \"sketch\"\nname = \"Acme Sketch\"\napplication = \"acme-draw\"\nkind = \"workstation\"\nminimum_count = 1\n\n[[key_group]]\nid = \"office\"",
        )
        .replace(
            "products = [\"suite-desktop\", \"suite-server\", \"draw\"]",
            "products = [\"suite-desktop\", \"suite-server\", \"draw\", \"sketch\"]",
        )
}

/// Signs the second catalog; returns the setup key of `sketch` and the new bundle.
fn sign_v2(fx: &Fixture, root: &Path) -> (String, VendorBundle) {
    let source = root.join("catalog-v2.toml");
    std::fs::write(&source, catalog_v2()).unwrap();
    let report = run(&[
        "--json",
        "vendor",
        "catalog",
        "--dir",
        s(&fx.vendor_dir),
        "--from",
        s(&source),
    ])
    .ok()
    .json();
    assert_eq!(report["version"], 2, "{report}");
    let key = report["setup_keys"]["sketch"].as_str().unwrap().to_string();
    let export = run(&["vendor", "export", "--dir", s(&fx.vendor_dir)]).ok();
    (key, serde_json::from_str(&export.stdout).unwrap())
}

/// Waits until the serving host answers with catalog `version` (bounded).
#[track_caller]
fn wait_catalog(server: &Server, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(&server.addr, "GET", "/v1/host", None).unwrap();
        let info: Value = serde_json::from_str(&body).unwrap();
        if info["catalog_version"] == version {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{info}\n--- serve log\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client of the product with `setup_key` asks `server`, and verifies the answer as a
/// client holding `bundle` does; returns the answer and the verification.
fn client_asks(
    server: &Server,
    setup_key: &str,
    product: &str,
    bundle: &VendorBundle,
) -> (
    Value,
    Result<volact_core::verify::VerifiedAnswer, volact_proto::ApiError>,
    Result<volact_core::verify::VerifiedAnswer, volact_proto::ApiError>,
) {
    let client_id = uuid::Uuid::new_v4().to_string();
    let (body, nonce) = activation_request(&client_id, setup_key, 1);
    let (_, text) = http(
        &server.addr,
        "POST",
        "/v1/activations",
        Some(&body.to_string()),
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let (root, catalog) = bundle.open().unwrap();
    let verify = |catalog| {
        let response: volact_proto::ActivationResponse = serde_json::from_value(answer.clone())
            .map_err(|e| {
                volact_proto::ApiError::new(volact_proto::ErrorCode::BadRequest, e.to_string())
            })?;
        volact_core::verify::verify_answer(
            &root,
            &response,
            volact_core::verify::Expected {
                client_id: &client_id,
                product,
                nonce: &nonce,
                minimum: 1,
                now: jiff::Timestamp::now(),
                max_skew: jiff::SignedDuration::from_hours(4),
                catalog,
            },
        )
    };
    let with_catalog = verify(Some(&catalog));
    let without = verify(None);
    (answer, with_catalog, without)
}

#[test]
fn an_imported_catalog_adds_a_product_to_the_key_group_on_the_same_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let certificate = std::fs::read_to_string(fx.data.join("certificate.txt")).unwrap();
    let v1 = tmp.path().join("catalog-v1.token");
    std::fs::copy(fx.vendor_dir.join("catalog.token"), &v1).unwrap();
    let server = Server::start(&fx.data, &[]);

    let (sketch, bundle) = sign_v2(&fx, tmp.path());
    // Before the host has the new catalog, it does not know the product's setup key.
    let (answer, _, _) = client_asks(&server, &sketch, "sketch", &bundle);
    assert_eq!(answer["code"], "unknown-setup-key", "{answer}");

    // The offline host imports it; the serving host takes it within seconds.
    let imported = run(&[
        "--json",
        "host",
        "import-catalog",
        "--data",
        s(&fx.data),
        s(&fx.vendor_dir.join("catalog.token")),
    ])
    .ok()
    .json();
    assert_eq!(imported["version"], 2, "{imported}");
    wait_catalog(&server, 2);

    // A client of the new product is activated, on the same host certificate, and its
    // ticket verifies with the client's own (new) catalog…
    let (answer, verified, strict) = client_asks(&server, &sketch, "sketch", &bundle);
    assert_eq!(answer["result"], "activated", "{answer}");
    assert_eq!(
        answer["host_certificate"].as_str(),
        Some(certificate.trim())
    );
    assert!(
        matches!(
            verified,
            Ok(volact_core::verify::VerifiedAnswer::Ticket { .. })
        ),
        "{verified:?}"
    );
    // …and not without it: nothing unverified widens what a client accepts.
    assert_eq!(
        strict.unwrap_err().code,
        volact_proto::ErrorCode::UntrustedHost
    );
    // Host status lists the product as covered, in the key group.
    let status = common::host_status(&fx.data);
    assert_eq!(status["catalog_version"], 2);
    assert!(
        status["certificate"]["products"]
            .as_array()
            .unwrap()
            .contains(&Value::from("sketch")),
        "{status:#}"
    );
    // The certificate on disk is the one the vendor signed: not re-activated.
    assert_eq!(
        std::fs::read_to_string(fx.data.join("certificate.txt")).unwrap(),
        certificate
    );

    // An older catalog is refused, with both versions; so is the same one again.
    let older = run(&[
        "--json",
        "host",
        "import-catalog",
        "--data",
        s(&fx.data),
        s(&v1),
    ])
    .fails();
    assert_eq!(older.error_code(), "bad-request", "{older}");
    let message = older.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("version 1") && message.contains("version 2"),
        "{message}"
    );
    run(&[
        "host",
        "import-catalog",
        "--data",
        s(&fx.data),
        s(&fx.vendor_dir.join("catalog.token")),
    ])
    .fails();
    // A catalog another root signed is refused too.
    let stranger = tmp.path().join("stranger");
    let sfx = provision(&stranger, "office");
    let out = run(&[
        "--json",
        "host",
        "import-catalog",
        "--data",
        s(&fx.data),
        s(&sfx.vendor_dir.join("catalog.token")),
    ])
    .fails();
    assert_eq!(out.error_code(), "untrusted-host", "{out}");
    wait_catalog(&server, 2);
    server.kill();
}

#[test]
fn a_serving_host_fetches_a_newer_catalog_from_the_vendor_service() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "office");
    let (sketch, bundle) = sign_v2(&fx, tmp.path());
    let (_service, url) = vendor_serve(&fx, &[]);
    let config = fx.data.join("volact.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    // Renewal is not due for years: only the catalog is asked for.
    text.push_str(&format!(
        "\n[vendor]\nurl = \"{url}\"\nrenew_before_days = 1\n"
    ));
    std::fs::write(&config, text).unwrap();

    let server = Server::start(&fx.data, &[]);
    wait_catalog(&server, 2);
    let (answer, verified, _) = client_asks(&server, &sketch, "sketch", &bundle);
    assert_eq!(answer["result"], "activated", "{answer}");
    assert!(verified.is_ok(), "{verified:?}");
    server.kill();
}
