//! Discovery and failover against an in-process DNS responder on loopback (fast; the
//! BIND 9 tests in volact-host cover a real server): RFC 2782 order, failover within one
//! attempt, the host cache and its switch, and what `no-host-found` lists.

use super::http_tests::{Handler, closed_port, good_host, stub};
use super::*;
use crate::discovery::{SplitMix, SrvTarget, WeightRng, order_srv};
use crate::{ActivateOptions, FoundBy, activate_with, status};
use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volact_proto::ErrorCode;

/// Options whose DNS server is a local port where nothing answers, with short timeouts,
/// so no test ever reaches a real DNS server.
pub(super) async fn dead_dns() -> ActivateOptions {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    ActivateOptions {
        dns_server: Some(addr),
        dns_timeout: Duration::from_millis(300),
        seed: Some(1),
        ..ActivateOptions::default()
    }
}

/// A tiny authoritative DNS responder on 127.0.0.1 answering from a fixed record list.
struct FakeDns {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    queries: Arc<AtomicUsize>,
}

impl FakeDns {
    async fn start() -> FakeDns {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let queries: Arc<AtomicUsize> = Arc::default();
        let (r, q) = (records.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::Relaxed);
                let answer = respond(&request, &r.lock().unwrap());
                let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
            }
        });
        FakeDns {
            addr,
            records,
            queries,
        }
    }

    fn srv(&self, domain: &str, priority: u16, weight: u16, target: &str, port: u16) {
        let owner = Name::from_ascii(format!("_volact._tcp.{domain}.")).unwrap();
        let target = Name::from_ascii(format!("{target}.")).unwrap();
        self.records.lock().unwrap().push(Record::from_rdata(
            owner,
            60,
            RData::SRV(SRV::new(priority, weight, port, target)),
        ));
    }

    fn a(&self, name: &str, ip: Ipv4Addr) {
        let owner = Name::from_ascii(format!("{name}.")).unwrap();
        self.records
            .lock()
            .unwrap()
            .push(Record::from_rdata(owner, 60, RData::A(A(ip))));
    }

    fn clear(&self) {
        self.records.lock().unwrap().clear();
    }

    fn options(&self) -> ActivateOptions {
        ActivateOptions {
            dns_server: Some(self.addr),
            dns_timeout: Duration::from_secs(2),
            seed: Some(7),
            ..ActivateOptions::default()
        }
    }
}

fn respond(request: &Message, records: &[Record]) -> Message {
    let mut answer = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    answer.metadata.authoritative = true;
    answer.queries = request.queries.clone();
    let Some(query) = request.queries.first() else {
        answer.metadata.response_code = ResponseCode::FormErr;
        return answer;
    };
    let name = query.name().to_lowercase();
    let same_name: Vec<&Record> = records
        .iter()
        .filter(|r| r.name.to_lowercase().eq_ignore_root(&name))
        .collect();
    if same_name.is_empty() {
        answer.metadata.response_code = ResponseCode::NXDomain;
    }
    answer.answers = same_name
        .into_iter()
        .filter(|r| query.query_type() == RecordType::ANY || r.record_type() == query.query_type())
        .cloned()
        .collect();
    answer
}

/// `(host, port)` of `127.0.0.1:PORT`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn target(priority: u16, weight: u16, name: &str) -> SrvTarget {
    SrvTarget {
        record: "_volact._tcp.example.test".into(),
        target: name.into(),
        port: 7688,
        priority,
        weight,
    }
}

#[test]
fn srv_order_is_by_priority_then_weight_and_repeatable() {
    let records = vec![
        target(20, 0, "late"),
        target(10, 5, "a"),
        target(10, 0, "zero"),
        target(10, 5, "b"),
        target(0, 0, "first"),
    ];
    let names = |seed| {
        order_srv(records.clone(), &mut SplitMix::from_seed(seed))
            .into_iter()
            .map(|t| t.target)
            .collect::<Vec<_>>()
    };
    for seed in 0..50 {
        let order = names(seed);
        assert_eq!(order[0], "first");
        assert!(order[1..3].contains(&"a".to_string()) && order[1..3].contains(&"b".to_string()));
        assert_eq!(order[3], "zero", "weight 0 only after the weighted ones");
        assert_eq!(order[4], "late");
        assert_eq!(names(seed), order, "the same seed gives the same order");
    }
}

#[test]
fn weights_spread_first_choices_in_proportion() {
    let records = vec![target(0, 3, "heavy"), target(0, 1, "light")];
    let mut rng = SplitMix::from_seed(2026);
    let runs = 2000;
    let heavy = (0..runs)
        .filter(|_| order_srv(records.clone(), &mut rng)[0].target == "heavy")
        .count();
    let share = heavy as f64 / runs as f64;
    assert!((0.70..=0.80).contains(&share), "heavy first in {share}");
    // Every number below n comes up, and nothing at or above it.
    let mut seen = [false; 5];
    for _ in 0..1000 {
        let x = rng.below(5);
        seen[usize::try_from(x).unwrap()] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[tokio::test]
async fn the_preferred_host_serves_and_a_dead_one_is_skipped_in_the_same_attempt() {
    let v = Arc::new(Vendor::new(1));
    let (good, seen) = good_host(v.clone()).await;
    let dead = closed_port().await;
    let dns = FakeDns::start().await;
    dns.srv("volact.test", 0, 0, "h1.volact.test", port_of(&dead));
    dns.srv("volact.test", 10, 0, "h2.volact.test", port_of(&good));
    dns.a("h1.volact.test", Ipv4Addr::LOCALHOST);
    dns.a("h2.volact.test", Ipv4Addr::LOCALHOST);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_domain(&mut state, "volact.test").unwrap();
    let now = t0() + days(1);

    let started = Instant::now();
    let out = activate_with(&mut state, now, "pc", "nonce-0001".into(), &dns.options())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let h2 = format!("h2.volact.test:{}", port_of(&good));
    assert_eq!(out.host, h2);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        state.last_host_found_by,
        Some(FoundBy::Srv {
            record: "_volact._tcp.volact.test".into(),
            priority: 10,
            weight: 0
        })
    );
    let text = status(&state, now).render_text(true);
    assert!(
        text.contains("DNS SRV record _volact._tcp.volact.test (priority 10, weight 0)"),
        "{text}"
    );

    // Next time the cached host goes first: no DNS query at all.
    let before = dns.queries.load(Ordering::Relaxed);
    let out = activate_with(&mut state, now, "pc", "nonce-0002".into(), &dns.options())
        .await
        .unwrap();
    assert_eq!(out.host, h2);
    assert_eq!(state.last_host_found_by, Some(FoundBy::Cache));
    // The cached name is resolved through the discovery DNS server: one A/AAAA lookup,
    // no SRV lookup.
    assert!(dns.queries.load(Ordering::Relaxed) - before <= 2);
}

#[tokio::test]
async fn a_rogue_srv_record_ahead_of_the_real_host_cannot_block_activation() {
    let v = Arc::new(Vendor::new(1));
    let (good, seen) = good_host(v.clone()).await;
    // A host with no keys, published ahead of the real one, refusing every client as
    // revoked with a retry a month away.
    let rogue_handler: Handler = Arc::new(|req| {
        let body = volact_proto::ApiError::with_details(
            ErrorCode::ClientRevoked,
            "revoked",
            serde_json::json!({ "retry_after": req.client_time + days(29) }),
        );
        super::http_tests::json(403, &body)
    });
    let (rogue, _) = stub(rogue_handler).await;
    let dns = FakeDns::start().await;
    dns.srv("volact.test", 0, 0, "rogue.volact.test", port_of(&rogue));
    dns.srv("volact.test", 10, 0, "real.volact.test", port_of(&good));
    dns.a("rogue.volact.test", Ipv4Addr::LOCALHOST);
    dns.a("real.volact.test", Ipv4Addr::LOCALHOST);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_domain(&mut state, "volact.test").unwrap();
    let now = t0() + days(1);
    let out = activate_with(&mut state, now, "pc", "nonce-0001".into(), &dns.options())
        .await
        .unwrap();
    assert_eq!(out.host, format!("real.volact.test:{}", port_of(&good)));
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(status(&state, now).next_attempt, Some(now + days(7)));
}

#[tokio::test]
async fn the_host_cache_wins_over_priority_until_it_is_switched_off() {
    let v = Arc::new(Vendor::new(1));
    let (first, first_seen) = good_host(v.clone()).await;
    let (second, second_seen) = good_host(v.clone()).await;
    let dns = FakeDns::start().await;
    dns.srv("volact.test", 0, 0, "h1.volact.test", port_of(&first));
    dns.srv("volact.test", 10, 0, "h2.volact.test", port_of(&second));
    dns.a("h1.volact.test", Ipv4Addr::LOCALHOST);
    dns.a("h2.volact.test", Ipv4Addr::LOCALHOST);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_domain(&mut state, "volact.test").unwrap();
    state.last_host = Some(format!("h2.volact.test:{}", port_of(&second)));
    let now = t0() + days(1);

    let out = activate_with(&mut state, now, "pc", "n-1".into(), &dns.options())
        .await
        .unwrap();
    assert!(out.host.starts_with("h2."), "the cached host first");
    let no_cache = ActivateOptions {
        no_host_cache: true,
        ..dns.options()
    };
    let out = activate_with(&mut state, now, "pc", "n-2".into(), &no_cache)
        .await
        .unwrap();
    assert!(out.host.starts_with("h1."), "--no-host-cache: by priority");
    crate::set_host_cache(&mut state, false);
    state.last_host = Some(format!("h2.volact.test:{}", port_of(&second)));
    let out = activate_with(&mut state, now, "pc", "n-3".into(), &dns.options())
        .await
        .unwrap();
    assert!(out.host.starts_with("h1."), "cache off in the state");
    assert_eq!(first_seen.lock().unwrap().len(), 2);
    assert_eq!(second_seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_host_that_accepts_but_never_answers_is_skipped() {
    let v = Arc::new(Vendor::new(1));
    let (good, _) = good_host(v.clone()).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = silent.accept().await {
            keep.lock().unwrap().push(conn);
        }
    });
    let dns = FakeDns::start().await;
    dns.srv("volact.test", 0, 0, "silent.volact.test", silent_port);
    dns.srv("volact.test", 1, 0, "good.volact.test", port_of(&good));
    dns.a("silent.volact.test", Ipv4Addr::LOCALHOST);
    dns.a("good.volact.test", Ipv4Addr::LOCALHOST);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_domain(&mut state, "volact.test").unwrap();
    let options = ActivateOptions {
        request_timeout: Duration::from_millis(700),
        ..dns.options()
    };
    let started = Instant::now();
    let out = activate_with(&mut state, t0() + days(1), "pc", "n".into(), &options)
        .await
        .unwrap();
    assert!(out.host.starts_with("good."));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn no_host_found_lists_every_name_and_host() {
    let v = Arc::new(Vendor::new(1));
    let dead = closed_port().await;
    let refusing: Handler = Arc::new(|_| {
        let e = volact_proto::ApiError::new(ErrorCode::HostNotActivated, "not activated yet");
        (503, serde_json::to_value(e).unwrap())
    });
    let (unactivated, _) = stub(refusing).await;
    let dns = FakeDns::start().await;
    dns.srv("volact.test", 0, 0, "dead.volact.test", port_of(&dead));
    dns.srv("volact.test", 0, 0, "nameless.volact.test", 7688);
    dns.srv(
        "volact.test",
        5,
        0,
        "new.volact.test",
        port_of(&unactivated),
    );
    dns.a("dead.volact.test", Ipv4Addr::LOCALHOST);
    dns.a("new.volact.test", Ipv4Addr::LOCALHOST);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_domain(&mut state, "volact.test").unwrap();
    let e = activate_with(&mut state, t0(), "pc", "n".into(), &dns.options())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoHostFound);
    for part in [
        "_volact._tcp.volact.test (SRV): 3 records",
        "nameless.volact.test (A/AAAA",
        "the name does not exist (NXDOMAIN)",
        &format!("dead.volact.test:{}", port_of(&dead)),
        "host-unreachable",
        &format!("new.volact.test:{}", port_of(&unactivated)),
        "host-not-activated",
        "priority 5",
    ] {
        assert!(e.message.contains(part), "`{part}` missing: {}", e.message);
    }
    assert_eq!(e.details["tried"].as_array().unwrap().len(), 2);
    assert_eq!(e.details["looked_up"].as_array().unwrap().len(), 2);

    // An empty zone: the lookup itself is what failed.
    dns.clear();
    let e = activate_with(&mut state, t0(), "pc", "n".into(), &dns.options())
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("_volact._tcp.volact.test (SRV): the name does not exist (NXDOMAIN)")
            && e.message.contains("found no host to ask"),
        "{}",
        e.message
    );
    assert_eq!(state.last_attempt.unwrap().result, "no-host-found");
}

#[test]
fn the_dns_server_setting_is_checked() {
    let mut state = ClientState::default();
    assert_eq!(
        crate::set_dns_server(&mut state, "127.0.0.1:5353").unwrap(),
        "127.0.0.1:5353"
    );
    assert_eq!(
        crate::set_dns_server(&mut state, "10.1.2.3").unwrap(),
        "10.1.2.3:53"
    );
    assert_eq!(
        crate::set_dns_server(&mut state, "[::1]:5353").unwrap(),
        "[::1]:5353"
    );
    let e = crate::set_dns_server(&mut state, "dns.example.com").unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(state.dns_server.as_deref(), Some("[::1]:5353"));
    crate::clear_dns_server(&mut state);
    assert!(state.dns_server.is_none());
    state.dns_server = Some("garbage".into());
    assert_eq!(
        state.dns_server_addr().unwrap_err().code,
        ErrorCode::InvalidState
    );
}

#[tokio::test]
async fn tls_hosts_are_found_under_their_own_service_name_when_tls_is_trusted() {
    use crate::discovery::{Dns, DnsOptions, discover_with};
    let dns = FakeDns::start().await;
    dns.srv("corp.test", 0, 0, "plain.corp.test", 7688);
    let owner = Name::from_ascii("_volact-tls._tcp.corp.test.").unwrap();
    let target = Name::from_ascii("secure.corp.test.").unwrap();
    dns.records.lock().unwrap().push(Record::from_rdata(
        owner,
        60,
        RData::SRV(SRV::new(0, 0, 7689, target)),
    ));
    dns.a("plain.corp.test", Ipv4Addr::new(127, 0, 0, 1));
    dns.a("secure.corp.test", Ipv4Addr::new(127, 0, 0, 1));
    let resolver = Dns::new(&DnsOptions {
        server: Some(dns.addr),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let domains = ["corp.test".to_string()];
    let hosts = |found: crate::discovery::Discovered| -> Vec<String> {
        found.candidates.into_iter().map(|c| c.host).collect()
    };
    // Given a TLS trust: the TLS record first, its target asked over https://.
    let found = discover_with(&resolver, &domains, &mut SplitMix::from_seed(1), true).await;
    assert_eq!(
        hosts(found),
        ["https://secure.corp.test:7689", "plain.corp.test:7688"]
    );
    // Without one, only the plain record is looked up, as before.
    let found = discover_with(&resolver, &domains, &mut SplitMix::from_seed(1), false).await;
    assert_eq!(hosts(found), ["plain.corp.test:7688"]);
}
