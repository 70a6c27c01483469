//! A typed client of a host's admin API (`/v1/admin/…`): the inventory, the audit log,
//! cloned-image flags, revocations and the status report, with the admin token and the
//! same TLS trust as every other connection to a host ([`crate::tls::TlsTrust`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), volact_proto::ApiError> {
//! use volact_client::admin::AdminClient;
//! use volact_client::tls::TlsTrust;
//! use volact_proto::admin::ClientQuery;
//!
//! let trust = TlsTrust::from_flags(Some("AB:CD:…"), None)?;
//! let admin = AdminClient::new("https://127.0.0.1:7689", "the-admin-token", &trust)?;
//! let active = admin
//!     .clients(&ClientQuery { state: Some("active".into()), ..ClientQuery::default() })
//!     .await?;
//! println!("{} active clients", active.clients.len());
//! # Ok(())
//! # }
//! ```

use serde::de::DeserializeOwned;
use std::time::Duration;
use volact_proto::admin::{
    ClientList, ClientQuery, CloneList, CloneQuery, EventList, EventQuery, RevokeAnswer,
    RevokeRequest,
};
use volact_proto::{ApiError, ErrorCode};

/// How long an admin request may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one host's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    url: String,
    token: String,
    hint: String,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

impl AdminClient {
    /// A client of the host at `url` (`http://` or `https://`, no path), sending `token`,
    /// trusting the host's certificate as `trust` says.
    pub fn new(
        url: &str,
        token: &str,
        trust: &crate::tls::TlsTrust,
    ) -> Result<AdminClient, ApiError> {
        let url = url.trim().trim_end_matches('/').to_string();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ApiError::bad_request(
                "url",
                format!("`{url}` is not an http:// or https:// URL such as https://127.0.0.1:7689"),
            ));
        }
        let builder = reqwest::Client::builder()
            .timeout(ADMIN_TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        let http = crate::tls::configure(builder, trust)?
            .build()
            .map_err(internal)?;
        Ok(AdminClient {
            http,
            url,
            token: token.trim().to_string(),
            hint: "volact host serve --data DIR".into(),
        })
    }

    /// The command that starts the host, named when it does not answer.
    pub fn with_serve_hint(mut self, hint: impl Into<String>) -> AdminClient {
        self.hint = hint.into();
        self
    }

    /// The host's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /v1/admin/clients`: the inventory, filtered.
    pub async fn clients(&self, query: &ClientQuery) -> Result<ClientList, ApiError> {
        let mut q = Vec::new();
        push(&mut q, "application", &query.application);
        push(&mut q, "product", &query.product);
        push(&mut q, "state", &query.state);
        push(&mut q, "search", &query.search);
        push(&mut q, "limit", &query.limit.map(|n| n.to_string()));
        self.get("/v1/admin/clients", &q).await
    }

    /// `GET /v1/admin/events`: the audit log, filtered (oldest first after `after_id`).
    pub async fn events(&self, query: &EventQuery) -> Result<EventList, ApiError> {
        let mut q = Vec::new();
        push(&mut q, "since", &query.since);
        push(&mut q, "client", &query.client);
        push(&mut q, "result", &query.result);
        push(&mut q, "after_id", &query.after_id.map(|n| n.to_string()));
        push(&mut q, "limit", &query.limit.map(|n| n.to_string()));
        self.get("/v1/admin/events", &q).await
    }

    /// `GET /v1/admin/clones`: clients flagged as cloned images.
    pub async fn clones(&self, query: &CloneQuery) -> Result<CloneList, ApiError> {
        let mut q = Vec::new();
        push(&mut q, "since", &query.since);
        self.get("/v1/admin/clones", &q).await
    }

    /// `POST /v1/admin/clients/{id}/revoke`: the client leaves the count at once.
    pub async fn revoke(
        &self,
        client_id: &str,
        reason: Option<&str>,
    ) -> Result<RevokeAnswer, ApiError> {
        let body = RevokeRequest {
            reason: reason.map(str::to_string),
        };
        self.post(
            &format!("/v1/admin/clients/{}/revoke", path(client_id)),
            &body,
        )
        .await
    }

    /// `POST /v1/admin/clients/{id}/unrevoke`.
    pub async fn unrevoke(&self, client_id: &str) -> Result<RevokeAnswer, ApiError> {
        self.post(
            &format!("/v1/admin/clients/{}/unrevoke", path(client_id)),
            &RevokeRequest::default(),
        )
        .await
    }

    /// `GET /v1/admin/status`, read as `T`: the host's status report, whose type
    /// (`volact_engine::status::HostStatus`) is built from the catalog's own types and
    /// lives with the host; `serde_json::Value` reads any version.
    pub async fn status<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.get("/v1/admin/status", &[]).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        let chain = crate::tls::error_chain(e);
        if self.url.starts_with("https://") && chain.contains("certificate") {
            return ApiError::with_details(
                ErrorCode::HostUnreachable,
                format!("the TLS connection to {} was refused: {chain}", self.url),
                serde_json::json!({ "url": self.url, "reason": chain }),
            );
        }
        ApiError::with_details(
            ErrorCode::HostUnreachable,
            format!(
                "no host answers at {}; start it with `{}` (or give --url)",
                self.url, self.hint
            ),
            serde_json::json!({ "url": self.url, "reason": e.to_string() }),
        )
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                internal(format!(
                    "the host at {} sent an answer this volact does not understand ({e}); are the host and this command the same version?",
                    self.url
                ))
            });
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => Err(e),
            Err(_) => Err(ApiError::new(
                ErrorCode::HostUnreachable,
                format!(
                    "{} answered HTTP {status}, not a volact host's answer; check --url",
                    self.url
                ),
            )),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.url)).map_err(|e| {
            ApiError::bad_request("url", format!("`{}` is not a URL: {e}", self.url))
        })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        self.send(self.http.get(url)).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ApiError> {
        let request = self.http.post(format!("{}{path}", self.url)).json(body);
        self.send(request).await
    }
}

fn push(q: &mut Vec<(&'static str, String)>, key: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        q.push((key, v.clone()));
    }
}

/// A client id as one path segment: anything but the id's own characters is escaped, so
/// a hostile id cannot reach another route.
fn path(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(
            super::path("0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10"),
            "0f8e5a52-8d1c-4f3c-9b1e-3f1d2c7a9e10"
        );
        assert_eq!(super::path("../status?x"), "%2E%2E%2Fstatus%3Fx");
    }
}
