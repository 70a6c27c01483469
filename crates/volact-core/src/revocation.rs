//! Revocation lists: the vendor's signed list of revoked host keys, hosts and delegated
//! signing keys. The vendor service signs it (or the root, offline); hosts fetch it,
//! stop serving when they are on it, and keep only newer lists (a higher sequence).
//!
//! A list signed by a delegated key may revoke host keys and hosts; revoking a delegated
//! key takes the root itself, so a stolen signing key cannot revoke the key that
//! replaces it. Entries of that kind in a delegated list are dropped when it is read.

use crate::certificate::HostCertificate;
use crate::delegation::{Scope, Signer, signing_key};
use crate::keys::PublicKey;
use crate::token::{self, Document};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use volact_proto::{ApiError, ErrorCode};

/// One revoked host key, host or delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// Its id (a host key's `jti`, a host id, a delegation's `jti`).
    pub id: String,
    /// When the vendor revoked it.
    pub revoked_at: Timestamp,
    /// Why, if the vendor said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The vendor's revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// The vendor.
    pub vendor: String,
    /// Grows with every revocation: a host keeps the list with the highest.
    pub sequence: u64,
    /// When it was signed.
    pub issued: Timestamp,
    /// When the vendor signs the next one at the latest; hosts fetch again before.
    pub next_update: Timestamp,
    /// Revoked host keys: every host activated with one.
    #[serde(default)]
    pub host_keys: Vec<RevokedEntry>,
    /// Revoked hosts.
    #[serde(default)]
    pub hosts: Vec<RevokedEntry>,
    /// Revoked delegated signing keys: what they signed is no longer trusted.
    #[serde(default)]
    pub delegations: Vec<RevokedEntry>,
    /// The root's delegation of the key that signed this list, when not the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

impl Document for RevocationList {
    const TYPE: &'static str = "volact.revocation-list";
}

/// Signs `list` with `signer` (whose delegation it then carries).
pub fn sign(signer: &Signer<'_>, list: &RevocationList) -> Result<String, ApiError> {
    let list = RevocationList {
        delegation: signer.delegation.clone(),
        ..list.clone()
    };
    token::sign(signer.key, &list).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the revocation list: {e}"),
        )
    })
}

/// Reads a revocation list that verifies against the vendor `root` (signed by the root,
/// or by a key delegated for revocation lists) and is `vendor`'s. A delegated list's
/// revocations of delegations are dropped (see the module).
pub fn verify(root: &PublicKey, vendor: &str, token: &str) -> Result<RevocationList, ApiError> {
    let untrusted = |why: String| {
        ApiError::new(
            ErrorCode::UntrustedHost,
            format!("the revocation list {why}; it is ignored"),
        )
    };
    let claimed: RevocationList =
        token::peek(token).map_err(|e| untrusted(format!("is not one ({e})")))?;
    let signer = signing_key(
        root,
        claimed.delegation.as_deref(),
        Scope::RevocationLists,
        claimed.issued,
        "the revocation list",
    )?;
    let mut list: RevocationList =
        token::verify(&signer, token).map_err(|e| untrusted(format!("does not verify: {e}")))?;
    if list.vendor != vendor {
        return Err(untrusted(format!("is {}'s, not {vendor}'s", list.vendor)));
    }
    if list.delegation.is_some() {
        list.delegations.clear();
    }
    Ok(list)
}

/// Whether `offered` replaces `current`: a higher sequence only, so an older list played
/// back never lifts a revocation.
pub fn is_newer(current: Option<&RevocationList>, offered: &RevocationList) -> bool {
    current.is_none_or(|c| offered.sequence > c.sequence)
}

/// `host-revoked` when `list` revokes the host of `certificate`, its host key, or the
/// delegation that signed it.
pub fn check_certificate(
    list: &RevocationList,
    certificate: &HostCertificate,
) -> Result<(), ApiError> {
    let delegation_id = certificate
        .delegation
        .as_deref()
        .and_then(|d| token::peek::<crate::delegation::Delegation>(d).ok())
        .map(|d| d.jti);
    let found = [
        (&list.hosts, Some(certificate.sub.clone()), "host"),
        (
            &list.host_keys,
            Some(certificate.key_id.clone()),
            "host key",
        ),
        (&list.delegations, delegation_id, "signing key"),
    ]
    .into_iter()
    .find_map(|(entries, id, what)| {
        let id = id?;
        entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| (what, e.clone()))
    });
    match found {
        None => Ok(()),
        Some((what, entry)) => Err(ApiError::with_details(
            ErrorCode::HostRevoked,
            format!(
                "the vendor revoked this host's {what} {} at {}{}; the host no longer activates clients. Ask the vendor ({})",
                entry.id,
                entry.revoked_at,
                entry
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                list.vendor
            ),
            serde_json::json!({ "revoked": what, "id": entry.id, "revoked_at": entry.revoked_at, "sequence": list.sequence }),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn entry(id: &str) -> RevokedEntry {
        RevokedEntry {
            id: id.into(),
            revoked_at: t(0),
            reason: Some("lost".into()),
        }
    }

    fn list(sequence: u64) -> RevocationList {
        RevocationList {
            vendor: "V".into(),
            sequence,
            issued: t(10),
            next_update: t(3610),
            host_keys: vec![entry("hk-1")],
            hosts: vec![entry("host-9")],
            delegations: vec![entry("sk-1")],
            delegation: None,
        }
    }

    fn cert(sub: &str, key_id: &str) -> HostCertificate {
        HostCertificate {
            sub: sub.into(),
            host_public_key: String::new(),
            vendor: "V".into(),
            key_id: key_id.into(),
            customer: "C".into(),
            group: "g".into(),
            products: vec![],
            seats: None,
            iat: t(0),
            exp: t(100_000),
            delegation: None,
        }
    }

    #[test]
    fn a_list_verifies_for_its_vendor_only_and_revokes_keys_and_hosts() {
        let root = KeyPair::from_seed([1; 32]).unwrap();
        let token = sign(&Signer::root(&root), &list(3)).unwrap();
        let read = verify(root.public(), "V", &token).unwrap();
        assert_eq!(read, list(3));
        assert!(verify(root.public(), "W", &token).is_err());
        let other = KeyPair::from_seed([2; 32]).unwrap();
        assert!(verify(other.public(), "V", &token).is_err());
        let forged = sign(&Signer::root(&other), &list(3)).unwrap();
        assert_eq!(
            verify(root.public(), "V", &forged).unwrap_err().code,
            ErrorCode::UntrustedHost
        );

        let e = check_certificate(&read, &cert("host-1", "hk-1")).unwrap_err();
        assert_eq!(e.code, ErrorCode::HostRevoked);
        assert!(
            e.message.contains("hk-1") && e.message.contains("lost"),
            "{}",
            e.message
        );
        assert!(check_certificate(&read, &cert("host-9", "hk-2")).is_err());
        assert!(check_certificate(&read, &cert("host-1", "hk-2")).is_ok());
    }

    #[test]
    fn only_a_higher_sequence_replaces_a_list() {
        assert!(is_newer(None, &list(0)));
        assert!(is_newer(Some(&list(2)), &list(3)));
        assert!(!is_newer(Some(&list(3)), &list(3)));
        assert!(!is_newer(Some(&list(3)), &list(2)));
    }

    #[test]
    fn a_delegated_list_needs_its_scope_and_cannot_revoke_delegations() {
        let root = KeyPair::from_seed([1; 32]).unwrap();
        let signing = KeyPair::from_seed([3; 32]).unwrap();
        let (delegation, _) = crate::delegation::delegate(
            &root,
            "V",
            signing.public(),
            &[Scope::RevocationLists],
            t(0),
            30,
        )
        .unwrap();
        let signer = Signer {
            key: &signing,
            delegation: Some(delegation),
        };
        let read = verify(root.public(), "V", &sign(&signer, &list(1)).unwrap()).unwrap();
        assert_eq!(read.host_keys, list(1).host_keys);
        assert!(read.delegations.is_empty());

        let (narrow, _) =
            crate::delegation::delegate(&root, "V", signing.public(), &[Scope::Catalogs], t(0), 30)
                .unwrap();
        let signer = Signer {
            key: &signing,
            delegation: Some(narrow),
        };
        let e = verify(root.public(), "V", &sign(&signer, &list(1)).unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost);
    }
}
