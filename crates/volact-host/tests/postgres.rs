//! A host whose `[storage] url` is PostgreSQL serves activations end to end: the count,
//! the inventory, the totals and revocations land in the database, a restart rebuilds
//! the count from it, and while the database is down activations answer
//! `storage-failure` and nothing is acknowledged that is not committed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use volact_engine::config::{RawConfig, StorageSection};
use volact_testkit::postgres::{PASSWORD, TestPostgres};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

const WS: &str = "demo-os-workstation";

async fn host_on(url: String, password_file: Option<String>) -> TestHost {
    let options = TestHostOptions {
        config: RawConfig {
            storage: Some(StorageSection {
                url: Some(url),
                pool_size: Some(4),
                password_file,
                ..StorageSection::default()
            }),
            ..RawConfig::default()
        },
        ..TestHostOptions::default()
    };
    TestHost::start(TestVendor::new(1).unwrap(), options)
        .await
        .unwrap()
}

async fn healthz(host: &TestHost) -> (u16, String) {
    let response = reqwest::get(format!("{}/healthz", host.url()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn number(pg: &TestPostgres, database: &str, sql: &str) -> i64 {
    pg.query(database, sql).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_host_on_postgres_counts_stores_revokes_and_rebuilds_its_count_from_the_database() {
    let Some(pg) = TestPostgres::shared("a_host_on_postgres_counts_stores_revokes").unwrap() else {
        return;
    };
    let database = pg.create_database().unwrap();
    // The role that needs its password, which comes from a file.
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("pg-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let host = host_on(
        pg.password_url(&database),
        Some(password_file.display().to_string()),
    )
    .await;

    for i in 1..=24 {
        let (status, answer) = ask(&host, &client(i), WS).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], "count-insufficient");
        assert_eq!(answer["count"], i);
    }
    let (status, answer) = ask(&host, &client(25), WS).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "activated");
    assert_eq!(answer["count"], 25);

    // Every acknowledged request is in PostgreSQL, read there by another connection.
    assert_eq!(number(&pg, &database, "SELECT COUNT(*) FROM clients"), 25);
    assert_eq!(number(&pg, &database, "SELECT COUNT(*) FROM events"), 25);
    assert_eq!(
        number(
            &pg,
            &database,
            "SELECT SUM(n) FROM result_totals WHERE result = 'count-insufficient'"
        ),
        24
    );
    let revoked = host
        .admin()
        .unwrap()
        .revoke(&client(3), Some("stolen"))
        .await
        .unwrap();
    assert!(serde_json::to_value(&revoked).unwrap().is_object());
    assert_eq!(
        pg.query(
            &database,
            &format!(
                "SELECT revoked_reason FROM clients WHERE client_id = '{}' AND revoked",
                client(3)
            )
        )
        .unwrap()
        .trim(),
        "stolen"
    );
    let (_, answer) = ask(&host, &client(3), WS).await;
    assert_eq!(answer["code"], "client-revoked", "{answer}");

    // The host registered itself, with where it serves, and keeps its row fresh.
    let expected = format!("{}|{{{}}}", host.running.engine.host_id(), host.url());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let registered = loop {
        let rows = pg
            .query(
                &database,
                "SELECT host_id, listen_urls, last_seen FROM hosts",
            )
            .unwrap();
        if rows.trim().starts_with(&expected) || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(registered.trim().starts_with(&expected), "{registered}");
    let last_seen: i64 = registered
        .trim()
        .rsplit('|')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        last_seen,
        volact_engine::Clock::now(host.clock.as_ref()).as_second()
    );
    let status: serde_json::Value = host.admin().unwrap().status().await.unwrap();
    assert_eq!(
        status["hosts"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    // /metrics lists the hosts on the store, each with when it was last seen.
    host.maintain().await.unwrap();
    let metrics = reqwest::get(format!("{}/metrics", host.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!(
        "volact_store_host_last_seen_seconds{{host_id=\"{}\"",
        host.running.engine.host_id()
    );
    let value: f64 = metrics
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"));
    assert_eq!(value, last_seen as f64);

    // A restart rebuilds the count from the database: 24 counted (25 less the revoked).
    let host = host.restart().await.unwrap();
    assert_eq!(count(&host, "demo-os"), 24);
    let (_, answer) = ask(&host, &client(26), WS).await;
    assert_eq!(answer["result"], "activated", "{answer}");
    assert_eq!(answer["count"], 25);
    assert_eq!(number(&pg, &database, "SELECT COUNT(*) FROM clients"), 26);
}

#[tokio::test]
async fn while_postgres_is_down_activations_answer_storage_failure_and_resume_after() {
    let Some(pg) = TestPostgres::start("while_postgres_is_down_activations_answer").unwrap() else {
        return;
    };
    let database = pg.create_database().unwrap();
    let host = host_on(pg.url(&database), None).await;
    let (status, answer) = ask(&host, &client(1), WS).await;
    assert_eq!(
        (status, answer["count"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );

    pg.stop().unwrap();
    let (status, answer) = ask(&host, &client(2), WS).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "storage-failure", "{answer}");

    // /healthz says why, with the driver's reason.
    let (status, text) = healthz(&host).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.starts_with("storage-failure:"), "{text}");

    pg.start_again().unwrap();
    // The same host, not restarted: its pool reconnects.
    let (status, answer) = ask(&host, &client(3), WS).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(healthz(&host).await.0, 200);
    // Only acknowledged requests are stored: client 2's was not.
    let stored = pg
        .query(
            &database,
            "SELECT client_id FROM clients ORDER BY client_id",
        )
        .unwrap();
    let stored: Vec<&str> = stored.lines().collect();
    assert_eq!(stored, [client(1), client(3)]);
}
