//! Catalog updates: which catalogs a host takes, and what a newer one lets a host
//! certificate cover.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::certificate::{HostCertificate, covered_products};
use crate::delegation::{Scope, delegate};
use crate::keys::KeyPair;
use crate::token;

fn catalog(version: u64, office: &[&str]) -> Catalog {
    let mut source = demo_source();
    source.key_groups.push(KeyGroup {
        id: "office".into(),
        name: "Office".into(),
        products: office.iter().map(|p| p.to_string()).collect(),
    });
    let mut n = 0u8;
    Catalog::build(&source, version, Timestamp::UNIX_EPOCH, move || {
        n += 1;
        [n; 24]
    })
    .unwrap()
}

fn certificate(products: &[&str]) -> HostCertificate {
    HostCertificate {
        sub: "h-1".into(),
        host_public_key: String::new(),
        vendor: "Demo Vendor".into(),
        key_id: "k1".into(),
        customer: "Acme".into(),
        group: "office".into(),
        products: products.iter().map(|p| p.to_string()).collect(),
        seats: None,
        iat: Timestamp::UNIX_EPOCH,
        exp: Timestamp::MAX,
        delegation: None,
    }
}

#[test]
fn a_newer_catalog_widens_the_certificate_to_its_key_group_and_nothing_else() {
    let cert = certificate(&["demo-office"]);
    assert_eq!(covered_products(&cert, None), ["demo-office"]);
    let newer = catalog(2, &["demo-office", "demo-os-server"]);
    assert_eq!(
        covered_products(&cert, Some(&newer)),
        ["demo-office", "demo-os-server"]
    );
    // Another key group's products are not this certificate's.
    assert!(!covered_products(&cert, Some(&newer)).contains(&"demo-os-workstation".into()));
    // Another vendor's catalog widens nothing.
    let mut other = newer.clone();
    other.vendor = "Someone Else".into();
    assert_eq!(covered_products(&cert, Some(&other)), ["demo-office"]);
    // A product dropped from the group stays covered by the certificate that names it.
    let narrower = catalog(3, &["demo-os-server"]);
    assert_eq!(
        covered_products(&cert, Some(&narrower)),
        ["demo-office", "demo-os-server"]
    );
}

#[test]
fn only_a_newer_catalog_of_the_same_vendor_is_taken() {
    let v1 = catalog(1, &["demo-office"]);
    let v2 = catalog(2, &["demo-office", "demo-os-server"]);
    assert!(check_newer(&v1, &v2).is_ok());
    let e = check_newer(&v2, &v1).unwrap_err();
    assert!(
        e.message.contains("version 1") && e.message.contains("version 2"),
        "{}",
        e.message
    );
    assert!(check_newer(&v2, &v2).is_err());
    let mut other = catalog(3, &[]);
    other.vendor = "Someone Else".into();
    assert!(check_newer(&v1, &other).is_err());
}

#[test]
fn a_catalog_verifies_from_the_root_or_a_key_delegated_for_catalogs_only() {
    let root = KeyPair::from_seed([1; 32]).unwrap();
    let v2 = catalog(2, &["demo-office"]);
    let signed = token::sign(&root, &v2).unwrap();
    assert_eq!(verify_catalog(root.public(), &signed).unwrap(), v2);
    let impostor = KeyPair::from_seed([9; 32]).unwrap();
    let forged = token::sign(&impostor, &v2).unwrap();
    assert!(verify_catalog(root.public(), &forged).is_err());

    let service = KeyPair::from_seed([2; 32]).unwrap();
    let delegated = |scope: Scope| {
        let (d, _) = delegate(
            &root,
            "Demo Vendor",
            service.public(),
            &[scope],
            Timestamp::UNIX_EPOCH,
            30,
        )
        .unwrap();
        let with = Catalog {
            delegation: Some(d),
            ..v2.clone()
        };
        token::sign(&service, &with).unwrap()
    };
    let ok = delegated(Scope::Catalogs);
    assert_eq!(verify_catalog(root.public(), &ok).unwrap().version, 2);
    let e = verify_catalog(root.public(), &delegated(Scope::HostCertificates)).unwrap_err();
    assert!(
        e.message.contains("does not cover catalogs"),
        "{}",
        e.message
    );
}
