//! What the vendor sees of its customers: per customer and host key, the hosts, their
//! activations, last contact and certificate expiry; and the hosts' usage over time.
//! Built from the vendor store, for the admin API, `volact vendor customers` / `usage`
//! and the dashboard alike.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use volact_proto::{ApiError, ErrorCode};
use volact_store::vendor::{HostKeyRecord, HostRecord, UsageFilter, UsageRecord, VendorStore};

/// One customer: its host keys, each with its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    /// The customer's name.
    pub customer: String,
    /// Its host keys, oldest first.
    pub host_keys: Vec<KeyView>,
}

/// A host key and its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The key.
    #[serde(flatten)]
    pub key: HostKeyRecord,
    /// Its hosts.
    pub hosts: Vec<HostRecord>,
}

fn failed(e: &volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the vendor's records could not be read: {e}"),
    )
}

/// Customers (one, or all), by name.
pub async fn customers(
    store: &dyn VendorStore,
    customer: Option<&str>,
) -> Result<Vec<CustomerView>, ApiError> {
    let keys = store.host_keys(customer).await.map_err(|e| failed(&e))?;
    let mut hosts: BTreeMap<String, Vec<HostRecord>> = BTreeMap::new();
    for h in store.hosts(None).await.map_err(|e| failed(&e))? {
        hosts.entry(h.key_id.clone()).or_default().push(h);
    }
    let mut by_customer: BTreeMap<String, Vec<KeyView>> = BTreeMap::new();
    for key in keys {
        let key_hosts = hosts.remove(&key.key_id).unwrap_or_default();
        by_customer
            .entry(key.customer.clone())
            .or_default()
            .push(KeyView {
                key,
                hosts: key_hosts,
            });
    }
    Ok(by_customer
        .into_iter()
        .map(|(customer, host_keys)| CustomerView {
            customer,
            host_keys,
        })
        .collect())
}

/// Usage reports matching `filter`, by day then host.
pub async fn usage(
    store: &dyn VendorStore,
    filter: &UsageFilter,
) -> Result<Vec<UsageRecord>, ApiError> {
    for day in [&filter.from_day, &filter.to_day].into_iter().flatten() {
        day.parse::<jiff::civil::Date>().map_err(|_| {
            ApiError::bad_request("day", format!("`{day}` is not a date like 2026-12-31"))
        })?;
    }
    store.usage(filter).await.map_err(|e| failed(&e))
}

/// Which count a report's figures come from: `shared:ID` when its host shares one count
/// with other hosts (the report's signed `count_scope`), else `host:HOST_ID`.
pub fn count_of(record: &UsageRecord) -> String {
    volact_core::token::peek::<volact_core::usage::UsageReport>(&record.token)
        .ok()
        .and_then(|r| r.count_scope)
        .map_or_else(
            || format!("host:{}", record.host_id),
            |scope| format!("shared:{scope}"),
        )
}

/// Counted clients per product over `reports` (one day's, or each host's latest), with
/// the hosts that share one count counted once: the largest of their figures (they
/// report the same count, a moment apart), then the sum over independent counts.
pub fn combined_products<'a>(
    reports: impl IntoIterator<Item = &'a UsageRecord>,
) -> BTreeMap<String, u64> {
    let mut by_count: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in reports {
        let count = by_count.entry(count_of(r)).or_default();
        for (product, n) in &r.products {
            let top = count.entry(product.as_str()).or_default();
            *top = (*top).max(*n);
        }
    }
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for count in by_count.values() {
        for (product, n) in count {
            let sum = total.entry((*product).to_owned()).or_default();
            *sum = sum.saturating_add(*n);
        }
    }
    total
}

fn time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Customers as text, one block per customer, a line per host key and host.
pub fn customers_text(customers: &[CustomerView]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if customers.is_empty() {
        out.push_str("No customers yet: issue a host key (volact vendor host-key).\n");
    }
    for c in customers {
        let _ = writeln!(out, "{}", c.customer);
        for k in &c.host_keys {
            let revoked = k
                .key
                .revoked_at
                .map(|t| format!("  REVOKED {}", time(t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}  group {}  hosts {}/{}  reports {}{}",
                k.key.key_id,
                k.key.group,
                k.hosts.len(),
                k.key.max_hosts,
                if k.key.usage_reports { "on" } else { "off" },
                revoked
            );
            for h in &k.hosts {
                let revoked = h
                    .revoked_at
                    .map(|t| format!("  REVOKED {}", time(t)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {}  activations {}/{}  last contact {}  certificate until {}{}",
                    h.host_id,
                    h.activations,
                    k.key.max_activations,
                    time(h.last_contact),
                    time(h.certificate_expires),
                    revoked
                );
            }
        }
    }
    out
}

/// A CSV field, quoted when it must be, and never read as a formula by a spreadsheet.
fn csv(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@']) {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// Customers as CSV: a row per host (a key without hosts gets one row with no host).
pub fn customers_csv(customers: &[CustomerView]) -> String {
    let mut out = String::from(
        "customer,key_id,group,max_hosts,max_activations,key_revoked_at,host_id,activations,first_activated,last_contact,certificate_expires,host_revoked_at\n",
    );
    let opt = |t: Option<i64>| t.map(time).unwrap_or_default();
    for c in customers {
        for k in &c.host_keys {
            let key = [
                csv(&c.customer),
                csv(&k.key.key_id),
                csv(&k.key.group),
                k.key.max_hosts.to_string(),
                k.key.max_activations.to_string(),
                opt(k.key.revoked_at),
            ]
            .join(",");
            if k.hosts.is_empty() {
                out.push_str(&format!("{key},,,,,,\n"));
            }
            for h in &k.hosts {
                out.push_str(&format!(
                    "{key},{},{},{},{},{},{}\n",
                    csv(&h.host_id),
                    h.activations,
                    time(h.first_activated),
                    time(h.last_contact),
                    time(h.certificate_expires),
                    opt(h.revoked_at)
                ));
            }
        }
    }
    out
}

/// Usage as text: a line per report.
pub fn usage_text(reports: &[UsageRecord]) -> String {
    use std::fmt::Write as _;
    if reports.is_empty() {
        return "No usage reports yet.\n".to_owned();
    }
    let mut out = String::new();
    for r in reports {
        let products: Vec<String> = r.products.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = writeln!(
            out,
            "{}  {}  {}  clients known {}  {}",
            r.day,
            r.key_id,
            r.host_id,
            r.clients_known,
            products.join(", ")
        );
    }
    out
}

/// Usage as CSV: a row per report and product.
pub fn usage_csv(reports: &[UsageRecord]) -> String {
    let mut out = String::from("day,key_id,host_id,host_version,clients_known,product,clients\n");
    for r in reports {
        let head = [
            csv(&r.day),
            csv(&r.key_id),
            csv(&r.host_id),
            csv(&r.host_version),
            r.clients_known.to_string(),
        ]
        .join(",");
        if r.products.is_empty() {
            out.push_str(&format!("{head},,\n"));
        }
        for (product, n) in &r.products {
            out.push_str(&format!("{head},{},{n}\n", csv(product)));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(host: u8, scope: Option<&str>, draw: u64) -> UsageRecord {
        let key = volact_core::keys::KeyPair::from_seed([host; 32]).unwrap();
        let report = volact_core::usage::UsageReport {
            host_id: key.public().host_id(),
            key_id: "hk-1".into(),
            day: "2026-12-04".parse().unwrap(),
            iat: "2026-12-04T10:00:00Z".parse().unwrap(),
            host_version: "0.1.0".into(),
            clients_known: draw,
            products: BTreeMap::from([("draw".into(), draw)]),
            applications: BTreeMap::new(),
            count_scope: scope.map(str::to_owned),
        };
        UsageRecord {
            key_id: report.key_id.clone(),
            host_id: report.host_id.clone(),
            day: report.day.to_string(),
            received: 0,
            host_version: report.host_version.clone(),
            clients_known: draw,
            products: report.products.clone(),
            applications: BTreeMap::new(),
            token: volact_core::usage::sign(&key, &report).unwrap(),
        }
    }

    #[test]
    fn hosts_sharing_a_count_are_counted_once() {
        // Two hosts on one PostgreSQL report its count of 30 (one a moment later: 31);
        // a third host has 5 clients of its own; a fourth shares another store.
        let reports = [
            record(1, Some("pg-a"), 30),
            record(2, Some("pg-a"), 31),
            record(3, None, 5),
            record(4, Some("pg-b"), 7),
        ];
        assert_eq!(count_of(&reports[0]), "shared:pg-a");
        assert!(count_of(&reports[2]).starts_with("host:h-"));
        let combined = combined_products(&reports);
        assert_eq!(combined["draw"], 31 + 5 + 7);
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv("Acme"), "Acme");
        assert_eq!(csv("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
