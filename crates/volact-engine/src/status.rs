//! `volact host status`: what `slmgr /dlv` shows on a KMS host, and more.

use crate::config::HostConfig;
use crate::data::HostData;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use volact_core::catalog::ProductKind;
use volact_proto::{ApiError, ErrorCode, HostIntervals};
use volact_store::Store;

/// The host key as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Key id.
    pub key_id: String,
    /// Customer.
    pub customer: String,
    /// Key group.
    pub group: String,
    /// Seat cap.
    pub seats: Option<u32>,
    /// Expiry.
    pub expires: Option<Timestamp>,
}

/// The certificate as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Issued.
    pub issued: Timestamp,
    /// Expires.
    pub expires: Timestamp,
    /// Whether it is in force now.
    pub valid: bool,
    /// Products it activates.
    pub products: Vec<String>,
}

/// One product's line under its application.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductStatus {
    /// Product id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Workstation or server.
    pub kind: ProductKind,
    /// Minimum count.
    pub minimum: u32,
    /// Whether the current count activates it.
    pub activating: bool,
    /// Whether the host key covers it.
    pub in_key_group: bool,
}

/// One application's count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplicationStatus {
    /// Application id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Distinct clients in the count window.
    pub count: u64,
    /// Its products.
    pub products: Vec<ProductStatus>,
}

/// Everything `volact host status` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    /// Host id.
    pub host_id: String,
    /// Data directory.
    pub data: String,
    /// `activated`, `not-activated` or `certificate-expired`.
    pub state: String,
    /// The host key, if installed.
    pub host_key: Option<KeyStatus>,
    /// The certificate, if activated.
    pub certificate: Option<CertificateStatus>,
    /// Where `serve` listens (from the configuration).
    pub listen: String,
    /// Where a running host serves, if one runs.
    pub serving: Option<crate::data::ServingInfo>,
    /// Vendor name.
    pub vendor: Option<String>,
    /// Catalog version.
    pub catalog_version: Option<u64>,
    /// Intervals in force.
    pub intervals: HostIntervals,
    /// Counts.
    pub applications: Vec<ApplicationStatus>,
    /// Clients in the inventory.
    pub clients_known: u64,
    /// Requests recorded, total.
    pub requests: u64,
    /// Requests answered with a ticket.
    pub activated: u64,
    /// Requests answered "not yet" (`count-insufficient`).
    pub not_yet: u64,
    /// Requests refused with any other code.
    pub refused: u64,
    /// Requests by result.
    pub by_result: BTreeMap<String, u64>,
    /// Clients flagged as cloned images (one client id, two machines, one day) within
    /// the count window.
    #[serde(default)]
    pub cloned_clients: u64,
    /// The last DNS publishing result (`dns-publish-succeeded` / `-failed`, like KMS
    /// events 12294 / 12293), if the host ever published.
    #[serde(default)]
    pub dns_publish: Option<crate::dns::PublishResult>,
    /// Products this host should activate that its seat cap keeps from ever activating
    /// (their minimum count is above the cap).
    #[serde(default)]
    pub unreachable_products: Vec<volact_core::host_key::UnreachableProduct>,
    /// The hosts registered in the store (several when they share one PostgreSQL
    /// database), by host id, with when each was last seen.
    #[serde(default)]
    pub hosts: Vec<volact_store::HostRecord>,
    /// Where online renewal of the certificate stands, if the host ever tried (a
    /// warning while renewals fail; see [`crate::renewal`]).
    #[serde(default)]
    pub certificate_renewal: Option<crate::renewal::RenewalLog>,
    /// When this status was taken.
    pub at: Timestamp,
}

fn storage(e: volact_store::StoreError) -> ApiError {
    ApiError::new(ErrorCode::StorageFailure, e.to_string())
}

/// Collects the status from the data directory and the store.
pub async fn collect(
    data: &HostData,
    store: &dyn Store,
    config: &HostConfig,
    now: Timestamp,
) -> Result<HostStatus, ApiError> {
    // Read before the certificate: a renewal writes the certificate first and its log
    // second, so a log that reports a success always comes with the certificate it
    // installed (read the other way round, a renewal in between showed the old
    // certificate beside the new success).
    let certificate_renewal = crate::renewal::read_log(data);
    let identity = data.identity()?;
    let host_key = data.host_key().ok().map(|(_, k)| KeyStatus {
        key_id: k.jti,
        customer: k.customer,
        group: k.group,
        seats: k.seats,
        expires: k.exp,
    });
    let vendor = data.vendor().ok();
    // The products the certificate covers under the installed catalog, which also holds
    // those its key group gained after it was signed.
    let certificate = data.certificate()?.map(|(_, c)| CertificateStatus {
        issued: c.iat,
        expires: c.exp,
        valid: now < c.exp,
        products: volact_core::certificate::covered_products(&c, vendor.as_ref().map(|(_, k)| k)),
    });
    let state = match &certificate {
        None => "not-activated",
        Some(c) if !c.valid => "certificate-expired",
        Some(_) => "activated",
    };
    let since = now
        .as_second()
        .saturating_sub(config.settings.count_window.as_secs());
    let counts: BTreeMap<String, u64> = store
        .count_by_application(since)
        .await
        .map_err(storage)?
        .into_iter()
        .collect();
    // The certificate's products when activated, else the key group's: either way the
    // products this host is meant to activate.
    let unreachable_products = match (&vendor, &host_key) {
        (Some((_, catalog)), Some(key)) => {
            let products = match &certificate {
                Some(c) => c.products.clone(),
                None => catalog
                    .key_group(&key.group)
                    .map(|g| g.products.clone())
                    .unwrap_or_default(),
            };
            volact_core::host_key::unreachable_products(catalog, &products, key.seats)
        }
        _ => Vec::new(),
    };
    let mut applications = Vec::new();
    if let Some((_, catalog)) = &vendor {
        for app in &catalog.applications {
            let count = counts.get(&app.id).copied().unwrap_or(0);
            let products = catalog
                .products
                .iter()
                .filter(|p| p.application == app.id)
                .map(|p| ProductStatus {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    kind: p.kind,
                    minimum: p.minimum_count,
                    activating: count >= u64::from(p.minimum_count),
                    in_key_group: certificate
                        .as_ref()
                        .is_some_and(|c| c.products.contains(&p.id)),
                })
                .collect();
            applications.push(ApplicationStatus {
                id: app.id.clone(),
                name: app.name.clone(),
                count,
                products,
            });
        }
    }
    let by_result: BTreeMap<String, u64> = store
        .result_totals()
        .await
        .map_err(storage)?
        .into_iter()
        .collect();
    let requests = by_result.values().sum();
    let activated = by_result.get("activated").copied().unwrap_or(0);
    let not_yet = by_result
        .get(ErrorCode::CountInsufficient.as_str())
        .copied()
        .unwrap_or(0);
    let refused = requests - activated - not_yet;
    Ok(HostStatus {
        host_id: identity.public().host_id(),
        data: data.dir().display().to_string(),
        state: state.to_string(),
        host_key,
        certificate,
        listen: config.listen.to_string(),
        serving: data.serving(),
        vendor: vendor.as_ref().map(|(_, c)| c.vendor.clone()),
        catalog_version: vendor.as_ref().map(|(_, c)| c.version),
        intervals: config.settings.intervals(),
        applications,
        clients_known: store.client_total().await.map_err(storage)?,
        requests,
        activated,
        not_yet,
        refused,
        by_result,
        cloned_clients: store.clones(since).await.map_err(storage)?.len() as u64,
        dns_publish: crate::dns::read_log(data).and_then(|l| l.last),
        unreachable_products,
        hosts: store.hosts().await.map_err(storage)?,
        certificate_renewal,
        at: now,
    })
}

/// One line for `host status`: the last renewal and the next attempt.
pub fn renewal_line(r: &crate::renewal::RenewalLog) -> String {
    format!(
        "from {}; last renewed {}; next attempt {}",
        r.vendor_url.as_deref().unwrap_or("(no vendor service)"),
        r.last_success
            .map(|t| t.to_string())
            .unwrap_or_else(|| "never".into()),
        r.next_attempt
            .map(|t| t.to_string())
            .unwrap_or_else(|| "not planned".into())
    )
}

fn days(secs: u64) -> String {
    volact_core::util::human(jiff::SignedDuration::from_secs(
        i64::try_from(secs).unwrap_or(i64::MAX),
    ))
}

impl HostStatus {
    /// The status as aligned text, in the manner of `slmgr /dlv`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<24} {v}");
        };
        line("Host id:", self.host_id.clone());
        line("Data directory:", self.data.clone());
        line("Host state:", self.state.clone());
        match &self.host_key {
            Some(k) => {
                line(
                    "Host key:",
                    format!(
                        "{} (customer {}, key group {})",
                        k.key_id, k.customer, k.group
                    ),
                );
                line(
                    "Seat cap:",
                    k.seats
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none".into()),
                );
                for u in &self.unreachable_products {
                    line(
                        "WARNING:",
                        format!(
                            "{} ({}) needs a count of {} but the seat cap is {}: this host can never activate it; ask the vendor for a host key with more seats",
                            u.product_name, u.product, u.minimum, u.seats
                        ),
                    );
                }
                line(
                    "Host key expires:",
                    k.expires
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never".into()),
                );
            }
            None => line(
                "Host key:",
                "none installed (volact host install-key)".into(),
            ),
        }
        match &self.certificate {
            Some(c) => line(
                "Certificate:",
                format!(
                    "issued {}, expires {}{}",
                    c.issued,
                    c.expires,
                    if c.valid { "" } else { " (EXPIRED)" }
                ),
            ),
            None => line("Certificate:", "none (volact host activate)".into()),
        }
        if let Some(r) = &self.certificate_renewal {
            line("Certificate renewal:", renewal_line(r));
            if let Some(warning) = r.warning() {
                line("WARNING:", warning);
            }
        }
        match &self.serving {
            Some(s) => line(
                "Serving:",
                format!("{} (pid {}, since {})", s.url, s.pid, s.started_at),
            ),
            None => line(
                "Serving:",
                format!("not running (configured listen address {})", self.listen),
            ),
        }
        if let (Some(v), Some(n)) = (&self.vendor, self.catalog_version) {
            line("Catalog:", format!("{v}, version {n}"));
        }
        let i = &self.intervals;
        line(
            "Intervals:",
            format!(
                "renew {}, retry {}, ticket validity {}, count window {}, clock skew ±{}",
                days(i.renew_interval_secs),
                days(i.retry_interval_secs),
                days(i.ticket_validity_secs),
                days(i.count_window_secs),
                days(i.max_clock_skew_secs)
            ),
        );
        for h in &self.hosts {
            let ago = self.at.as_second().saturating_sub(h.last_seen).max(0);
            line(
                "Host on this store:",
                format!(
                    "{} ({}, volact {}) at {}, last seen {}s ago",
                    h.host_id,
                    h.name,
                    h.version,
                    if h.listen_urls.is_empty() {
                        "no address".to_owned()
                    } else {
                        h.listen_urls.join(", ")
                    },
                    ago
                ),
            );
        }
        line("Clients known:", self.clients_known.to_string());
        let results: Vec<String> = self
            .by_result
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(
            "Requests:",
            format!(
                "{} received: {} activated, {} not yet (count-insufficient), {} refused{}",
                self.requests,
                self.activated,
                self.not_yet,
                self.refused,
                if results.is_empty() {
                    String::new()
                } else {
                    format!("\n{:<24} {}", "", results.join(", "))
                }
            ),
        );
        line(
            "Cloned images:",
            match self.cloned_clients {
                0 => "0 clients flagged".to_string(),
                n => format!(
                    "{n} {} flagged (one client id used by several machines within a day; see volact host events --result cloned-image)",
                    if n == 1 { "client" } else { "clients" }
                ),
            },
        );
        if let Some(p) = &self.dns_publish {
            line("DNS publishing:", crate::dns::publish::status_line(p));
        }
        for app in &self.applications {
            let _ = writeln!(
                out,
                "\nApplication {} ({}): current count {}",
                app.name, app.id, app.count
            );
            for p in &app.products {
                let never = self.unreachable_products.iter().any(|u| u.product == p.id);
                let _ = writeln!(
                    out,
                    "  {:<28} {:<12} minimum {:>4}  {}{}",
                    p.id,
                    format!("{:?}", p.kind).to_lowercase(),
                    p.minimum,
                    if p.activating {
                        "activating"
                    } else if never {
                        "never (above the seat cap)"
                    } else {
                        "waiting for count"
                    },
                    if p.in_key_group {
                        ""
                    } else {
                        "  (not in key group)"
                    }
                );
            }
        }
        out
    }
}
