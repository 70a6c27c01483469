//! Dashboard sessions: log in with the admin token, a random session id in an HttpOnly,
//! SameSite=Strict cookie, and a per-session synchronizer token that every state-changing
//! form must carry. Sessions live in memory only: a restarted host asks for the token again.

use super::{Layout, Nav, render_page};
use crate::auth::AdminAuth;
use crate::http::AppState;
use crate::listener::ViaTls;
use askama::Template;
use axum::Extension;
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volact_proto::ErrorCode;

/// Name of the session cookie.
pub const COOKIE: &str = "volact_session";
/// How long a session lasts from login; a working day and then some.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most, so a script logging in in a loop cannot exhaust memory.
const MAX_SESSIONS: usize = 1_000;

#[derive(Debug, Clone)]
struct Entry {
    csrf: String,
    expires: Instant,
    flash: Option<String>,
}

/// The sessions of one host's dashboard.
#[derive(Debug, Default)]
pub struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session; returns its id. Ids and CSRF tokens are 256 random bits each.
    pub fn create(&self, now: Instant) -> Result<String, volact_proto::ApiError> {
        let id = hex(&volact_engine::random_bytes::<32>()?);
        let csrf = hex(&volact_engine::random_bytes::<32>()?);
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            id.clone(),
            Entry {
                csrf,
                expires: now + SESSION_LIFETIME,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The session's CSRF token, if `id` names a live session.
    fn csrf(&self, id: &str, now: Instant) -> Option<String> {
        let mut entries = self.lock();
        match entries.get(id) {
            Some(e) if e.expires > now => Some(e.csrf.clone()),
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(e) = self.lock().get_mut(id) {
            e.flash = Some(message);
        }
    }

    /// Takes the message left for this page, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|e| e.flash.take())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session cookie for `id`; an empty id clears it. `Secure` when the request came
/// over TLS, so the browser never sends it back in clear.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let max_age = if id.is_empty() {
        0
    } else {
        SESSION_LIFETIME.as_secs()
    };
    // Not `Secure` over plain HTTP (served to this machine only, or where the operator
    // allowed plain admin): a Secure cookie would never be sent back there.
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("volact_session=; Max-Age=0"))
}

/// The sessions of the router this request came through.
fn sessions(parts: &Parts) -> Option<Arc<Sessions>> {
    parts.extensions.get::<Arc<Sessions>>().cloned()
}

/// A logged-in administrator. Extracting it from a GET without a session redirects to
/// the login page; from anything else it is refused with 403.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// The token forms must carry.
    pub csrf: String,
    /// The host's sessions.
    pub sessions: Arc<Sessions>,
}

impl Session {
    /// Whether a form's token is this session's (constant-time comparison).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && volact_engine::secret_matches(presented, &self.csrf)
    }
}

// Any router's state: the sessions come from the request's extensions, so the vendor
// service's dashboard logs in the same way.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let sessions = sessions(parts);
        let found = sessions.as_ref().and_then(|s| {
            let id = cookie(&parts.headers, COOKIE)?;
            let csrf = s.csrf(id, Instant::now())?;
            Some(Session {
                id: id.to_string(),
                csrf,
                sessions: s.clone(),
            })
        });
        match found {
            Some(s) => Ok(s),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(Redirect::to("/login").into_response())
            }
            None => Err(forbidden("Your session has ended. Log in again.")),
        }
    }
}

/// 403 with a short page saying why.
pub fn forbidden(why: &str) -> Response {
    super::error_page(StatusCode::FORBIDDEN, "Refused", why)
}

/// The login page.
#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    error: Option<String>,
}

/// The login form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct LoginForm {
    /// The admin token typed in.
    #[serde(default)]
    pub token: String,
}

/// A form that carries only the CSRF token (logout).
#[derive(Debug, Default, serde::Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

/// `GET /login`.
pub async fn login_page(
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    let logged_in =
        cookie(&headers, COOKIE).is_some_and(|id| sessions.csrf(id, Instant::now()).is_some());
    if logged_in {
        return Redirect::to("/").into_response();
    }
    render_page(StatusCode::OK, &LoginPage { error: None })
}

/// `POST /login`: checks the token (constant time, with back-off for repeated failures)
/// and starts a session.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(sessions): Extension<Arc<Sessions>>,
    tls: Option<Extension<ViaTls>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    start_session(&state.auth, peer, &sessions, tls.is_some(), &headers, &form)
        .unwrap_or_else(|(status, error)| render_page(status, &LoginPage { error: Some(error) }))
}

/// Checks a login form's token with `auth` (constant time, with back-off for repeated
/// failures) and starts a session in `sessions`: the answer that sets its cookie
/// (`Secure` when `secure`), or the status and message for the login page. Every
/// dashboard logs in through it, the vendor service's too.
pub fn start_session(
    auth: &AdminAuth,
    peer: SocketAddr,
    sessions: &Sessions,
    secure: bool,
    headers: &HeaderMap,
    form: &LoginForm,
) -> Result<Response, (StatusCode, String)> {
    let presented = Some(form.token.as_str()).filter(|t| !t.trim().is_empty());
    if let Err(e) = auth.check(peer.ip(), presented, Instant::now()) {
        return Err(if e.code == ErrorCode::RateLimited {
            (StatusCode::TOO_MANY_REQUESTS, e.message)
        } else {
            // Where the token lives is on the page already; the full path of the data
            // directory is not for whoever reaches the login form.
            (
                StatusCode::UNAUTHORIZED,
                "That is not the admin token.".to_string(),
            )
        });
    }
    // A fresh id at every login, so an id planted before login is worth nothing.
    if let Some(old) = cookie(headers, COOKIE) {
        sessions.remove(old);
    }
    Ok(match sessions.create(Instant::now()) {
        Ok(id) => {
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&id, secure));
            response
        }
        Err(e) => super::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.message),
    })
}

/// `POST /logout`.
pub async fn logout(
    session: Session,
    tls: Option<Extension<ViaTls>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session.csrf_ok(&form.csrf) {
        return forbidden(
            "The form's security token is missing or wrong. Reload the page and try again.",
        );
    }
    session.sessions.remove(&session.id);
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", tls.is_some()));
    response
}

impl Layout {
    /// The frame of every page, for this session.
    pub fn new(state: &AppState, session: &Session, nav: Nav) -> Layout {
        let engine = &state.engine;
        let (state_class, state_label) = match engine.not_ready(engine.now()) {
            None => ("ok", "activated".to_string()),
            Some(e) if e.code == ErrorCode::HostCertificateExpired => {
                ("bad", "certificate expired".to_string())
            }
            Some(_) => ("bad", "not activated".to_string()),
        };
        Layout {
            host_id: engine.host_id().to_string(),
            state_class,
            state_label,
            nav,
            csrf: session.csrf.clone(),
            flash: session.sessions.take_flash(&session.id),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let t = Instant::now();
        let id = s.create(t).unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.csrf(&id, t).is_some());
        assert!(s.csrf(&id, t + SESSION_LIFETIME).is_none());
        for _ in 0..MAX_SESSIONS + 5 {
            s.create(t).unwrap();
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; volact_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie("abc", false);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(
            set_cookie("abc", true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }
}
