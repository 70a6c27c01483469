//! `volact simulate`: runs a fleet scenario against the real rules and storage with a
//! virtual clock, writes the timeline (CSV, JSON), the chart (SVG) and a summary.

use crate::output::Output;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use volact_proto::{ApiError, ErrorCode};
use volact_sim::{Options, Scenario, Verify};

/// Flags of `volact simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Scenario file (TOML). Without one, a default fleet of --clients machines.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: Option<PathBuf>,
    /// Directory for timeline.csv, timeline.json, chart.svg and summary.txt
    /// (default: sim-out/NAME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of every random choice (default: the scenario's, or 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Machines of the default fleet (only without a scenario file).
    #[arg(long, conflicts_with = "scenario")]
    pub clients: Option<u32>,
    /// Days to simulate (overrides the scenario's).
    #[arg(long)]
    pub days: Option<u32>,
    /// Send every request through the real HTTP server on 127.0.0.1 (slower).
    #[arg(long)]
    pub http: bool,
    /// Which answers the simulated clients verify along the vendor's chain.
    #[arg(long, value_enum)]
    pub verify: Option<VerifyArg>,
    /// Directory for the temporary host data (default /dev/shm, else the temp dir).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// `--verify`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerifyArg {
    /// Every answer.
    All,
    /// Each machine's first ticket and one answer in a hundred.
    Sample,
    /// None.
    None,
}

/// Runs `volact simulate`.
pub async fn run(args: SimulateArgs, out: Output) -> Result<(), ApiError> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default_fleet(args.clients.unwrap_or(100), args.days.unwrap_or(90)),
    };
    if let Some(days) = args.days {
        scenario.days = days;
    }
    let options = Options {
        seed: args.seed,
        http: args.http,
        work_dir: args.work_dir.clone(),
        verify: args.verify.map(|v| match v {
            VerifyArg::All => Verify::All,
            VerifyArg::Sample => Verify::Sample,
            VerifyArg::None => Verify::None,
        }),
    };
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(u64::from(scenario.days)), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] day {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("simulating {}", scenario.name));
    let started = std::time::Instant::now();
    let progress = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        volact_sim::run_blocking(&scenario, &options, &mut |day, _| {
            progress.set_position(u64::from(day));
        })
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the simulation failed: {e}")))?;
    bar.finish_and_clear();
    let report = report?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sim-out").join(&report.scenario));
    let files = volact_sim::write_outputs(&report, &dir)?;
    // Wall-clock time goes to stderr only: the files must not depend on it.
    eprintln!(
        "simulated {} days in {:.2} s",
        report.days,
        started.elapsed().as_secs_f64()
    );
    let json = serde_json::json!({
        "scenario": report.scenario,
        "seed": report.seed,
        "groups": report.groups,
        "totals": report.totals,
        "files": files,
    });
    out.result(&json, || {
        let mut text = report.summary();
        text.push_str(&format!("Wrote {}.\n", dir.display()));
        text
    });
    Ok(())
}
