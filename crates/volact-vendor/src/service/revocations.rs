//! The service's side of revocation lists: `GET /v1/revocations` signs the vendor's
//! current list from its store, as `volact vendor revocations` exports it. The host's
//! side is `volact`'s `vendor_revocations`.

use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use volact_core::revocation::{self, RevocationList, RevokedEntry};
use volact_proto::{ApiError, ErrorCode, RevocationsResponse};
use volact_store::vendor::RevokedKind;

use crate::service::Service;

/// How long a list is good for: hosts fetch hourly, well within it.
const VALID_FOR: SignedDuration = SignedDuration::from_hours(24);

/// The vendor's current list from `store`, signed now by the key in `signing` (else the
/// root).
pub async fn signed_list(
    vendor: &crate::dir::VendorDir,
    store: &dyn volact_store::vendor::VendorStore,
    signing: Option<&crate::dir::SigningDir>,
    now: Timestamp,
) -> Result<String, ApiError> {
    let state = store.revocations().await.map_err(|e| {
        ApiError::new(
            ErrorCode::StorageFailure,
            format!("the revocations could not be read: {e}; try again"),
        )
    })?;
    let (_, catalog) = vendor.require_catalog()?;
    let mut list = RevocationList {
        vendor: catalog.vendor,
        sequence: state.sequence,
        issued: now,
        next_update: volact_core::util::add(now, VALID_FOR),
        host_keys: Vec::new(),
        hosts: Vec::new(),
        delegations: Vec::new(),
        delegation: None,
    };
    for e in state.entries {
        let entry = RevokedEntry {
            id: e.id,
            revoked_at: Timestamp::from_second(e.at).unwrap_or(Timestamp::UNIX_EPOCH),
            reason: e.reason,
        };
        match e.kind {
            RevokedKind::HostKey => list.host_keys.push(entry),
            RevokedKind::Host => list.hosts.push(entry),
            RevokedKind::Delegation => list.delegations.push(entry),
        }
    }
    let signer = vendor.signer(signing)?;
    revocation::sign(&signer.as_signer(), &list)
}

async fn serve_list(
    axum::extract::State(service): axum::extract::State<Arc<Service>>,
) -> Result<axum::Json<RevocationsResponse>, volact_host::http::HttpError> {
    let now = volact_core::util::whole_seconds(Timestamp::now());
    let answer = signed_list(
        &service.vendor,
        service.store.as_ref(),
        service.signing.as_ref(),
        now,
    )
    .await;
    service.metrics.request(
        "revocations",
        answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"),
    );
    Ok(axum::Json(RevocationsResponse {
        revocation_list: answer?,
    }))
}

/// The service's revocation route.
pub(crate) fn routes() -> axum::Router<Arc<Service>> {
    axum::Router::new().route("/v1/revocations", axum::routing::get(serve_list))
}
