//! One fixed vendor, host and client, with every signed document between them: the keys
//! the targets verify with, and the valid inputs the seed corpus starts from.
//!
//! Everything is derived from constant seeds at a constant time, and Ed25519 signatures
//! are deterministic, so the same documents come out on every run and machine.

use jiff::Timestamp;
use std::sync::OnceLock;
use volact_core::catalog::{Catalog, VendorBundle, demo_source};
use volact_core::certificate::{self, HostCertificate, Ledger};
use volact_core::host_key::HostKey;
use volact_core::keys::KeyPair;
use volact_core::settings::Settings;
use volact_core::ticket::{NotYet, Ticket, ticket_id};
use volact_core::token;
use volact_proto::{
    ActivationRequest, ActivationResponse, ActivationResult, HostActivationRequest,
};

/// The time every fixture is made at and every check runs at (2027-01-15).
pub const NOW_SECS: i64 = 1_800_000_000;
/// The client id of the fixed client.
pub const CLIENT_ID: &str = "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10";
/// The nonce of the fixed client's request.
pub const NONCE: &str = "fuzz-nonce-0123456789";
/// The product the fixed client activates.
pub const PRODUCT: &str = "demo-office";
/// A TSIG key file as `tsig-keygen` writes it.
pub const TSIG_KEY_FILE: &str = "key \"volact-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\";\n};\n";

/// The fixed vendor, host and documents.
#[derive(Debug)]
pub struct World {
    /// The vendor's root key.
    pub root: KeyPair,
    /// A key that signs nothing anyone trusts.
    pub stranger: KeyPair,
    /// The host's own key.
    pub host: KeyPair,
    /// The vendor's catalog.
    pub catalog: Catalog,
    /// The vendor bundle (root key and signed catalog).
    pub bundle: VendorBundle,
    /// The host key's claims.
    pub host_key: HostKey,
    /// The host key, signed by the root.
    pub host_key_token: String,
    /// The host's activation request to the vendor.
    pub host_request: HostActivationRequest,
    /// The host certificate, signed by the root.
    pub certificate_token: String,
    /// The host certificate's claims.
    pub certificate: HostCertificate,
    /// The client's activation request.
    pub request: ActivationRequest,
    /// A ticket for the client, signed by the host.
    pub ticket: Ticket,
    /// The ticket, signed.
    pub ticket_token: String,
    /// The host's answer with the ticket.
    pub answer: ActivationResponse,
    /// A signed "not yet" for the client.
    pub not_yet_token: String,
    /// The host's answer with the "not yet".
    pub not_yet_answer: ActivationResponse,
}

/// The fixed time.
pub fn now() -> Timestamp {
    Timestamp::from_second(NOW_SECS).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The fixed world, built once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build)
}

// The fixtures are built from constants that are known to be valid; a failure here is a
// broken build of the fuzz harness, not input, so it may stop the process.
#[allow(clippy::expect_used)]
fn build() -> World {
    let now = now();
    let root = KeyPair::from_seed([1; 32]).expect("seed key");
    let stranger = KeyPair::from_seed([66; 32]).expect("seed key");
    let host = KeyPair::from_seed([2; 32]).expect("seed key");
    let mut n = 0u8;
    let catalog = Catalog::build(&demo_source(), 1, now, move || {
        n = n.wrapping_add(1);
        [n; 24]
    })
    .expect("demo catalog");
    let bundle = VendorBundle {
        root_public_key: root.public().to_paserk(),
        catalog: token::sign(&root, &catalog).expect("sign catalog"),
    };
    let host_key = HostKey {
        jti: "hk-fuzz".into(),
        vendor: catalog.vendor.clone(),
        customer: "Acme".into(),
        group: "demo-all".into(),
        seats: Some(500),
        exp: None,
        max_hosts: 6,
        max_activations: 10,
        iat: now,
        usage_reports: false,
        delegation: None,
    };
    let host_key_token = token::sign(&root, &host_key).expect("sign host key");
    let host_request =
        certificate::make_request(&host, &host_key_token, "host-nonce-42".into(), now)
            .expect("host request");
    let (certificate_token, certificate) = certificate::activate_host(
        &root,
        &catalog,
        &mut Ledger::default(),
        &host_request,
        now,
        365,
    )
    .expect("host certificate");
    let product = catalog.product(PRODUCT).expect("demo product");
    let request = ActivationRequest {
        client_id: CLIENT_ID.into(),
        setup_key: product.setup_key.as_str().into(),
        minimum_count: product.minimum_count,
        client_time: now,
        nonce: NONCE.into(),
        machine_name: "ws-042".into(),
        ticket_id: None,
        machine_fingerprint: Some("fp-0123456789abcdef".into()),
        previous_client_id: None,
    };
    let settings = Settings::default();
    let ticket = Ticket {
        jti: ticket_id(CLIENT_ID, NONCE, now),
        sub: CLIENT_ID.into(),
        product: PRODUCT.into(),
        application: product.application.clone(),
        count: product.minimum_count,
        minimum: product.minimum_count,
        iat: now,
        renew_after: volact_core::util::add(now, settings.renew_interval),
        exp: volact_core::util::add(now, settings.ticket_validity),
        iss: host.public().host_id(),
        nonce: NONCE.into(),
        intervals: Some(settings.intervals()),
    };
    let ticket_token = token::sign(&host, &ticket).expect("sign ticket");
    let answer = ActivationResponse {
        result: ActivationResult::Activated,
        count: ticket.count,
        minimum: ticket.minimum,
        product: PRODUCT.into(),
        application: ticket.application.clone(),
        host_id: host.public().host_id(),
        host_time: now,
        intervals: settings.intervals(),
        retry_after: None,
        ticket: Some(ticket_token.clone()),
        not_yet: None,
        host_certificate: certificate_token.clone(),
        revocation_list: None,
    };
    let not_yet = NotYet {
        sub: CLIENT_ID.into(),
        product: PRODUCT.into(),
        application: ticket.application.clone(),
        count: 2,
        minimum: product.minimum_count,
        iat: now,
        retry_after: volact_core::util::add(now, settings.retry_interval),
        iss: host.public().host_id(),
        nonce: NONCE.into(),
        intervals: Some(settings.intervals()),
    };
    let not_yet_token = token::sign(&host, &not_yet).expect("sign not yet");
    let not_yet_answer = ActivationResponse {
        result: ActivationResult::CountInsufficient,
        count: not_yet.count,
        minimum: not_yet.minimum,
        retry_after: Some(not_yet.retry_after),
        ticket: None,
        not_yet: Some(not_yet_token.clone()),
        ..answer.clone()
    };
    World {
        root,
        stranger,
        host,
        catalog,
        bundle,
        host_key,
        host_key_token,
        host_request,
        certificate_token,
        certificate,
        request,
        ticket,
        ticket_token,
        answer,
        not_yet_token,
        not_yet_answer,
    }
}
