//! The `volact` command: a thin shell that parses the command line, runs one command and
//! prints its result or error (as text, or as JSON with `--json`).

mod admin_cmd;
mod bench_cmd;
mod cli;
mod client_cmd;
mod config_cmd;
mod dns_cmd;
mod host_cmd;
mod migrate_cmd;
mod output;
mod quickstart;
#[cfg(feature = "bench-seed")]
mod seed_cmd;
mod simulate_cmd;
mod table;
mod vendor_admin_cmd;
mod vendor_cmd;
mod vendor_link;
mod vendor_renew;
mod vendor_revocations;
mod vendor_usage;

use clap::Parser;
use cli::{Cli, ClientCommand, Command, LeadingClientFlags};
use output::Output;
use std::process::ExitCode;
use volact_proto::{ApiError, ErrorCode};

fn main() -> ExitCode {
    volact_client::tls::install_default_provider();
    let cli = Cli::parse();
    let out = Output { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&ApiError::new(
                ErrorCode::Internal,
                format!("cannot start the async runtime: {e}"),
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: Output) -> Result<(), ApiError> {
    let Cli {
        log_format,
        client: leading,
        command,
        ..
    } = cli;
    let given = leading.given();
    if !given.is_empty() && !matches!(command, Command::Client(_)) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "{} only applies to client commands (install-key, activate, status, …), not to this one",
                given.join(", ")
            ),
        ));
    }
    match command {
        Command::Client(cmd) => run_client(cmd, &leading, out).await,
        Command::Host(cmd) => host_cmd::run(cmd, out, &log_format).await,
        Command::Vendor(cmd) => vendor_cmd::run(cmd, out, &log_format).await,
        Command::Simulate(args) => simulate_cmd::run(args, out).await,
        Command::Bench(args) => bench_cmd::run(args, out).await,
        Command::Quickstart {
            data,
            listen,
            storage,
        } => quickstart::run(&data, &listen, storage, out, &log_format).await,
    }
}

async fn run_client(
    command: ClientCommand,
    leading: &LeadingClientFlags,
    out: Output,
) -> Result<(), ApiError> {
    let (own_state, own_discovery) = command.flags();
    // A flag before the command beats the command's own, which may come from the
    // environment (`VOLACT_STATE`, `VOLACT_DNS_SERVER`).
    let state = leading.state.clone().or_else(|| own_state.state.clone());
    let own = own_discovery.cloned().unwrap_or_default();
    let discovery = dns_cmd::DiscoveryFlags {
        dns_server: leading.dns_server.clone().or(own.dns_server),
        no_host_cache: leading.no_host_cache || own.no_host_cache,
        connect_timeout: leading.connect_timeout.clone().or(own.connect_timeout),
        tls_fingerprint: own.tls_fingerprint,
        ca_file: own.ca_file,
    };
    client_cmd::run(command, state, out, &discovery).await
}
