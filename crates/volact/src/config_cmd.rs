//! `volact host config check`: resolves the configuration (file, then `VOLACT_…`
//! environment, then flags) and validates it without starting the host.

use crate::cli::{DataDir, ServeFlags};
use crate::output::Output;
use crate::table::table;
use clap::Subcommand;
use volact_engine::config::ConfigEntry;
use volact_engine::data::HostData;
use volact_proto::ApiError;

/// `volact host config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without starting, and print it with where each value
    /// comes from (file, environment, flag or default).
    Check {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        flags: ServeFlags,
    },
}

/// What `config check` reports.
#[derive(Debug, serde::Serialize)]
struct Report {
    valid: bool,
    config_file: String,
    config_file_exists: bool,
    settings: Vec<ConfigEntry>,
}

/// Runs a config command.
pub fn run(cmd: ConfigCommand, out: Output) -> Result<(), ApiError> {
    let ConfigCommand::Check { data, flags } = cmd;
    let host = HostData::new(&data.data);
    let layers = host.config_layers(flags.into())?;
    let config = host.resolve_config(&layers)?;
    if let Some(path) = &config.metrics_token_file {
        volact_host::server::read_metrics_token(path)?;
    }
    let path = host.config_path();
    let report = Report {
        valid: true,
        config_file: path.display().to_string(),
        config_file_exists: path.is_file(),
        settings: layers.report(&config),
    };
    out.result(&report, || {
        let rows: Vec<Vec<String>> = report
            .settings
            .iter()
            .map(|e| vec![e.key.clone(), e.value.clone(), e.source.clone()])
            .collect();
        format!(
            "Configuration of {} (file {}{}; then VOLACT_… environment variables, then flags):\n\n{}\nThe configuration is valid.\n",
            data.data.display(),
            report.config_file,
            if report.config_file_exists {
                ""
            } else {
                ", absent"
            },
            table(&["SETTING", "VALUE", "FROM"], &rows)
        )
    });
    Ok(())
}
