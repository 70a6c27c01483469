//! What every request passes before the router: a cap on its head, an immediate 413 for a
//! declared body over the limit (before any `100 Continue`), its body read in full within
//! the body timeout, and afterwards every error answer made JSON with a code.

use super::events::{Events, Kind};
use super::limits::Limits;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;
use volact_proto::{ApiError, ErrorCode, MAX_BODY_BYTES};

/// Longest error body of a handler or extractor rewritten as JSON (they are a line).
const MAX_ERROR_TEXT: usize = 4096;

/// The router behind the checks, with the limits and where to count refusals.
pub struct Front {
    router: Router,
    limits: Limits,
    events: Arc<Events>,
    transport: Transport,
}

/// What a listener speaks, and so how its answers differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// Over TLS: every answer says `Strict-Transport-Security`, and requests carry
    /// [`ViaTls`] (the session cookie is then `Secure`).
    pub tls: bool,
    /// On plain HTTP, whether the admin API and the dashboard answer other machines
    /// (`[tls] allow_plain_admin`); they always answer 127.0.0.1 and ::1.
    pub plain_admin_open: bool,
    /// The port of the host's TLS listener, named (with the host name the request
    /// used) in a `tls-required` refusal.
    pub tls_port: Option<u16>,
}

impl Transport {
    /// Plain HTTP.
    pub fn plain(plain_admin_open: bool, tls_port: Option<u16>) -> Transport {
        Transport {
            tls: false,
            plain_admin_open,
            tls_port,
        }
    }

    /// TLS.
    pub fn tls() -> Transport {
        Transport {
            tls: true,
            plain_admin_open: true,
            tls_port: None,
        }
    }
}

/// Marks a request that arrived over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaTls;

/// `Strict-Transport-Security` on every TLS answer: a year.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// Whether `peer` may use the admin API and dashboard over plain HTTP. Only 127.0.0.1 and
/// ::1 (or 127.0.0.1 mapped into IPv6): other 127/8 addresses are treated as remote, so a
/// local relay on another loopback address cannot turn the plain port into a remote
/// admin port, and tests can stand for another machine by binding 127.0.0.2.
pub fn is_local_admin_peer(peer: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match peer {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST)
        }
    }
}

/// Whether `path` is the admin API (`Some(true)`), the dashboard (`Some(false)`), or
/// neither (activations, host facts, health, metrics).
fn admin_kind(path: &str) -> Option<bool> {
    if path == "/v1/admin" || path.starts_with("/v1/admin/") {
        return Some(true);
    }
    const DASHBOARD: [&str; 7] = [
        "/",
        "/login",
        "/logout",
        "/clients",
        "/events",
        "/host",
        "/dashboard.css",
    ];
    (DASHBOARD.contains(&path) || path.starts_with("/clients/")).then_some(false)
}

/// `https://NAME:PORT` with the host name the request was sent to (its `Host`), or
/// `localhost` when it named none or a strange one.
fn https_url<B>(request: &Request<B>, port: u16) -> String {
    let named = request
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            let host = request.headers().get(header::HOST)?.to_str().ok()?;
            let uri: axum::http::Uri = format!("http://{host}/").parse().ok()?;
            uri.host().map(str::to_string)
        })
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    format!("https://{}:{port}", named.as_deref().unwrap_or("localhost"))
}

/// The refusal of the admin API (JSON) or the dashboard (a short page) over plain HTTP.
fn tls_required(api: bool, path: &str, tls_url: Option<&str>) -> Response<Body> {
    let go = match tls_url {
        Some(url) => format!("use {url}{path} instead"),
        None => "set up TLS on the host (`volact host tls-init --data DIR`, or [tls] cert_file and key_file in volact.toml) and use its https:// address, or ask from the host machine itself".to_string(),
    };
    let message = format!(
        "the admin API and the dashboard answer over plain HTTP only on the host machine (127.0.0.1, ::1); {go}"
    );
    if api {
        return json_error(
            StatusCode::FORBIDDEN,
            &ApiError::with_details(
                ErrorCode::TlsRequired,
                message,
                serde_json::json!({ "path": path, "tls_url": tls_url }),
            ),
        );
    }
    let link = tls_url
        .map(|u| {
            let href = format!("{u}{path}")
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;");
            format!("<p><a href=\"{href}\">{href}</a></p>")
        })
        .unwrap_or_default();
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>TLS required</title></head><body><h1>TLS required</h1><p>tls-required: {}</p>{link}</body></html>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// `error` as a response with `status` (not the code's usual one: the code stays
/// `bad-request` while the status says 413, 431, 405 or 408).
pub fn json_error(status: StatusCode, error: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(error).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error after which the connection closes: the request's body (if any) was not
/// read, so the connection cannot carry another request.
fn closing(status: StatusCode, error: &ApiError) -> Response<Body> {
    let mut response = json_error(status, error);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Bytes in the request's head as it came: request line and header fields.
fn head_bytes(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> usize {
    // Counted from the parts, not by printing the URI: this runs for every request.
    let target = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = method.as_str().len() + target + 12;
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Front {
    /// `router` behind the checks of `limits`, on a listener of `transport`.
    pub fn new(router: Router, limits: Limits, events: Arc<Events>, transport: Transport) -> Front {
        Front {
            router,
            limits,
            events,
            transport,
        }
    }

    /// Answers `request` from `peer`, with the transport's checks and headers.
    pub async fn call<B>(&self, request: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.transport.tls {
            let mut request = request;
            request.extensions_mut().insert(ViaTls);
            let mut response = self.checked(request, peer).await;
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
            return response;
        }
        if !self.transport.plain_admin_open
            && !is_local_admin_peer(peer.ip())
            && let Some(api) = admin_kind(request.uri().path())
        {
            let tls_url = self
                .transport
                .tls_port
                .map(|port| https_url(&request, port));
            return tls_required(api, request.uri().path(), tls_url.as_deref());
        }
        self.checked(request, peer).await
    }

    /// Answers `request` from `peer` after the limits' checks.
    async fn checked<B>(&self, request: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = request.into_parts();
        let head = head_bytes(&parts.method, &parts.uri, &parts.headers);
        if head > self.limits.max_header_bytes {
            self.events
                .note(Kind::HeadersTooLarge, Some(peer.ip()), None);
            let max = self.limits.max_header_bytes;
            return closing(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &ApiError::with_details(
                    ErrorCode::BadRequest,
                    format!(
                        "the request's headers take {head} bytes, more than the limit of {max}; send fewer or shorter headers"
                    ),
                    serde_json::json!({ "field": "headers", "bytes": head, "max_bytes": max }),
                ),
            );
        }
        if let Some(length) = declared_length(&parts.headers)
            && length > MAX_BODY_BYTES as u64
        {
            // Answered before the body is polled, so hyper never sends `100 Continue`
            // and the client never sends the body.
            self.events.note(Kind::BodyTooLarge, Some(peer.ip()), None);
            return closing(StatusCode::PAYLOAD_TOO_LARGE, &too_large(Some(length)));
        }
        let body = if body.is_end_stream() {
            Body::empty()
        } else {
            let read = tokio::time::timeout(
                self.limits.body_timeout,
                Limited::new(body, MAX_BODY_BYTES).collect(),
            )
            .await;
            match read {
                Ok(Ok(collected)) => Body::from(collected.to_bytes()),
                Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    self.events.note(Kind::BodyTooLarge, Some(peer.ip()), None);
                    return closing(StatusCode::PAYLOAD_TOO_LARGE, &too_large(None));
                }
                Ok(Err(e)) => {
                    return closing(
                        StatusCode::BAD_REQUEST,
                        &ApiError::bad_request("body", format!("could not be read: {e}")),
                    );
                }
                Err(_) => {
                    self.events.note(Kind::BodyTimeout, Some(peer.ip()), None);
                    let secs = self.limits.body_timeout.as_secs_f64();
                    return closing(
                        StatusCode::REQUEST_TIMEOUT,
                        &ApiError::with_details(
                            ErrorCode::BadRequest,
                            format!(
                                "the request's body did not arrive within {secs} s; send it at once, then try again"
                            ),
                            serde_json::json!({ "field": "body", "reason": "timeout", "timeout_secs": secs }),
                        ),
                    );
                }
            }
        };
        parts.extensions.insert(ConnectInfo(peer));
        let method = parts.method.clone();
        let uri = parts.uri.clone();
        let response = match self
            .router
            .clone()
            .oneshot(Request::from_parts(parts, body))
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
        with_json_error(response, &method, uri.path()).await
    }
}

fn too_large(declared: Option<u64>) -> ApiError {
    let why = match declared {
        Some(n) => format!("the request's body is {n} bytes"),
        None => "the request's body is".to_string(),
    };
    ApiError::with_details(
        ErrorCode::BadRequest,
        format!("{why} larger than the limit of {MAX_BODY_BYTES} bytes"),
        serde_json::json!({ "field": "body", "bytes": declared, "max_bytes": MAX_BODY_BYTES }),
    )
}

/// The code of an error status that carried no JSON.
fn code_of(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::InvalidState,
        429 => ErrorCode::RateLimited,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

/// An error answer without JSON (axum's 405 has an empty body, its extractors' rejections
/// plain text) rewritten as an [`ApiError`] with the same status and headers. JSON answers
/// pass as they are; so do dashboard pages (HTML) and `/healthz`, whose plain
/// `code: message` is what health checkers read.
async fn with_json_error(response: Response<Body>, method: &Method, path: &str) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || path == "/healthz" {
        return response;
    }
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("application/json") || kind.starts_with("text/html") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match Limited::new(body, MAX_ERROR_TEXT).collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let error = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed: Vec<String> = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(|m| m.trim().to_string()).collect())
            .unwrap_or_default();
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "{method} is not allowed on {path}; use {}",
                if allowed.is_empty() {
                    "another method".to_string()
                } else {
                    allowed.join(" or ")
                }
            ),
            serde_json::json!({ "method": method.as_str(), "path": path, "allowed": allowed }),
        )
    } else {
        let reason = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        ApiError::with_details(
            code_of(status),
            format!("{path}: {reason}"),
            serde_json::json!({ "status": status.as_u16(), "reason": reason }),
        )
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut fixed = json_error(status, &error);
    for (name, value) in parts.headers.iter() {
        fixed.headers_mut().append(name.clone(), value.clone());
    }
    fixed
}
