//! Renewing the host certificate online while the host serves.
//!
//! A serving host asks the vendor's activation service for a renewed certificate
//! `[vendor] renew_before_days` (default 30) before its own expires, never twice within
//! an hour. A renewed certificate is verified against the vendor root, written
//! atomically and served with at once. A failure changes nothing the host serves with:
//! the current certificate stays in force until it really expires, and the host tries
//! again after a minute, doubling to six hours, with jitter.
//!
//! Every attempt is a log line and lands in `D/certificate-renewal.json`, which
//! `host status` and the dashboard show (a warning while renewals fail); successes and
//! failures are audit events (`host-certificate-renewed`,
//! `host-certificate-renewal-failed`) and `/metrics` series. The network call is behind
//! [`VendorService`], so the engine holds no HTTP client and tests use a fake with a
//! [`crate::ManualClock`].

use crate::data::{HostData, write_atomic};
use crate::engine::Engine;
use jiff::{SignedDuration, Timestamp};
use metrics::Unit;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use volact_core::renewal::{make_renewal_request, renew_at, retry_wait};
use volact_proto::{
    ApiError, ErrorCode, HostActivationResponse, HostRenewalRequest, HostRenewalResponse,
};

/// The file, in the data directory, that records renewal attempts.
pub const LOG_FILE: &str = "certificate-renewal.json";
/// Audit event of a renewed certificate.
pub const RENEWED: &str = "host-certificate-renewed";
/// Audit event of a failed renewal.
pub const FAILED: &str = "host-certificate-renewal-failed";

const FAILURES: &str = "volact_host_certificate_renewal_failures_total";
const LAST_SUCCESS: &str = "volact_host_certificate_renewal_last_success_timestamp_seconds";

/// Longest sleep between looks at the clock: a host whose clock is moved (or a test's
/// virtual clock) is noticed within this time.
const LOOK_EVERY: Duration = Duration::from_secs(3600);

/// The vendor's activation service, as the host reaches it.
#[async_trait::async_trait]
pub trait VendorService: Send + Sync + 'static {
    /// Where it is, for messages and events.
    fn url(&self) -> &str;
    /// Asks it for a renewed certificate.
    async fn renew(&self, request: &HostRenewalRequest) -> Result<HostRenewalResponse, ApiError>;
}

/// The last failed renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalFailure {
    /// When.
    pub at: Timestamp,
    /// The error code.
    pub code: String,
    /// What went wrong, for a person.
    pub reason: String,
}

/// `D/certificate-renewal.json`: where renewal stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalLog {
    /// The vendor service asked.
    #[serde(default)]
    pub vendor_url: Option<String>,
    /// The last attempt.
    #[serde(default)]
    pub last_attempt: Option<Timestamp>,
    /// The last successful renewal.
    #[serde(default)]
    pub last_success: Option<Timestamp>,
    /// The last failure.
    #[serde(default)]
    pub last_failure: Option<RenewalFailure>,
    /// Failures since the last success (0 when the last attempt succeeded).
    #[serde(default)]
    pub failures_in_a_row: u32,
    /// Failures ever.
    #[serde(default)]
    pub failures_total: u64,
    /// When the host will try next.
    #[serde(default)]
    pub next_attempt: Option<Timestamp>,
}

impl RenewalLog {
    /// The warning to show while renewals fail: the certificate still serves until it
    /// expires, but someone should look.
    pub fn warning(&self) -> Option<String> {
        let failure = self
            .last_failure
            .as_ref()
            .filter(|_| self.failures_in_a_row > 0)?;
        Some(format!(
            "renewing the host certificate failed {} time(s) in a row, last at {}: {}{}",
            self.failures_in_a_row,
            failure.at,
            failure.reason,
            self.next_attempt
                .map(|t| format!("; next attempt at {t}"))
                .unwrap_or_default()
        ))
    }
}

/// The renewal log of a data directory, if the host ever tried to renew.
pub fn read_log(data: &HostData) -> Option<RenewalLog> {
    let bytes = std::fs::read(data.dir().join(LOG_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_log(data: &HostData, log: &RenewalLog) {
    let written = serde_json::to_vec_pretty(log)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
        .and_then(|json| write_atomic(&data.dir().join(LOG_FILE), &json, false));
    if let Err(e) = written {
        tracing::warn!("cannot record the certificate renewal: {}", e.message);
    }
}

/// What one look at the certificate did.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The host is not activated: nothing to renew.
    NotActivated,
    /// Not due before this time.
    NotDue(Timestamp),
    /// Renewed; the new certificate expires then.
    Renewed(Timestamp),
    /// Failed; the host tries again at this time.
    Failed(ApiError, Timestamp),
}

/// Renewal while a host serves.
pub struct Renewal {
    engine: Arc<Engine>,
    data: HostData,
    vendor: Arc<dyn VendorService>,
    renew_before: SignedDuration,
    log: tokio::sync::Mutex<RenewalLog>,
}

impl Renewal {
    /// Renewal of `engine`'s certificate from `vendor`, `renew_before` ahead of expiry.
    pub fn new(
        engine: Arc<Engine>,
        data: HostData,
        vendor: Arc<dyn VendorService>,
        renew_before: SignedDuration,
    ) -> Renewal {
        let mut log = read_log(&data).unwrap_or_default();
        log.vendor_url = Some(vendor.url().to_string());
        let renewal = Renewal {
            engine,
            data,
            vendor,
            renew_before,
            log: tokio::sync::Mutex::new(log),
        };
        // Registered now, so /metrics shows 0 failures rather than nothing.
        let _ = renewal.failures_counter();
        renewal
    }

    fn failures_counter(&self) -> metrics::Counter {
        self.engine.metrics().counter(
            FAILURES,
            "Failed online renewals of the host certificate",
            &[],
        )
    }

    /// Looks at the certificate by the engine's clock and renews it when due.
    pub async fn attempt(&self) -> Attempt {
        let mut log = self.log.lock().await;
        let now = self.engine.now();
        let Some(current) = self.engine.current_certificate() else {
            return Attempt::NotActivated;
        };
        let due = renew_at(current.1.exp, self.renew_before, log.last_success);
        if now < due {
            log.next_attempt = Some(due);
            return Attempt::NotDue(due);
        }
        log.last_attempt = Some(now);
        let outcome = match self.renew(&current.0, now).await {
            Ok(exp) => {
                log.last_success = Some(now);
                log.failures_in_a_row = 0;
                log.next_attempt = Some(renew_at(exp, self.renew_before, Some(now)));
                self.engine
                    .metrics()
                    .gauge(
                        LAST_SUCCESS,
                        Unit::Seconds,
                        "When the host certificate was last renewed (Unix time)",
                    )
                    // Unix times stay far below 2^53, where f64 would lose precision.
                    .set(now.as_second() as f64);
                tracing::info!(expires = %exp, "host certificate renewed");
                self.event(now, RENEWED, &format!("renewed until {exp}"))
                    .await;
                Attempt::Renewed(exp)
            }
            Err(e) => {
                log.failures_in_a_row = log.failures_in_a_row.saturating_add(1);
                log.failures_total = log.failures_total.saturating_add(1);
                let jitter = crate::random_bytes::<1>().map_or(0.5, |b| f64::from(b[0]) / 255.0);
                let next = volact_core::util::add(now, retry_wait(log.failures_in_a_row, jitter));
                log.next_attempt = Some(next);
                log.last_failure = Some(RenewalFailure {
                    at: now,
                    code: e.code.as_str().to_string(),
                    reason: e.message.clone(),
                });
                self.failures_counter().increment(1);
                tracing::warn!(code = %e.code, next_attempt = %next, expires = %current.1.exp, "renewing the host certificate failed; serving with the current one until it expires: {}", e.message);
                self.event(now, FAILED, &format!("{}: {}", e.code, e.message))
                    .await;
                Attempt::Failed(e, next)
            }
        };
        write_log(&self.data, &log);
        outcome
    }

    /// Asks the vendor, verifies the answer against the vendor root (chain, this host,
    /// this host key, in force), writes it and serves with it.
    async fn renew(&self, token: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
        let identity = self.data.identity()?;
        let (host_key, _) = self.data.host_key()?;
        let request =
            make_renewal_request(&identity, token, &host_key, crate::random_nonce()?, now)?;
        let answer = self.vendor.renew(&request).await?;
        let response = HostActivationResponse {
            host_certificate: answer.host_certificate,
        };
        let cert = self.data.install_certificate(&response, now)?;
        let exp = cert.exp;
        self.engine
            .set_certificate(response.host_certificate.trim().to_string(), cert);
        Ok(exp)
    }

    async fn event(&self, now: Timestamp, result: &str, detail: &str) {
        let stored = self
            .engine
            .store()
            .record_host_event(now.as_second(), result, self.vendor.url(), detail)
            .await;
        if let Err(e) = stored {
            tracing::warn!("cannot add the certificate renewal to the audit log: {e}");
        }
    }

    /// Runs renewal in the background until stopped.
    pub fn start(self) -> RenewalTask {
        let (trigger, mut asked) = mpsc::channel::<oneshot::Sender<Attempt>>(4);
        let task = tokio::spawn(async move {
            loop {
                let attempt = self.attempt().await;
                let now = self.engine.now();
                let until = match &attempt {
                    Attempt::NotActivated | Attempt::Renewed(_) => None,
                    Attempt::NotDue(t) | Attempt::Failed(_, t) => Some(*t),
                };
                let wait = match until {
                    Some(t) => Duration::try_from(t.duration_since(now))
                        .unwrap_or(Duration::ZERO)
                        .min(LOOK_EVERY),
                    // Renewed: look again at once (it computes the next due time).
                    None if matches!(attempt, Attempt::Renewed(_)) => Duration::ZERO,
                    None => LOOK_EVERY,
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    reply = asked.recv() => match reply {
                        Some(reply) => { let _ = reply.send(self.attempt().await); }
                        None => return,
                    },
                }
            }
        });
        RenewalTask { trigger, task }
    }
}

/// The running renewal task.
pub struct RenewalTask {
    trigger: mpsc::Sender<oneshot::Sender<Attempt>>,
    task: JoinHandle<()>,
}

impl RenewalTask {
    /// Looks at the certificate now (renewing it when due) and returns what happened.
    pub async fn run_now(&self) -> Result<Attempt, ApiError> {
        let stopped = || ApiError::new(ErrorCode::Internal, "the renewal task has stopped");
        let (reply, answer) = oneshot::channel();
        self.trigger.send(reply).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// Stops the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}
