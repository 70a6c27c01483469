//! Property tests for the encode/decode pairs outside volact-core: the client state file
//! (save then load), the host's configuration (settings written as TOML then resolved),
//! and the DNS wire form of the records the host publishes (encode then decode).
#![allow(clippy::unwrap_used)]
// Fields the state gains later keep their defaults in the generated states.
#![allow(clippy::needless_update)]

use hickory_proto::op::Message;
use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::rr::RecordType;
use jiff::Timestamp;
use proptest::prelude::*;
use std::net::IpAddr;
use std::path::Path;
use volact_client::{Attempt, ClientState, FoundBy, Installed, STATE_VERSION, StoredTicket};
use volact_core::setup_key::SetupKey;
use volact_engine::config::RawConfig;
use volact_engine::dns::config::SrvRecord;
use volact_engine::dns::wire;
use volact_fuzz::fixtures::world;
use volact_proto::HostIntervals;

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0i32..1_000_000_000)
        .prop_map(|(s, n)| Timestamp::new(s, n).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,20}|[\\x00-\\x7f]{0,20}"
}

fn installed() -> impl Strategy<Value = Installed> {
    (
        proptest::array::uniform24(any::<u8>()),
        (text(), text(), text(), text(), text()),
        (any::<u32>(), any::<u32>(), timestamp()),
    )
        .prop_map(
            |(
                seed,
                (client_id, product, product_name, application, application_name),
                (minimum_count, grace_days, installed_at),
            )| {
                Installed {
                    client_id,
                    setup_key: SetupKey::generate(seed),
                    product,
                    product_name,
                    application,
                    application_name,
                    minimum_count,
                    grace_days,
                    installed_at,
                    vendor: world().bundle.clone(),
                }
            },
        )
}

fn stored_ticket() -> impl Strategy<Value = StoredTicket> {
    (
        (text(), text(), text(), text()),
        (any::<u32>(), any::<u32>()),
        (timestamp(), timestamp(), timestamp()),
    )
        .prop_map(
            |(
                (token, host_certificate, ticket_id, host_id),
                (count, minimum),
                (issued_at, renew_after, valid_until),
            )| {
                StoredTicket {
                    token,
                    host_certificate,
                    ticket_id,
                    host_id,
                    count,
                    minimum,
                    issued_at,
                    renew_after,
                    valid_until,
                }
            },
        )
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        timestamp(),
        (text(), text(), text()),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(timestamp()),
        ),
    )
        .prop_map(
            |(at, (host, result, message), (count, minimum, retry_after))| Attempt {
                at,
                host,
                result,
                count,
                minimum,
                message,
                retry_after,
            },
        )
}

fn found_by() -> impl Strategy<Value = FoundBy> {
    prop_oneof![Just(FoundBy::Pinned), Just(FoundBy::Cache)]
}

fn client_state() -> impl Strategy<Value = ClientState> {
    (
        proptest::option::of(installed()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<bool>(),
        ),
        proptest::option::of(stored_ticket()),
        proptest::option::of(any::<[u64; 5]>()),
        proptest::option::of(attempt()),
        (
            proptest::option::of(text()),
            proptest::option::of(found_by()),
            proptest::option::of(text()),
        ),
    )
        .prop_map(
            |(
                installed,
                (pinned_host, domain, use_host_cache),
                ticket,
                intervals,
                last_attempt,
                (last_host, last_host_found_by, dns_server),
            )| {
                ClientState {
                    version: STATE_VERSION,
                    installed,
                    pinned_host,
                    domain,
                    use_host_cache,
                    ticket,
                    intervals: intervals.map(|[a, b, c, d, e]| HostIntervals {
                        renew_interval_secs: a,
                        retry_interval_secs: b,
                        ticket_validity_secs: c,
                        count_window_secs: d,
                        max_clock_skew_secs: e,
                    }),
                    last_attempt,
                    last_host,
                    last_host_found_by,
                    dns_server,
                    ..ClientState::default()
                }
            },
        )
}

fn dns_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}[a-z0-9](\\.[a-z][a-z0-9]{0,12}){1,3}"
}

fn srv_record() -> impl Strategy<Value = SrvRecord> {
    (
        (dns_name(), dns_name()),
        (any::<u16>(), any::<u16>(), any::<u16>(), 1u32..=604_800),
        proptest::option::of(any::<IpAddr>()),
    )
        .prop_map(
            |((domain, name), (port, priority, weight, ttl), address)| SrvRecord {
                domain,
                name,
                port,
                priority,
                weight,
                ttl,
                address,
                tls_port: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn client_state_save_then_load_is_the_same_state(state in client_state()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.json");
        state.save(&path).unwrap();
        // The generated installations name keys their catalogs do not have, so the load
        // reads them as edited (`tamper`, which is never written); every field written
        // comes back as it was.
        let believed = |mut s: ClientState| {
            s.tamper = None;
            s
        };
        prop_assert_eq!(&believed(ClientState::load(&path).unwrap()), &state);
        let text = std::fs::read_to_string(&path).unwrap();
        prop_assert_eq!(&believed(ClientState::parse(&text, &path).unwrap()), &state);
    }

    #[test]
    fn configured_settings_resolve_to_what_was_written(
        renew in 15i64 * 60..=30 * 86_400,
        retry in 15i64 * 60..=30 * 86_400,
        validity in 86_400i64..=3650 * 86_400,
        window in 86_400i64..=365 * 86_400,
        skew in 60i64..=48 * 3600,
        retention in 86_400i64..=3650 * 86_400,
        ip in any::<IpAddr>(),
        port in any::<u16>(),
        iso in any::<bool>(),
    ) {
        prop_assume!(renew < validity);
        // Flow info and scope ids are not written in an address's text, so none here.
        let listen = std::net::SocketAddr::new(ip, port);
        let d = |s: i64| if iso { format!("PT{s}S") } else { format!("{s}s") };
        let toml = format!(
            "listen = \"{listen}\"\nrenew_interval = \"{}\"\nretry_interval = \"{}\"\nticket_validity = \"{}\"\ncount_window = \"{}\"\nmax_clock_skew = \"{}\"\nevent_retention = \"{}\"\n",
            d(renew), d(retry), d(validity), d(window), d(skew), d(retention)
        );
        let config = RawConfig::from_toml(&toml, Path::new("volact.toml")).unwrap().resolve().unwrap();
        prop_assert_eq!(config.listen, listen);
        let s = config.settings;
        prop_assert_eq!(
            [s.renew_interval, s.retry_interval, s.ticket_validity, s.count_window, s.max_clock_skew].map(|v| v.as_secs()),
            [renew, retry, validity, window, skew]
        );
        prop_assert_eq!(config.event_retention.as_secs(), retention);
    }

    #[test]
    fn published_records_survive_the_dns_wire(r in srv_record(), id in any::<u16>()) {
        let zone = wire::fqdn(&r.domain).unwrap();
        let srv = wire::srv_record(&r).unwrap();
        let address = wire::address_record(&r).unwrap();
        prop_assert_eq!(address.is_some(), r.address.is_some());
        let mut update = wire::update(&zone);
        update.metadata.id = id;
        update.add_update(wire::deletion(srv.clone()));
        update.add_update(wire::rrset_deletion(&zone, RecordType::SRV));
        update.add_update(srv.clone());
        update.add_updates(address.clone());
        let bytes = update.to_vec().unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        prop_assert_eq!(back.metadata.id, id);
        prop_assert_eq!(back.updates(), update.updates());
        prop_assert_eq!(back.zones(), update.zones());
        let query = wire::query(&zone, RecordType::SRV);
        let back = Message::from_vec(&query.to_vec().unwrap()).unwrap();
        prop_assert_eq!(back.queries, query.queries);
    }
}
