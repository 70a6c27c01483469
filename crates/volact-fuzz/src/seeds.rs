//! The seed corpus: a few valid inputs per target (and a few near misses), made from the
//! fixed [`world`](crate::fixtures::world) so they carry real signatures.
//! `cargo run -p volact-fuzz --bin volact-fuzz-seeds` writes them to `fuzz/corpus/`.

use crate::fixtures::{TSIG_KEY_FILE, world};
use crate::targets::{DNS_ID, signed_update};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record};
use volact_client::{Attempt, ClientState, Installed, RESULT_ACTIVATED, StoredTicket};
use volact_core::token;

/// One seed: its target, a file name, and the bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let w = world();
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };

    // The activation request.
    add("activation_request", "valid.json", json(&w.request));
    let mut renewal = w.request.clone();
    renewal.ticket_id = Some(w.ticket.jti.clone());
    renewal.previous_client_id = Some("7d444840-9dc0-11d1-b245-5ffdce74fad2".into());
    renewal.setup_key = renewal.setup_key.to_lowercase().replace('-', " ");
    add("activation_request", "renewal.json", json(&renewal));
    let mut nil = w.request.clone();
    nil.client_id = "00000000-0000-0000-0000-000000000000".into();
    add("activation_request", "nil-client.json", json(&nil));

    // Tokens of every kind.
    add("token", "ticket", w.ticket_token.clone().into_bytes());
    add("token", "not-yet", w.not_yet_token.clone().into_bytes());
    add(
        "token",
        "certificate",
        w.certificate_token.clone().into_bytes(),
    );
    add("token", "catalog", w.bundle.catalog.clone().into_bytes());
    add("token", "host-key", w.host_key_token.clone().into_bytes());
    add("token", "garbage", b"v4.public.garbage".to_vec());

    // Setup keys.
    for p in &w.catalog.products {
        add("setup_key", &p.id, p.setup_key.as_str().as_bytes().to_vec());
    }
    if let Some(p) = w.catalog.products.first() {
        let typed = p.setup_key.as_str().to_lowercase().replace('-', " ");
        add("setup_key", "typed", typed.into_bytes());
        let mut typo = p.setup_key.as_str().as_bytes().to_vec();
        typo[3] = if typo[3] == b'B' { b'C' } else { b'B' };
        add("setup_key", "typo", typo);
    }

    // Host keys: the vendor reads a host's request; a host reads its host key file.
    add("host_key", "request.json", json(&w.host_request));
    add(
        "host_key",
        "host-key",
        w.host_key_token.clone().into_bytes(),
    );
    if let Ok(forged) = token::sign(&w.stranger, &w.host_key)
        && let Ok(req) = volact_core::certificate::make_request(
            &w.host,
            &forged,
            "host-nonce-43".into(),
            crate::fixtures::now(),
        )
    {
        add("host_key", "forged-key.json", json(&req));
    }

    // The vendor bundle.
    add("vendor_bundle", "vendor.pub", json(&w.bundle));
    let mut other_root = w.bundle.clone();
    other_root.root_public_key = w.stranger.public().to_paserk();
    add("vendor_bundle", "other-root.pub", json(&other_root));

    // The host's configuration.
    add(
        "host_config",
        "full.toml",
        br#"listen = "0.0.0.0:7688"
renew_interval = "7d"
retry_interval = "2h"
ticket_validity = "180d"
count_window = "30d"
max_clock_skew = "4h"
event_retention = "90d"
metrics_token_file = "metrics.token"

[dns.publish]
server = "127.0.0.1:5353"
zone = "example.test"
domain = "corp.example.test"
name = "kms1.example.test"
port = 7688
priority = 10
weight = 5
ttl = 600
address = "192.0.2.10"
key_file = "update.key"
refresh_interval = "12h"
"#
        .to_vec(),
    );
    add(
        "host_config",
        "iso.toml",
        b"renew_interval = \"P1D\"\nmax_clock_skew = \"1d 12h\"\n[dns.publish]\nserver = \"[::1]\"\nzone = \"example.test\"\nname = \"kms1\"\naddress = \"2001:db8::1\"\n".to_vec(),
    );
    add("host_config", "empty.toml", Vec::new());

    // TSIG key files.
    add("tsig_key", "update.key", TSIG_KEY_FILE.as_bytes().to_vec());
    add(
        "tsig_key",
        "commented.key",
        b"# made by tsig-keygen\n/* two */ key volact { // hi\n algorithm HMAC-SHA512; secret \"AAECAwQFBgcICQ==\"; };\n".to_vec(),
    );

    // DNS answers to the signed update, and to an SRV query.
    if let Some((update, _)) = signed_update() {
        let mut ok = Message::response(DNS_ID, OpCode::Update);
        ok.queries = update.queries.clone();
        if let Ok(b) = ok.to_vec() {
            add("dns_answer", "unsigned-noerror", b);
        }
        let mut refused = Message::response(DNS_ID, OpCode::Update);
        refused.metadata.response_code = ResponseCode::NotAuth;
        if let Ok(b) = refused.to_vec() {
            add("dns_answer", "notauth", b);
        }
        if let Ok(b) = update.to_vec() {
            add("dns_answer", "signed-request", b);
        }
    }
    if let (Ok(owner), Ok(target)) = (
        Name::from_ascii("_volact._tcp.example.test."),
        Name::from_ascii("kms1.example.test."),
    ) {
        let mut answer = Message::response(DNS_ID, OpCode::Query);
        answer.add_answer(Record::from_rdata(
            owner,
            600,
            RData::SRV(SRV::new(10, 5, 7688, target)),
        ));
        if let Ok(b) = answer.to_vec() {
            add("dns_answer", "srv", b);
        }
    }

    // The client state file.
    let installed = w
        .catalog
        .products
        .iter()
        .find(|p| p.id == crate::fixtures::PRODUCT);
    if let Some(p) = installed {
        let mut state = ClientState {
            installed: Some(Installed {
                client_id: crate::fixtures::CLIENT_ID.into(),
                setup_key: p.setup_key.clone(),
                product: p.id.clone(),
                product_name: p.name.clone(),
                application: p.application.clone(),
                application_name: w.catalog.application_name(&p.application),
                minimum_count: p.minimum_count,
                grace_days: p.grace_days,
                installed_at: crate::fixtures::now(),
                vendor: w.bundle.clone(),
            }),
            domain: Some("example.test".into()),
            dns_server: Some("127.0.0.1:5353".into()),
            ..ClientState::default()
        };
        add("client_state", "installed.json", json(&state));
        state.ticket = Some(StoredTicket {
            token: w.ticket_token.clone(),
            host_certificate: w.certificate_token.clone(),
            ticket_id: w.ticket.jti.clone(),
            host_id: w.ticket.iss.clone(),
            count: w.ticket.count,
            minimum: w.ticket.minimum,
            issued_at: w.ticket.iat,
            renew_after: w.ticket.renew_after,
            valid_until: w.ticket.exp,
        });
        state.intervals = Some(w.answer.intervals);
        state.last_attempt = Some(Attempt {
            at: w.ticket.iat,
            host: "kms1.example.test:7688".into(),
            result: RESULT_ACTIVATED.into(),
            count: Some(w.ticket.count),
            minimum: Some(w.ticket.minimum),
            message: "activated".into(),
            retry_after: None,
        });
        state.last_host = Some("kms1.example.test:7688".into());
        add("client_state", "activated.json", json(&state));
    }
    add("client_state", "empty.json", b"{\"version\":1}".to_vec());

    // The host's answers, as the client reads them.
    add("activation_response", "activated.json", json(&w.answer));
    add(
        "activation_response",
        "not-yet.json",
        json(&w.not_yet_answer),
    );
    out
}
