//! The bounded fuzz run of CI: builds `fuzz/` with libFuzzer's coverage instrumentation
//! on the stable toolchain (what `cargo fuzz build --sanitizer none` passes to rustc),
//! then runs every target for its share of `VOLACT_FUZZ_SECONDS` (60 s by default) from
//! the committed corpus, and fails on any crash or violated property, naming the input
//! libFuzzer saved. Executions per target and in total are printed.
//!
//! The longer run is this same test with more time (see `fuzz/README.md`):
//! `VOLACT_FUZZ_SECONDS=1200 cargo test -p volact-fuzz --test fuzz_smoke -- --nocapture`.
//!
//! Without a C++ compiler (libFuzzer is C++) the test is skipped loudly, and fails when
//! `VOLACT_REQUIRE_ALL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use volact_fuzz::TARGETS;

/// The flags `cargo fuzz build --sanitizer none` gives rustc, plus the debug assertions
/// and overflow checks it also turns on in release builds.
const RUSTFLAGS: &[&str] = &[
    "--cfg",
    "fuzzing",
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .canonicalize()
        .expect("fuzz/ exists")
}

/// A line that must be seen: straight to the process's stderr, which the test harness
/// does not capture.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn skip_or_fail(why: &str) {
    let line = format!("SKIPPED: {why} — the bounded fuzz run (fuzz_smoke) did not run");
    assert!(
        std::env::var("VOLACT_REQUIRE_ALL").as_deref() != Ok("1"),
        "{line}, but VOLACT_REQUIRE_ALL=1"
    );
    loud(&format!("\n{line}\n"));
}

fn has_cxx() -> bool {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    Command::new(cxx)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

/// Builds every target; the explicit `--target` keeps the instrumentation out of build
/// scripts and proc macros, which run on the host and are not linked with libFuzzer.
fn build(dir: &Path, triple: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let mut command = Command::new(cargo);
    // The variables cargo sets for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, …)
    // would make build scripts that watch them run again, and the build differ from
    // the one README.md shows; CARGO_HOME and cargo's own settings stay.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key == "OUT_DIR"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || matches!(
                key.as_str(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            command.env_remove(key);
        }
    }
    let status = command
        .current_dir(dir)
        .args(["build", "--release", "--bins", "--target", triple])
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env("RUSTFLAGS", RUSTFLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo");
    assert!(status.success(), "the instrumented build of fuzz/ failed");
    loud(&format!(
        "fuzz: instrumented build of fuzz/ took {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    dir.join("target").join(triple).join("release")
}

/// The value of libFuzzer's final statistic `name`.
fn stat(output: &str, name: &str) -> Option<u64> {
    let key = format!("stat::{name}:");
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn bounded_fuzz_run_finds_no_crash() {
    if !has_cxx() {
        skip_or_fail("no C++ compiler for libFuzzer (apt-get install g++)");
        return;
    }
    let seconds: u64 = std::env::var("VOLACT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only = std::env::var("VOLACT_FUZZ_TARGETS").ok();
    let targets: Vec<&str> = TARGETS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x.trim() == *n))
        })
        .collect();
    assert!(!targets.is_empty(), "VOLACT_FUZZ_TARGETS names no target");
    let per_target = (seconds / targets.len() as u64).max(1);
    let dir = fuzz_dir();
    let bin = build(&dir, &host_triple());
    let mut total = 0u64;
    let mut failures = Vec::new();
    for name in &targets {
        // New inputs go to the working corpus (gitignored); the committed seeds are only read.
        let work = dir.join("work").join(name);
        let artifacts = dir.join("artifacts").join(name);
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&artifacts).unwrap();
        let out = Command::new(bin.join(name))
            .arg(&work)
            .arg(dir.join("corpus").join(name))
            .arg(format!("-max_total_time={per_target}"))
            // A second bound, should a target be far faster than expected.
            .arg(format!("-runs={}", per_target.saturating_mul(1_000_000)))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=8192")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run the fuzz target");
        let text = String::from_utf8_lossy(&out.stderr);
        let runs = stat(&text, "number_of_executed_units").unwrap_or(0);
        total += runs;
        let line = format!(
            "fuzz: {name}: {runs} executions in {per_target} s, {}",
            if out.status.success() {
                "no crash"
            } else {
                "FAILED"
            }
        );
        loud(&line);
        if !out.status.success() || runs == 0 {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            loud(&tail.join("\n"));
            failures.push(format!(
                "{name} (exit {:?}; the input is saved under {})",
                out.status.code(),
                artifacts.display()
            ));
        }
    }
    loud(&format!(
        "fuzz: {total} executions in total across {} targets, {} crashes",
        targets.len(),
        failures.len()
    ));
    assert!(failures.is_empty(), "fuzz targets failed: {failures:?}");
}
