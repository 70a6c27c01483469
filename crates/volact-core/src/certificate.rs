//! Host activation: the host's signed request, the vendor's ledger of activations per
//! host key, and the host certificate the vendor signs.

use crate::catalog::Catalog;
use crate::delegation::{Scope, Signer, signing_key};
use crate::host_key::HostKey;
use crate::keys::{KeyPair, PublicKey};
use crate::token::{self, Document, TokenError};
use crate::util;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use volact_proto::{ApiError, ErrorCode, HostActivationRequest};

/// Default validity of a host certificate when the host key has no expiry: 5 years.
pub const DEFAULT_CERTIFICATE_DAYS: u32 = 5 * 365;

/// The claims of a host's activation request, signed with the host's own key to prove it
/// holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationProof {
    /// The host id, derived from its public key.
    pub host_id: String,
    /// The host key token.
    pub host_key: String,
    /// A random value.
    pub nonce: String,
    /// When the request was made.
    pub iat: Timestamp,
}

impl Document for ActivationProof {
    const TYPE: &'static str = "volact.host-activation-request";
}

/// A host certificate's claims: the vendor binds a host's public key to a host key's
/// entitlements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCertificate {
    /// The host id.
    pub sub: String,
    /// The host's public key (PASERK).
    pub host_public_key: String,
    /// The vendor.
    pub vendor: String,
    /// The host key id.
    pub key_id: String,
    /// The customer.
    pub customer: String,
    /// The key group.
    pub group: String,
    /// The products this host activates.
    pub products: Vec<String>,
    /// Optional seat cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Issued at.
    pub iat: Timestamp,
    /// Expires at.
    pub exp: Timestamp,
    /// The root's delegation of the key that signed this certificate, when a delegated
    /// key (the vendor's activation service) signed it rather than the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

impl Document for HostCertificate {
    const TYPE: &'static str = "volact.host-certificate";
}

impl HostCertificate {
    /// Whether the certificate is in force at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.iat <= util::add(now, SignedDuration::from_hours(48)) && now < self.exp
    }
}

/// The products a host may activate with certificate `cert`, given `catalog`, the
/// newest catalog the verifier holds *and has verified against the vendor root itself*:
/// the certificate's own products, and those of its key group in that catalog.
///
/// Why: a certificate names the products of its key group when it was signed, but a
/// vendor adds products to a key group in later catalogs, and re-activating every host
/// for that would spend activations and need the vendor each time. The key group is the
/// entitlement the customer bought; the catalog, signed by the same root, says what the
/// group holds now. The rule only widens by the vendor's signed word: a catalog of
/// another vendor widens nothing, and an unverified catalog must never be passed here.
/// Products a newer catalog drops from the group stay covered until the certificate is
/// replaced: taking rights away is what revocation is for.
pub fn covered_products(cert: &HostCertificate, catalog: Option<&Catalog>) -> Vec<String> {
    let mut products = cert.products.clone();
    let group = catalog
        .filter(|c| c.vendor == cert.vendor)
        .and_then(|c| c.key_group(&cert.group));
    for p in group.map(|g| g.products.as_slice()).unwrap_or_default() {
        if !products.contains(p) {
            products.push(p.clone());
        }
    }
    products
}

/// Builds the host's activation request.
pub fn make_request(
    host: &KeyPair,
    host_key: &str,
    nonce: String,
    now: Timestamp,
) -> Result<HostActivationRequest, ApiError> {
    let proof = ActivationProof {
        host_id: host.public().host_id(),
        host_key: host_key.trim().to_string(),
        nonce,
        iat: now,
    };
    let proof = token::sign(host, &proof).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the request: {e}"),
        )
    })?;
    Ok(HostActivationRequest {
        host_public_key: host.public().to_paserk(),
        proof,
    })
}

/// How many activations the vendor has signed, per host key and host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// key id → host id → activations.
    pub keys: BTreeMap<String, BTreeMap<String, u32>>,
    /// Requests answered (`HOST_ID NONCE`), and when: a request carried to the vendor
    /// twice is refused instead of spending a second activation. Absent in ledgers
    /// written before it was kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answered: BTreeMap<String, Timestamp>,
}

impl Ledger {
    /// Refuses with `host-key-activation-limit` when activating `host_id` once more would
    /// exceed the key's limits; otherwise records the activation.
    pub fn admit(&mut self, key: &HostKey, host_id: &str) -> Result<(), ApiError> {
        let hosts = self.keys.entry(key.jti.clone()).or_default();
        let known = hosts.get(host_id).copied();
        check_limits(
            &key.jti,
            host_id,
            hosts.len() as u64,
            known,
            key.max_hosts,
            key.max_activations,
        )?;
        hosts.insert(host_id.to_string(), known.unwrap_or(0) + 1);
        Ok(())
    }
}

/// The limits of a host key, for one more activation of `host_id`: refused with
/// `host-key-activation-limit` and the numbers when the key already has `hosts_known`
/// hosts, `max_hosts` or more, and this is a new one; or when this host
/// (`activations`: `None` for a new host) has used its `max_activations`. A known host
/// takes no new host slot.
pub fn check_limits(
    key_id: &str,
    host_id: &str,
    hosts_known: u64,
    activations: Option<u32>,
    max_hosts: u32,
    max_activations: u32,
) -> Result<(), ApiError> {
    let used = activations.unwrap_or(0);
    // Both numbers and both limits in every refusal, so the vendor sees at once which
    // one was reached and how close the other is.
    let details = serde_json::json!({
        "key_id": key_id,
        "host_id": host_id,
        "hosts": hosts_known,
        "max_hosts": max_hosts,
        "activations": used,
        "max_activations": max_activations,
    });
    if activations.is_none() && hosts_known >= u64::from(max_hosts) {
        return Err(ApiError::with_details(
            ErrorCode::HostKeyActivationLimit,
            format!(
                "host key {key_id} has already activated {hosts_known} of its {max_hosts} hosts, so host {host_id} is refused (each host may activate {max_activations} times); ask the vendor to raise the limit or move the key from a retired host"
            ),
            details,
        ));
    }
    if used >= max_activations {
        return Err(ApiError::with_details(
            ErrorCode::HostKeyActivationLimit,
            format!(
                "host {host_id} has been activated {used} of {max_activations} times with host key {key_id} (which has {hosts_known} of its {max_hosts} hosts); ask the vendor to reset it"
            ),
            details,
        ));
    }
    Ok(())
}

/// `untrusted-host`: a renewal for a host that host key `key_id` never activated at this
/// vendor.
pub fn unknown_host(key_id: &str, host_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UntrustedHost,
        format!(
            "host {host_id} was never activated with host key {key_id} by this vendor; activate it (volact host activate --online)"
        ),
    )
}

fn untrusted(what: &str, e: TokenError) -> ApiError {
    ApiError::new(
        ErrorCode::UntrustedHost,
        format!("{what} does not verify: {e}"),
    )
}

/// The vendor's side of host activation, signed by the root: see [`activate_host_with`].
pub fn activate_host(
    root: &KeyPair,
    catalog: &Catalog,
    ledger: &mut Ledger,
    request: &HostActivationRequest,
    now: Timestamp,
    certificate_days: u32,
) -> Result<(String, HostCertificate), ApiError> {
    activate_host_with(
        &Signer::root(root),
        root.public(),
        catalog,
        ledger,
        request,
        now,
        certificate_days,
    )
}

/// A host activation request that verified: what the ledger (a file, or the vendor
/// service's database) admits before a certificate is signed.
#[derive(Debug, Clone)]
pub struct CheckedActivation {
    /// The host's public key.
    pub host_public: PublicKey,
    /// The request's signed claims.
    pub proof: ActivationProof,
    /// The host key, issued by the root.
    pub key: HostKey,
    /// The products of the key's group in the catalog.
    pub products: Vec<String>,
}

/// Checks a host activation request: the host's proof of its key, the host key (issued by
/// `root`, not expired) and its key group in `catalog`. Spends nothing.
pub fn check_activation(
    root: &PublicKey,
    catalog: &Catalog,
    request: &HostActivationRequest,
    now: Timestamp,
) -> Result<CheckedActivation, ApiError> {
    let host_public = PublicKey::from_paserk(&request.host_public_key)
        .map_err(|_| ApiError::bad_request("host_public_key", "not a k4.public PASERK"))?;
    let proof: ActivationProof = token::verify(&host_public, &request.proof)
        .map_err(|e| ApiError::bad_request("proof", e.to_string()))?;
    if proof.host_id != host_public.host_id() {
        return Err(ApiError::bad_request(
            "proof",
            "the host id does not match the host's public key",
        ));
    }
    let key: HostKey = crate::host_key::verify_host_key(root, &proof.host_key).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the host key in this request was not issued by this vendor ({e}); check that the host installed the right key"),
        )
    })?;
    if let Some(exp) = key.exp
        && exp <= now
    {
        return Err(ApiError::with_details(
            ErrorCode::HostKeyActivationLimit,
            format!(
                "host key {} expired at {exp}; ask the vendor for a new one",
                key.jti
            ),
            serde_json::json!({ "key_id": key.jti, "expired": exp }),
        ));
    }
    let group = catalog.key_group(&key.group).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ProductNotInKeyGroup,
            format!(
                "host key {} names key group `{}`, which this catalog does not have",
                key.jti, key.group
            ),
        )
    })?;
    Ok(CheckedActivation {
        host_public,
        products: group.products.clone(),
        proof,
        key,
    })
}

/// `request-replayed`: the request of `checked` was answered at `at` already.
pub fn replayed(checked: &CheckedActivation, at: Timestamp) -> ApiError {
    let (proof, key) = (&checked.proof, &checked.key);
    ApiError::with_details(
        ErrorCode::RequestReplayed,
        format!(
            "this activation request of host {} was already answered at {at}, and answering it again would spend a second activation of host key {}; give the host the response made then, or have it make a new request (volact host activate --request-out FILE)",
            proof.host_id, key.jti
        ),
        serde_json::json!({ "host_id": proof.host_id, "nonce": proof.nonce, "key_id": key.jti, "answered_at": at }),
    )
}

/// When a certificate issued at `now` for `certificate_days` ends: never after its host
/// key.
pub fn certificate_expiry(key: &HostKey, now: Timestamp, certificate_days: u32) -> Timestamp {
    let exp = util::add(now, util::days(certificate_days));
    key.exp.map_or(exp, |key_exp| exp.min(key_exp))
}

/// Signs the host certificate of an admitted activation with `signer` (the root, or a key
/// delegated for host certificates, whose delegation the certificate then carries).
pub fn sign_certificate(
    signer: &Signer<'_>,
    vendor: &str,
    checked: &CheckedActivation,
    now: Timestamp,
    certificate_days: u32,
) -> Result<(String, HostCertificate), ApiError> {
    let key = &checked.key;
    let cert = HostCertificate {
        sub: checked.proof.host_id.clone(),
        host_public_key: checked.host_public.to_paserk(),
        vendor: vendor.to_owned(),
        key_id: key.jti.clone(),
        customer: key.customer.clone(),
        group: key.group.clone(),
        products: checked.products.clone(),
        seats: key.seats,
        iat: now,
        exp: certificate_expiry(key, now, certificate_days),
        delegation: signer.delegation.clone(),
    };
    let token = token::sign(signer.key, &cert)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("could not sign: {e}")))?;
    Ok((token, cert))
}

/// The vendor's side of host activation with the file ledger: [`check_activation`], the
/// ledger's replay check and limits, then [`sign_certificate`]. The ledger is changed
/// only on success.
pub fn activate_host_with(
    signer: &Signer<'_>,
    root: &PublicKey,
    catalog: &Catalog,
    ledger: &mut Ledger,
    request: &HostActivationRequest,
    now: Timestamp,
    certificate_days: u32,
) -> Result<(String, HostCertificate), ApiError> {
    let checked = check_activation(root, catalog, request, now)?;
    let request_id = format!("{} {}", checked.proof.host_id, checked.proof.nonce);
    if let Some(at) = ledger.answered.get(&request_id) {
        return Err(replayed(&checked, *at));
    }
    let mut trial = ledger.clone();
    trial.admit(&checked.key, &checked.proof.host_id)?;
    trial.answered.insert(request_id, now);
    let signed = sign_certificate(signer, &catalog.vendor, &checked, now, certificate_days)?;
    *ledger = trial;
    Ok(signed)
}

/// Verifies a host certificate against the vendor root and checks that it belongs to the
/// host holding `host_public` (when given).
pub fn verify_certificate(
    root: &PublicKey,
    token: &str,
    host_public: Option<&PublicKey>,
) -> Result<HostCertificate, ApiError> {
    // The signer is read from the claims before they are verified, and the claims are
    // believed only once the signature verifies with the key that the root vouches for.
    let claimed: HostCertificate =
        token::peek(token).map_err(|e| untrusted("the host certificate", e))?;
    let signer = signing_key(
        root,
        claimed.delegation.as_deref(),
        Scope::HostCertificates,
        claimed.iat,
        "the host certificate",
    )?;
    let cert: HostCertificate =
        token::verify(&signer, token).map_err(|e| untrusted("the host certificate", e))?;
    if let Some(host) = host_public
        && (cert.sub != host.host_id() || cert.host_public_key != host.to_paserk())
    {
        return Err(ApiError::new(
            ErrorCode::UntrustedHost,
            format!(
                "the host certificate is for host {}, not this host ({})",
                cert.sub,
                host.host_id()
            ),
        ));
    }
    Ok(cert)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::demo_source;

    fn setup() -> (KeyPair, Catalog, HostKey, String) {
        let root = KeyPair::from_seed([1; 32]).unwrap();
        let mut n = 0u8;
        let catalog = Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, move || {
            n += 1;
            [n; 24]
        })
        .unwrap();
        let key = HostKey {
            jti: "k1".into(),
            vendor: "Demo Vendor".into(),
            customer: "Acme".into(),
            group: "demo-all".into(),
            seats: None,
            exp: None,
            max_hosts: 2,
            max_activations: 2,
            iat: Timestamp::UNIX_EPOCH,
            usage_reports: false,
            delegation: None,
        };
        let token = token::sign(&root, &key).unwrap();
        (root, catalog, key, token)
    }

    #[test]
    fn limits_are_enforced_and_ledger_unchanged_on_refusal() {
        let (root, catalog, _key, token) = setup();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut ledger = Ledger::default();
        let hosts: Vec<KeyPair> = (10..13)
            .map(|s| KeyPair::from_seed([s; 32]).unwrap())
            .collect();
        let nonce = std::cell::Cell::new(0u32);
        let req = |h: &KeyPair| {
            nonce.set(nonce.get() + 1);
            make_request(h, &token, format!("n{}", nonce.get()), now).unwrap()
        };
        let (cert_token, cert) =
            activate_host(&root, &catalog, &mut ledger, &req(&hosts[0]), now, 365).unwrap();
        assert_eq!(cert.products.len(), 3);
        assert!(verify_certificate(root.public(), &cert_token, Some(hosts[0].public())).is_ok());
        assert!(verify_certificate(root.public(), &cert_token, Some(hosts[1].public())).is_err());
        activate_host(&root, &catalog, &mut ledger, &req(&hosts[0]), now, 365).unwrap();
        let e = activate_host(&root, &catalog, &mut ledger, &req(&hosts[0]), now, 365).unwrap_err();
        assert_eq!(e.code, ErrorCode::HostKeyActivationLimit);
        activate_host(&root, &catalog, &mut ledger, &req(&hosts[1]), now, 365).unwrap();
        let before = ledger.clone();
        let e = activate_host(&root, &catalog, &mut ledger, &req(&hosts[2]), now, 365).unwrap_err();
        assert_eq!(e.code, ErrorCode::HostKeyActivationLimit);
        assert_eq!(ledger, before);
    }

    #[test]
    fn a_certificate_signed_by_a_delegated_key_verifies_from_the_root_and_only_in_scope() {
        use crate::delegation::delegate;
        let (root, catalog, _key, token) = setup();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let host = KeyPair::from_seed([10; 32]).unwrap();
        let service = KeyPair::from_seed([20; 32]).unwrap();
        let activate = |signer: &Signer<'_>, nonce: &str| {
            let request = make_request(&host, &token, nonce.into(), now).unwrap();
            activate_host_with(
                signer,
                root.public(),
                &catalog,
                &mut Ledger::default(),
                &request,
                now,
                365,
            )
        };
        let (delegation, _) = delegate(
            &root,
            "Demo Vendor",
            service.public(),
            &[Scope::HostCertificates],
            util::add(now, SignedDuration::from_hours(-1)),
            30,
        )
        .unwrap();
        let delegated = Signer {
            key: &service,
            delegation: Some(delegation.clone()),
        };
        let (cert_token, cert) = activate(&delegated, "a").unwrap();
        assert_eq!(cert.delegation.as_deref(), Some(delegation.as_str()));
        let verified = verify_certificate(root.public(), &cert_token, Some(host.public())).unwrap();
        assert_eq!(verified, cert);
        // The root's own certificates verify as before, beside it.
        let (rooted, _) = activate(&Signer::root(&root), "b").unwrap();
        assert!(verify_certificate(root.public(), &rooted, None).is_ok());
        // A key signing without a delegation is not the root.
        let bare = Signer {
            key: &service,
            delegation: None,
        };
        let (forged, _) = activate(&bare, "c").unwrap();
        let e = verify_certificate(root.public(), &forged, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost);
        // A delegation for catalogs only does not cover host certificates.
        let (catalogs_only, _) = delegate(
            &root,
            "Demo Vendor",
            service.public(),
            &[Scope::Catalogs],
            util::add(now, SignedDuration::from_hours(-1)),
            30,
        )
        .unwrap();
        let narrow = Signer {
            key: &service,
            delegation: Some(catalogs_only),
        };
        let (out_of_scope, _) = activate(&narrow, "d").unwrap();
        let e = verify_certificate(root.public(), &out_of_scope, None).unwrap_err();
        assert!(
            e.message.contains("does not cover host-certificates"),
            "{}",
            e.message
        );
        // Another key cannot borrow the service's delegation.
        let thief = KeyPair::from_seed([30; 32]).unwrap();
        let borrowed = Signer {
            key: &thief,
            delegation: Some(delegation),
        };
        let (stolen, _) = activate(&borrowed, "e").unwrap();
        let e = verify_certificate(root.public(), &stolen, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost);
    }

    #[test]
    fn a_request_answered_once_is_refused_the_second_time_and_spends_nothing() {
        let (root, catalog, key, token) = setup();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let host = KeyPair::from_seed([10; 32]).unwrap();
        let mut ledger = Ledger::default();
        let request = make_request(&host, &token, "once".into(), now).unwrap();
        activate_host(&root, &catalog, &mut ledger, &request, now, 365).unwrap();
        let before = ledger.clone();
        let later = util::add(now, SignedDuration::from_hours(1));
        let e = activate_host(&root, &catalog, &mut ledger, &request, later, 365).unwrap_err();
        assert_eq!(e.code, ErrorCode::RequestReplayed);
        assert_eq!(e.details["answered_at"], serde_json::json!(now));
        assert!(e.message.contains("--request-out"), "{}", e.message);
        assert_eq!(ledger, before, "a replay spends nothing");
        assert_eq!(ledger.keys[&key.jti][&host.public().host_id()], 1);
        // A new request of the same host is a second activation, as before.
        let fresh = make_request(&host, &token, "twice".into(), later).unwrap();
        activate_host(&root, &catalog, &mut ledger, &fresh, later, 365).unwrap();
        assert_eq!(ledger.keys[&key.jti][&host.public().host_id()], 2);
        // A ledger written before replays were kept still reads.
        let old: Ledger = serde_json::from_str(r#"{"keys":{"k1":{"h":1}}}"#).unwrap();
        assert!(old.answered.is_empty());
    }

    #[test]
    fn forged_host_key_is_refused() {
        let (root, catalog, key, _) = setup();
        let impostor = KeyPair::from_seed([66; 32]).unwrap();
        let forged = token::sign(&impostor, &key).unwrap();
        let host = KeyPair::from_seed([10; 32]).unwrap();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let req = make_request(&host, &forged, "n".into(), now).unwrap();
        let e = activate_host(&root, &catalog, &mut Ledger::default(), &req, now, 365).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }
}
