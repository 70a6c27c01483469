//! Tests of the client, with a test kit that makes a whole vendor chain (root, catalog,
//! host key, activated host) and hand-made tickets, and a stub host over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod discovery_tests;
mod http_tests;
mod ops_tests;
mod seal_tests;
mod state_tests;
mod status_tests;
mod trust_tests;

use crate::state::{ClientState, StoredTicket};
use jiff::{SignedDuration, Timestamp};
use volact_core::catalog::{Catalog, CatalogSource, VendorBundle, demo_source};
use volact_core::certificate::{Ledger, activate_host, make_request};
use volact_core::host_key::HostKey;
use volact_core::keys::KeyPair;
use volact_core::settings::Settings;
use volact_core::setup_key::SetupKey;
use volact_core::ticket::{Ticket, sign_ticket, ticket_id};
use volact_core::token;

/// A fixed start of time: 2027-01-15T08:00:00Z.
pub(crate) fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

pub(crate) fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

pub(crate) const CLIENT_ID: &str = "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10";
pub(crate) const WORKSTATION: &str = "demo-os-workstation";
pub(crate) const SERVER: &str = "demo-os-server";

/// One vendor's chain: root, signed catalog, and one activated host.
pub(crate) struct Vendor {
    pub catalog: Catalog,
    pub bundle: VendorBundle,
    pub host: KeyPair,
    pub certificate: String,
}

impl Vendor {
    /// A vendor whose keys and setup keys all derive from `seed`, so two seeds give two
    /// unrelated vendors with the same product ids. Setup keys come from `seed + 1..=3`
    /// modulo 24, so seeds less than 3 apart (mod 24) share some keys.
    pub fn new(seed: u8) -> Vendor {
        Vendor::issued_at(seed, t0())
    }

    /// The same, with the catalog, host key and host certificate issued at `at`.
    pub fn issued_at(seed: u8, at: Timestamp) -> Vendor {
        Vendor::build(seed, at, &demo_source(), 5 * 365)
    }

    /// The same, with the catalog built from `source` (the demo's ids, changed as a test
    /// needs).
    pub fn from_source(seed: u8, at: Timestamp, source: &CatalogSource) -> Vendor {
        Vendor::build(seed, at, source, 5 * 365)
    }

    /// The same, with a host certificate valid for `days` from `at`.
    pub fn certified_for(seed: u8, at: Timestamp, days: u32) -> Vendor {
        Vendor::build(seed, at, &demo_source(), days)
    }

    fn build(seed: u8, at: Timestamp, source: &CatalogSource, days: u32) -> Vendor {
        let root = KeyPair::from_seed([seed; 32]).unwrap();
        let mut n = seed;
        let catalog = Catalog::build(source, 1, at, move || {
            n = n.wrapping_add(1);
            [n; 24]
        })
        .unwrap();
        let bundle = VendorBundle {
            root_public_key: root.public().to_paserk(),
            catalog: token::sign(&root, &catalog).unwrap(),
        };
        let host_key = HostKey {
            jti: "k1".into(),
            vendor: catalog.vendor.clone(),
            customer: "Acme".into(),
            group: "demo-all".into(),
            seats: None,
            exp: None,
            max_hosts: 6,
            max_activations: 10,
            iat: at,
            usage_reports: false,
            delegation: None,
        };
        let host_key = token::sign(&root, &host_key).unwrap();
        let host = KeyPair::from_seed([seed.wrapping_add(100); 32]).unwrap();
        let request = make_request(&host, &host_key, "host-nonce".into(), at).unwrap();
        let (certificate, _) =
            activate_host(&root, &catalog, &mut Ledger::default(), &request, at, days).unwrap();
        Vendor {
            catalog,
            bundle,
            host,
            certificate,
        }
    }

    pub fn key(&self, product: &str) -> SetupKey {
        self.catalog.product(product).unwrap().setup_key.clone()
    }

    pub fn host_id(&self) -> String {
        self.host.public().host_id()
    }

    /// The claims of a ticket this vendor's host would issue at `iat`.
    pub fn ticket(&self, client_id: &str, product: &str, nonce: &str, iat: Timestamp) -> Ticket {
        let p = self.catalog.product(product).unwrap();
        Ticket {
            jti: ticket_id(client_id, nonce, iat),
            sub: client_id.into(),
            product: product.into(),
            application: p.application.clone(),
            count: p.minimum_count + 1,
            minimum: p.minimum_count,
            iat,
            renew_after: iat + days(7),
            exp: iat + days(180),
            iss: self.host_id(),
            nonce: nonce.into(),
            intervals: Some(Settings::default().intervals()),
        }
    }

    /// `error` signed by this vendor's host for request `req`, as a genuine host sends a
    /// refusal about the client: retry `retry` after `iat`, with `intervals`.
    pub fn signed_refusal(
        &self,
        req: &volact_proto::ActivationRequest,
        error: volact_proto::ApiError,
        iat: Timestamp,
        retry: SignedDuration,
        intervals: volact_proto::HostIntervals,
    ) -> volact_proto::ApiError {
        let claims = volact_core::refusal::Refusal {
            sub: req.client_id.clone(),
            product: None,
            nonce: req.nonce.clone(),
            code: error.code,
            iat,
            retry_after: iat + retry,
            iss: self.host_id(),
            intervals,
        };
        let signed = volact_core::refusal::sign(&self.host, &claims).unwrap();
        volact_core::refusal::attach(error, signed, &self.certificate, claims.retry_after)
    }

    /// A ticket as the client stores it.
    pub fn stored(&self, ticket: &Ticket) -> StoredTicket {
        StoredTicket {
            token: sign_ticket(&self.host, ticket).unwrap(),
            host_certificate: self.certificate.clone(),
            ticket_id: ticket.jti.clone(),
            host_id: ticket.iss.clone(),
            count: ticket.count,
            minimum: ticket.minimum,
            issued_at: ticket.iat,
            renew_after: ticket.renew_after,
            valid_until: ticket.exp,
        }
    }

    /// A state with `product` installed at `at` under [`CLIENT_ID`].
    pub fn installed(&self, product: &str, at: Timestamp) -> ClientState {
        let mut state = ClientState::default();
        crate::install_key(
            &mut state,
            self.key(product).as_str(),
            Some(self.bundle.clone()),
            at,
            || CLIENT_ID.into(),
        )
        .unwrap();
        state
    }
}
