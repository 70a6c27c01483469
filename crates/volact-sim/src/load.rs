//! The load tool behind `volact bench`: real activation requests over HTTP/1.1 with
//! keep-alive, from many distinct client ids, on a fixed number of connections, bounded
//! in time and count. Latency goes into an HDR histogram; answers are verified on a
//! sample so the tool spends its CPU sending, not checking.
//!
//! It only targets loopback addresses unless one is named explicitly, so nobody loads a
//! production host by mistake.

use crate::fleet::Rng;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use volact_core::keys::PublicKey;
use volact_core::ticket::{Expected, Ticket, verify_answer};
use volact_proto::{
    ActivationRequest, ActivationResponse, ActivationResult, ApiError, ErrorCode, HostInfo,
};

/// No run lasts longer than this, whatever was asked.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// No run sends more than this many requests, whatever was asked.
pub const MAX_REQUESTS: u64 = 50_000_000;
/// A request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to send, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The host's base URL, `http://127.0.0.1:7688`.
    pub url: String,
    /// Distinct client ids, used round-robin.
    pub clients: u64,
    /// Connections, each with one request in flight.
    pub concurrency: u32,
    /// Stop after this long (capped at [`MAX_DURATION`]).
    pub duration: Option<Duration>,
    /// Stop after this many requests (capped at [`MAX_REQUESTS`]).
    pub requests: Option<u64>,
    /// The setup key every client installs.
    pub setup_key: String,
    /// Minimum count the clients ask for.
    pub minimum_count: u32,
    /// Fraction of answers to verify (0 to 1).
    pub verify_sample: f64,
    /// The vendor root, for verifying the whole chain; without it only the host's
    /// signature is checked (against the key the host publishes).
    pub root: Option<PublicKey>,
    /// A non-loopback host the caller allows explicitly.
    pub allow_host: Option<String>,
    /// Seed of the client ids.
    pub seed: u64,
}

/// Latency figures, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Target.
    pub url: String,
    /// Connections.
    pub concurrency: u32,
    /// Distinct client ids.
    pub clients: u64,
    /// Requests answered (any result).
    pub requests: u64,
    /// Seconds from first request to last answer.
    pub seconds: f64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Latency of answered requests.
    pub latency: Latency,
    /// Results by code: `activated`, `count-insufficient`, error codes, `transport-error`.
    pub results: BTreeMap<String, u64>,
    /// Answers verified.
    pub verified: u64,
    /// Answers that failed verification.
    pub verify_failures: u64,
    /// How the answers were verified.
    pub verified_against: String,
}

fn refuse(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// Resolves the target and refuses anything that is not loopback (127.0.0.0/8, ::1,
/// `localhost`) unless `allow_host` names exactly that host or address.
pub async fn resolve_target(
    url: &str,
    allow_host: Option<&str>,
) -> Result<(SocketAddr, String), ApiError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| refuse(format!("`{url}` is not a URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(refuse(format!(
            "`{url}`: only http:// is supported by the load tool"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refuse(format!("`{url}` names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(volact_proto::DEFAULT_PORT);
    let allowed =
        allow_host.is_some_and(|a| a.trim_start_matches('[').trim_end_matches(']') == host);
    // A name other than localhost is refused before it is even looked up, so a mistyped
    // target causes no traffic at all, not even a DNS query.
    if !allowed && host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse(format!(
            "refusing to load {host}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed; \
             name it with --allow-host {host} to go ahead"
        )));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| refuse(format!("cannot resolve {host}: {e}")))?
        .collect();
    let loopback = |ip: IpAddr| ip.is_loopback();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| allowed || loopback(a.ip()))
        .ok_or_else(|| {
            refuse(format!(
                "refusing to load {host}: it is not a loopback address (127.0.0.0/8, ::1, localhost). \
                 Load only hosts you own; name it with --allow-host {host} to go ahead"
            ))
        })?;
    if !allowed && addrs.iter().any(|a| !loopback(a.ip())) {
        return Err(refuse(format!(
            "refusing to load {host}: it resolves to addresses outside loopback; name it with --allow-host {host}"
        )));
    }
    let base = format!("{}://{}", parsed.scheme(), parsed.authority());
    Ok((addr, base))
}

/// The `i`-th client id of a run: derived, not stored, so a million clients cost nothing.
pub fn client_id(seed: u64, i: u64) -> String {
    let mut rng = Rng::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.uuid().hyphenated().to_string()
}

#[derive(Deserialize)]
struct ResultOnly {
    result: ActivationResult,
}

#[derive(Deserialize)]
struct CodeOnly {
    code: ErrorCode,
}

/// What one connection measured.
struct TaskResult {
    histogram: Histogram<u64>,
    results: BTreeMap<String, u64>,
    verified: u64,
    verify_failures: u64,
}

struct Shared {
    config: LoadConfig,
    addr: SocketAddr,
    authority: String,
    issued: AtomicU64,
    done: Arc<AtomicU64>,
    max: u64,
    deadline: Instant,
    verify_every: u64,
    host_key: Option<PublicKey>,
}

/// Runs the load. `done` counts answered requests as they come, for a progress bar.
pub async fn run(config: LoadConfig, done: Arc<AtomicU64>) -> Result<LoadReport, ApiError> {
    if config.clients == 0 || config.concurrency == 0 {
        return Err(refuse(
            "--clients and --concurrency must be at least 1".into(),
        ));
    }
    let (addr, base) = resolve_target(&config.url, config.allow_host.as_deref()).await?;
    let authority = base.trim_start_matches("http://").to_string();
    let duration = config
        .duration
        .unwrap_or(if config.requests.is_some() {
            MAX_DURATION
        } else {
            Duration::from_secs(10)
        })
        .min(MAX_DURATION);
    let max = config.requests.unwrap_or(MAX_REQUESTS).min(MAX_REQUESTS);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let verify_every = if config.verify_sample <= 0.0 {
        0
    } else {
        (1.0 / config.verify_sample.min(1.0)).round().max(1.0) as u64
    };
    let host_key = if verify_every > 0 && config.root.is_none() {
        Some(fetch_host_key(&base).await?)
    } else {
        None
    };
    let verified_against = match (verify_every, &config.root) {
        (0, _) => "none".to_string(),
        (_, Some(_)) => "vendor root (whole chain)".to_string(),
        (_, None) => "host key from /v1/host (signature only)".to_string(),
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        authority,
        issued: AtomicU64::new(0),
        done,
        max,
        deadline: started + duration,
        verify_every,
        host_key,
        config: config.clone(),
    });
    let mut tasks = Vec::new();
    for task in 0..config.concurrency {
        tasks.push(tokio::spawn(connection(shared.clone(), task)));
    }
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| refuse(e.to_string()))?;
    let mut results: BTreeMap<String, u64> = BTreeMap::new();
    let (mut verified, mut verify_failures) = (0, 0);
    for t in tasks {
        let r = t.await.map_err(|e| {
            ApiError::new(ErrorCode::Internal, format!("a load task failed: {e}"))
        })??;
        let _ = histogram.add(&r.histogram);
        for (k, v) in r.results {
            *results.entry(k).or_default() += v;
        }
        verified += r.verified;
        verify_failures += r.verify_failures;
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = results.values().sum::<u64>();
    #[allow(clippy::cast_precision_loss)]
    let requests_per_sec = if seconds > 0.0 {
        requests as f64 / seconds
    } else {
        0.0
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let latency = Latency {
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        mean_us: histogram.mean().round() as u64,
    };
    Ok(LoadReport {
        url: base,
        concurrency: config.concurrency,
        clients: config.clients,
        requests,
        seconds,
        requests_per_sec,
        latency,
        results,
        verified,
        verify_failures,
        verified_against,
    })
}

async fn fetch_host_key(base: &str) -> Result<PublicKey, ApiError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| refuse(e.to_string()))?;
    let unreachable = |e: reqwest::Error| {
        ApiError::new(
            ErrorCode::HostUnreachable,
            format!("cannot read {base}/v1/host: {e}"),
        )
    };
    let info: HostInfo = client
        .get(format!("{base}/v1/host"))
        .send()
        .await
        .map_err(unreachable)?
        .json()
        .await
        .map_err(unreachable)?;
    PublicKey::from_paserk(&info.host_public_key)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(shared: &Shared) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(shared.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection: sends requests one after another until the count or time is up.
async fn connection(shared: Arc<Shared>, task: u32) -> Result<TaskResult, ApiError> {
    let mut out = TaskResult {
        histogram: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| refuse(e.to_string()))?,
        results: BTreeMap::new(),
        verified: 0,
        verify_failures: 0,
    };
    let config = &shared.config;
    let mut sender: Option<Sender> = None;
    let mut sent_here = 0u64;
    loop {
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= shared.max || Instant::now() >= shared.deadline {
            break;
        }
        let i = n % config.clients;
        let client_id = client_id(config.seed, i);
        let nonce = format!("b{task:04x}n{sent_here:012x}");
        sent_here += 1;
        let request = ActivationRequest {
            client_id,
            setup_key: config.setup_key.clone(),
            minimum_count: config.minimum_count,
            client_time: volact_host::whole_seconds(Timestamp::now()),
            nonce,
            machine_name: format!("bench-{i}"),
            ticket_id: None,
            machine_fingerprint: None,
        };
        let body = serde_json::to_vec(&request).map_err(|e| refuse(e.to_string()))?;
        let began = Instant::now();
        let outcome = send(&shared, &mut sender, body).await;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        let key = match outcome {
            Ok((status, bytes)) => {
                let _ = out.histogram.record(micros.max(1));
                let check = shared.verify_every > 0 && n.is_multiple_of(shared.verify_every);
                classify(&shared, &mut out, status, &bytes, &request, check)
            }
            Err(_) => {
                sender = None;
                "transport-error".to_string()
            }
        };
        *out.results.entry(key).or_default() += 1;
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(out)
}

async fn send(
    shared: &Shared,
    sender: &mut Option<Sender>,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(shared).await?);
    }
    let s = sender.as_mut().ok_or("no connection")?;
    s.ready().await.map_err(|e| e.to_string())?;
    let req = hyper::Request::post("/v1/activations")
        .header(hyper::header::HOST, shared.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let work = async {
        let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// The result code of an answer, verifying it when asked.
fn classify(
    shared: &Shared,
    out: &mut TaskResult,
    status: u16,
    bytes: &[u8],
    request: &ActivationRequest,
    check: bool,
) -> String {
    if status != 200 {
        return match serde_json::from_slice::<CodeOnly>(bytes) {
            Ok(c) => c.code.as_str().to_string(),
            Err(_) => format!("http-{status}"),
        };
    }
    if check {
        out.verified += 1;
        if !verify(shared, bytes, request) {
            out.verify_failures += 1;
        }
    }
    match serde_json::from_slice::<ResultOnly>(bytes) {
        Ok(ResultOnly {
            result: ActivationResult::Activated,
        }) => "activated".into(),
        Ok(ResultOnly {
            result: ActivationResult::CountInsufficient,
        }) => ErrorCode::CountInsufficient.as_str().into(),
        Err(_) => "unreadable-answer".into(),
    }
}

fn verify(shared: &Shared, bytes: &[u8], request: &ActivationRequest) -> bool {
    let Ok(answer) = serde_json::from_slice::<ActivationResponse>(bytes) else {
        return false;
    };
    if let Some(root) = &shared.config.root {
        let expected = Expected {
            client_id: &request.client_id,
            product: &answer.product,
            nonce: &request.nonce,
        };
        return verify_answer(root, &answer, expected).is_ok();
    }
    let Some(key) = &shared.host_key else {
        return false;
    };
    match (&answer.result, &answer.ticket) {
        (ActivationResult::Activated, Some(token)) => {
            volact_core::token::verify::<Ticket>(key, token)
                .is_ok_and(|t| t.sub == request.client_id && t.nonce == request.nonce)
        }
        (ActivationResult::CountInsufficient, _) => answer.not_yet.as_deref().is_some_and(|t| {
            volact_core::token::verify::<volact_core::ticket::NotYet>(key, t)
                .is_ok_and(|n| n.sub == request.client_id && n.nonce == request.nonce)
        }),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_unless_allowed() {
        assert!(resolve_target("http://127.0.0.1:7688", None).await.is_ok());
        assert!(resolve_target("http://127.3.2.1:7688", None).await.is_ok());
        assert!(resolve_target("http://[::1]:7688", None).await.is_ok());
        assert!(resolve_target("http://localhost:7688", None).await.is_ok());
        let e = resolve_target("http://10.1.2.3:7688", None)
            .await
            .unwrap_err();
        assert!(e.message.contains("--allow-host"), "{}", e.message);
        assert!(resolve_target("http://192.168.1.5", None).await.is_err());
        assert!(
            resolve_target("http://10.1.2.3:7688", Some("10.1.2.3"))
                .await
                .is_ok()
        );
        assert!(
            resolve_target("http://10.1.2.3:7688", Some("10.1.2.4"))
                .await
                .is_err()
        );
        assert!(resolve_target("https://127.0.0.1", None).await.is_err());
        let e = resolve_target("http://example.invalid:7688", None)
            .await
            .unwrap_err();
        assert!(e.message.contains("--allow-host"), "{}", e.message);
    }

    #[test]
    fn client_ids_are_stable_and_distinct() {
        assert_eq!(client_id(1, 5), client_id(1, 5));
        assert_ne!(client_id(1, 5), client_id(1, 6));
        assert!(uuid::Uuid::parse_str(&client_id(0, 0)).is_ok());
    }
}
