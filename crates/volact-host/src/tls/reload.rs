//! Reloading the certificate without a restart: on SIGHUP, and when the files' size or
//! modification time changes (polled, so a renewal tool need not know the host's pid).
//! A new certificate that does not load leaves the old one in force, with an error
//! logged once per change.

use super::certs::{CurrentCert, fingerprint, load};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What is noticed of a file: its size and modification time (or that it is missing).
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Called with a newly loaded certificate (to update `serving.json`, for instance).
pub type OnReload = Box<dyn Fn(&Arc<CertifiedKey>) + Send + Sync>;

/// Watches `cert_file` and `key_file` and swaps `current` when they change or on SIGHUP,
/// until the returned task is aborted.
pub fn spawn(
    current: Arc<CurrentCert>,
    cert_file: PathBuf,
    key_file: PathBuf,
    on_reload: OnReload,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = (stamp(&cert_file), stamp(&key_file));
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let why = tokio::select! {
                _ = tick.tick() => {
                    let now = (stamp(&cert_file), stamp(&key_file));
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "the files changed"
                }
                () = signalled => "SIGHUP",
            };
            reload(&current, &cert_file, &key_file, why, &on_reload);
        }
    })
}

/// Loads the files into `current`, or logs why not and keeps the old certificate.
pub fn reload(
    current: &CurrentCert,
    cert_file: &Path,
    key_file: &Path,
    why: &str,
    on_reload: &OnReload,
) {
    match load(cert_file, key_file) {
        Ok(key) => {
            let old = fingerprint(&current.get());
            let new = fingerprint(&key);
            if old == new {
                tracing::debug!("TLS certificate reloaded ({why}): unchanged, SHA-256 {new}");
                return;
            }
            current.set(key.clone());
            tracing::info!(
                fingerprint = %new,
                previous = %old,
                "TLS certificate reloaded ({why}): new connections get SHA-256 {new} (was {old})"
            );
            on_reload(&key);
        }
        Err(e) => {
            tracing::error!(
                code = %e.code,
                "TLS certificate not reloaded ({why}), the previous one stays in force: {}",
                e.message
            );
        }
    }
}
