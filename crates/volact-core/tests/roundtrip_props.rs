//! Property tests for every encode/decode pair of volact-core and the wire types: what
//! is signed verifies to the same claims and any one changed byte refuses; what is
//! serialized parses back equal; intervals survive settings → wire → settings.
#![allow(clippy::unwrap_used)]

use jiff::Timestamp;
use proptest::prelude::*;
use volact_core::catalog::{Catalog, VendorBundle, demo_source};
use volact_core::host_key::HostKey;
use volact_core::keys::{KeyPair, PublicKey};
use volact_core::settings::{RANGES, Settings};
use volact_core::ticket::{NotYet, Ticket};
use volact_core::token::{self, Document};
use volact_proto::{
    ActivationRequest, ActivationResponse, ActivationResult, HostActivationRequest,
    HostActivationResponse, HostInfo, HostIntervals,
};

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 1970 to 2100, with sub-second digits so the RFC 3339 text must keep them.
    (0i64..4_102_444_800, 0i32..1_000_000_000)
        .prop_map(|(s, n)| Timestamp::new(s, n).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Any text, control characters and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}|[\\x00-\\x7f]{0,24}"
}

fn ticket() -> impl Strategy<Value = Ticket> {
    (
        (text(), text(), text(), text()),
        (any::<u32>(), any::<u32>()),
        (timestamp(), timestamp(), timestamp()),
        (text(), text()),
        proptest::option::of(intervals()),
    )
        .prop_map(
            |(
                (jti, sub, product, application),
                (count, minimum),
                (iat, renew_after, exp),
                (iss, nonce),
                intervals,
            )| Ticket {
                jti,
                sub,
                product,
                application,
                count,
                minimum,
                iat,
                renew_after,
                exp,
                iss,
                nonce,
                intervals,
            },
        )
}

fn host_key() -> impl Strategy<Value = HostKey> {
    (
        (text(), text(), text(), text()),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(timestamp()),
        ),
        (any::<u32>(), any::<u32>(), timestamp()),
    )
        .prop_map(
            |((jti, vendor, customer, group), (seats, exp), (max_hosts, max_activations, iat))| {
                HostKey {
                    jti,
                    vendor,
                    customer,
                    group,
                    seats,
                    exp,
                    max_hosts,
                    max_activations,
                    iat,
                    usage_reports: false,
                    delegation: None,
                }
            },
        )
}

fn intervals() -> impl Strategy<Value = HostIntervals> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(a, b, c, d, e)| HostIntervals {
            renew_interval_secs: a,
            retry_interval_secs: b,
            ticket_validity_secs: c,
            count_window_secs: d,
            max_clock_skew_secs: e,
        })
}

/// Signs `claims` with a key from `seed`, checks the round trip, and that no single
/// changed byte of the token verifies (nor does the token verify with another key).
fn sign_verify_and_tamper<T>(
    seed: [u8; 32],
    claims: &T,
    pos: usize,
    byte: u8,
) -> Result<(), TestCaseError>
where
    T: Document + PartialEq + std::fmt::Debug,
{
    let key = KeyPair::from_seed(seed).unwrap();
    let signed = token::sign(&key, claims).unwrap();
    prop_assert_eq!(&token::verify::<T>(key.public(), &signed).unwrap(), claims);
    prop_assert_eq!(&token::peek::<T>(&signed).unwrap(), claims);
    let mut other_seed = seed;
    other_seed[0] ^= 1;
    let other = KeyPair::from_seed(other_seed).unwrap();
    prop_assert!(token::verify::<T>(other.public(), &signed).is_err());
    let mut bytes = signed.clone().into_bytes();
    let pos = pos % bytes.len();
    prop_assume!(bytes[pos] != byte);
    bytes[pos] = byte;
    if let Ok(changed) = String::from_utf8(bytes) {
        prop_assert!(
            token::verify::<T>(key.public(), &changed).is_err(),
            "changing byte {} of {} to {:?} still verifies",
            pos,
            signed,
            char::from(byte)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tickets_sign_verify_and_refuse_any_changed_byte(
        seed in any::<[u8; 32]>(), t in ticket(), pos in any::<usize>(), byte in any::<u8>()
    ) {
        sign_verify_and_tamper(seed, &t, pos, byte)?;
    }

    #[test]
    fn host_keys_sign_verify_and_refuse_any_changed_byte(
        seed in any::<[u8; 32]>(), k in host_key(), pos in any::<usize>(), byte in any::<u8>()
    ) {
        sign_verify_and_tamper(seed, &k, pos, byte)?;
        // A host key is never taken for another kind of document signed by the same key.
        let key = KeyPair::from_seed(seed).unwrap();
        let signed = token::sign(&key, &k).unwrap();
        prop_assert!(token::verify::<Ticket>(key.public(), &signed).is_err());
    }

    #[test]
    fn not_yet_answers_sign_and_verify(
        seed in any::<[u8; 32]>(), t in ticket(), retry_after in timestamp(), pos in any::<usize>(), byte in any::<u8>()
    ) {
        let n = NotYet {
            sub: t.sub,
            product: t.product,
            application: t.application,
            count: t.count,
            minimum: t.minimum,
            iat: t.iat,
            retry_after,
            iss: t.iss,
            nonce: t.nonce,
            intervals: t.intervals,
        };
        sign_verify_and_tamper(seed, &n, pos, byte)?;
    }

    #[test]
    fn public_keys_round_trip_through_paserk(seed in any::<[u8; 32]>()) {
        let key = KeyPair::from_seed(seed).unwrap();
        let text = key.public().to_paserk();
        prop_assert_eq!(&PublicKey::from_paserk(&text).unwrap(), key.public());
        prop_assert_eq!(PublicKey::from_bytes(*key.public().as_bytes()).unwrap().to_paserk(), text);
        let secret = key.to_paserk();
        let again = KeyPair::from_paserk(&secret).unwrap();
        prop_assert_eq!(again.public(), key.public());
    }

    #[test]
    fn catalogs_and_vendor_bundles_round_trip(
        seed in any::<[u8; 32]>(), version in any::<u64>(), iat in timestamp(), key_seed in any::<u8>()
    ) {
        let mut n = key_seed;
        let catalog = Catalog::build(&demo_source(), version, iat, move || {
            n = n.wrapping_add(1);
            [n; 24]
        })
        .unwrap();
        let json = serde_json::to_string(&catalog).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Catalog>(&json).unwrap(), &catalog);
        let root = KeyPair::from_seed(seed).unwrap();
        let bundle = VendorBundle {
            root_public_key: root.public().to_paserk(),
            catalog: token::sign(&root, &catalog).unwrap(),
        };
        let text = serde_json::to_string_pretty(&bundle).unwrap();
        let back: VendorBundle = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &bundle);
        let (opened_root, opened) = back.open().unwrap();
        prop_assert_eq!(&opened_root, root.public());
        prop_assert_eq!(&opened, &catalog);
        for p in &catalog.products {
            prop_assert_eq!(&opened.product_for_key(&p.setup_key).unwrap().id, &p.id);
        }
    }

    #[test]
    fn settings_survive_the_wire(
        values in (15i64 * 60..=30 * 86_400, 15i64 * 60..=30 * 86_400, 86_400i64..=3650 * 86_400, 86_400i64..=365 * 86_400, 60i64..=48 * 3600)
    ) {
        let d = jiff::SignedDuration::from_secs;
        let s = Settings {
            renew_interval: d(values.0),
            retry_interval: d(values.1),
            ticket_validity: d(values.2),
            count_window: d(values.3),
            max_clock_skew: d(values.4),
        };
        let wire = s.intervals();
        prop_assert_eq!(Settings::from_intervals(&wire), s);
        prop_assert_eq!(Settings::from_intervals_clamped(&wire), s);
        let json = serde_json::to_string(&wire).unwrap();
        prop_assert_eq!(serde_json::from_str::<HostIntervals>(&json).unwrap(), wire);
    }

    #[test]
    fn any_wire_intervals_are_held_to_their_ranges(i in intervals()) {
        let s = Settings::from_intervals_clamped(&i);
        let values = [s.renew_interval, s.retry_interval, s.ticket_validity, s.count_window, s.max_clock_skew];
        for (v, r) in values.iter().zip(RANGES.iter()) {
            prop_assert!((r.min..=r.max).contains(&v.as_secs()), "{} = {}", r.name, v.as_secs());
        }
        // Clamped settings are a fixed point of the wire.
        prop_assert_eq!(Settings::from_intervals_clamped(&s.intervals()), s);
    }

    #[test]
    fn wire_types_round_trip_through_json(
        (a, b, c, d) in (text(), text(), text(), text()),
        (n, m) in (any::<u32>(), any::<u32>()),
        (t1, t2) in (timestamp(), timestamp()),
        opt in proptest::option::of(text()),
        i in intervals(),
        activated in any::<bool>(),
        cv in any::<u64>(),
    ) {
        let request = ActivationRequest {
            client_id: a.clone(),
            setup_key: b.clone(),
            minimum_count: n,
            client_time: t1,
            nonce: c.clone(),
            machine_name: d.clone(),
            ticket_id: opt.clone(),
            machine_fingerprint: opt.clone(),
            previous_client_id: opt.clone(),
        };
        let json = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ActivationRequest>(&json).unwrap(), request);
        let response = ActivationResponse {
            result: if activated { ActivationResult::Activated } else { ActivationResult::CountInsufficient },
            count: n,
            minimum: m,
            product: a.clone(),
            application: b.clone(),
            host_id: c.clone(),
            host_time: t2,
            intervals: i,
            retry_after: Some(t1).filter(|_| !activated),
            ticket: opt.clone(),
            not_yet: opt.clone(),
            host_certificate: d.clone(),
            revocation_list: None,
        };
        let json = serde_json::to_vec(&response).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ActivationResponse>(&json).unwrap(), response);
        let info = HostInfo {
            host_id: a.clone(),
            host_public_key: b.clone(),
            activated,
            host_certificate: opt.clone(),
            certificate_expires: Some(t2).filter(|_| activated),
            catalog_version: cv,
            intervals: i,
            host_time: t1,
        };
        let json = serde_json::to_vec(&info).unwrap();
        prop_assert_eq!(serde_json::from_slice::<HostInfo>(&json).unwrap(), info);
        let host_req = HostActivationRequest { host_public_key: a, proof: b };
        let json = serde_json::to_vec(&host_req).unwrap();
        prop_assert_eq!(serde_json::from_slice::<HostActivationRequest>(&json).unwrap(), host_req);
        let host_resp = HostActivationResponse { host_certificate: c };
        let json = serde_json::to_vec(&host_resp).unwrap();
        prop_assert_eq!(serde_json::from_slice::<HostActivationResponse>(&json).unwrap(), host_resp);
    }
}

/// The last characters of a token carry the base64 padding bits, where a lenient decoder
/// would accept several spellings of the same signature: every other byte there refuses,
/// for bodies of each length modulo 3.
#[test]
fn no_other_spelling_of_a_token_tail_verifies() {
    let key = KeyPair::from_seed([7; 32]).unwrap();
    for nonce in ["a", "ab", "abc"] {
        let t = NotYet {
            sub: "s".into(),
            product: "p".into(),
            application: "a".into(),
            count: 1,
            minimum: 5,
            iat: Timestamp::UNIX_EPOCH,
            retry_after: Timestamp::UNIX_EPOCH,
            iss: "h".into(),
            nonce: nonce.into(),
            intervals: None,
        };
        let signed = token::sign(&key, &t).unwrap();
        assert_eq!(token::verify::<NotYet>(key.public(), &signed).unwrap(), t);
        let len = signed.len();
        for pos in len - 3..len {
            for byte in 0..=255u8 {
                let mut bytes = signed.clone().into_bytes();
                if bytes[pos] == byte {
                    continue;
                }
                bytes[pos] = byte;
                let Ok(changed) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(
                    token::verify::<NotYet>(key.public(), &changed).is_err(),
                    "{changed} verifies as well as {signed}"
                );
            }
        }
    }
}
