//! `volact vendor serve`: the vendor's activation service, online. A host sends the same
//! activation request it writes to a file for the offline exchange (signed by its
//! identity key, with a fresh nonce and its time) and gets its host certificate back,
//! through the same ledger, limits and replay check as `volact vendor activate-host`
//! ([`crate::ledger`]).
//!
//! It serves HTTPS with the certificate and key of its settings ([`config`]), or plain
//! HTTP on loopback only (tests and demos), behind the host's hardened listener
//! (timeouts, connection caps, body limit). Its admin API and `/metrics` take the bearer
//! token of `DIR/admin.token` ([`admin`]).

pub mod admin;
pub mod config;
mod dashboard;
pub mod metrics;
mod renewals;
mod revocations;
mod usage;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
pub use revocations::signed_list;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use volact_core::certificate::ActivationProof;
use volact_core::keys::PublicKey;
use volact_core::token;
use volact_host::http::HttpError;
use volact_proto::{ApiError, ErrorCode, HostActivationRequest, HostActivationResponse};

use crate::dir::{SigningDir, VendorDir};

/// How far a host's clock may be from the service's when it asks.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(15);

/// A host activation request is a few kilobytes; anything larger is refused unread.
const MAX_BODY: usize = 64 * 1024;

/// How the service runs: the vendor directory and the command line's flags over its
/// settings file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The vendor's directory (catalog, ledger; the root key unless a signing key is set).
    pub dir: PathBuf,
    /// The flags.
    pub flags: config::ServiceFlags,
}

/// Default of the activation attempts a minute per address: a customer activates a handful of
/// hosts, rarely more than a few at once; someone guessing at keys or replaying requests
/// gets 20 tries, then 10 a minute.
pub const DEFAULT_ATTEMPTS_PER_MINUTE: u32 = 10;

/// A per-address (and per /24 or /64) limit on activation attempts, loopback included:
/// the service has no local tools to exempt.
fn attempt_limiter(per_minute: u32) -> volact_core::ratelimit::NewClientLimiter {
    use volact_core::ratelimit::{NewClientLimits, Rate};
    volact_core::ratelimit::NewClientLimiter::new(NewClientLimits {
        per_address: Rate {
            per_minute,
            burst: per_minute.saturating_mul(2).max(1),
        },
        per_prefix: Rate {
            per_minute: per_minute.saturating_mul(10),
            burst: per_minute.saturating_mul(20).max(1),
        },
        exempt_loopback: false,
        max_tracked: 65_536,
    })
}

/// The service's state, shared by its handlers.
pub(crate) struct Service {
    pub(crate) vendor: VendorDir,
    pub(crate) signing: Option<SigningDir>,
    pub(crate) days: u32,
    /// Whether it serves over TLS.
    pub(crate) tls: bool,
    pub(crate) auth: volact_host::auth::AdminAuth,
    pub(crate) metrics: metrics::ServiceMetrics,
    /// The service's records: host keys, hosts, revocations, usage.
    pub(crate) store: Arc<dyn volact_store::vendor::VendorStore>,
    /// Attempts per address, counted before anything is parsed or verified.
    attempts: std::sync::Mutex<volact_core::ratelimit::NewClientLimiter>,
}

/// Checks the request's signed time against the service's clock before anything is
/// spent: a request from a host whose clock is far off, or an old request played back
/// after its nonce left the ledger, is refused with `clock-skew`.
fn check_time(request: &HostActivationRequest, now: Timestamp) -> Result<(), ApiError> {
    let host = PublicKey::from_paserk(&request.host_public_key)
        .map_err(|_| ApiError::bad_request("host_public_key", "not a k4.public PASERK"))?;
    let proof: ActivationProof = token::verify(&host, &request.proof)
        .map_err(|e| ApiError::bad_request("proof", e.to_string()))?;
    let skew = proof.iat.duration_since(now).abs();
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "the host's request is dated {} and the vendor service's clock reads {now}; set the host's clock right (within {} minutes) and ask again",
                proof.iat,
                MAX_CLOCK_SKEW.as_mins()
            ),
            serde_json::json!({ "request_time": proof.iat, "service_time": now }),
        ));
    }
    Ok(())
}

async fn activate(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<HostActivationResponse>, HttpError> {
    let answer = activate_inner(&service, peer, &body).await;
    service.metrics.request(
        "host-activations",
        answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok"),
    );
    answer.map(Json).map_err(HttpError)
}

async fn activate_inner(
    service: &Arc<Service>,
    peer: SocketAddr,
    body: &[u8],
) -> Result<HostActivationResponse, ApiError> {
    if let Some(refused) = over_limit(service, peer) {
        return Err(refused);
    }
    let request: HostActivationRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the body is not a host activation request: {e}"),
        )
    })?;
    let now = volact_core::util::whole_seconds(Timestamp::now());
    check_time(&request, now)?;
    let answer = crate::ledger::activate(
        &service.vendor,
        service.store.as_ref(),
        service.signing.as_ref(),
        &request,
        now,
        service.days,
    )
    .await;
    match answer {
        Ok(response) => {
            tracing::info!(%peer, "host activated online");
            Ok(response)
        }
        Err(e) => {
            tracing::info!(%peer, code = %e.code, "host activation refused: {}", e.message);
            Err(e)
        }
    }
}

/// `rate-limited` when `peer` has used up its attempts (counted whether or not they
/// succeed, so guessing costs the same as asking).
pub(crate) fn over_limit(service: &Service, peer: SocketAddr) -> Option<ApiError> {
    let now_us = Timestamp::now().as_microsecond();
    let decision = match service.attempts.lock() {
        Ok(mut limiter) => limiter.check(peer.ip(), now_us),
        Err(poisoned) => poisoned.into_inner().check(peer.ip(), now_us),
    };
    let volact_core::ratelimit::Decision::Refused(refused) = decision else {
        return None;
    };
    let secs = refused.retry_after_secs();
    tracing::warn!(subject = %refused.subject, "host activation attempts over the limit");
    Some(ApiError::with_details(
        ErrorCode::RateLimited,
        format!(
            "too many activation attempts from {}; try again in {secs} s",
            refused.subject
        ),
        serde_json::json!({ "retry_after_secs": secs, "scope": refused.scope.as_str() }),
    ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The service's routes.
fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/host-activations", post(activate))
        .route("/healthz", get(healthz))
        .merge(admin::routes())
        .merge(dashboard::routes())
        .merge(renewals::routes())
        .merge(usage::routes())
        .merge(revocations::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// Serves until Ctrl-C (or SIGTERM). Calls `ready` with the service's URL and, over
/// TLS, its certificate's SHA-256 fingerprint once it listens.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(&str, Option<&str>),
) -> Result<(), ApiError> {
    let file = config::read_file(&options.dir, &options.flags)?;
    let settings = file.resolve(&options.dir, &options.flags)?;
    let vendor = VendorDir::new(&options.dir);
    // Refuse at start, not at the first request, a directory that cannot activate.
    vendor.catalog()?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "{} has no signed catalog; run `volact vendor catalog --dir {} --from catalog.toml` first",
                options.dir.display(),
                options.dir.display()
            ),
        )
    })?;
    let signing = settings.signing.as_ref().map(SigningDir::new);
    // Both refused at start, not at the first request: no signing key (no root.key and
    // no --signing), or a signing key the root did not delegate.
    vendor.signer(signing.as_ref())?;
    let tls = settings
        .tls
        .as_ref()
        .map(|files| {
            volact_host::tls::certs::install_default_provider();
            let key = volact_host::tls::load(&files.cert_file, &files.key_file)?;
            let fingerprint = volact_host::tls::fingerprint(&key);
            let current = Arc::new(volact_host::tls::CurrentCert::new(key));
            Ok::<_, ApiError>((volact_host::tls::Tls::new(current)?, fingerprint))
        })
        .transpose()?;
    let token_file = vendor.admin_token_path().display().to_string();
    let store =
        crate::ledger::open_store_at(&options.dir, &settings.storage_url, &settings.storage)
            .await?;
    let auth = volact_host::auth::AdminAuth::new(vendor.ensure_admin_token()?).kept_in(token_file);
    let service = Arc::new(Service {
        vendor,
        signing,
        days: settings.days,
        tls: tls.is_some(),
        auth,
        metrics: metrics::ServiceMetrics::new(),
        store,
        attempts: std::sync::Mutex::new(attempt_limiter(settings.attempts_per_minute)),
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot listen on {}: {e}", settings.listen),
            )
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let (limits, _) = volact_host::listener::Limits::derive(
        &volact_host::listener::LimitsConfig::default(),
        volact_host::listener::raise_fd_limit(),
    );
    // Built before the service says it listens, so a mistake in it never looks like a
    // service that started.
    let app = router(service);
    let stopped =
        |e: std::io::Error| ApiError::new(ErrorCode::Internal, format!("the service stopped: {e}"));
    match tls {
        Some((handshake, fingerprint)) => {
            let url = format!("https://{addr}");
            ready(&url, Some(&fingerprint));
            tracing::info!(url = %url, %fingerprint, "vendor service listening");
            volact_host::listener::serve_on(
                listener,
                handshake,
                volact_host::listener::Transport::tls(),
                app,
                volact_host::listener::Connections::new(limits, None),
                shutdown(),
            )
            .await
            .map_err(stopped)
        }
        None => {
            let url = format!("http://{addr}");
            ready(&url, None);
            tracing::info!(url = %url, "vendor service listening (plain HTTP, loopback only)");
            volact_host::listener::serve(
                listener,
                volact_host::listener::Plain,
                app,
                limits,
                None,
                shutdown(),
            )
            .await
            .map_err(stopped)
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
