//! The volact fleet simulator and load tool.
//!
//! The simulator plays a fleet of machines against the real activation engine of
//! `volact-host` and its real SQLite store, with a hand-set clock: months of fleet time
//! run in seconds, and the same scenario and seed give byte-identical output. The load
//! tool ([`load`]) sends real activation requests over HTTP to a host on this machine.

pub mod chart;
pub mod fleet;
pub mod host;
pub mod load;
pub mod report;
pub mod run;
pub mod scenario;

pub use report::Report;
pub use run::{Options, run, run_blocking};
pub use scenario::{Scenario, Verify};

use std::path::Path;
use volact_proto::{ApiError, ErrorCode};

/// Writes `timeline.csv`, `timeline.json`, `chart.svg` and `summary.txt` into `dir`
/// (created if missing) and returns their paths.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<Vec<std::path::PathBuf>, ApiError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let files = [
        ("timeline.csv", report.csv()),
        ("timeline.json", report.json()),
        ("chart.svg", chart::svg(report)),
        ("summary.txt", report.summary()),
    ];
    let mut paths = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        paths.push(path);
    }
    Ok(paths)
}
