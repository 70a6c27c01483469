//! Publishing this host's SRV record (and optionally its address) by RFC 2136 dynamic
//! update, as a KMS host registers `_vlmcs._tcp`: once by hand, or from `host serve`,
//! which registers at start, again every refresh interval, retries with back-off after a
//! failure, and removes the records on a clean shutdown unless told to keep them.
//!
//! Every result is a log line, an audit event (`volact host events`, the dashboard) and
//! an entry in `D/dns-publish.json`, which `host status` shows: `dns-publish-succeeded`
//! and `dns-publish-failed` play the part of KMS events 12294 and 12293.

use super::config::PublishConfig;
use super::tsig::TsigKey;
use super::wire::{
    WireError, address_record, deletion, exchange, fqdn, query, rrset_deletion, srv_record,
    tls_srv_record, update,
};
use crate::data::{HostData, write_atomic};
use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::rr::{RData, RecordType, TSigner};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volact_proto::{ApiError, ErrorCode};
use volact_store::Store;

/// The file, in the data directory, that records publishing results.
pub const LOG_FILE: &str = "dns-publish.json";
/// Results kept in the file.
const HISTORY: usize = 20;
/// Longest wait between retries after failures.
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// The outcome of one publish or unpublish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    /// When.
    pub at: Timestamp,
    /// `publish` or `unpublish`.
    pub action: String,
    /// Whether the server accepted it.
    pub ok: bool,
    /// `dns-publish-succeeded`, `dns-publish-failed`, `dns-unpublish-succeeded` or
    /// `dns-unpublish-failed`.
    pub event: String,
    /// The DNS server.
    pub server: String,
    /// The zone.
    pub zone: String,
    /// The records, as zone-file lines.
    pub records: Vec<String>,
    /// What happened, for a person.
    pub message: String,
}

/// `D/dns-publish.json`: the last result, the last success and the recent history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishLog {
    /// The most recent result.
    pub last: Option<PublishResult>,
    /// The most recent success.
    pub last_success: Option<PublishResult>,
    /// The last results, oldest first.
    pub recent: Vec<PublishResult>,
}

/// The publishing log of a data directory, if anything was ever published there.
pub fn read_log(data: &HostData) -> Option<PublishLog> {
    let bytes = std::fs::read(data.dir().join(LOG_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Logs `result` and adds it to the file. A file that cannot be written is logged, not
/// fatal: publishing itself worked or failed regardless.
fn record(data: &HostData, result: &PublishResult) {
    if result.ok {
        tracing::info!(event = %result.event, server = %result.server, zone = %result.zone, "{}", result.message);
    } else {
        tracing::warn!(event = %result.event, server = %result.server, zone = %result.zone, "{}", result.message);
    }
    let mut log = read_log(data).unwrap_or_default();
    log.last = Some(result.clone());
    if result.ok {
        log.last_success = Some(result.clone());
    }
    log.recent.push(result.clone());
    let excess = log.recent.len().saturating_sub(HISTORY);
    log.recent.drain(..excess);
    let written = serde_json::to_vec_pretty(&log)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
        .and_then(|json| write_atomic(&data.dir().join(LOG_FILE), &json, false));
    if let Err(e) = written {
        tracing::warn!("cannot record the DNS publishing result: {}", e.message);
    }
}

/// Appends the result to the host's audit log, so `volact host events` and the dashboard
/// show it beside the activation requests, through the store the caller holds (the
/// serving engine's, or one a command opened).
async fn record_event(store: &dyn Store, result: &PublishResult) {
    let stored = store
        .record_host_event(
            result.at.as_second(),
            &result.event,
            &result.server,
            &result.message,
        )
        .await;
    if let Err(e) = stored {
        tracing::warn!("cannot add the DNS publishing result to the audit log: {e}");
    }
}

fn signer(config: &PublishConfig) -> Result<Option<(TsigKey, TSigner)>, ApiError> {
    match &config.key_file {
        None => Ok(None),
        Some(path) => {
            let key = TsigKey::read(path)?;
            let signer = key.signer()?;
            Ok(Some((key, signer)))
        }
    }
}

/// Turns a failed exchange into an error that says what to do.
fn explain(e: WireError, config: &PublishConfig, key: Option<&TsigKey>) -> ApiError {
    let (server, zone) = (config.server, &config.zone);
    let key_hint = match key {
        Some(k) => format!(
            "the TSIG key `{}` ({}) in {} is wrong or unknown to the server, or the two clocks differ by more than 5 minutes; compare it with the key in the server's configuration",
            k.name,
            k.algorithm,
            config
                .key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        None => "the zone may require a TSIG key: set dns.publish.key_file in volact.toml".into(),
    };
    match e {
        WireError::NoAnswer(why) => ApiError::new(
            ErrorCode::HostUnreachable,
            format!("{why}; check dns.publish.server in volact.toml and that the server runs"),
        ),
        WireError::Rcode { rcode, tsig } if rcode == "NOTAUTH" || tsig.is_some() => {
            let tsig = tsig
                .map(|t| format!(", TSIG error {t}"))
                .unwrap_or_default();
            ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "the DNS server {server} refused the update of zone {zone} as not authorized ({rcode}{tsig}): {key_hint}"
                ),
            )
        }
        WireError::Rcode { rcode, .. } if rcode == "REFUSED" => ApiError::new(
            ErrorCode::Unauthorized,
            format!(
                "the DNS server {server} refused the update of zone {zone} (REFUSED): it does not let this key or address update the zone (BIND: allow-update or update-policy), or it is not the zone's primary; {key_hint}"
            ),
        ),
        WireError::Rcode { rcode, .. } if rcode == "NOTZONE" || rcode == "NXDOMAIN" => {
            ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "the DNS server {server} is not authoritative for zone {zone} ({rcode}); check dns.publish.zone and server"
                ),
            )
        }
        WireError::Rcode { rcode, .. } => ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "the DNS server {server} could not update zone {zone} ({rcode}); see the server's log"
            ),
        ),
        WireError::BadAnswer(why) => ApiError::new(ErrorCode::UntrustedHost, why),
        WireError::Local(why) => ApiError::new(ErrorCode::BadRequest, why),
    }
}

fn result_of(
    config: &PublishConfig,
    action: &str,
    outcome: &Result<String, ApiError>,
) -> PublishResult {
    let ok = outcome.is_ok();
    PublishResult {
        at: crate::whole_seconds(Timestamp::now()),
        action: action.into(),
        ok,
        event: format!("dns-{action}-{}", if ok { "succeeded" } else { "failed" }),
        server: config.server.to_string(),
        zone: config.zone.clone(),
        records: config.record.zone_lines(),
        message: match outcome {
            Ok(m) => m.clone(),
            Err(e) => format!("{action} failed: {}", e.message),
        },
    }
}

async fn try_publish(config: &PublishConfig) -> Result<String, ApiError> {
    let signed = signer(config)?;
    let key = signed.as_ref().map(|(k, _)| k);
    let local = |e| explain(e, config, key);
    let r = &config.record;
    let zone = fqdn(&config.zone).map_err(local)?;
    let target = fqdn(&r.name).map_err(local)?;
    let srv = srv_record(r).map_err(local)?;
    let tls = tls_srv_record(r).map_err(local)?;
    let mut message = update(&zone);
    // Our own earlier record with another priority or weight would linger beside the new
    // one; find it and delete it in the same update. A server that does not answer
    // queries only costs that clean-up.
    let mut owners = vec![(r.owner(), r.port)];
    if let Some(port) = r.tls_port {
        owners.push((r.tls_owner(), port));
    }
    for (owner, port) in owners {
        let owner = fqdn(&owner).map_err(local)?;
        match exchange(config.server, query(&owner, RecordType::SRV), None).await {
            Ok(answer) => {
                for old in answer.answers {
                    if let RData::SRV(s) = &old.data
                        && s.target.eq_ignore_root_case(&target)
                        && s.port == port
                        && (s.priority != r.priority || s.weight != r.weight)
                    {
                        message.add_update(deletion(old.clone()));
                    }
                }
            }
            Err(WireError::NoAnswer(why)) => return Err(local(WireError::NoAnswer(why))),
            Err(_) => {}
        }
    }
    if let Some(address) = address_record(r).map_err(local)? {
        let kind = address.record_type();
        message.add_update(rrset_deletion(&target, kind));
        message.add_update(address);
    }
    message.add_update(srv);
    if let Some(tls) = tls {
        message.add_update(tls);
    }
    exchange(config.server, message, signed.as_ref().map(|(_, s)| s))
        .await
        .map_err(local)?;
    Ok(format!(
        "published {} on {} (zone {}{})",
        r.zone_lines().join(" and "),
        config.server,
        config.zone,
        key.map(|k| format!(", TSIG key {}", k.name))
            .unwrap_or_default()
    ))
}

async fn try_unpublish(config: &PublishConfig) -> Result<String, ApiError> {
    let signed = signer(config)?;
    let key = signed.as_ref().map(|(k, _)| k);
    let local = |e| explain(e, config, key);
    let r = &config.record;
    let mut message = update(&fqdn(&config.zone).map_err(local)?);
    message.add_update(deletion(srv_record(r).map_err(local)?));
    if let Some(tls) = tls_srv_record(r).map_err(local)? {
        message.add_update(deletion(tls));
    }
    if let Some(address) = address_record(r).map_err(local)? {
        message.add_update(deletion(address));
    }
    exchange(config.server, message, signed.as_ref().map(|(_, s)| s))
        .await
        .map_err(local)?;
    Ok(format!(
        "removed {} from {} (zone {})",
        r.zone_lines().join(" and "),
        config.server,
        config.zone
    ))
}

/// One line for `host status`: what the last publish or unpublish did, and when.
pub fn status_line(r: &PublishResult) -> String {
    if r.ok {
        format!("{} at {}: {}", r.event, r.at, r.message)
    } else {
        format!("{} (FAILED) at {}: {}", r.event, r.at, r.message)
    }
}

/// Registers the records once and records the result (in the data directory and in
/// `store`'s audit log).
pub async fn publish(
    data: &HostData,
    store: &dyn Store,
    config: &PublishConfig,
) -> Result<PublishResult, ApiError> {
    let outcome = try_publish(config).await;
    let result = result_of(config, "publish", &outcome);
    record(data, &result);
    record_event(store, &result).await;
    outcome.map(|_| result)
}

/// Removes the records once and records the result (in the data directory and in
/// `store`'s audit log).
pub async fn unpublish(
    data: &HostData,
    store: &dyn Store,
    config: &PublishConfig,
) -> Result<PublishResult, ApiError> {
    let outcome = try_unpublish(config).await;
    let result = result_of(config, "unpublish", &outcome);
    record(data, &result);
    record_event(store, &result).await;
    outcome.map(|_| result)
}

/// The wait before retry number `failures` (1, 2, …): `first` doubling each time, at most
/// 15 minutes and at most the refresh interval.
pub fn backoff(failures: u32, first: Duration, refresh: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first
        .saturating_mul(factor)
        .min(RETRY_MAX)
        .min(refresh)
        .max(Duration::from_millis(10))
}

/// Publishing in the background while a host serves.
pub struct Publisher {
    data: HostData,
    store: Arc<dyn Store>,
    config: PublishConfig,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing now, again every refresh interval, and after failures with
    /// back-off starting at `retry_first`, recording each result in `store` (the
    /// serving engine's).
    pub fn start(
        data: &HostData,
        store: Arc<dyn Store>,
        config: PublishConfig,
        retry_first: Duration,
    ) -> Publisher {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (d, c, s) = (data.clone(), config.clone(), store.clone());
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let published = tokio::select! {
                    _ = &mut stopped => return,
                    r = publish(&d, s.as_ref(), &c) => r.is_ok(),
                };
                let wait = if published {
                    failures = 0;
                    c.refresh_interval
                } else {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures, retry_first, c.refresh_interval);
                    tracing::info!(
                        retry_in_secs = wait.as_secs_f64(),
                        "will try to publish in DNS again"
                    );
                    wait
                };
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        Publisher {
            data: data.clone(),
            store,
            config,
            stop: Some(stop),
            task,
        }
    }

    /// Stops publishing and, unless `keep_on_shutdown`, removes the records.
    pub async fn shutdown(mut self) -> Option<Result<PublishResult, ApiError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        if self.config.keep_on_shutdown {
            tracing::info!("keeping the DNS records (dns.publish.keep_on_shutdown)");
            return None;
        }
        Some(unpublish(&self.data, self.store.as_ref(), &self.config).await)
    }
}
