//! The `volact` command: a thin shell that parses the command line, runs one command and
//! prints its result or error (as text, or as JSON with `--json`).

mod admin_cmd;
mod bench_cmd;
mod cli;
mod client_cmd;
mod config_cmd;
mod dns_cmd;
mod host_cmd;
mod output;
mod quickstart;
#[cfg(feature = "bench-seed")]
mod seed_cmd;
mod simulate_cmd;
mod table;
mod vendor;
mod vendor_cmd;

use clap::Parser;
use cli::{Cli, Command};
use output::Output;
use std::process::ExitCode;
use volact_proto::{ApiError, ErrorCode};

fn main() -> ExitCode {
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
    match cli.command {
        Command::Host(cmd) => host_cmd::run(cmd, out, &cli.log_format).await,
        Command::Vendor(cmd) => vendor_cmd::run(cmd, out),
        Command::Simulate(args) => simulate_cmd::run(args, out).await,
        Command::Bench(args) => bench_cmd::run(args, out).await,
        Command::Quickstart { data, listen } => {
            quickstart::run(&data, &listen, out, &cli.log_format).await
        }
        cmd @ (Command::HostCache { .. }
        | Command::SetDnsServer { .. }
        | Command::ClearDnsServer) => dns_cmd::run_client(cmd, cli.state, out),
        other => client_cmd::run(other, cli.state, out, &cli.discovery).await,
    }
}
