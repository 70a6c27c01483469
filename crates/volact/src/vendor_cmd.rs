//! `volact vendor …` commands.

use crate::cli::VendorCommand;
use crate::output::Output;
use jiff::Timestamp;
use std::fmt::Write as _;
use volact_core::delegation::Scope;
use volact_proto::{ApiError, ErrorCode, HostActivationRequest};
use volact_vendor::dir::{HostKeySpec, VendorDir};

pub use volact_vendor::dir::parse_date;

/// The warning for a product a host key's seat cap keeps from ever activating.
fn unreachable_warning(u: &volact_core::host_key::UnreachableProduct) -> String {
    format!(
        "warning: {} ({}) needs a count of {} but this key allows {} seats: hosts with this key can never activate it",
        u.product_name, u.product, u.minimum, u.seats
    )
}

/// Runs a vendor command.
pub async fn run(cmd: VendorCommand, out: Output, log_format: &str) -> Result<(), ApiError> {
    let now = volact_engine::whole_seconds(Timestamp::now());
    match cmd {
        VendorCommand::Init { dir } => {
            let pair = VendorDir::new(&dir).init()?;
            let report =
                serde_json::json!({ "dir": dir, "root_public_key": pair.public().to_paserk() });
            out.result(&report, || {
                format!(
                    "Vendor root key created in {} (root.key, mode 0600: keep it offline).\nRoot public key: {}\nNext: volact vendor catalog --dir {} --from catalog.toml\n",
                    dir.display(),
                    pair.public().to_paserk(),
                    dir.display()
                )
            });
        }
        VendorCommand::Catalog { dir, from } => {
            let report = VendorDir::new(&dir).sign_catalog_file(&from, now)?;
            out.result(&report, || {
                let mut t = format!("Catalog version {} signed. Setup keys:\n", report.version);
                for p in &report.catalog.products {
                    let _ = writeln!(
                        t,
                        "  {:<28} {}  ({}, minimum {})",
                        p.id, p.setup_key, p.application, p.minimum_count
                    );
                }
                t
            });
        }
        VendorCommand::HostKey {
            source,
            customer,
            group,
            seats,
            expires,
            max_hosts,
            max_activations,
            usage_reports,
            signing,
        } => {
            let expires = expires.as_deref().map(parse_date).transpose()?;
            let spec = HostKeySpec {
                customer,
                group,
                seats,
                expires,
                max_hosts,
                max_activations,
                usage_reports,
            };
            let issued = match source.open().await? {
                crate::vendor_admin_cmd::Source::Remote(link) => {
                    if signing.is_some() {
                        return Err(ApiError::bad_request(
                            "signing",
                            "the service signs with its own key; --signing is for --dir",
                        ));
                    }
                    let body = serde_json::json!({
                        "customer": spec.customer,
                        "group": spec.group,
                        "seats": spec.seats,
                        "expires": spec.expires,
                        "max_hosts": spec.max_hosts,
                        "max_activations": spec.max_activations,
                        "usage_reports": spec.usage_reports,
                    });
                    let answer: serde_json::Value = link
                        .post("/v1/admin/host-keys", &body, "a host key")
                        .await?;
                    let unreachable =
                        serde_json::from_value(answer["unreachable_products"].clone())
                            .unwrap_or_default();
                    let key = serde_json::from_value(answer["claims"].clone()).map_err(|e| {
                        ApiError::new(
                            ErrorCode::HostUnreachable,
                            format!("the service answered something that is not a host key: {e}"),
                        )
                    })?;
                    let token = answer["host_key"].as_str().unwrap_or_default().to_owned();
                    (token, key, unreachable)
                }
                crate::vendor_admin_cmd::Source::Local(store) => {
                    let dir = source.dir.clone().unwrap_or_default();
                    let issued = VendorDir::new(&dir).host_key(
                        spec,
                        now,
                        signing.map(volact_vendor::dir::SigningDir::new).as_ref(),
                    );
                    let recorded = match &issued {
                        Ok((token, key, _)) => {
                            volact_vendor::ledger::record_host_key(store.as_ref(), token, key).await
                        }
                        Err(_) => Ok(()),
                    };
                    store.close().await;
                    recorded?;
                    issued?
                }
            };
            let (token, key, unreachable): (
                String,
                volact_core::host_key::HostKey,
                Vec<volact_core::host_key::UnreachableProduct>,
            ) = issued;
            // The key is printed on stdout (often redirected into a file), so the warning
            // goes to stderr where the vendor sees it, and into the JSON for programs.
            if !out.json {
                for u in &unreachable {
                    eprintln!("{}", unreachable_warning(u));
                }
            }
            out.result(
                &serde_json::json!({
                    "host_key": token,
                    "claims": key,
                    "unreachable_products": unreachable,
                }),
                || format!("{token}\n"),
            );
        }
        VendorCommand::Delegate {
            dir,
            out: target,
            days,
            scope,
        } => {
            let scope: Vec<Scope> = if scope.is_empty() {
                Scope::ALL.to_vec()
            } else {
                Scope::ALL
                    .into_iter()
                    .filter(|s| scope.iter().any(|given| given == s.as_str()))
                    .collect()
            };
            let delegation = VendorDir::new(&dir).delegate(&target, days, &scope, now)?;
            out.result(&delegation, || {
                format!(
                    "Signing key {} certified for {} until {} ({}).\nKey and delegation written to {}; give that directory to the activation service and keep {} (the root key) offline.\n",
                    delegation.jti,
                    scope.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    delegation.exp,
                    delegation.signing_public_key,
                    target.display(),
                    dir.display()
                )
            });
        }
        VendorCommand::ActivateHost {
            dir,
            days,
            signing,
            request,
        } => {
            let bytes = std::fs::read(&request).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!("cannot read {}: {e}", request.display()),
                )
            })?;
            let req: HostActivationRequest = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{} is not a host activation request: {e}",
                        request.display()
                    ),
                )
            })?;
            let signing = signing.map(volact_vendor::dir::SigningDir::new);
            let flags = volact_vendor::service::config::ServiceFlags::default();
            let store = volact_vendor::ledger::open_store(&dir, &flags).await?;
            let now = volact_core::util::whole_seconds(now);
            let answer = volact_vendor::ledger::activate(
                &VendorDir::new(&dir),
                store.as_ref(),
                signing.as_ref(),
                &req,
                now,
                days,
            )
            .await;
            store.close().await;
            let response = answer?;
            // The answer is a file the host installs, so it is JSON whatever --json says.
            match serde_json::to_string_pretty(&response) {
                Ok(s) => println!("{s}"),
                Err(e) => return Err(ApiError::new(ErrorCode::Internal, e.to_string())),
            }
        }
        VendorCommand::Serve {
            dir,
            config,
            listen,
            signing,
            days,
            attempts_per_minute,
            tls_cert,
            tls_key,
            storage_url,
        } => {
            crate::output::init_logging(log_format)?;
            let options = volact_vendor::service::ServeOptions {
                dir,
                flags: volact_vendor::service::config::ServiceFlags {
                    config,
                    listen,
                    signing,
                    days,
                    attempts_per_minute,
                    tls_cert,
                    tls_key,
                    storage_url,
                },
            };
            let token_file = VendorDir::new(&options.dir).admin_token_path();
            volact_vendor::service::serve(options, |url, fingerprint| {
                let ready = serde_json::json!({
                    "url": url,
                    "tls_fingerprint": fingerprint,
                    "admin_token_file": token_file,
                });
                out.result(&ready, || match fingerprint {
                    Some(f) => format!(
                        "Vendor service listening on {url}\nTLS certificate fingerprint (SHA-256): {f}\nAdmin token: {}\n",
                        token_file.display()
                    ),
                    None => format!(
                        "Vendor service listening on {url} (plain HTTP, this machine only)\nAdmin token: {}\n",
                        token_file.display()
                    ),
                });
            })
            .await?;
        }
        VendorCommand::Customers {
            source,
            customer,
            csv,
        } => crate::vendor_admin_cmd::customers(&source, customer, csv, &out).await?,
        VendorCommand::Usage {
            source,
            customer,
            key,
            from,
            to,
            csv,
        } => {
            let args = crate::vendor_admin_cmd::UsageArgs {
                customer,
                key,
                from,
                to,
            };
            crate::vendor_admin_cmd::usage(&source, args, csv, &out).await?;
        }
        VendorCommand::Revoke {
            source,
            host_key,
            host,
            delegation,
            reason,
        } => {
            use volact_store::vendor::RevokedKind;
            let (kind, id) = match (host_key, host, delegation) {
                (Some(id), _, _) => (RevokedKind::HostKey, id),
                (_, Some(id), _) => (RevokedKind::Host, id),
                (_, _, Some(id)) => (RevokedKind::Delegation, id),
                (None, None, None) => {
                    return Err(ApiError::bad_request(
                        "what",
                        "give --host-key, --host or --delegation",
                    ));
                }
            };
            crate::vendor_admin_cmd::revoke(&source, kind, &id, reason, &out).await?;
        }
        VendorCommand::Revocations { source, signing } => {
            let token = match source.open().await? {
                crate::vendor_admin_cmd::Source::Remote(link) => {
                    link.call::<volact_proto::RevocationsResponse>(
                        "/v1/revocations",
                        None,
                        "a revocation list",
                    )
                    .await?
                    .revocation_list
                }
                crate::vendor_admin_cmd::Source::Local(store) => {
                    let dir = source.dir.clone().unwrap_or_default();
                    let signing = signing.map(volact_vendor::dir::SigningDir::new);
                    let token = volact_vendor::service::signed_list(
                        &VendorDir::new(&dir),
                        store.as_ref(),
                        signing.as_ref(),
                        volact_core::util::whole_seconds(now),
                    )
                    .await;
                    store.close().await;
                    token?
                }
            };
            println!("{token}");
        }
        VendorCommand::Export { dir } => {
            let bundle = VendorDir::new(&dir).export()?;
            match serde_json::to_string_pretty(&bundle) {
                Ok(s) => println!("{s}"),
                Err(e) => return Err(ApiError::new(ErrorCode::Internal, e.to_string())),
            }
        }
    }
    Ok(())
}
