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
    /// `[limits]`: connection timeouts and caps as resolved (caps left out are derived
    /// from the file-descriptor limit when the host starts).
    limits: serde_json::Value,
    /// `[rate_limits]`: limits on new clients as resolved.
    rate_limits: volact_core::ratelimit::NewClientLimits,
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
    let l = &config.limits;
    let limits = serde_json::json!({
        "header_read_timeout_secs": l.header_read_timeout.as_secs_f64(),
        "body_timeout_secs": l.body_timeout.as_secs_f64(),
        "idle_timeout_secs": l.idle_timeout.as_secs_f64(),
        "max_header_bytes": l.max_header_bytes,
        "max_connections": l.max_connections,
        "max_connections_per_address": l.max_connections_per_address,
        "loopback_reserve": l.loopback_reserve,
    });
    let report = Report {
        tls,
        limits,
        rate_limits: config.rate_limits,
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
            } + &limits_text(&config)
        )
    });
    Ok(())
}

/// `[limits]` and `[rate_limits]` as one paragraph each.
fn limits_text(config: &volact_engine::config::HostConfig) -> String {
    let l = &config.limits;
    let cap = |v: Option<usize>| v.map_or("derived".to_string(), |n| n.to_string());
    let r = &config.rate_limits;
    let rate = |x: &volact_core::ratelimit::Rate| {
        if x.per_minute == 0 {
            "off".to_string()
        } else {
            format!("{}/min, {} at once", x.per_minute, x.burst)
        }
    };
    format!(
        "Connections ([limits]): headers within {:?}, body within {:?}, idle {:?}, heads up to {} bytes; connection caps (derived from the file-descriptor limit at start where not set): total {}, per address {}, loopback reserve {}.\nNew clients ([rate_limits]): {} per address, {} per /24 or /64; loopback {}.\n\n",
        l.header_read_timeout,
        l.body_timeout,
        l.idle_timeout,
        l.max_header_bytes,
        cap(l.max_connections),
        cap(l.max_connections_per_address),
        cap(l.loopback_reserve),
        rate(&r.per_address),
        rate(&r.per_prefix),
        if r.exempt_loopback {
            "exempt"
        } else {
            "limited too"
        },
    )
}
