//! Unit tests of DNS publishing: the configuration section, BIND key files, zone-file
//! lines and the retry back-off.

use super::config::{DnsSection, PublishRaw};
use super::publish::backoff;
use super::tsig::TsigKey;
use crate::config::RawConfig;
use std::path::Path;
use std::time::Duration;
use volact_proto::ErrorCode;

#[test]
fn the_publish_section_parses_resolves_and_refuses_typos() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("volact.toml");
    std::fs::write(
        &path,
        "[dns.publish]\nserver = \"127.0.0.1:5353\"\nzone = \"Corp.Example.com.\"\nname = \"kms1.corp.example.com\"\npriority = 10\nweight = 3\nkey_file = \"tsig.key\"\naddress = \"10.0.0.5\"\nrefresh_interval = \"1h\"\n",
    )
    .unwrap();
    let raw = RawConfig::from_file(&path).unwrap();
    let section = raw.dns.unwrap().publish.unwrap();
    let c = section.resolve(dir.path(), 7688).unwrap();
    assert_eq!(c.server.to_string(), "127.0.0.1:5353");
    assert_eq!(c.zone, "corp.example.com");
    assert_eq!(c.record.domain, "corp.example.com");
    assert_eq!(c.record.port, 7688, "the listen port by default");
    assert_eq!(c.key_file, Some(dir.path().join("tsig.key")));
    assert_eq!(c.refresh_interval, Duration::from_secs(3600));
    assert!(!c.keep_on_shutdown);
    assert_eq!(
        c.record.zone_lines(),
        vec![
            "_volact._tcp.corp.example.com. 3600 IN SRV 10 3 7688 kms1.corp.example.com.",
            "kms1.corp.example.com. 3600 IN A 10.0.0.5",
        ]
    );

    std::fs::write(&path, "[dns.publish]\nzone = \"x.test\"\nprioity = 1\n").unwrap();
    let e = RawConfig::from_file(&path).unwrap_err();
    assert!(e.message.contains("prioity"), "{}", e.message);
    std::fs::write(&path, "[dns]\npublsh = {}\n").unwrap();
    assert!(RawConfig::from_file(&path).is_err());
}

#[test]
fn bad_publish_settings_say_what_to_fix() {
    let base = PublishRaw {
        server: Some("127.0.0.1".into()),
        zone: Some("corp.example.com".into()),
        name: Some("kms.corp.example.com".into()),
        ..PublishRaw::default()
    };
    let ok = base.resolve(Path::new("/d"), 7688).unwrap();
    assert_eq!(ok.server.port(), 53);
    let cases = [
        (
            PublishRaw {
                server: None,
                ..base.clone()
            },
            "server",
        ),
        (
            PublishRaw {
                server: Some("dns.example.com".into()),
                ..base.clone()
            },
            "server",
        ),
        (
            PublishRaw {
                zone: None,
                ..base.clone()
            },
            "zone",
        ),
        (
            PublishRaw {
                domain: Some("other.test".into()),
                ..base.clone()
            },
            "not in zone",
        ),
        (
            PublishRaw {
                ttl: Some(0),
                ..base.clone()
            },
            "ttl",
        ),
        (
            PublishRaw {
                address: Some("10.0.0".into()),
                ..base.clone()
            },
            "address",
        ),
        (
            PublishRaw {
                name: Some("kms.elsewhere.test".into()),
                address: Some("10.0.0.1".into()),
                ..base.clone()
            },
            "cannot be published in zone",
        ),
        (
            PublishRaw {
                refresh_interval: Some("5s".into()),
                ..base.clone()
            },
            "refresh_interval",
        ),
        (
            PublishRaw {
                name: Some("bad name".into()),
                ..base.clone()
            },
            "name",
        ),
    ];
    for (raw, word) in cases {
        let e = raw.resolve(Path::new("/d"), 7688).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains(word), "`{word}` not in: {}", e.message);
    }
    let e = PublishRaw::default()
        .record(
            &PublishRaw {
                port: Some(0),
                domain: Some("a.test".into()),
                name: Some("h.a.test".into()),
                ..PublishRaw::default()
            },
            7688,
        )
        .unwrap_err();
    assert!(e.message.contains("port"), "{}", e.message);
    assert_eq!(DnsSection::default().publish, None);
}

#[test]
fn bind_key_files_are_read() {
    let path = Path::new("tsig.key");
    let text = "# made by tsig-keygen\nkey \"volact-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\"; // the secret\n};\n";
    let key = TsigKey::parse(text, path).unwrap();
    assert_eq!(key.name, "volact-update");
    assert_eq!(key.algorithm, "hmac-sha256");
    assert!(key.signer().is_ok());
    assert!(
        !format!("{key:?}").contains("c2Vj"),
        "Debug never shows the secret"
    );
    let compact = "/* one line */ key volact { algorithm HMAC-SHA512; secret \"AAECAw==\"; };";
    assert_eq!(
        TsigKey::parse(compact, path).unwrap().algorithm,
        "hmac-sha512"
    );
    for (bad, word) in [
        ("", "no `key`"),
        ("key \"k\" { secret \"AAAA\"; };", "algorithm"),
        ("key \"k\" { algorithm hmac-sha256; };", "secret"),
        (
            "key \"k\" { algorithm hmac-sha256; secret \"%%%\"; };",
            "base64",
        ),
        (
            "key \"k\" { algorithm hmac-md5; secret \"AAAA\"; };",
            "not supported",
        ),
    ] {
        let e = TsigKey::parse(bad, path).unwrap_err();
        assert!(e.message.contains(word), "`{word}` not in: {}", e.message);
        assert!(e.message.contains("tsig-keygen"), "{}", e.message);
    }
    let e = TsigKey::read(Path::new("/nonexistent/volact/tsig.key")).unwrap_err();
    assert!(e.message.contains("key_file"), "{}", e.message);
}

#[test]
fn retries_back_off_up_to_a_cap() {
    let first = Duration::from_secs(10);
    let day = Duration::from_secs(86_400);
    assert_eq!(backoff(1, first, day), Duration::from_secs(10));
    assert_eq!(backoff(2, first, day), Duration::from_secs(20));
    assert_eq!(backoff(4, first, day), Duration::from_secs(80));
    assert_eq!(backoff(40, first, day), Duration::from_secs(900));
    assert_eq!(
        backoff(40, first, Duration::from_secs(60)),
        Duration::from_secs(60)
    );
}
