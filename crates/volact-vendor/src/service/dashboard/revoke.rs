//! Revoking a host key or a host from the dashboard: a page that says what will happen
//! (a revocation cannot be undone), then the CSRF-checked form that publishes it in the
//! revocation list through the same ledger as `volact vendor revoke`.

use super::{Layout, Nav, failure};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;
use volact_host::dashboard::{Session, error_page, forbidden, render_page, url_encode};
use volact_proto::{ApiError, ErrorCode};
use volact_store::vendor::{HostKeyRecord, HostRecord, RevokedKind};

use crate::service::Service;

/// What a revocation names, as the form sends it.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Target {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id: String,
}

/// The revocation form.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    reason: String,
}

/// A host key or host found in the store, with its customer.
enum Found {
    HostKey(HostKeyRecord, Vec<HostRecord>),
    Host(HostKeyRecord, HostRecord),
}

impl Found {
    fn customer(&self) -> &str {
        match self {
            Found::HostKey(k, _) | Found::Host(k, _) => &k.customer,
        }
    }

    fn kind(&self) -> RevokedKind {
        match self {
            Found::HostKey(..) => RevokedKind::HostKey,
            Found::Host(..) => RevokedKind::Host,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Found::HostKey(..) => "host key",
            Found::Host(..) => "host",
        }
    }
}

fn storage(e: &volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the vendor's records could not be read: {e}"),
    )
}

/// The host key or host `target` names; `None` when there is none (or the kind is not
/// one the dashboard revokes).
async fn find(service: &Service, target: &Target) -> Result<Option<Found>, ApiError> {
    let store = service.store.as_ref();
    match RevokedKind::parse(&target.kind) {
        Some(RevokedKind::HostKey) => {
            let Some(key) = store.host_key(&target.id).await.map_err(|e| storage(&e))? else {
                return Ok(None);
            };
            let hosts = store
                .hosts(Some(&key.key_id))
                .await
                .map_err(|e| storage(&e))?;
            Ok(Some(Found::HostKey(key, hosts)))
        }
        Some(RevokedKind::Host) => {
            let hosts = store.hosts(None).await.map_err(|e| storage(&e))?;
            let Some(host) = hosts.into_iter().find(|h| h.host_id == target.id) else {
                return Ok(None);
            };
            let Some(key) = store
                .host_key(&host.key_id)
                .await
                .map_err(|e| storage(&e))?
            else {
                return Ok(None);
            };
            Ok(Some(Found::Host(key, host)))
        }
        _ => Ok(None),
    }
}

fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Nothing to revoke",
        "The vendor service has no host key or host by that id. Go back to the customer's page and pick one there.",
    )
}

#[derive(Template)]
#[template(path = "vendor/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    kind: &'static str,
    what: &'static str,
    id: String,
    customer: String,
    customer_link: String,
    consequence: String,
    /// What is lost for good.
    permanent: &'static str,
}

/// `GET /revoke?kind=&id=`: what revoking it does, and the form that does it.
pub(super) async fn confirm(
    session: Session,
    State(service): State<Arc<Service>>,
    Query(target): Query<Target>,
) -> Response {
    let found = match find(&service, &target).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failure(&e),
    };
    let consequence = match &found {
        Found::HostKey(key, hosts) => {
            let live = hosts.iter().filter(|h| h.revoked_at.is_none()).count();
            format!(
                "Host key {} of {} (group {}) will activate and renew no host any more. Its {live} activated {} activating clients when {} fetch the revocation list (hosts fetch it hourly), and clients that get the list refuse {}.",
                key.key_id,
                key.customer,
                key.group,
                if live == 1 {
                    "host stops"
                } else {
                    "hosts stop"
                },
                if live == 1 {
                    "it next fetches"
                } else {
                    "they next"
                },
                if live == 1 { "it" } else { "them" },
            )
        }
        Found::Host(key, host) => format!(
            "Host {} (host key {} of {}) stops activating clients when it next fetches the revocation list (hosts fetch it hourly), and clients that get the list refuse it. The customer's other hosts keep serving.",
            host.host_id, key.key_id, key.customer
        ),
    };
    let page = ConfirmPage {
        layout: Layout::new(&service, &session, Nav::Customers),
        kind: found.kind().as_str(),
        what: found.what(),
        id: target.id,
        customer: found.customer().to_owned(),
        customer_link: url_encode(found.customer()),
        consequence,
        permanent: match found {
            Found::HostKey(..) => {
                "A revocation cannot be undone. The customer needs a new host key to activate hosts again."
            }
            Found::Host(..) => {
                "A revocation cannot be undone. This host cannot be activated again; the customer's other hosts are not affected."
            }
        },
    };
    render_page(StatusCode::OK, &page)
}

/// `POST /revoke`: revokes, leaves a message saying so, and goes back to the customer.
pub(super) async fn revoke(
    session: Session,
    State(service): State<Arc<Service>>,
    Form(form): Form<RevokeForm>,
) -> Response {
    if !session.csrf_ok(&form.csrf) {
        return forbidden(
            "The form's security token is missing or wrong. Reload the page and try again.",
        );
    }
    let target = Target {
        kind: form.kind,
        id: form.id,
    };
    let found = match find(&service, &target).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return failure(&e),
    };
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    let sequence =
        match crate::ledger::revoke(service.store.as_ref(), found.kind(), &target.id, reason).await
        {
            Ok(sequence) => sequence,
            Err(e) => return failure(&e),
        };
    tracing::info!(kind = found.kind().as_str(), id = %target.id, sequence, "revoked from the dashboard");
    service.metrics.request("dashboard-revoke", "ok");
    session.sessions.set_flash(
        &session.id,
        format!(
            "Revoked {} {} of {}: revocation list {sequence} is published. Hosts stop at their next fetch.",
            found.what(),
            target.id,
            found.customer()
        ),
    );
    Redirect::to(&format!("/customer?name={}", url_encode(found.customer()))).into_response()
}
