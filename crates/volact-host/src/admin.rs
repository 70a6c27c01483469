//! The admin API under `/v1/admin/…`: inventory, audit log, revocation, status and
//! cloned-image flags. Every route, unknown ones included, first requires the admin token
//! (`Authorization: Bearer TOKEN`), checked in constant time with back-off per address.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/admin/clients?application=&product=&state=active\|stale\|revoked&search=&limit=` | [`ClientList`] |
//! | `GET /v1/admin/events?since=&client=&result=&after_id=&limit=` | [`EventList`] |
//! | `POST /v1/admin/clients/{id}/revoke` `{"reason": "…"}` | [`RevokeAnswer`] |
//! | `POST /v1/admin/clients/{id}/unrevoke` | [`RevokeAnswer`] |
//! | `GET /v1/admin/status` | [`volact_engine::status::HostStatus`] |
//! | `GET /v1/admin/clones?since=` | [`CloneList`] |

use crate::http::{AppState, HttpError, parse_json};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;
use volact_engine::inventory::{
    ClientList, ClientQuery, CloneList, EventList, EventQuery, canonical_client_id, parse_since,
};
use volact_proto::admin::{RevokeAnswer, RevokeRequest};
use volact_proto::{ApiError, ErrorCode};

/// Longest revocation reason kept.
const MAX_REASON_CHARS: usize = 500;

/// Admin routes; every one requires the admin token.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/clients", get(list_clients))
        .route("/v1/admin/clients/{id}/revoke", post(revoke))
        .route("/v1/admin/clients/{id}/unrevoke", post(unrevoke))
        .route("/v1/admin/events", get(list_events))
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/clones", get(list_clones))
        .route("/v1/admin", any(unknown))
        .route("/v1/admin/{*rest}", any(unknown))
}

/// The address a request came from (unspecified when the server was not started with
/// connection info, as in router-only tests).
pub fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A refused credential: `unauthorized` (401, with `WWW-Authenticate`) or `rate-limited`
/// (429, with `Retry-After`).
pub struct AuthRejection(pub ApiError);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let retry = self.0.details["retry_after_secs"].as_u64();
        let code = self.0.code;
        let mut response = HttpError(self.0).into_response();
        let headers = response.headers_mut();
        if code == ErrorCode::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"volact admin\""),
            );
        }
        if let Some(secs) = retry
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// Proof that a request carries the admin token; take it as a handler argument.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    /// Where the request came from, for the log.
    pub ip: IpAddr,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = client_ip(&parts.extensions);
        match state.auth.check(ip, bearer(&parts.headers), Instant::now()) {
            Ok(()) => Ok(Admin { ip }),
            Err(e) => {
                tracing::debug!(%ip, code = %e.code, path = %parts.uri.path(), "admin request refused");
                Err(AuthRejection(e))
            }
        }
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, HttpError> {
    q.map(|Query(v)| v)
        .map_err(|e| HttpError(ApiError::bad_request("query", e.body_text())))
}

async fn list_clients(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<ClientQuery>, QueryRejection>,
) -> Result<Json<ClientList>, HttpError> {
    Ok(Json(state.engine.list_clients(&query(q)?).await?))
}

async fn list_events(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<EventList>, HttpError> {
    Ok(Json(state.engine.list_events(&query(q)?).await?))
}

/// `?since=` of `GET /v1/admin/clones`.
#[derive(Debug, Default, Deserialize)]
struct SinceQuery {
    since: Option<String>,
}

async fn list_clones(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<SinceQuery>, QueryRejection>,
) -> Result<Json<CloneList>, HttpError> {
    let since = query(q)?
        .since
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_since(&s, state.engine.now()))
        .transpose()?;
    Ok(Json(state.engine.list_clones(since).await?))
}

async fn status(_: Admin, State(state): State<AppState>) -> Result<Response, HttpError> {
    let engine = &state.engine;
    let report = volact_engine::status::collect(
        &state.data,
        engine.store().as_ref(),
        &state.config,
        engine.now(),
    )
    .await?;
    Ok(Json(report).into_response())
}

async fn revoke(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RevokeAnswer>, HttpError> {
    let empty = body
        .as_ref()
        .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace));
    let request: RevokeRequest = if empty {
        RevokeRequest::default()
    } else {
        parse_json(body)?
    };
    let reason = request
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason
        && (r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters, without control characters"),
        )
        .into());
    }
    change(&state, admin, &id, true, reason.as_deref()).await
}

async fn unrevoke(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevokeAnswer>, HttpError> {
    change(&state, admin, &id, false, None).await
}

async fn change(
    state: &AppState,
    admin: Admin,
    id: &str,
    revoked: bool,
    reason: Option<&str>,
) -> Result<Json<RevokeAnswer>, HttpError> {
    let id = canonical_client_id("client_id", id)?;
    let engine = &state.engine;
    if !engine.set_revoked(&id, revoked, reason).await? {
        return Err(ApiError::with_details(
            ErrorCode::NotFound,
            format!(
                "no client {id} in this host's inventory; list the clients with `volact host clients`"
            ),
            serde_json::json!({ "client_id": id }),
        )
        .into());
    }
    tracing::info!(client_id = %id, revoked, reason = reason.unwrap_or(""), admin = %admin.ip, "client revocation changed");
    let client = engine.client_row(&id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Internal,
            format!("client {id} vanished from the inventory"),
        )
    })?;
    let application_count = engine
        .counts()?
        .into_iter()
        .find(|(a, _)| *a == client.application)
        .map_or(0, |(_, n)| n);
    Ok(Json(RevokeAnswer {
        client,
        application_count,
    }))
}

async fn unknown(_: Admin) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::NotFound,
        "no such admin endpoint; see /v1/admin/clients, /v1/admin/events, /v1/admin/clients/ID/revoke, /v1/admin/clients/ID/unrevoke, /v1/admin/status, /v1/admin/clones",
    ))
}
