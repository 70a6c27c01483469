//! The load tool behind `volact bench`: real activation requests over HTTP/1.1 with
//! keep-alive, from many distinct client ids, on a fixed number of connections, bounded
//! in time and count. Latency goes into an HDR histogram; answers are verified on a
//! sample so the tool spends its CPU sending, not checking.
//!
//! The tool runs on the machine it measures, so every microsecond it spends is taken from
//! the host. It therefore drives all connections from one thread (a current-thread
//! runtime of its own: no work stealing, no cross-thread wake-ups), writes each request
//! with one `write` from buffers it reuses, and speaks just enough HTTP/1.1 to read a
//! `Content-Length` answer, instead of going through a general-purpose client.
//!
//! It only targets loopback addresses unless one is named explicitly, so nobody loads a
//! production host by mistake.
//!
//! This file holds the run itself: configuration and report, the load thread, the
//! connection loop and the tally. Beside it, [`target`] decides which hosts may be loaded,
//! [`body`] writes each request, [`http1`] sends it and reads the answer, and [`answer`]
//! classifies and verifies what came back.

mod answer;
mod body;
mod http1;
mod target;

pub use body::client_id;
pub use target::resolve_target;

use answer::{classify, verify};
use body::{Template, WallClock};
use hdrhistogram::Histogram;
use http1::{Conn, exchange};
use serde::Serialize;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use volact_core::keys::PublicKey;
use volact_proto::{ApiError, ErrorCode, HostInfo};

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
    /// Whom to trust when the URL is `https://` (a pinned fingerprint or a CA file).
    pub tls: volact_client::tls::TlsTrust,
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

/// Everything the load thread needs, decided before it starts.
struct Plan {
    addr: SocketAddr,
    tls: Option<http1::TlsConnect>,
    clients: u64,
    concurrency: u32,
    max: u64,
    duration: Duration,
    verify_every: u64,
    root: Option<PublicKey>,
    host_key: Option<PublicKey>,
    template: Template,
    done: Arc<AtomicU64>,
}

/// What the connections measured together.
struct Tally {
    histogram: Histogram<u64>,
    results: BTreeMap<Cow<'static, str>, u64>,
    verified: u64,
    verify_failures: u64,
}

impl Tally {
    fn count(&mut self, key: Cow<'static, str>) {
        // Looked up by `&str` first so the common keys are never allocated.
        if let Some(n) = self.results.get_mut(key.as_ref()) {
            *n += 1;
        } else {
            self.results.insert(key, 1);
        }
    }
}

/// The state the connections share. They all run on one thread, so plain cells do.
struct Shared {
    plan: Plan,
    deadline: Instant,
    issued: Cell<u64>,
    tally: RefCell<Tally>,
}

/// Runs the load. `done` counts answered requests as they come, for a progress bar.
pub async fn run(config: LoadConfig, done: Arc<AtomicU64>) -> Result<LoadReport, ApiError> {
    if config.clients == 0 || config.concurrency == 0 {
        return Err(refuse(
            "--clients and --concurrency must be at least 1".into(),
        ));
    }
    let (addr, base) = resolve_target(&config.url, config.allow_host.as_deref()).await?;
    let authority = base
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    let tls = if base.starts_with("https://") {
        Some(tls_connect(&authority, &config.tls)?)
    } else {
        None
    };
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
        Some(fetch_host_key(&base, &config.tls).await?)
    } else {
        None
    };
    let verified_against = match (verify_every, &config.root) {
        (0, _) => "none".to_string(),
        (_, Some(_)) => "vendor root (whole chain)".to_string(),
        (_, None) => "host key from /v1/host (signature only)".to_string(),
    };
    let plan = Plan {
        addr,
        tls,
        clients: config.clients,
        concurrency: config.concurrency,
        max,
        duration,
        verify_every,
        root: config.root.clone(),
        host_key,
        template: Template::new(
            config.seed,
            &authority,
            &config.setup_key,
            config.minimum_count,
        )?,
        done,
    };
    // The load gets a thread and a current-thread runtime of its own: measured on the
    // 2-core machine it shares with the host, that costs less CPU per request than the
    // caller's multi-threaded runtime, whose workers steal tasks and wake one another.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("volact-bench".into())
        .spawn(move || {
            let _ = tx.send(drive(plan));
        })
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot start the load thread: {e}"),
            )
        })?;
    let (tally, seconds) = rx.await.map_err(|_| {
        ApiError::new(ErrorCode::Internal, "the load thread stopped unexpectedly")
    })??;
    let histogram = &tally.histogram;
    let requests = tally.results.values().sum::<u64>();
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
        results: tally
            .results
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect(),
        verified: tally.verified,
        verify_failures: tally.verify_failures,
        verified_against,
    })
}

/// Runs every connection on this thread until the count or time is up; returns what they
/// measured and the seconds from the first request to the last answer.
fn drive(plan: Plan) -> Result<(Tally, f64), ApiError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::new(ErrorCode::Internal, format!("{what}: {e}"))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| internal("cannot start the load runtime", &e))?;
    let tally = Tally {
        histogram: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .map_err(|e| refuse(e.to_string()))?,
        results: BTreeMap::new(),
        verified: 0,
        verify_failures: 0,
    };
    let tasks = tokio::task::LocalSet::new();
    tasks.block_on(&runtime, async move {
        let started = Instant::now();
        let shared = Rc::new(Shared {
            deadline: started + plan.duration,
            issued: Cell::new(0),
            tally: RefCell::new(tally),
            plan,
        });
        let handles: Vec<_> = (0..shared.plan.concurrency)
            .map(|task| tokio::task::spawn_local(connection(shared.clone(), task)))
            .collect();
        for handle in handles {
            handle
                .await
                .map_err(|e| internal("a load task failed", &e))?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let shared = Rc::into_inner(shared)
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "a load task outlived the run"))?;
        Ok((shared.tally.into_inner(), seconds))
    })
}

/// The TLS connector for `authority` (`host:port`), speaking HTTP/1.1.
fn tls_connect(
    authority: &str,
    trust: &volact_client::tls::TlsTrust,
) -> Result<http1::TlsConnect, ApiError> {
    let mut config = volact_client::tls::client_config(trust)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| refuse(format!("`{host}` is not a TLS server name: {e}")))?;
    Ok(http1::TlsConnect {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
    })
}

async fn fetch_host_key(
    base: &str,
    trust: &volact_client::tls::TlsTrust,
) -> Result<PublicKey, ApiError> {
    volact_client::tls::install_default_provider();
    let builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT);
    let builder = if base.starts_with("https://") {
        volact_client::tls::configure(builder, trust)?
    } else {
        builder
    };
    let client = builder.build().map_err(|e| refuse(e.to_string()))?;
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

/// One connection: sends requests one after another until the count or time is up.
async fn connection(shared: Rc<Shared>, task: u32) {
    let plan = &shared.plan;
    let mut conn: Option<Conn> = None;
    let mut wall = WallClock::default();
    let mut body = Vec::with_capacity(512);
    let mut request = Vec::with_capacity(1024);
    let mut seq = 0u64;
    let mut now = Instant::now();
    // One timer per connection rather than one per request: it goes off at most once per
    // REQUEST_TIMEOUT and is then moved to the current request's expiry, so a request
    // still times out on time but the timer wheel is not touched on every request.
    let watchdog = tokio::time::sleep_until((now + REQUEST_TIMEOUT).into());
    tokio::pin!(watchdog);
    loop {
        let n = shared.issued.get();
        if n >= plan.max || now >= shared.deadline {
            break;
        }
        shared.issued.set(n + 1);
        let i = n % plan.clients;
        plan.template
            .write(&mut request, &mut body, wall.json(), i, task, seq);
        let began = Instant::now();
        let outcome = {
            let exchange = exchange(&mut conn, plan.addr, plan.tls.as_ref(), &request);
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut exchange => break outcome,
                    () = &mut watchdog => {
                        let expiry = began + REQUEST_TIMEOUT;
                        if Instant::now() >= expiry {
                            break Err("timed out");
                        }
                        watchdog.as_mut().reset(expiry.into());
                    }
                }
            }
        };
        now = Instant::now();
        let micros = u64::try_from(now.duration_since(began).as_micros()).unwrap_or(u64::MAX);
        let key = match (outcome, conn.as_mut()) {
            (Ok(answer), Some(c)) => {
                let bytes = c.take(&answer);
                let check = answer.status == 200
                    && plan.verify_every > 0
                    && n.is_multiple_of(plan.verify_every);
                let verdict = check.then(|| verify(plan, bytes, i, task, seq));
                let key = classify(answer.status, bytes);
                if answer.close {
                    conn = None;
                }
                let mut tally = shared.tally.borrow_mut();
                tally.histogram.saturating_record(micros.max(1));
                if let Some(good) = verdict {
                    tally.verified += 1;
                    if !good {
                        tally.verify_failures += 1;
                    }
                }
                key
            }
            _ => {
                conn = None;
                Cow::Borrowed("transport-error")
            }
        };
        seq += 1;
        shared.tally.borrow_mut().count(key);
        plan.done.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use volact_proto::ActivationRequest;

    /// A stand-in host that reads each request as the real one does and answers with a
    /// result chosen by the request's position; it closes every `close_every`-th connection
    /// after answering.
    async fn fake_host(close_every: u64) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let end = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
                        assert!(
                            head.starts_with("POST /v1/activations HTTP/1.1\r\n"),
                            "{head}"
                        );
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        while buf.len() < end + length {
                            let mut chunk = [0u8; 4096];
                            let n = stream.read(&mut chunk).await.unwrap();
                            assert!(n > 0);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let request: ActivationRequest =
                            serde_json::from_slice(&buf[end..end + length]).unwrap();
                        buf.drain(..end + length);
                        assert!(request.machine_name.starts_with("bench-"));
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let (status, body) = match n % 4 {
                            0 | 1 => ("200 OK", r#"{"result":"activated","count":2}"#),
                            2 => ("200 OK", r#"{"count":0,"result":"count-insufficient"}"#),
                            _ => (
                                "403 Forbidden",
                                r#"{"code":"seat-limit-reached","message":"full"}"#,
                            ),
                        };
                        let close = (n + 1).is_multiple_of(close_every);
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
                            body.len(),
                            if close { "connection: close\r\n" } else { "" }
                        );
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        (addr, served)
    }

    #[tokio::test]
    async fn counts_every_answer_over_keep_alive_and_reconnects() {
        let (addr, served) = fake_host(7).await;
        let done = Arc::new(AtomicU64::new(0));
        let report = run(
            LoadConfig {
                url: format!("http://{addr}"),
                clients: 5,
                concurrency: 3,
                duration: None,
                requests: Some(400),
                setup_key: "3M9JF-MD3QD-XP2FM-MFCFQ-KQR2W".into(),
                minimum_count: 1,
                verify_sample: 0.0,
                root: None,
                allow_host: None,
                seed: 0,
                tls: volact_client::tls::TlsTrust::default(),
            },
            done.clone(),
        )
        .await
        .unwrap();
        assert_eq!(report.requests, 400);
        assert_eq!(done.load(Ordering::Relaxed), 400);
        assert_eq!(served.load(Ordering::Relaxed), 400);
        assert_eq!(report.results.get("activated"), Some(&200));
        assert_eq!(report.results.get("count-insufficient"), Some(&100));
        assert_eq!(report.results.get("seat-limit-reached"), Some(&100));
        assert_eq!(report.verified_against, "none");
        assert!(report.latency.max_us >= report.latency.p50_us);
    }
}
