//! Usage reports: what a host tells its vendor once a day when its host key asks for it.
//!
//! A report is a summary and nothing else: how many clients the host counts per product
//! and per application, how many it knows, and its version. It has no field that could
//! hold a client id, a machine name or an address, so no report can leak one, whatever
//! the host's code does. The host signs it with its identity key; the vendor service
//! verifies it with the public key of the host it activated, so a report cannot be made
//! up for someone else's host.

use crate::keys::{KeyPair, PublicKey};
use crate::token::{self, Document};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use volact_proto::{ApiError, ErrorCode};

/// The most products (or applications) one report may name: far beyond any catalog, and
/// it bounds what a hostile report costs to store.
pub const MAX_ENTRIES: usize = 1000;
/// The longest product or application id a report may name.
pub const MAX_ID_LEN: usize = 64;
/// How far a report's signing time may be ahead of the service's clock.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_mins(15);
/// How old a report may be when it arrives: a host that was offline for a month sends
/// its latest, not its history.
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(24 * 35);

/// One day's summary of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The host that reports.
    pub host_id: String,
    /// The host key it was activated with.
    pub key_id: String,
    /// The day (UTC) the report covers.
    pub day: Date,
    /// When the host signed it.
    pub iat: Timestamp,
    /// The host's volact version.
    pub host_version: String,
    /// Clients the host knows (its whole inventory, revoked included).
    pub clients_known: u64,
    /// Clients counted within the count window, by the product each last asked for.
    pub products: BTreeMap<String, u64>,
    /// The count of each application (what activation thresholds are compared with).
    pub applications: BTreeMap<String, u64>,
    /// The id of the count when the host shares it with other hosts (one PostgreSQL
    /// store), the same in all their reports, so the vendor counts those clients once;
    /// absent for a host with a count of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_scope: Option<String>,
}

impl Document for UsageReport {
    const TYPE: &'static str = "volact.usage-report";
}

/// Signs `report` with the host's identity key.
pub fn sign(host: &KeyPair, report: &UsageReport) -> Result<String, ApiError> {
    token::sign(host, report).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the usage report: {e}"),
        )
    })
}

/// A report's claims as they were signed, to find fields a report does not have.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct RawClaims(serde_json::Map<String, serde_json::Value>);

impl Document for RawClaims {
    const TYPE: &'static str = UsageReport::TYPE;
}

/// The claims a report may carry (with the token's `typ`).
const FIELDS: [&str; 10] = [
    "typ",
    "host_id",
    "key_id",
    "day",
    "iat",
    "host_version",
    "clients_known",
    "products",
    "applications",
    "count_scope",
];

fn refused(why: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, format!("the usage report {why}"))
}

/// Verifies a report from the host whose public key is `host` and whose certificate
/// came from host key `key_id`, at the service's time `now`: signature, the host and key
/// it names, its time, and its size.
pub fn verify(
    host: &PublicKey,
    key_id: &str,
    token: &str,
    now: Timestamp,
) -> Result<UsageReport, ApiError> {
    let report: UsageReport = token::verify(host, token)
        .map_err(|e| refused(format!("does not verify with the host's key: {e}")))?;
    // The service keeps the signed token as proof, so a report carrying anything beyond
    // the summary (a list of client ids, say) is refused rather than kept.
    let raw: RawClaims = token::peek(token).map_err(|e| refused(e.to_string()))?;
    if let Some(extra) = raw.0.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(refused(format!(
            "carries `{}`, which a usage report does not have; only counts are sent",
            extra.chars().take(MAX_ID_LEN).collect::<String>()
        )));
    }
    if report.host_id != host.host_id() {
        return Err(refused(format!(
            "names host {}, but was signed by host {}",
            report.host_id,
            host.host_id()
        )));
    }
    if report.key_id != key_id {
        return Err(refused(format!(
            "names host key {}, but the host was activated with {key_id}",
            report.key_id
        )));
    }
    if report.iat.duration_since(now) > MAX_AHEAD {
        return Err(ApiError::with_details(
            ErrorCode::ClockSkew,
            format!(
                "the usage report is dated {} and the vendor service's clock reads {now}; set the host's clock right",
                report.iat
            ),
            serde_json::json!({ "report_time": report.iat, "service_time": now }),
        ));
    }
    if now.duration_since(report.iat) > MAX_AGE {
        return Err(refused(format!(
            "was signed {}, over {} days ago; the host sends a fresh one",
            report.iat,
            MAX_AGE.as_hours() / 24
        )));
    }
    let signed_day = report.iat.to_zoned(jiff::tz::TimeZone::UTC).date();
    if report.day > signed_day {
        return Err(refused(format!(
            "covers {}, after the day it was signed ({signed_day})",
            report.day
        )));
    }
    for (what, map) in [
        ("products", &report.products),
        ("applications", &report.applications),
    ] {
        if map.len() > MAX_ENTRIES {
            return Err(refused(format!(
                "names {} {what}, more than {MAX_ENTRIES}",
                map.len()
            )));
        }
        if let Some(id) = map.keys().find(|id| !valid_id(id)) {
            return Err(refused(format!(
                "names {what} id {:?}, which is not an id (letters, digits, - _ ., at most {MAX_ID_LEN})",
                id.chars().take(MAX_ID_LEN).collect::<String>()
            )));
        }
    }
    if report.host_version.len() > MAX_ID_LEN || !valid_id(&report.host_version) {
        return Err(refused("has no valid host version".to_owned()));
    }
    Ok(report)
}

/// Verifies an upload: the host certificate along the chain to the vendor `root`, then
/// the report with the key the certificate names ([`verify`]), which must have been
/// signed while the certificate was in force.
pub fn verify_upload(
    root: &PublicKey,
    host_certificate: &str,
    report: &str,
    now: Timestamp,
) -> Result<(crate::certificate::HostCertificate, UsageReport), ApiError> {
    let cert = crate::certificate::verify_certificate(root, host_certificate, None)?;
    let host = PublicKey::from_paserk(&cert.host_public_key).map_err(|_| {
        ApiError::new(
            ErrorCode::UntrustedHost,
            "the host certificate names no valid host key",
        )
    })?;
    let report = verify(&host, &cert.key_id, report, now)?;
    if report.iat < cert.iat || report.iat >= cert.exp {
        return Err(ApiError::with_details(
            ErrorCode::HostCertificateExpired,
            format!(
                "the usage report was signed {} but the host certificate is in force from {} to {}; renew or activate the host again",
                report.iat, cert.iat, cert.exp
            ),
            serde_json::json!({ "report_time": report.iat, "certificate_expires": cert.exp }),
        ));
    }
    Ok((cert, report))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn report(host: &KeyPair) -> UsageReport {
        UsageReport {
            host_id: host.public().host_id(),
            key_id: "hk-1".into(),
            day: t(0).to_zoned(jiff::tz::TimeZone::UTC).date(),
            iat: t(0),
            host_version: "0.1.0".into(),
            clients_known: 40,
            products: BTreeMap::from([("demo-os-workstation".into(), 30)]),
            applications: BTreeMap::from([("demo-os".into(), 30)]),
            count_scope: None,
        }
    }

    #[test]
    fn a_report_verifies_only_for_its_host_and_key_and_in_time() {
        let host = KeyPair::from_seed([1; 32]).unwrap();
        let other = KeyPair::from_seed([2; 32]).unwrap();
        let token = sign(&host, &report(&host)).unwrap();
        assert_eq!(
            verify(host.public(), "hk-1", &token, t(60)).unwrap(),
            report(&host)
        );
        // Another host's key, another host key, a forged signature.
        assert!(verify(other.public(), "hk-1", &token, t(60)).is_err());
        assert!(verify(host.public(), "hk-2", &token, t(60)).is_err());
        let forged = sign(&other, &report(&host)).unwrap();
        assert!(verify(host.public(), "hk-1", &forged, t(60)).is_err());
        // From the future, or too old.
        let e = verify(host.public(), "hk-1", &token, t(-3600)).unwrap_err();
        assert_eq!(e.code, ErrorCode::ClockSkew);
        assert!(verify(host.public(), "hk-1", &token, t(36 * 86_400)).is_err());
    }

    #[test]
    fn a_report_for_a_later_day_or_with_hostile_names_is_refused() {
        let host = KeyPair::from_seed([1; 32]).unwrap();
        let mut r = report(&host);
        r.day = r.day.tomorrow().unwrap();
        let token = sign(&host, &r).unwrap();
        assert!(verify(host.public(), "hk-1", &token, t(60)).is_err());

        let mut r = report(&host);
        r.products.insert("\u{1b}[2J".into(), 1);
        let token = sign(&host, &r).unwrap();
        let e = verify(host.public(), "hk-1", &token, t(60)).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);

        let mut r = report(&host);
        r.applications = (0..=MAX_ENTRIES).map(|i| (format!("a{i}"), 1)).collect();
        let token = sign(&host, &r).unwrap();
        assert!(verify(host.public(), "hk-1", &token, t(60)).is_err());
    }

    #[test]
    fn a_report_carrying_anything_beyond_the_summary_is_refused() {
        let host = KeyPair::from_seed([1; 32]).unwrap();
        let mut value = serde_json::to_value(report(&host)).unwrap();
        value["client_ids"] = serde_json::json!(["c-1"]);
        let token = token::sign(&host, &RawClaims(value.as_object().unwrap().clone())).unwrap();
        let e = verify(host.public(), "hk-1", &token, t(60)).unwrap_err();
        assert!(e.message.contains("client_ids"), "{}", e.message);
    }
}
