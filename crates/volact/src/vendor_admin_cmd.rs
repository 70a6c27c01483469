//! The vendor's view from the command line: `volact vendor customers`, `usage`,
//! `revoke`, and `host-key --url`. Each reads the vendor directory's store (`--dir V`)
//! or asks a running service's admin API (`--url URL` with its admin token).

use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use volact_proto::{ApiError, ErrorCode};
use volact_store::vendor::{RevokedKind, UsageFilter, UsageRecord, VendorStore};

use crate::output::Output;
use crate::vendor_link::VendorLink;
use volact_vendor::report::{self as vendor_report, CustomerView};

/// Where the vendor's records are: a vendor directory, or a running service.
#[derive(Debug, Clone, Args)]
pub struct VendorSource {
    /// The vendor's directory (its store, as its service.toml says).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    pub dir: Option<PathBuf>,
    /// A running vendor service, e.g. https://activation.example.com:7690.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The service's admin token file [default: DIR/admin.token; or VOLACT_VENDOR_TOKEN].
    #[arg(long, value_name = "FILE", requires = "url")]
    pub token_file: Option<PathBuf>,
    /// Trust the service's certificate when issued by a CA in FILE (PEM).
    #[arg(long, value_name = "FILE", requires = "url")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the service certificate with this SHA-256 fingerprint.
    #[arg(long, value_name = "SHA256", requires = "url")]
    pub tls_fingerprint: Option<String>,
}

/// The records, opened.
pub enum Source {
    /// The store of a vendor directory.
    Local(Arc<dyn VendorStore>),
    /// A service's admin API.
    Remote(VendorLink),
}

impl VendorSource {
    /// Opens the store, or prepares the admin client.
    pub async fn open(&self) -> Result<Source, ApiError> {
        if let Some(url) = &self.url {
            let token = match &self.token_file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| {
                        ApiError::new(
                            ErrorCode::InvalidState,
                            format!("cannot read {}: {e}", f.display()),
                        )
                    })?
                    .trim()
                    .to_owned(),
                None => std::env::var("VOLACT_VENDOR_TOKEN")
                    .ok()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "token-file",
                            "give the service's admin token: --token-file V/admin.token (or VOLACT_VENDOR_TOKEN)",
                        )
                    })?,
            };
            let trust = volact_client::tls::TlsTrust::from_flags(
                self.tls_fingerprint.as_deref(),
                self.ca_file.as_deref(),
            )?;
            let mut link = VendorLink::new(url, trust);
            link.token = Some(token);
            return Ok(Source::Remote(link));
        }
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("dir", "give --dir V or --url URL"))?;
        let flags = volact_vendor::service::config::ServiceFlags::default();
        Ok(Source::Local(
            volact_vendor::ledger::open_store(dir, &flags).await?,
        ))
    }
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!("{k}={}", volact_host::dashboard::url_encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// `volact vendor customers`.
pub async fn customers(
    source: &VendorSource,
    customer: Option<String>,
    csv: bool,
    out: &Output,
) -> Result<(), ApiError> {
    let list: Vec<CustomerView> = match source.open().await? {
        Source::Local(store) => {
            let list = vendor_report::customers(store.as_ref(), customer.as_deref()).await;
            store.close().await;
            list?
        }
        Source::Remote(link) => {
            let path = format!("/v1/admin/customers{}", query(&[("customer", &customer)]));
            link.call(&path, None, "a list of customers").await?
        }
    };
    if csv {
        print!("{}", vendor_report::customers_csv(&list));
        return Ok(());
    }
    out.result(&list, || vendor_report::customers_text(&list));
    Ok(())
}

/// What `volact vendor usage` selects.
pub struct UsageArgs {
    /// Only this customer.
    pub customer: Option<String>,
    /// Only this host key.
    pub key: Option<String>,
    /// From this day.
    pub from: Option<String>,
    /// To this day.
    pub to: Option<String>,
}

/// `volact vendor usage`.
pub async fn usage(
    source: &VendorSource,
    args: UsageArgs,
    csv: bool,
    out: &Output,
) -> Result<(), ApiError> {
    let list: Vec<UsageRecord> = match source.open().await? {
        Source::Local(store) => {
            let filter = UsageFilter {
                key_id: args.key,
                customer: args.customer,
                from_day: args.from,
                to_day: args.to,
            };
            let list = vendor_report::usage(store.as_ref(), &filter).await;
            store.close().await;
            list?
        }
        Source::Remote(link) => {
            let path = format!(
                "/v1/admin/usage{}",
                query(&[
                    ("customer", &args.customer),
                    ("key_id", &args.key),
                    ("from", &args.from),
                    ("to", &args.to),
                ])
            );
            link.call(&path, None, "usage reports").await?
        }
    };
    if csv {
        print!("{}", vendor_report::usage_csv(&list));
        return Ok(());
    }
    out.result(&list, || vendor_report::usage_text(&list));
    Ok(())
}

/// `volact vendor revoke`.
pub async fn revoke(
    source: &VendorSource,
    kind: RevokedKind,
    id: &str,
    reason: Option<String>,
    out: &Output,
) -> Result<(), ApiError> {
    let answer: serde_json::Value = match source.open().await? {
        Source::Local(store) => {
            let sequence =
                volact_vendor::ledger::revoke(store.as_ref(), kind, id, reason.as_deref()).await;
            store.close().await;
            serde_json::json!({ "revoked": id, "kind": kind, "sequence": sequence? })
        }
        Source::Remote(link) => {
            let what = match kind {
                RevokedKind::HostKey => "host-keys",
                RevokedKind::Host => "hosts",
                RevokedKind::Delegation => "delegations",
            };
            let path = format!(
                "/v1/admin/{what}/{}/revoke",
                volact_host::dashboard::url_encode(id)
            );
            let body = serde_json::json!({ "reason": reason });
            link.post(&path, &body, "a revocation").await?
        }
    };
    out.result(&answer, || {
        format!(
            "Revoked {} {id}; the revocation list is now at sequence {}.\n",
            kind.as_str(),
            answer["sequence"]
        )
    });
    Ok(())
}
