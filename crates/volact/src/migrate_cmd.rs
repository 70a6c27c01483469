//! `volact host migrate-store --to URL`: copies the host's store to another (SQLite to
//! PostgreSQL, typically) and prints what it copied per table.

use std::path::PathBuf;

use clap::Args;
use volact_engine::config::RawConfig;
use volact_engine::data::HostData;
use volact_engine::migrate::{self, Copied};
use volact_engine::storage::{
    self, OpenMode, PASSWORD_ENV, StorageOptions, StorageUrl, open_configured, open_store_with,
};
use volact_proto::{ApiError, ErrorCode};

use crate::cli::{DataDir, StorageFlag};
use crate::output::Output;
use crate::table::table;

/// `volact host migrate-store`.
#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    #[command(flatten)]
    data: DataDir,
    /// The source, when not the host's configured store.
    #[command(flatten)]
    storage: StorageFlag,
    /// The store to copy into, e.g. postgres://volact@db.example:5432/volact (its
    /// password from --to-password-file, VOLACT_STORAGE_PASSWORD or PGPASSWORD).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Copy into a store that already holds data: clients, clone flags and totals are
    /// replaced by this host's, events already there kept (a stopped copy can be rerun).
    #[arg(long)]
    force: bool,
    /// Certificate authorities for TLS to the target database (verify-full).
    #[arg(long, value_name = "FILE")]
    to_ca_file: Option<PathBuf>,
    /// A file whose first line is the target database's password.
    #[arg(long, value_name = "FILE")]
    to_password_file: Option<PathBuf>,
}

/// Runs the copy.
pub async fn run(args: MigrateStoreArgs, out: Output) -> Result<(), ApiError> {
    let to = args.to.trim().to_owned();
    if storage::url_has_password(&to) {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "--to `{}` holds a password, which every user of this machine can read in the process list; \
                 give the URL without it and the password in --to-password-file or the environment variable {PASSWORD_ENV}",
                storage::redact(&to)
            ),
            serde_json::json!({ "setting": "to" }),
        ));
    }
    let host = HostData::new(&args.data.data);
    let config = host.config(args.storage.into())?;
    let source_url = StorageUrl::parse(&config.storage_url, host.dir())?;
    if StorageUrl::parse(&to, host.dir())? == source_url {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "--to names the host's own store ({}); give another",
                storage::redact(&to)
            ),
        ));
    }
    // No host may write to the source meanwhile: its copy would miss those writes.
    let _lock = host.lock("migrating the store")?;
    let source = open_configured(&config, host.dir(), OpenMode::Direct).await?;
    let options = StorageOptions {
        ca_file: args.to_ca_file,
        password_file: args.to_password_file,
        password_env: RawConfig::from_env(|name| std::env::var(name).ok())
            .storage
            .and_then(|s| s.password_env),
        ..StorageOptions::default()
    };
    let target = match open_store_with(&to, &options, host.dir(), OpenMode::Direct).await {
        Ok(target) => target,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let copied = migrate::copy(source.as_ref(), target.as_ref(), args.force).await;
    source.close().await;
    target.close().await;
    let copied = copied?;
    let report = Report {
        source: storage::redact(&config.storage_url),
        target: storage::redact(&to),
        copied,
    };
    out.result(&report, || text(&report));
    Ok(())
}

/// What `migrate-store` prints.
#[derive(Debug, serde::Serialize)]
struct Report {
    source: String,
    target: String,
    copied: Copied,
}

fn text(r: &Report) -> String {
    let c = &r.copied;
    let rows: Vec<Vec<String>> = [
        ("clients", c.clients),
        ("events", c.events),
        ("clone_flags", c.clone_flags),
        ("result_totals", c.result_totals),
    ]
    .iter()
    .map(|(name, t)| {
        vec![
            (*name).to_owned(),
            t.source.to_string(),
            t.written.to_string(),
        ]
    })
    .collect();
    format!(
        "Copied {} to {}:\n\n{}\nNext: stop using the old store: set [storage] url = \"{}\" in volact.toml (the password in [storage] password_file or {PASSWORD_ENV}), then start the host.\n",
        r.source,
        r.target,
        table(&["TABLE", "IN SOURCE", "WRITTEN"], &rows),
        r.target
    )
}
