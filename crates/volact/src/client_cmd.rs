//! Client commands: install-key, set-host, clear-host, set-domain, activate, status,
//! expiry, agent. Each reads the state file, acts, and saves it.

use crate::cli::ClientCommand;
use crate::host_cmd::read_bundle;
use crate::output::{Output, init_logging};
use jiff::Timestamp;
use std::path::PathBuf;
use volact_client::{ClientState, default_state_path};
use volact_core::license::Tamper;
use volact_proto::{ApiError, ErrorCode};

/// The machine's name for the host's inventory: `VOLACT_MACHINE_NAME` when set (tests
/// and simulations play many machines on one), else the system's host name.
fn machine_name() -> String {
    if let Ok(name) = std::env::var("VOLACT_MACHINE_NAME") {
        return name;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Notes the clock in the state after `status` or `expiry`: what a product runs while its
/// licence runs out, so a clock set back afterwards is seen. Best effort: a read-only
/// state file must not make `status` fail, and the reading only strengthens a later
/// rollback check; it never grants anything.
fn note_clock(path: &std::path::Path, now: Timestamp) {
    if let Err(e) = volact_client::note_clock(path, now) {
        tracing::debug!(code = %e.code, "could not note the clock in the client state: {}", e.message);
    }
}

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

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `status` (`dli`) and, verbose, `dlv`.
fn status(
    path: &std::path::Path,
    now: Timestamp,
    verbose: bool,
    discovery: &crate::dns_cmd::DiscoveryFlags,
    out: Output,
) -> Result<(), ApiError> {
    let s = ClientState::load(path)?;
    let mut status = volact_client::status(&s, now);
    if let Some(addr) = discovery.options()?.dns_server {
        status = status.with_dns_server(addr);
    }
    note_clock(path, now);
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
    match cmd {
        ClientCommand::InstallKey { key, vendor, .. } => {
            let bundle = vendor.as_deref().map(read_bundle).transpose()?;
            let mut s = ClientState::load(&path)?;
            let report = volact_client::install_key(&mut s, &key, bundle, now, || {
                uuid::Uuid::new_v4().hyphenated().to_string()
            })?;
            s.save(&path)?;
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
            let mut s = ClientState::load(&path)?;
            let pinned = volact_client::set_host(&mut s, &host)?;
            s.save(&path)?;
            out.result(&serde_json::json!({ "pinned_host": pinned }), || {
                format!(
                    "Host pinned to {pinned}; DNS discovery is off until `volact clear-host`.\n"
                )
            });
        }
        ClientCommand::ClearHost { .. } => {
            let mut s = ClientState::load(&path)?;
            volact_client::clear_host(&mut s);
            s.save(&path)?;
            out.result(&serde_json::json!({ "pinned_host": null }), || {
                "Pinned host cleared; the client will use DNS discovery.\n".into()
            });
        }
        ClientCommand::SetDomain { domain, .. } => {
            let mut s = ClientState::load(&path)?;
            let d = volact_client::set_domain(&mut s, &domain)?;
            s.save(&path)?;
            out.result(&serde_json::json!({ "domain": d }), || {
                format!("Discovery domain set to {d} (_volact._tcp.{d}).\n")
            });
        }
        ClientCommand::Activate { .. } => {
            let outcome = volact_client::activate_and_save_with(
                &path,
                now,
                &machine_name(),
                nonce(),
                &discovery.options()?,
            )
            .await
            .map_err(one_shot_not_yet)?;
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
        ClientCommand::Dlv { .. } => status(&path, now, true, discovery, out)?,
        ClientCommand::Status { verbose, .. } => status(&path, now, verbose, discovery, out)?,
        ClientCommand::Expiry { .. } => {
            let s = ClientState::load(&path)?;
            let e = volact_client::expiry(&s, now);
            note_clock(&path, now);
            out.result(&e, || format!("{}\n", e.text));
        }
        ClientCommand::Rearm { .. } => {
            let mut s = ClientState::load(&path)?;
            let report = volact_client::rearm(&mut s, now, || {
                uuid::Uuid::new_v4().hyphenated().to_string()
            })?;
            s.save(&path)?;
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
            volact_client::run_agent_with(
                &path,
                &machine_name(),
                &discovery.options()?,
                crate::host_cmd::wait_for_shutdown(),
            )
            .await?;
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
