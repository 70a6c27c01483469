//! Criterion benchmarks of the host's hot pieces in the core: signing a ticket,
//! verifying one (the client's side), and updating the count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use std::hint::black_box;
use volact_core::count::CountIndex;
use volact_core::keys::KeyPair;
use volact_core::ticket::{Ticket, sign_ticket, ticket_id};
use volact_core::token;

fn ticket(i: u64) -> Ticket {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let sub = format!("0f8e5a52-8d1c-4f3c-9b1e-{i:012x}");
    Ticket {
        jti: ticket_id(&sub, "nonce-0123456789", now),
        sub,
        product: "demo-os-workstation".into(),
        application: "demo-os".into(),
        count: 1234,
        minimum: 25,
        iat: now,
        renew_after: Timestamp::from_second(1_800_604_800).unwrap(),
        exp: Timestamp::from_second(1_815_552_000).unwrap(),
        iss: "h-0123456789abcdef".into(),
        nonce: "nonce-0123456789".into(),
        intervals: Some(volact_core::settings::Settings::default().intervals()),
    }
}

fn signing(c: &mut Criterion) {
    let host = KeyPair::from_seed([7; 32]).unwrap();
    let t = ticket(1);
    c.bench_function("ticket/sign", |b| {
        b.iter(|| sign_ticket(&host, black_box(&t)).unwrap())
    });
    // Sixteen tickets signed together, as the host signs a write batch: per ticket, this
    // is the cost to compare with ticket/sign.
    let sixteen: Vec<token::Unsigned> = (0..16)
        .map(|i| token::prepare(&ticket(i)).unwrap())
        .collect();
    c.bench_function("ticket/sign-16-together", |b| {
        b.iter(|| token::sign_all(&host, black_box(&sixteen)))
    });
    // What signing cost through pasetors (before the hand-built token): the same bytes.
    let secret = pasetors::keys::AsymmetricSecretKey::<pasetors::version4::V4>::from(
        &host.signing_key().to_keypair_bytes(),
    )
    .unwrap();
    let payload = serde_json::to_vec(&t).unwrap();
    c.bench_function("ticket/sign-with-pasetors", |b| {
        b.iter(|| {
            pasetors::version4::PublicToken::sign(&secret, black_box(&payload), None, None).unwrap()
        })
    });
    let signed = sign_ticket(&host, &t).unwrap();
    c.bench_function("ticket/verify", |b| {
        b.iter(|| token::verify::<Ticket>(host.public(), black_box(&signed)).unwrap())
    });
    c.bench_function("ticket/id", |b| {
        b.iter(|| ticket_id(black_box(&t.sub), "nonce-0123456789", t.iat))
    });
}

fn counting(c: &mut Criterion) {
    const DAY: i64 = 86_400;
    let base = 1_800_000_000;
    for clients in [1_000u128, 1_000_000] {
        let mut index = CountIndex::new(30 * DAY);
        for k in 0..clients {
            index.load("demo-os", k * 7919 + 1, base + (k as i64 % (29 * DAY)));
        }
        let mut i = 0u128;
        let mut now = base + 29 * DAY;
        c.bench_function(&format!("count/observe/{clients}-clients"), |b| {
            b.iter(|| {
                i = (i + 1) % clients;
                now += 1;
                index.observe("demo-os", black_box(i * 7919 + 1), now)
            })
        });
    }
    c.bench_function("count/load/100k", |b| {
        b.iter_batched(
            || CountIndex::new(30 * DAY),
            |mut index| {
                for k in 0..100_000u128 {
                    index.load("demo-os", k + 1, base + (k as i64 % DAY));
                }
                index
            },
            BatchSize::LargeInput,
        )
    });
}

/// The vendor service's work for one online host activation, without HTTP and the
/// store: checking the request (the host's proof, the host key along the chain, its key
/// group) and signing the host certificate.
fn host_activation(c: &mut Criterion) {
    use volact_core::catalog::{Catalog, demo_source};
    use volact_core::certificate::{check_activation, make_request, sign_certificate};
    use volact_core::delegation::Signer;
    use volact_core::host_key::HostKey;
    let root = KeyPair::from_seed([1; 32]).unwrap();
    let mut n = 0u8;
    let catalog = Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, move || {
        n = n.wrapping_add(1);
        [n; 24]
    })
    .unwrap();
    let key = HostKey {
        jti: "hk-bench".into(),
        vendor: catalog.vendor.clone(),
        customer: "Acme".into(),
        group: "demo-all".into(),
        seats: None,
        exp: None,
        max_hosts: 6,
        max_activations: 10,
        iat: Timestamp::UNIX_EPOCH,
        usage_reports: true,
        delegation: None,
    };
    let key_token = token::sign(&root, &key).unwrap();
    let host = KeyPair::from_seed([9; 32]).unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let request = make_request(&host, &key_token, "nonce-0123456789".into(), now).unwrap();
    c.bench_function("host-activation/check", |b| {
        b.iter(|| check_activation(root.public(), &catalog, black_box(&request), now).unwrap())
    });
    let checked = check_activation(root.public(), &catalog, &request, now).unwrap();
    let signer = Signer::root(&root);
    c.bench_function("host-activation/sign-certificate", |b| {
        b.iter(|| {
            sign_certificate(&signer, &catalog.vendor, black_box(&checked), now, 365).unwrap()
        })
    });
}

criterion_group!(benches, signing, counting, host_activation);
criterion_main!(benches);
