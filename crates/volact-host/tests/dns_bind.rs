//! DNS discovery and publishing against a real BIND 9 (`named`) on 127.0.0.1, started
//! by each test as a throwaway instance: hosts publish their SRV records by RFC 2136
//! update with TSIG, clients discover them, priorities and weights order them, a stopped
//! host is failed over within one activation, a wrong key is refused and recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};
use volact_client::discovery::{Dns, DnsOptions, SplitMix, discover};
use volact_client::{ActivateOptions, ClientState, FoundBy, activate_with};
use volact_core::catalog::demo_source;
use volact_engine::dns::{self, PublishConfig, PublishRaw, Publisher};
use volact_proto::ErrorCode;
use volact_testkit::testbind::{TestBind, ZONE};
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

/// A product that activates at a count of 1, so every first request gets a ticket.
const PRODUCT: &str = "demo-office";

fn vendor() -> TestVendor {
    let mut source = demo_source();
    for p in &mut source.products {
        p.minimum_count = Some(1);
    }
    TestVendor::with_source(3, &source).unwrap()
}

async fn host(vendor: &TestVendor, seed: u8) -> TestHost {
    TestHost::start(
        vendor.clone(),
        TestHostOptions {
            host_seed: Some(seed),
            ..TestHostOptions::default()
        },
    )
    .await
    .unwrap()
}

/// `[dns.publish]` for host `name` (`name.volact.test` with an A record for 127.0.0.1).
fn publishing(
    bind: &TestBind,
    dir: &Path,
    name: &str,
    port: u16,
    priority: u16,
    weight: u16,
) -> PublishConfig {
    let key = dir.join(format!("{name}.key"));
    bind.write_key_file(&key, true).unwrap();
    PublishRaw {
        server: Some(bind.addr.to_string()),
        zone: Some(ZONE.into()),
        name: Some(format!("{name}.{ZONE}")),
        port: Some(port),
        priority: Some(priority),
        weight: Some(weight),
        ttl: Some(60),
        key_file: Some(key),
        address: Some("127.0.0.1".into()),
        ..PublishRaw::default()
    }
    .resolve(dir, port)
    .unwrap()
}

fn client(vendor: &TestVendor, host: &TestHost) -> ClientState {
    let mut state = ClientState::default();
    volact_client::install_key(
        &mut state,
        &vendor.setup_key(PRODUCT),
        Some(vendor.bundle.clone()),
        volact_engine::Clock::now(host.clock.as_ref()),
        || uuid::Uuid::new_v4().hyphenated().to_string(),
    )
    .unwrap();
    volact_client::set_domain(&mut state, ZONE).unwrap();
    state
}

fn options(bind: &TestBind, seed: u64) -> ActivateOptions {
    ActivateOptions {
        dns_server: Some(bind.addr),
        seed: Some(seed),
        ..ActivateOptions::default()
    }
}

#[tokio::test]
async fn hosts_publish_and_clients_fail_over_by_priority() {
    let Some(bind) =
        TestBind::start_or_skip("hosts_publish_and_clients_fail_over_by_priority").unwrap()
    else {
        return;
    };
    let vendor = vendor();
    let first = host(&vendor, 1).await;
    let second = host(&vendor, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let p1 = publishing(&bind, dir.path(), "first", first.running.addr.port(), 0, 0);
    let p2 = publishing(
        &bind,
        dir.path(),
        "second",
        second.running.addr.port(),
        10,
        0,
    );
    dns::publish(&first.data, first.running.engine.store().as_ref(), &p1)
        .await
        .unwrap();
    let done = dns::publish(&second.data, second.running.engine.store().as_ref(), &p2)
        .await
        .unwrap();
    assert!(done.ok && done.event == "dns-publish-succeeded", "{done:?}");
    assert_eq!(bind.srv_records(ZONE).await.unwrap().len(), 2);
    let published = volact_store::EventFilter {
        result: Some("dns-publish-succeeded".into()),
        ..Default::default()
    };
    let events = second
        .running
        .engine
        .store()
        .events(&published)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        1,
        "a publish success is an audit event: {events:?}"
    );
    let log = dns::read_log(&second.data).unwrap();
    assert_eq!(log.last, Some(done));

    // The preferred host serves.
    let now = volact_engine::Clock::now(first.clock.as_ref());
    let mut state = client(&vendor, &first);
    let out = activate_with(
        &mut state,
        now,
        "pc-1",
        "nonce-0001".into(),
        &options(&bind, 1),
    )
    .await
    .unwrap();
    assert_eq!(
        out.host,
        format!("first.{ZONE}:{}", first.running.addr.port())
    );
    assert_eq!(
        state.last_host_found_by,
        Some(FoundBy::Srv {
            record: format!("_volact._tcp.{ZONE}"),
            priority: 0,
            weight: 0
        })
    );

    // The preferred host stops (its record stays): the next activation fails over to
    // the other one within the same call, cache first included.
    first.running.stop().await.unwrap();
    let started = Instant::now();
    let out = activate_with(
        &mut state,
        now,
        "pc-1",
        "nonce-0002".into(),
        &options(&bind, 2),
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        out.host,
        format!("second.{ZONE}:{}", second.running.addr.port())
    );
    assert!(
        matches!(
            state.last_host_found_by,
            Some(FoundBy::Srv { priority: 10, .. })
        ),
        "{:?}",
        state.last_host_found_by
    );
    let text = volact_client::status(&state, now).render_text(true);
    assert!(text.contains("(priority 10, weight 0)"), "{text}");

    // Removing a record removes the host from discovery.
    dns::unpublish(&second.data, second.running.engine.store().as_ref(), &p2)
        .await
        .unwrap();
    let left = bind.srv_records(ZONE).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].3, format!("first.{ZONE}"));
}

#[tokio::test]
async fn a_wrong_tsig_key_is_refused_and_recorded() {
    let Some(bind) = TestBind::start_or_skip("a_wrong_tsig_key_is_refused_and_recorded").unwrap()
    else {
        return;
    };
    let vendor = vendor();
    let h = host(&vendor, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = publishing(&bind, dir.path(), "h", h.running.addr.port(), 0, 0);
    let key = config.key_file.clone().unwrap();
    bind.write_key_file(&key, false).unwrap();
    let e = dns::publish(&h.data, h.running.engine.store().as_ref(), &config)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(
        e.message.contains("NOTAUTH") && e.message.contains("volact-test"),
        "{}",
        e.message
    );
    let last = dns::read_log(&h.data).unwrap().last.unwrap();
    assert!(!last.ok);
    assert_eq!(last.event, "dns-publish-failed");
    assert!(dns::publish::status_line(&last).contains("FAILED"));
    assert!(bind.srv_records(ZONE).await.unwrap().is_empty());
    // The failure is also an audit event, as `volact host events` lists them.
    let filter = volact_store::EventFilter {
        result: Some("dns-publish-failed".into()),
        ..Default::default()
    };
    let events = h.running.engine.store().events(&filter).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].machine_name.contains("NOTAUTH"), "{events:?}");

    // Without a key the zone refuses the update too, and the message says to add one.
    config.key_file = None;
    let e = dns::publish(&h.data, h.running.engine.store().as_ref(), &config)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("key_file"), "{}", e.message);
}

#[tokio::test]
async fn weights_spread_first_contacts_within_a_priority() {
    let Some(bind) =
        TestBind::start_or_skip("weights_spread_first_contacts_within_a_priority").unwrap()
    else {
        return;
    };
    let vendor = vendor();
    let h = host(&vendor, 1).await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing needs to listen on these ports: only the order is measured.
    dns::publish(
        &h.data,
        h.running.engine.store().as_ref(),
        &publishing(&bind, dir.path(), "heavy", 7001, 5, 3),
    )
    .await
    .unwrap();
    dns::publish(
        &h.data,
        h.running.engine.store().as_ref(),
        &publishing(&bind, dir.path(), "light", 7002, 5, 1),
    )
    .await
    .unwrap();
    let dns_client = Dns::new(&DnsOptions {
        server: Some(bind.addr),
        ..DnsOptions::default()
    })
    .unwrap();
    let mut rng = SplitMix::from_seed(42);
    let runs = 2000;
    let mut heavy = 0;
    for _ in 0..runs {
        let found = discover(&dns_client, &[ZONE.to_string()], &mut rng).await;
        assert_eq!(found.candidates.len(), 2, "{:?}", found.looked_up);
        if found.candidates[0].host.starts_with("heavy.") {
            heavy += 1;
        }
    }
    let share = f64::from(heavy) / f64::from(runs);
    assert!(
        (0.70..=0.80).contains(&share),
        "weights 3:1 should put the heavy host first in 75% ± 5%, got {share}"
    );
}

#[tokio::test]
async fn the_publisher_retries_refreshes_replaces_and_cleans_up() {
    let Some(bind) =
        TestBind::start_or_skip("the_publisher_retries_refreshes_replaces_and_cleans_up").unwrap()
    else {
        return;
    };
    let vendor = vendor();
    let h = host(&vendor, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = publishing(&bind, dir.path(), "h", h.running.addr.port(), 0, 0);
    config.refresh_interval = Duration::from_millis(300);
    // The key file is missing at first: publishing fails, then retries with back-off.
    let key = config.key_file.clone().unwrap();
    std::fs::remove_file(&key).unwrap();
    let publisher = Publisher::start(
        &h.data,
        h.running.engine.store().clone(),
        config.clone(),
        Duration::from_millis(100),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while dns::read_log(&h.data).and_then(|l| l.last).is_none() {
        assert!(Instant::now() < deadline, "no first attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bind.write_key_file(&key, true).unwrap();
    loop {
        let log = dns::read_log(&h.data).unwrap_or_default();
        let successes = log.recent.iter().filter(|r| r.ok).count();
        if successes >= 2 {
            assert!(
                !log.recent[0].ok,
                "the first attempt failed: {:?}",
                log.recent[0]
            );
            break;
        }
        assert!(Instant::now() < deadline, "no refresh: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bind.srv_records(ZONE).await.unwrap().len(), 1);
    let removed = publisher.shutdown().await.unwrap().unwrap();
    assert_eq!(removed.event, "dns-unpublish-succeeded");
    assert!(bind.srv_records(ZONE).await.unwrap().is_empty());

    // A new priority replaces the host's old record instead of adding a second one.
    dns::publish(&h.data, h.running.engine.store().as_ref(), &config)
        .await
        .unwrap();
    config.record.priority = 7;
    dns::publish(&h.data, h.running.engine.store().as_ref(), &config)
        .await
        .unwrap();
    let records = bind.srv_records(ZONE).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, 7);

    // keep_on_shutdown leaves the record in place.
    config.keep_on_shutdown = true;
    let publisher = Publisher::start(
        &h.data,
        h.running.engine.store().clone(),
        config,
        Duration::from_millis(100),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(publisher.shutdown().await.is_none());
    assert_eq!(bind.srv_records(ZONE).await.unwrap().len(), 1);
}

/// A host with a TLS listener is published under `_volact-tls._tcp` too; a client given
/// the host's fingerprint looks that record up first and activates over https://, and
/// unpublishing removes both records.
#[tokio::test]
async fn a_tls_host_is_published_under_volact_tls_and_found_over_https() {
    use volact_client::tls::TlsTrust;
    use volact_engine::config::RawConfig;
    use volact_host::tls::TlsSection;
    let Some(bind) =
        TestBind::start_or_skip("a_tls_host_is_published_under_volact_tls_and_found_over_https")
            .unwrap()
    else {
        return;
    };
    let vendor = vendor();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = volact_host::tls::self_signed(&["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("host.crt"), cert).unwrap();
    std::fs::write(dir.path().join("host.key"), key).unwrap();
    let host = TestHost::start(
        vendor.clone(),
        TestHostOptions {
            host_seed: Some(7),
            config: RawConfig {
                tls: Some(TlsSection {
                    listen: Some("127.0.0.1:0".into()),
                    cert_file: Some(dir.path().join("host.crt").display().to_string()),
                    key_file: Some(dir.path().join("host.key").display().to_string()),
                    allow_plain_admin: None,
                }),
                ..RawConfig::default()
            },
            ..TestHostOptions::default()
        },
    )
    .await
    .unwrap();
    let tls_port = host.running.tls_addr.unwrap().port();
    let mut config = publishing(&bind, dir.path(), "secure", host.running.addr.port(), 0, 0);
    config.record.tls_port = Some(tls_port);
    let done = dns::publish(&host.data, host.running.engine.store().as_ref(), &config)
        .await
        .unwrap();
    assert!(done.ok, "{done:?}");
    assert!(
        done.records
            .iter()
            .any(|l| l.starts_with(&format!("_volact-tls._tcp.{ZONE}."))
                && l.contains(&format!(" {tls_port} "))),
        "{:?}",
        done.records
    );
    assert_eq!(
        bind.srv_records_of("_volact-tls._tcp", ZONE).await.unwrap(),
        vec![(0, 0, tls_port, format!("secure.{ZONE}"))]
    );
    assert_eq!(bind.srv_records(ZONE).await.unwrap().len(), 1);

    // A client that pins the host's certificate asks the TLS record first, over https.
    let now = volact_engine::Clock::now(host.clock.as_ref());
    let mut state = client(&vendor, &host);
    let fingerprint = host.running.tls_fingerprint().unwrap();
    let options = ActivateOptions {
        tls: TlsTrust::from_flags(Some(&fingerprint), None).unwrap(),
        ..options(&bind, 5)
    };
    let out = activate_with(&mut state, now, "pc-tls", "nonce-tls-1".into(), &options)
        .await
        .unwrap();
    assert!(out.host.starts_with("https://"), "{}", out.host);
    assert!(out.host.ends_with(&format!(":{tls_port}")), "{}", out.host);
    assert!(
        matches!(
            &state.last_host_found_by,
            Some(FoundBy::Srv { record, .. }) if record == &format!("_volact-tls._tcp.{ZONE}")
        ),
        "{:?}",
        state.last_host_found_by
    );

    dns::unpublish(&host.data, host.running.engine.store().as_ref(), &config)
        .await
        .unwrap();
    assert!(
        bind.srv_records_of("_volact-tls._tcp", ZONE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(bind.srv_records(ZONE).await.unwrap().is_empty());
}
