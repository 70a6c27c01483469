//! Delegated signing keys: the vendor root key stays offline and certifies a signing key
//! for a limited time and scope; the vendor's activation service signs with that key.
//!
//! A document signed by a delegated key carries the root-signed delegation inside its
//! own claims (`delegation`), so the chain travels with the document and no wire format
//! changes: a verifier reads the delegation (unverified) from the claims, verifies it
//! against the root, checks its scope and that the document was issued while it was in
//! force, and only then verifies the document with the delegated key. Documents signed
//! by the root itself carry no delegation and verify as before, so every chain issued
//! before a delegation stays valid.

use crate::keys::{KeyPair, PublicKey};
use crate::token::{self, Document};
use crate::util;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use volact_proto::{ApiError, ErrorCode};

/// What a delegated key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Host certificates (online host activation and renewal).
    HostCertificates,
    /// Catalogs (new catalog versions).
    Catalogs,
    /// Revocation lists.
    RevocationLists,
    /// Host keys (issued through the vendor service's admin API).
    HostKeys,
}

impl Scope {
    /// Every scope, what `volact vendor delegate` grants by default.
    pub const ALL: [Scope; 4] = [
        Scope::HostCertificates,
        Scope::Catalogs,
        Scope::RevocationLists,
        Scope::HostKeys,
    ];

    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::HostCertificates => "host-certificates",
            Scope::Catalogs => "catalogs",
            Scope::RevocationLists => "revocation-lists",
            Scope::HostKeys => "host-keys",
        }
    }
}

/// The root's certificate of a signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The delegation's id (also the signing key's), for revocation.
    pub jti: String,
    /// The vendor.
    pub vendor: String,
    /// The signing key (PASERK `k4.public.…`).
    pub signing_public_key: String,
    /// What the key may sign.
    pub scope: Vec<Scope>,
    /// Issued at.
    pub iat: Timestamp,
    /// The end of the key's validity: documents it signs must be issued before.
    pub exp: Timestamp,
}

impl Document for Delegation {
    const TYPE: &'static str = "volact.signing-key";
}

/// Whoever signs the vendor's documents: the root itself, or a delegated key with the
/// root's delegation of it.
pub struct Signer<'a> {
    /// The key that signs.
    pub key: &'a KeyPair,
    /// The root-signed delegation of `key`, or `None` when `key` is the root.
    pub delegation: Option<String>,
}

impl<'a> Signer<'a> {
    /// The root key itself.
    pub fn root(key: &'a KeyPair) -> Signer<'a> {
        Signer {
            key,
            delegation: None,
        }
    }
}

/// The root certifies `signing` for `days` from `now`, for `scope`. Returns the token.
pub fn delegate(
    root: &KeyPair,
    vendor: &str,
    signing: &PublicKey,
    scope: &[Scope],
    now: Timestamp,
    days: u32,
) -> Result<(String, Delegation), ApiError> {
    if days == 0 {
        return Err(ApiError::bad_request(
            "days",
            "a delegation must last at least one day",
        ));
    }
    if scope.is_empty() {
        return Err(ApiError::bad_request(
            "scope",
            "a delegation needs at least one scope (host-certificates, catalogs, revocation-lists)",
        ));
    }
    let delegation = Delegation {
        jti: format!("sk-{}", &signing.host_id().trim_start_matches("h-")),
        vendor: vendor.to_string(),
        signing_public_key: signing.to_paserk(),
        scope: scope.to_vec(),
        iat: now,
        exp: util::add(now, util::days(days)),
    };
    let token = token::sign(root, &delegation).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the delegation: {e}"),
        )
    })?;
    Ok((token, delegation))
}

/// The key that signed a document `what` issued at `issued`: the root when the document
/// carries no delegation; else the delegated key, once its delegation verifies against
/// the root, covers `scope`, and was in force at `issued`.
pub fn signing_key(
    root: &PublicKey,
    delegation: Option<&str>,
    scope: Scope,
    issued: Timestamp,
    what: &str,
) -> Result<PublicKey, ApiError> {
    let Some(token) = delegation else {
        return Ok(root.clone());
    };
    let untrusted = |why: String| {
        ApiError::new(
            ErrorCode::UntrustedHost,
            format!("{what} is signed by a delegated key whose delegation {why}"),
        )
    };
    let d: Delegation = token::verify(root, token)
        .map_err(|e| untrusted(format!("does not verify against the vendor root ({e})")))?;
    if !d.scope.contains(&scope) {
        return Err(untrusted(format!(
            "{} does not cover {} (it covers: {})",
            d.jti,
            scope.as_str(),
            d.scope
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if issued < d.iat || issued >= d.exp {
        return Err(untrusted(format!(
            "{} was not in force when it was issued ({issued}; the delegation runs from {} to {})",
            d.jti, d.iat, d.exp
        )));
    }
    PublicKey::from_paserk(&d.signing_public_key)
        .map_err(|_| untrusted(format!("{} names no valid signing key", d.jti)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_delegation_gives_its_key_for_its_scope_and_time_only() {
        let root = KeyPair::from_seed([1; 32]).unwrap();
        let signing = KeyPair::from_seed([2; 32]).unwrap();
        let (token, d) = delegate(
            &root,
            "Demo",
            signing.public(),
            &[Scope::HostCertificates],
            t(0),
            30,
        )
        .unwrap();
        assert_eq!(d.exp, util::add(t(0), util::days(30)));
        let key = signing_key(
            root.public(),
            Some(&token),
            Scope::HostCertificates,
            t(10),
            "x",
        )
        .unwrap();
        assert_eq!(&key, signing.public());
        // No delegation: the root.
        assert_eq!(
            &signing_key(root.public(), None, Scope::Catalogs, t(0), "x").unwrap(),
            root.public()
        );
        // Outside its scope, before or after its time, or from another root: refused.
        let refused = |r: Result<PublicKey, ApiError>| {
            let e = r.unwrap_err();
            assert_eq!(e.code, ErrorCode::UntrustedHost);
            e.message
        };
        assert!(
            refused(signing_key(
                root.public(),
                Some(&token),
                Scope::Catalogs,
                t(10),
                "x"
            ))
            .contains("does not cover catalogs")
        );
        assert!(
            refused(signing_key(
                root.public(),
                Some(&token),
                Scope::HostCertificates,
                t(-10),
                "x"
            ))
            .contains("not in force")
        );
        assert!(
            refused(signing_key(
                root.public(),
                Some(&token),
                Scope::HostCertificates,
                d.exp,
                "x"
            ))
            .contains("not in force")
        );
        let other = KeyPair::from_seed([3; 32]).unwrap();
        assert!(
            refused(signing_key(
                other.public(),
                Some(&token),
                Scope::HostCertificates,
                t(10),
                "x"
            ))
            .contains("does not verify")
        );
        assert!(delegate(&root, "Demo", signing.public(), &[], t(0), 30).is_err());
        assert!(delegate(&root, "Demo", signing.public(), &Scope::ALL, t(0), 0).is_err());
    }
}
