//! One check per parser of outside input. Each takes any bytes and must never panic on
//! its own; where the parser has an encoder, or a verifier with a key the input cannot
//! know, it also asserts the property that must hold (a round trip, no forgery), so a
//! violation stops the fuzzer like a crash does.

use crate::fixtures::{self, CLIENT_ID, NONCE, PRODUCT, TSIG_KEY_FILE, world};
use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, ResponseCode};
use std::path::Path;
use volact_client::{ClientState, MachineId};
use volact_core::catalog::{Catalog, VendorBundle};
use volact_core::certificate::{self, HostCertificate, Ledger};
use volact_core::decide;
use volact_core::host_key::HostKey;
use volact_core::keys::PublicKey;
use volact_core::settings::Settings;
use volact_core::setup_key::SetupKey;
use volact_core::ticket::{self, Expected, NotYet, Ticket};
use volact_core::token::{self, Document};
use volact_engine::config::RawConfig;
use volact_engine::dns::tsig::TsigKey;
use volact_engine::dns::wire;
use volact_proto::{ActivationRequest, ActivationResponse, ErrorCode, HostActivationRequest};

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `POST /v1/activations`: the JSON body, then the host's field checks.
pub fn activation_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ActivationRequest>(data) else {
        return;
    };
    let again: Option<ActivationRequest> = serde_json::to_vec(&req)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok());
    assert_eq!(again.as_ref(), Some(&req), "request JSON round trip");
    match decide::parse_request(&req) {
        Ok(parsed) => {
            assert_eq!(
                SetupKey::parse(parsed.setup_key.as_str()).ok().as_ref(),
                Some(&parsed.setup_key),
                "a canonical setup key parses to itself"
            );
            let id = uuid::Uuid::parse_str(&parsed.client_id).ok();
            assert_eq!(id.map(|u| u.as_u128()), Some(parsed.client));
            assert!((1..=1000).contains(&req.minimum_count));
            assert!(!req.machine_name.chars().any(char::is_control));
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::BadRequest | ErrorCode::UnknownSetupKey
        )),
    }
}

/// Verifies `token` as a `T` with `key`; whatever verifies must read the same through
/// the unverified fast path, and must not verify with any other key.
fn verify_as<T: Document + PartialEq + std::fmt::Debug>(key: &PublicKey, token: &str) {
    if let Ok(claims) = token::verify::<T>(key, token) {
        assert_eq!(
            token::peek::<T>(token).ok().as_ref(),
            Some(&claims),
            "peek and verify disagree"
        );
        assert!(
            token::verify::<T>(world().stranger.public(), token).is_err(),
            "a token verified with a key that did not sign it"
        );
    }
    let _ = token::peek::<T>(token);
}

/// PASETO v4.public tokens of every kind, with the keys that sign them; plus one
/// single-character change of a genuine ticket, which must never verify.
pub fn token(data: &[u8]) {
    let w = world();
    if let Some(t) = text(data) {
        verify_as::<Ticket>(w.host.public(), t);
        verify_as::<NotYet>(w.host.public(), t);
        verify_as::<HostCertificate>(w.root.public(), t);
        verify_as::<Catalog>(w.root.public(), t);
        verify_as::<HostKey>(w.root.public(), t);
    }
    if let [hi, lo, byte, ..] = *data {
        let mut bytes = w.ticket_token.clone().into_bytes();
        let pos = usize::from(u16::from_be_bytes([hi, lo])) % bytes.len();
        if bytes[pos] != byte {
            bytes[pos] = byte;
            if let Ok(changed) = String::from_utf8(bytes) {
                assert!(
                    token::verify::<Ticket>(w.host.public(), &changed).is_err(),
                    "a ticket with one character changed at {pos} still verifies: {changed}"
                );
            }
        }
    }
}

/// A setup key as a person types it.
pub fn setup_key(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    match SetupKey::parse(t) {
        Ok(key) => {
            let s = key.as_str();
            assert_eq!(s.len(), 29, "canonical form is 29 characters");
            assert!(
                s.bytes()
                    .enumerate()
                    .all(|(i, c)| (c == b'-') == (i % 6 == 5))
            );
            assert_eq!(SetupKey::parse(s).ok().as_ref(), Some(&key));
            assert_eq!(
                SetupKey::parse(&s.to_lowercase().replace('-', " "))
                    .ok()
                    .as_ref(),
                Some(&key)
            );
            let typed: String = t
                .bytes()
                .filter(|c| !matches!(c, b'-' | b' ' | b'\t'))
                .map(|c| char::from(c.to_ascii_uppercase()))
                .collect();
            assert_eq!(typed, s.replace('-', ""), "the key is what was typed");
            let json = serde_json::to_string(&key).ok();
            let back = json.and_then(|j| serde_json::from_str::<SetupKey>(&j).ok());
            assert_eq!(back.as_ref(), Some(&key), "setup key JSON round trip");
        }
        Err(e) => assert_eq!(e.code, ErrorCode::UnknownSetupKey),
    }
}

/// Host keys: the host's activation request as the vendor reads it (proof and host key
/// verified against the vendor root), and a host key file as the host reads it.
pub fn host_key(data: &[u8]) {
    let w = world();
    if let Ok(req) = serde_json::from_slice::<HostActivationRequest>(data) {
        let mut ledger = Ledger::default();
        match certificate::activate_host(
            &w.root,
            &w.catalog,
            &mut ledger,
            &req,
            fixtures::now(),
            365,
        ) {
            Ok((cert_token, cert)) => {
                let host = PublicKey::from_paserk(&req.host_public_key).ok();
                let checked =
                    certificate::verify_certificate(w.root.public(), &cert_token, host.as_ref());
                assert_eq!(
                    checked.ok().as_ref(),
                    Some(&cert),
                    "the certificate verifies"
                );
                assert_eq!(ledger.keys.get(&cert.key_id).map(|h| h.len()), Some(1));
            }
            Err(_) => assert_eq!(ledger, Ledger::default(), "a refusal changed the ledger"),
        }
    }
    if let Some(t) = text(data) {
        let _ = token::peek::<HostKey>(t);
        if let Ok(key) = token::verify::<HostKey>(w.root.public(), t) {
            let resigned = token::sign(&w.root, &key).ok();
            let back = resigned.and_then(|r| token::verify::<HostKey>(w.root.public(), &r).ok());
            assert_eq!(back.as_ref(), Some(&key), "host key sign/verify round trip");
        }
    }
}

/// The vendor bundle (`vendor.pub`) as hosts and clients read it.
pub fn vendor_bundle(data: &[u8]) {
    let Ok(bundle) = serde_json::from_slice::<VendorBundle>(data) else {
        return;
    };
    let again = serde_json::to_vec(&bundle)
        .ok()
        .and_then(|j| serde_json::from_slice::<VendorBundle>(&j).ok());
    assert_eq!(again.as_ref(), Some(&bundle), "bundle JSON round trip");
    if let Ok((root, catalog)) = bundle.open() {
        let paserk = root.to_paserk();
        assert_eq!(
            PublicKey::from_paserk(&paserk).ok().map(|k| k.to_paserk()),
            Some(paserk),
            "PASERK round trip"
        );
        let catalog_json = serde_json::to_vec(&catalog)
            .ok()
            .and_then(|j| serde_json::from_slice::<Catalog>(&j).ok());
        assert_eq!(
            catalog_json.as_ref(),
            Some(&catalog),
            "catalog JSON round trip"
        );
        for product in &catalog.products {
            // A key the vendor signed may still be unknown to the catalog's own lookup only
            // if two products share it.
            let found = catalog.product_for_key(&product.setup_key);
            assert!(found.is_ok(), "a catalog product's own key is refused");
        }
    }
}

/// The host's `volact.toml`: keys, durations, ranges, and the `[dns.publish]` section,
/// whose SRV record is then encoded to DNS wire form and decoded again.
pub fn host_config(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let Ok(raw) = RawConfig::from_toml(t, Path::new("volact.toml")) else {
        return;
    };
    if let Ok(config) = raw.resolve() {
        assert!(config.settings.validate().is_ok());
        let wire = config.settings.intervals();
        assert_eq!(
            Settings::from_intervals(&wire),
            config.settings,
            "settings → wire → settings"
        );
        assert_eq!(Settings::from_intervals_clamped(&wire), config.settings);
    }
    let Some(publish) = raw.dns.as_ref().and_then(|d| d.publish.as_ref()) else {
        return;
    };
    if let Ok(p) = publish.resolve(Path::new("/nonexistent-volact-data"), 7688) {
        dns_record_round_trip(&p.record);
    }
}

fn dns_record_round_trip(record: &volact_engine::dns::config::SrvRecord) {
    let (Ok(srv), Ok(address), Ok(zone)) = (
        wire::srv_record(record),
        wire::address_record(record),
        wire::fqdn(&record.domain),
    ) else {
        return;
    };
    let mut message = wire::update(&zone);
    message.metadata.id = 0x5eed;
    message.add_update(srv.clone());
    message.add_updates(address.clone());
    let Ok(bytes) = message.to_vec() else {
        return;
    };
    let back = Message::from_vec(&bytes).ok();
    let updates: Option<Vec<_>> = back.map(|m| m.updates().to_vec());
    let mut expected = vec![srv];
    expected.extend(address);
    assert_eq!(updates, Some(expected), "SRV update wire round trip");
}

/// A TSIG key file (BIND's format).
pub fn tsig_key(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(key) = TsigKey::parse(t, Path::new("update.key")) {
        assert!(!key.name.is_empty() || key.signer().is_err());
        let _ = key.signer();
    }
}

/// The id of the fixed update in [`dns_answer`].
pub const DNS_ID: u16 = 0x5eed;

/// The fixed signed update whose answer [`dns_answer`] reads, and its TSIG verifier.
pub fn signed_update() -> Option<(Message, hickory_proto::rr::TSigVerifier)> {
    let key = TsigKey::parse(TSIG_KEY_FILE, Path::new("update.key")).ok()?;
    let signer = key.signer().ok()?;
    let zone = wire::fqdn("example.test").ok()?;
    let mut update = wire::update(&zone);
    update.metadata.id = DNS_ID;
    let verifier = update
        .finalize(&signer, fixtures::NOW_SECS.unsigned_abs())
        .ok()??;
    Some((update, verifier))
}

/// A DNS server's answer to the host's signed update (or to a plain query): bytes from
/// the network, read by [`wire::read_answer`]. Without the TSIG key no answer can be
/// accepted as a success of the signed update.
pub fn dns_answer(data: &[u8]) {
    if let Some((_, mut verifier)) = signed_update() {
        let answer = wire::read_answer(data, DNS_ID, Some(&mut verifier));
        assert!(
            !matches!(answer, Some(Ok(_))),
            "an answer not signed with the TSIG key was accepted: {answer:?}"
        );
    }
    if let Some(Ok(m)) = wire::read_answer(data, DNS_ID, None) {
        assert_eq!(m.metadata.id, DNS_ID);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    if let Ok(m) = Message::from_vec(data)
        && let Ok(bytes) = m.to_vec()
    {
        // What hickory encodes it must decode again.
        assert!(Message::from_vec(&bytes).is_ok(), "re-encoded DNS message");
    }
}

/// The client's state file, then what `volact status` makes of it.
pub fn client_state(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let machine = MachineId::new("fuzz-machine");
    let path = Path::new("client.json");
    let Ok(state) = ClientState::parse_on(t, path, &machine) else {
        return;
    };
    let again = state
        .sealed_json(&machine)
        .ok()
        .and_then(|j| String::from_utf8(j).ok())
        .and_then(|j| ClientState::parse_on(&j, path, &machine).ok());
    if state.tamper.is_none() {
        assert_eq!(again.as_ref(), Some(&state), "state save/load round trip");
    } else {
        // Saving never launders a state read as tampered.
        assert!(
            again.as_ref().is_some_and(|a| a.tamper.is_some()),
            "a tampered state read back sound: {again:?}"
        );
    }
    let _ = state.dns_server_addr();
    let now = fixtures::now();
    let _ = volact_client::status(&state, now);
    let _ = volact_client::expiry(&state, now);
}

/// The host's answer as the client checks it against the vendor root it ships with.
pub fn activation_response(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<ActivationResponse>(data) else {
        return;
    };
    let again = serde_json::to_vec(&answer)
        .ok()
        .and_then(|j| serde_json::from_slice::<ActivationResponse>(&j).ok());
    assert_eq!(again.as_ref(), Some(&answer), "answer JSON round trip");
    let w = world();
    let expected = Expected {
        client_id: CLIENT_ID,
        product: PRODUCT,
        nonce: NONCE,
        minimum: w.ticket.minimum,
        now: fixtures::now(),
        max_skew: volact_core::settings::Settings::default().max_clock_skew,
        catalog: None,
    };
    if let Ok(verified) = ticket::verify_answer(w.root.public(), &answer, expected) {
        let certificate = match &verified {
            ticket::VerifiedAnswer::Ticket { certificate, .. }
            | ticket::VerifiedAnswer::NotYet { certificate, .. } => certificate,
        };
        assert!(certificate.products.iter().any(|p| p == PRODUCT));
        assert_eq!(
            certificate::verify_certificate(w.root.public(), &answer.host_certificate, None)
                .ok()
                .as_ref(),
            Some(certificate)
        );
    }
    assert!(
        ticket::verify_answer(w.stranger.public(), &answer, expected).is_err(),
        "an answer verified against a root that signed nothing"
    );
}
