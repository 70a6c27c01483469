//! Client commands: install-key, set-host, clear-host, set-domain, activate, status,
//! expiry, agent. Each reads the state file, acts, and saves it.

use crate::cli::ClientCommand;
use crate::host_cmd::read_bundle;
use crate::output::{Output, init_logging};
use jiff::Timestamp;
use std::path::PathBuf;
use volact_client::default_state_path;
use volact_core::license::Tamper;
use volact_proto::{ApiError, ErrorCode};
use volact_sdk::License;

/// A "not yet" from a one-shot `activate`: the message also says what happens next,
/// since this command does not retry (an agent, if one runs, does).
fn one_shot_not_yet(mut e: ApiError) -> ApiError {
    if e.code == ErrorCode::CountInsufficient {
        let when = e
            .details
            .get("retry_after")
            .and_then(|v| v.as_str())
            .map(|t| format!(" from {t}"))
            .unwrap_or_default();
        e.message = format!(
            "{}.\nThis command does not try again: run `volact activate`{when}, or leave `volact agent` running, which tries by itself",
            e.message
        );
    }
    e
}

/// `status` (`dli`) and, verbose, `dlv`.
fn status(
    license: &License,
    now: Timestamp,
    verbose: bool,
    discovery: &crate::dns_cmd::DiscoveryFlags,
    out: Output,
) -> Result<(), ApiError> {
    let mut status = license.status_at(now)?;
    if let Some(addr) = discovery.options()?.dns_server {
        status = status.with_dns_server(addr);
    }
    // What a product runs while its licence runs out: the check notes the clock, so a
    // clock set back afterwards is seen.
    license.check();
    out.result(&status, || status.render_text(verbose));
    Ok(())
}

/// Runs a client command.
pub async fn run(
    cmd: ClientCommand,
    state: Option<PathBuf>,
    out: Output,
    discovery: &crate::dns_cmd::DiscoveryFlags,
) -> Result<(), ApiError> {
    let path = match state {
        Some(p) => p,
        None => default_state_path()?,
    };
    let now = volact_engine::whole_seconds(Timestamp::now());
    // The same API a vendor's product embeds; the `volact` command is no one vendor's
    // product, so it trusts the bundle installed with the setup key.
    let options = match discovery_needed(&cmd) {
        true => discovery.options()?,
        false => Default::default(),
    };
    let license = License::for_state_file(&path, Some(volact_sdk::machine_name()), options);
    match cmd {
        ClientCommand::InstallKey { key, vendor, .. } => {
            let bundle = vendor.as_deref().map(read_bundle).transpose()?;
            let report = license.install_key_with(&key, bundle)?;
            out.result(&report, || {
                let resealed = match report.resealed {
                    None => "",
                    Some(Tamper::OtherMachine) => {
                        "\nThe state came from another machine; it is sealed on this one now, and its ticket was dropped: activate to be licensed here."
                    }
                    Some(Tamper::Edited) => {
                        "\nThe state had been changed outside volact; it is sealed again, keeping the client id, but with no initial grace and no rearms left: activate now."
                    }
                };
                format!(
                    "Installed setup key {} for {} ({}).\nClient id: {}{}{resealed}\nNext: volact set-host HOST[:PORT], then volact activate\n",
                    report.setup_key,
                    report.product_name,
                    report.product,
                    report.client_id,
                    if report.ticket_dropped && report.resealed.is_none() { "\nThe ticket of the previous product was dropped." } else { "" }
                )
            });
        }
        ClientCommand::SetHost { host, .. } => {
            let pinned = license.set_host(&host)?;
            out.result(&serde_json::json!({ "pinned_host": pinned }), || {
                format!(
                    "Host pinned to {pinned}; DNS discovery is off until `volact clear-host`.\n"
                )
            });
        }
        ClientCommand::ClearHost { .. } => {
            license.clear_host()?;
            out.result(&serde_json::json!({ "pinned_host": null }), || {
                "Pinned host cleared; the client will use DNS discovery.\n".into()
            });
        }
        ClientCommand::SetDomain { domain, .. } => {
            let d = license.set_domain(&domain)?;
            out.result(&serde_json::json!({ "domain": d }), || {
                format!("Discovery domain set to {d} (_volact._tcp.{d}).\n")
            });
        }
        ClientCommand::Activate { .. } => {
            let outcome = license.activate_now().map_err(one_shot_not_yet)?;
            out.result(&outcome, || {
                format!(
                    "Product activated successfully by host {} (count {} of {}).\nValid until {}; renews after {}.\n",
                    outcome.host,
                    outcome.ticket.count,
                    outcome.ticket.minimum,
                    outcome.ticket.valid_until,
                    outcome.ticket.renew_after
                )
            });
        }
        // `dlv` is `status --verbose`, as slmgr's /dlv is the verbose /dli.
        ClientCommand::Dlv { .. } => status(&license, now, true, discovery, out)?,
        ClientCommand::Status { verbose, .. } => status(&license, now, verbose, discovery, out)?,
        ClientCommand::Expiry { .. } => {
            let e = license.expiry_at(now)?;
            license.check();
            out.result(&e, || format!("{}\n", e.text));
        }
        ClientCommand::Rearm { .. } => {
            let report = license.rearm()?;
            out.result(&report, || {
                format!(
                    "New client id {} (was {}); the initial grace starts again. Rearm {} of the {} allowed.\nNext: volact activate\n",
                    report.client_id, report.old_client_id, report.rearms, report.rearm_limit
                )
            });
        }
        ClientCommand::Agent { .. } => {
            init_logging("text")?;
            tracing::info!(state = %path.display(), "agent running; renews on schedule until Ctrl-C");
            let renewal = license.start_renewal()?;
            crate::host_cmd::wait_for_shutdown().await;
            tracing::info!("agent stopping");
            renewal.stop();
        }
        ClientCommand::HostCache { switch, .. } => {
            crate::dns_cmd::host_cache(&path, &switch, out)?;
        }
        ClientCommand::SetDnsServer { server, .. } => {
            crate::dns_cmd::set_dns_server(&path, &server, out)?;
        }
        ClientCommand::ClearDnsServer { .. } => crate::dns_cmd::clear_dns_server(&path, out)?,
    }
    Ok(())
}

/// Whether `cmd` talks to hosts, so that its discovery flags must be valid.
fn discovery_needed(cmd: &ClientCommand) -> bool {
    matches!(
        cmd,
        ClientCommand::Activate { .. } | ClientCommand::Agent { .. }
    )
}
