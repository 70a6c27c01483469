//! `volact bench`: real activation requests over HTTP against a host on this machine,
//! with throughput, latency percentiles and results by code; and, in builds with the
//! `bench-seed` feature only, `volact host seed-clients`, which fills a host's inventory
//! for benchmarks.

use crate::output::Output;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use volact_proto::ApiError;
use volact_sim::load::{self, LoadConfig, LoadReport};

/// Flags of `volact bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The host, e.g. http://127.0.0.1:7688 or https://127.0.0.1:7689 (with
    /// --tls-fingerprint or --ca-file). Only loopback unless --allow-host names it.
    #[arg(long, default_value = "http://127.0.0.1:7688")]
    pub url: String,
    /// Distinct client ids, used round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub clients: u64,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Run this many seconds (default 10; at most 600).
    #[arg(long, value_name = "SECONDS", conflicts_with = "requests")]
    pub duration: Option<f64>,
    /// Send this many requests (at most 50,000,000; the run also stops after 600 s).
    #[arg(long)]
    pub requests: Option<u64>,
    /// The setup key the clients install.
    #[arg(long, env = "VOLACT_SETUP_KEY")]
    pub setup_key: String,
    /// Minimum count the clients ask for (the host applies the larger of this and its own).
    #[arg(long, default_value_t = 1)]
    pub minimum_count: u32,
    /// Fraction of answers to verify (0 to 1).
    #[arg(long, default_value_t = 0.01)]
    pub verify_sample: f64,
    /// The vendor's public bundle, to verify answers along the whole chain (without it,
    /// only the host's signature is checked).
    #[arg(long, value_name = "FILE")]
    pub vendor: Option<PathBuf>,
    /// For an https:// URL: trust exactly the certificate with this SHA-256 fingerprint
    /// (`volact host status` on the host shows it).
    #[arg(long, env = "VOLACT_TLS_FINGERPRINT", value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    /// For an https:// URL: trust certificates issued by the CAs in this PEM file.
    #[arg(long, value_name = "PEM", conflicts_with = "tls_fingerprint")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow this non-loopback host or address as a target.
    #[arg(long, value_name = "ADDR")]
    pub allow_host: Option<String>,
    /// Seed of the client ids (`host seed-clients` reports the seed that renews the
    /// clients it wrote, as `bench_seed`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `volact bench`.
pub async fn run(args: BenchArgs, out: Output) -> Result<(), ApiError> {
    if !(0.0..=1.0).contains(&args.verify_sample) {
        return Err(ApiError::bad_request(
            "verify-sample",
            "must be from 0 to 1",
        ));
    }
    let duration = match args.duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            return Err(ApiError::bad_request(
                "duration",
                "must be a positive number of seconds",
            ));
        }
        Some(d) => Some(Duration::from_secs_f64(
            d.min(load::MAX_DURATION.as_secs_f64()),
        )),
        None => None,
    };
    let root = match &args.vendor {
        Some(path) => Some(crate::host_cmd::read_bundle(path)?.open()?.0),
        None => None,
    };
    let config = LoadConfig {
        url: args.url.clone(),
        clients: args.clients,
        concurrency: args.concurrency,
        duration,
        requests: args.requests,
        setup_key: args.setup_key.clone(),
        minimum_count: args.minimum_count,
        verify_sample: args.verify_sample,
        root,
        allow_host: args.allow_host.clone(),
        seed: args.seed,
        tls: volact_client::tls::TlsTrust::from_flags(
            args.tls_fingerprint.as_deref(),
            args.ca_file.as_deref(),
        )?,
    };
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(&config);
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let report = load::run(config, done).await;
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    out.result(&report, || text(&report));
    Ok(())
}

fn progress_bar(config: &LoadConfig) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(config.requests, ProgressDrawTarget::stderr());
    let template = if config.requests.is_some() {
        "{spinner} [{bar:40}] {pos}/{len} requests ({per_sec}, {elapsed})"
    } else {
        "{spinner} {pos} requests ({per_sec}, {elapsed})"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn ms(us: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1000.0;
    format!("{v:.2} ms")
}

fn text(r: &LoadReport) -> String {
    let results: Vec<String> = r.results.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let verified = if r.verified == 0 {
        "no answers verified".to_string()
    } else if r.verify_failures == 0 {
        format!(
            "{} answers verified ({}), all good",
            r.verified, r.verified_against
        )
    } else {
        format!(
            "{} answers verified ({}): {} FAILED",
            r.verified, r.verified_against, r.verify_failures
        )
    };
    format!(
        "volact bench: {}, {} connections, {} clients\n  requests: {} in {:.2} s = {:.0}/s\n  latency: p50 {}, p90 {}, p99 {}, p99.9 {}, max {}\n  results: {}\n  {verified}\n",
        r.url,
        r.concurrency,
        r.clients,
        r.requests,
        r.seconds,
        r.requests_per_sec,
        ms(r.latency.p50_us),
        ms(r.latency.p90_us),
        ms(r.latency.p99_us),
        ms(r.latency.p999_us),
        ms(r.latency.max_us),
        results.join(", "),
    )
}
