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
    /// `[tls]`: where TLS is served and the certificate's fingerprint, when configured.
    tls: Option<serde_json::Value>,
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
    // A certificate that would not load fails the check, as it would fail `host serve`.
    let tls = match &config.tls.listener {
        Some(l) => {
            let key = volact_host::tls::load(&l.cert_file, &l.key_file)?;
            Some(serde_json::json!({
                "listen": l.listen.to_string(),
                "cert_file": l.cert_file,
                "key_file": l.key_file,
                "fingerprint": volact_host::tls::fingerprint(&key),
                "allow_plain_admin": config.tls.allow_plain_admin,
            }))
        }
        None => None,
    };
    let path = host.config_path();
    let report = Report {
        tls,
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
            "Configuration of {} (file {}{}; then VOLACT_… environment variables, then flags):\n\n{}\n{}The configuration is valid.\n",
            data.data.display(),
            report.config_file,
            if report.config_file_exists {
                ""
            } else {
                ", absent"
            },
            table(&["SETTING", "VALUE", "FROM"], &rows),
            match &report.tls {
                Some(t) => format!(
                    "TLS on {} with {} (SHA-256 {}); plain admin to other machines: {}\n\n",
                    t["listen"].as_str().unwrap_or(""),
                    t["cert_file"].as_str().unwrap_or(""),
                    t["fingerprint"].as_str().unwrap_or(""),
                    if config.tls.allow_plain_admin { "allowed" } else { "refused" }
                ),
                None => "No TLS ([tls] cert_file, key_file): admin API and dashboard on this machine only.\n\n".to_string(),
            }
        )
    });
    Ok(())
}
