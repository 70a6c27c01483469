use super::*;
use crate::{clear_host, install_key, set_domain, set_host};
use volact_proto::ErrorCode;

#[test]
fn the_first_install_needs_the_vendor_bundle() {
    let v = Vendor::new(1);
    let mut state = ClientState::default();
    let e = install_key(&mut state, v.key(WORKSTATION).as_str(), None, t0(), || {
        CLIENT_ID.into()
    })
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(e.message.contains("--vendor FILE"), "{}", e.message);
    assert_eq!(state, ClientState::default());
}

#[test]
fn install_records_the_product_and_creates_the_id() {
    let v = Vendor::new(1);
    let mut state = ClientState::default();
    let typed = v.key(WORKSTATION).as_str().to_lowercase();
    let r = install_key(&mut state, &typed, Some(v.bundle.clone()), t0(), || {
        CLIENT_ID.into()
    })
    .unwrap();
    assert!(r.new_client_id);
    assert!(!r.ticket_dropped);
    assert_eq!(r.product, WORKSTATION);
    let i = state.installed.as_ref().unwrap();
    assert_eq!(i.client_id, CLIENT_ID);
    assert_eq!(i.setup_key, v.key(WORKSTATION));
    assert_eq!(i.product_name, "Demo OS Workstation");
    assert_eq!(i.application, "demo-os");
    assert_eq!(i.application_name, "Demo OS");
    assert_eq!(i.minimum_count, 25);
    assert_eq!(i.grace_days, 30);
    assert_eq!(i.installed_at, t0());
}

#[test]
fn reinstalling_keeps_the_id_and_a_new_product_drops_the_ticket() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    state.ticket = Some(v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0())));
    let mut asked = false;

    // Same product again (without the bundle: the stored one serves): everything kept.
    let r = install_key(
        &mut state,
        v.key(WORKSTATION).as_str(),
        None,
        t0() + days(3),
        || {
            asked = true;
            "other".into()
        },
    )
    .unwrap();
    assert!(!asked && !r.new_client_id && !r.ticket_dropped);
    assert!(state.ticket.is_some());
    assert_eq!(state.installed.as_ref().unwrap().installed_at, t0());

    // Another product: same client id, ticket dropped, grace restarts.
    let r = install_key(
        &mut state,
        v.key(SERVER).as_str(),
        None,
        t0() + days(4),
        || {
            asked = true;
            "other".into()
        },
    )
    .unwrap();
    assert!(!asked);
    assert!(r.ticket_dropped);
    assert_eq!(r.client_id, CLIENT_ID);
    assert!(state.ticket.is_none());
    let i = state.installed.as_ref().unwrap();
    assert_eq!(
        (i.product.as_str(), i.minimum_count, i.installed_at),
        (SERVER, 5, t0() + days(4))
    );
}

#[test]
fn another_vendors_bundle_drops_the_ticket_but_keeps_the_id() {
    let a = Vendor::new(1);
    let b = Vendor::new(10);
    let mut state = a.installed(WORKSTATION, t0());
    state.ticket = Some(a.stored(&a.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0())));
    let r = install_key(
        &mut state,
        b.key(WORKSTATION).as_str(),
        Some(b.bundle.clone()),
        t0() + days(1),
        || "x".into(),
    )
    .unwrap();
    assert!(r.ticket_dropped);
    assert_eq!(r.client_id, CLIENT_ID);
    assert_eq!(state.installed.as_ref().unwrap().vendor, b.bundle);
}

#[test]
fn mistyped_and_foreign_keys_are_unknown_setup_keys_and_change_nothing() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    let before = state.clone();
    let key = v.key(SERVER).to_string();
    // One character changed to another from the alphabet: the check character catches it.
    let mut chars: Vec<char> = key.chars().collect();
    chars[0] = if chars[0] == 'B' { 'C' } else { 'B' };
    let typo: String = chars.into_iter().collect();
    for bad in [typo.as_str(), "hello", "00000-00000-00000-00000-00000"] {
        let e = install_key(&mut state, bad, None, t0(), || "x".into()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownSetupKey, "{bad}: {}", e.message);
    }
    // Well formed, but another vendor's.
    let stranger = Vendor::new(10).key(SERVER);
    let e = install_key(&mut state, stranger.as_str(), None, t0(), || "x".into()).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownSetupKey);
    assert!(e.message.contains("not in"), "{}", e.message);
    assert_eq!(state, before);
}

#[test]
fn a_tampered_bundle_is_refused() {
    let v = Vendor::new(1);
    let other = Vendor::new(10);
    let forged = volact_core::catalog::VendorBundle {
        root_public_key: v.bundle.root_public_key.clone(),
        catalog: other.bundle.catalog,
    };
    let mut state = ClientState::default();
    let e = install_key(
        &mut state,
        v.key(WORKSTATION).as_str(),
        Some(forged),
        t0(),
        || "x".into(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost);
    assert!(state.installed.is_none());
}

#[test]
fn hosts_are_normalised() {
    let cases = [
        ("kms", "kms:7688"),
        ("  KMS.Corp.Example.com. ", "kms.corp.example.com:7688"),
        ("kms.corp.example.com:8000", "kms.corp.example.com:8000"),
        ("10.0.0.5", "10.0.0.5:7688"),
        ("10.0.0.5:1", "10.0.0.5:1"),
        ("::1", "[::1]:7688"),
        ("[::1]", "[::1]:7688"),
        ("[::1]:7689", "[::1]:7689"),
        ("fd00:0:0::5", "[fd00::5]:7688"),
        ("[FD00:0::5]:65535", "[fd00::5]:65535"),
        ("host-1.example", "host-1.example:7688"),
    ];
    for (input, want) in cases {
        let mut state = ClientState::default();
        assert_eq!(set_host(&mut state, input).unwrap(), want, "{input}");
        assert_eq!(state.pinned_host.as_deref(), Some(want));
    }
}

#[test]
fn tls_hosts_keep_their_scheme_and_default_to_port_7689() {
    let cases = [
        ("https://kms", "https://kms:7689"),
        (
            "https://KMS.corp.example.com:8443/",
            "https://kms.corp.example.com:8443",
        ),
        ("https://10.0.0.5", "https://10.0.0.5:7689"),
        ("https://::1", "https://[::1]:7689"),
        ("https://[::1]", "https://[::1]:7689"),
        ("https://[::1]:9000", "https://[::1]:9000"),
    ];
    for (input, want) in cases {
        let mut state = ClientState::default();
        assert_eq!(set_host(&mut state, input).unwrap(), want, "{input}");
    }
    for bad in [
        "https://",
        "https://kms/v1",
        "https://kms:0",
        "https://http://kms",
    ] {
        let mut state = ClientState::default();
        assert!(set_host(&mut state, bad).is_err(), "{bad}");
    }
}

#[test]
fn bad_hosts_are_refused_with_the_reason() {
    let bad = [
        "",
        "http://kms",
        "kms/v1",
        "kms:0",
        "kms:65536",
        "kms:port",
        "kms:",
        "[::1",
        "[::1]7688",
        "[kms]:7688",
        "fd00::5:70000",
        "1.2.3.999",
        "bad_name",
        "-kms",
        "a..b",
        ".kms",
        "km s",
    ];
    for input in bad {
        let mut state = ClientState {
            pinned_host: Some("old:7688".into()),
            ..ClientState::default()
        };
        let e = set_host(&mut state, input).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{input}");
        assert!(e.message.contains("HOST:PORT"), "{}", e.message);
        assert_eq!(
            state.pinned_host.as_deref(),
            Some("old:7688"),
            "{input} must not change the state"
        );
    }
}

#[test]
fn clear_host_and_domain() {
    let mut state = ClientState::default();
    set_host(&mut state, "kms").unwrap();
    clear_host(&mut state);
    assert!(state.pinned_host.is_none());
    assert_eq!(
        set_domain(&mut state, "Corp.Example.COM.").unwrap(),
        "corp.example.com"
    );
    assert_eq!(state.domain.as_deref(), Some("corp.example.com"));
    let e = set_domain(&mut state, "not a domain").unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(state.domain.as_deref(), Some("corp.example.com"));
}
