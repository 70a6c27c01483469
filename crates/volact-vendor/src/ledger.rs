//! The vendor's one ledger of host activations, online and offline alike: the vendor
//! store (`V/vendor.db` by default, or the `[storage]` of `V/service.toml`). `vendor
//! serve` and `vendor activate-host` both come through here, so a request file answered
//! offline is refused when played online and the other way round, and the host-key
//! limits count both.
//!
//! The rules are volact-core's (`check_activation`, `check_limits`, `check_renewal`); the
//! store admits in one transaction; the certificate is signed before the admission and
//! handed out only after it committed, so a crash never gives away an activation the
//! ledger does not know.

use jiff::Timestamp;
use volact_core::certificate::{self, CheckedActivation};
use volact_core::renewal;
use volact_proto::{
    ApiError, ErrorCode, HostActivationRequest, HostActivationResponse, HostRenewalRequest,
    HostRenewalResponse,
};
use volact_store::StoreErrorKind;
use volact_store::vendor::{AdmitError, HostAdmission, HostKeyRecord, VendorStore};

use crate::dir::{SigningDir, VendorDir};
use crate::service::MAX_CLOCK_SKEW;

/// Opens the vendor directory's store as its settings file says.
pub async fn open_store(
    dir: &std::path::Path,
    flags: &crate::service::config::ServiceFlags,
) -> Result<std::sync::Arc<dyn VendorStore>, ApiError> {
    let file = crate::service::config::read_file(dir, flags)?;
    let (url, options) = file.storage_settings(dir, flags)?;
    open_store_at(dir, &url, &options).await
}

/// Opens the store `url` names for the vendor directory `dir`, importing the
/// `ledger.json` of earlier versions first (see [`import_ledger`]).
pub async fn open_store_at(
    dir: &std::path::Path,
    url: &str,
    options: &volact_engine::storage::StorageOptions,
) -> Result<std::sync::Arc<dyn VendorStore>, ApiError> {
    let store = volact_engine::storage::open_vendor_store(url, options, dir).await?;
    import_ledger(dir, store.as_ref()).await?;
    Ok(store)
}

/// The ledger file of versions before the store.
const OLD_LEDGER: &str = "ledger.json";

/// Earlier versions kept the ledger in `V/ledger.json`: its activations per host and
/// the requests it answered move into the store once, so no host key gains activations
/// by an upgrade and no answered request can be played again. The file is then renamed
/// `ledger.json.imported`. A store that already has hosts is never imported into; the
/// file is then left for the vendor to look at, and a warning says so.
async fn import_ledger(dir: &std::path::Path, store: &dyn VendorStore) -> Result<(), ApiError> {
    let path = dir.join(OLD_LEDGER);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let ledger: certificate::Ledger = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "{} (the ledger of an earlier version) is corrupt: {e}; restore it from a backup, or move it away to start counting anew",
                path.display()
            ),
        )
    })?;
    if !store
        .hosts(None)
        .await
        .map_err(|e| storage_failed(&e))?
        .is_empty()
    {
        tracing::warn!(
            file = %path.display(),
            "an earlier version's ledger is beside a store that already has hosts; it was not imported"
        );
        return Ok(());
    }
    // Each answered request's nonce, by host, to import the activations under.
    let mut nonces: std::collections::BTreeMap<&str, Vec<(&str, i64)>> =
        std::collections::BTreeMap::new();
    for (id, at) in &ledger.answered {
        if let Some((host, nonce)) = id.split_once(' ') {
            nonces
                .entry(host)
                .or_default()
                .push((nonce, at.as_second()));
        }
    }
    let mut imported = 0u64;
    for (key_id, hosts) in &ledger.keys {
        for (host_id, activations) in hosts {
            let mut known = nonces
                .remove(host_id.as_str())
                .unwrap_or_default()
                .into_iter();
            for n in 0..*activations {
                let (nonce, at) = known.next().map_or_else(
                    || (format!("imported-{n}"), 0),
                    |(s, at)| (s.to_owned(), at),
                );
                let admission = HostAdmission {
                    key_id: key_id.clone(),
                    host_id: host_id.clone(),
                    host_public_key: String::new(),
                    nonce,
                    at,
                    certificate_expires: 0,
                    max_hosts: u32::MAX,
                    max_activations: u32::MAX,
                };
                match store.admit(&admission).await {
                    Ok(_) | Err(AdmitError::Replayed { .. }) => imported += 1,
                    Err(AdmitError::Refused(e)) => return Err(e),
                    Err(AdmitError::Store(e)) => return Err(storage_failed(&e)),
                }
            }
        }
    }
    let done = dir.join("ledger.json.imported");
    std::fs::rename(&path, &done).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("imported {}, but cannot rename it: {e}", path.display()),
        )
    })?;
    tracing::info!(activations = imported, file = %done.display(), "imported the ledger of an earlier version");
    Ok(())
}

fn storage_failed(e: &volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!(
            "the vendor's records could not be read or written: {e}; nothing was issued, try again"
        ),
    )
}

fn admit_error(e: AdmitError, replayed: impl FnOnce(Timestamp) -> ApiError) -> ApiError {
    match e {
        AdmitError::Replayed { answered_at } => {
            replayed(Timestamp::from_second(answered_at).unwrap_or(Timestamp::UNIX_EPOCH))
        }
        AdmitError::Refused(e) => e,
        AdmitError::Store(e) => storage_failed(&e),
    }
}

/// `host-revoked` when the vendor revoked the host key or this host.
async fn refuse_revoked(
    store: &dyn VendorStore,
    key_id: &str,
    host_id: &str,
) -> Result<(), ApiError> {
    let revoked = |what: String, at: i64| {
        let at = Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH);
        ApiError::with_details(
            ErrorCode::HostRevoked,
            format!("{what} was revoked by the vendor at {at}; ask the vendor"),
            serde_json::json!({ "key_id": key_id, "host_id": host_id, "revoked_at": at }),
        )
    };
    let key = store
        .host_key(key_id)
        .await
        .map_err(|e| storage_failed(&e))?;
    if let Some(at) = key.and_then(|k| k.revoked_at) {
        return Err(revoked(format!("host key {key_id}"), at));
    }
    let hosts = store
        .hosts(Some(key_id))
        .await
        .map_err(|e| storage_failed(&e))?;
    if let Some(at) = hosts
        .iter()
        .find(|h| h.host_id == host_id)
        .and_then(|h| h.revoked_at)
    {
        return Err(revoked(format!("host {host_id}"), at));
    }
    Ok(())
}

/// A host key seen in a request becomes a record when the service has none (it was
/// issued offline): the vendor's view then lists it with its customer.
async fn record_key(store: &dyn VendorStore, checked: &CheckedActivation) -> Result<(), ApiError> {
    record_host_key(store, &checked.proof.host_key, &checked.key).await
}

/// Records a host key issued as `token` (an id already recorded stays as it is).
pub async fn record_host_key(
    store: &dyn VendorStore,
    token: &str,
    key: &volact_core::host_key::HostKey,
) -> Result<(), ApiError> {
    let record = HostKeyRecord {
        key_id: key.jti.clone(),
        customer: key.customer.clone(),
        group: key.group.clone(),
        seats: key.seats,
        max_hosts: key.max_hosts,
        max_activations: key.max_activations,
        expires: key.exp.map(|t| t.as_second()),
        usage_reports: key.usage_reports,
        token: token.trim().to_owned(),
        created: key.iat.as_second(),
        revoked_at: None,
    };
    match store.put_host_key(&record).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == StoreErrorKind::Conflict => Ok(()),
        Err(e) => Err(storage_failed(&e)),
    }
}

/// Answers a host activation request: checks it, refuses a revoked key or host, admits
/// it in the store within the key's limits, and returns the host certificate.
pub async fn activate(
    vendor: &VendorDir,
    store: &dyn VendorStore,
    signing: Option<&SigningDir>,
    request: &HostActivationRequest,
    now: Timestamp,
    days: u32,
) -> Result<HostActivationResponse, ApiError> {
    let root = vendor.root_public()?;
    let (_, catalog) = vendor.require_catalog()?;
    let checked = certificate::check_activation(&root, &catalog, request, now)?;
    let (key_id, host_id) = (&checked.key.jti, &checked.proof.host_id);
    refuse_revoked(store, key_id, host_id).await?;
    record_key(store, &checked).await?;
    let signer = vendor.signer(signing)?;
    let (token, cert) =
        certificate::sign_certificate(&signer.as_signer(), &catalog.vendor, &checked, now, days)?;
    let admission = HostAdmission {
        key_id: key_id.clone(),
        host_id: host_id.clone(),
        host_public_key: checked.host_public.to_paserk(),
        nonce: checked.proof.nonce.clone(),
        at: now.as_second(),
        certificate_expires: cert.exp.as_second(),
        max_hosts: checked.key.max_hosts,
        max_activations: checked.key.max_activations,
    };
    store
        .admit(&admission)
        .await
        .map_err(|e| admit_error(e, |at| certificate::replayed(&checked, at)))?;
    Ok(HostActivationResponse {
        host_certificate: token,
    })
}

/// Answers a renewal request: checks it, refuses a revoked key or host, records it (no
/// activation spent) and returns the renewed certificate.
pub(crate) async fn renew(
    vendor: &VendorDir,
    store: &dyn VendorStore,
    signing: Option<&SigningDir>,
    request: &HostRenewalRequest,
    now: Timestamp,
    days: u32,
) -> Result<HostRenewalResponse, ApiError> {
    let root = vendor.root_public()?;
    let checked = renewal::check_renewal(&root, request, now, MAX_CLOCK_SKEW)?;
    let (key_id, host_id) = (&checked.certificate.key_id, &checked.certificate.sub);
    refuse_revoked(store, key_id, host_id).await?;
    let signer = vendor.signer(signing)?;
    let (token, cert) = renewal::renewed_certificate(&signer.as_signer(), &checked, now, days)?;
    store
        .renew(
            key_id,
            host_id,
            &checked.proof.nonce,
            now.as_second(),
            cert.exp.as_second(),
        )
        .await
        .map_err(|e| admit_error(e, |at| renewal::renewal_replayed(&checked, at)))?;
    Ok(HostRenewalResponse {
        host_certificate: token,
    })
}

/// Records a revocation; returns the revocation list's new sequence number.
pub async fn revoke(
    store: &dyn VendorStore,
    kind: volact_store::vendor::RevokedKind,
    id: &str,
    reason: Option<&str>,
) -> Result<u64, ApiError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("id", "is not an id"));
    }
    let reason = reason.map(|r| {
        r.chars()
            .filter(|c| !c.is_control())
            .take(500)
            .collect::<String>()
    });
    let now = Timestamp::now().as_second();
    store
        .revoke(kind, id, now, reason.as_deref())
        .await
        .map_err(|e| storage_failed(&e))
}
