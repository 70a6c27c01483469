//! The host's side of revocation lists: a host fetches the vendor's list at start and
//! hourly (`GET /v1/revocations`, served by `volact_vendor`), or imports it with
//! `volact host import-revocations FILE` when offline, keeps the newest it has verified
//! in `D/revocations.token`, and stops activating clients when the list revokes it.

use std::path::Path;
use std::sync::Arc;
use volact_core::revocation::{self, RevocationList};
use volact_engine::data::{HostData, write_atomic};
use volact_engine::engine::Engine;
use volact_proto::{ApiError, ErrorCode};

use crate::vendor_link::VendorLink;

/// Where a host keeps the newest list it has verified.
const FILE: &str = volact_engine::data::REVOCATIONS;
/// How often a serving host asks the service for its list.
const FETCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often it looks for a list imported from a file.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The list the host keeps and its token, if any (read again from its file, verified).
pub(crate) fn installed(host: &HostData) -> Result<Option<(String, RevocationList)>, ApiError> {
    host.revocation_list()
}

/// Installs `token` when it verifies against the host's vendor and is newer than the
/// list it holds; an older or equal one is refused, so a list played back never lifts a
/// revocation.
pub(crate) fn install(host: &HostData, token: &str) -> Result<RevocationList, ApiError> {
    let (root, catalog) = host.vendor()?;
    let offered = revocation::verify(&root, &catalog.vendor, token.trim())?;
    let current = installed(host).ok().flatten().map(|(_, list)| list);
    if !revocation::is_newer(current.as_ref(), &offered) {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "this revocation list has sequence {}, and the host holds sequence {} already; only a newer list is taken",
                offered.sequence,
                current.as_ref().map_or(0, |c| c.sequence)
            ),
            serde_json::json!({ "offered": offered.sequence, "held": current.map(|c| c.sequence) }),
        ));
    }
    write_atomic(&host.dir().join(FILE), token.trim().as_bytes(), false)?;
    Ok(offered)
}

/// `volact host import-revocations FILE`: the token, or the service's JSON answer.
pub(crate) fn import_file(host: &HostData, file: &Path) -> Result<RevocationList, ApiError> {
    let bytes = std::fs::read(file).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    if bytes.len() > 4 * 1024 * 1024 {
        return Err(ApiError::bad_request(
            "file",
            "is larger than 4 MiB: not a revocation list",
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let token = if text.starts_with('{') {
        serde_json::from_str::<volact_proto::RevocationsResponse>(text)
            .map(|r| r.revocation_list)
            .map_err(|e| {
                ApiError::bad_request("file", format!("is not a revocation list answer: {e}"))
            })?
    } else {
        text.to_owned()
    };
    install(host, &token)
}

/// Puts `list` in force on `engine`; the first time it revokes the host, says so in the
/// log and the audit log.
async fn apply(engine: &Engine, token: String, list: RevocationList, source: &str) {
    let was_revoked = engine
        .not_ready(engine.now())
        .is_some_and(|e| e.code == ErrorCode::HostRevoked);
    let sequence = list.sequence;
    engine.set_revocations(token, list);
    if let Some(e) = engine.not_ready(engine.now())
        && e.code == ErrorCode::HostRevoked
        && !was_revoked
    {
        tracing::error!(sequence, "{}", e.message);
        let stored = engine
            .store()
            .record_host_event(engine.now().as_second(), "host-revoked", source, &e.message)
            .await;
        if let Err(e) = stored {
            tracing::warn!("cannot add the revocation to the audit log: {e}");
        }
    }
}

/// Keeps a serving host on the vendor's newest revocation list: the one it holds at
/// start, then fetched from the service hourly, or imported by hand (looked for every
/// few seconds).
pub(crate) fn start(
    link: Option<&VendorLink>,
    host: &HostData,
    engine: &Arc<Engine>,
) -> tokio::task::JoinHandle<()> {
    let link = link.cloned();
    let (host, engine) = (host.clone(), engine.clone());
    tokio::spawn(async move {
        let mut fetched: Option<std::time::Instant> = None;
        loop {
            if let Some(link) = &link
                && fetched.is_none_or(|t| t.elapsed() >= FETCH_EVERY)
            {
                fetched = Some(std::time::Instant::now());
                match link
                    .call::<volact_proto::RevocationsResponse>(
                        "/v1/revocations",
                        None,
                        "a revocation list",
                    )
                    .await
                {
                    Ok(answer) => {
                        // An equal sequence is the usual answer and says nothing.
                        if let Err(e) = install(&host, &answer.revocation_list)
                            && e.code != ErrorCode::BadRequest
                        {
                            tracing::warn!(code = %e.code, "the vendor's revocation list was refused: {}", e.message);
                        }
                    }
                    Err(e) => tracing::warn!(
                        url = %link.url,
                        "cannot fetch the vendor's revocation list: {}",
                        e.message
                    ),
                }
            }
            match installed(&host) {
                Ok(Some((token, list)))
                    if engine
                        .revocations()
                        .is_none_or(|held| list.sequence > held.sequence) =>
                {
                    let source = link.as_ref().map_or("file", |l| l.url.as_str()).to_owned();
                    apply(&engine, token, list, &source).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("cannot read the installed revocation list: {}", e.message)
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    })
}
