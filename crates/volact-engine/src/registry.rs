//! The host's row in the store's registry of hosts: who it is, where it serves, which
//! version, and when it was last seen, refreshed every few seconds. Several hosts on one
//! PostgreSQL database see each other there (and an operator sees a host that stopped).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use volact_store::HostRecord;

use crate::engine::Engine;

/// How often a host refreshes its row: "last seen" is at most this old for a live host.
pub const REGISTER_EVERY: Duration = Duration::from_secs(5);

/// The task refreshing the host's row; stops when dropped.
#[derive(Debug)]
pub struct Registration {
    task: JoinHandle<()>,
}

/// This host's row as of now.
pub fn record(engine: &Engine, listen_urls: &[String]) -> HostRecord {
    HostRecord {
        host_id: engine.host_id().to_owned(),
        name: crate::dns::config::machine_host_name().unwrap_or_else(|| "unknown".into()),
        listen_urls: listen_urls.to_vec(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        last_seen: engine.now().as_second(),
    }
}

impl Registration {
    /// Registers the host now and every [`REGISTER_EVERY`] after, on the current runtime.
    /// A failed write is logged and retried at the next tick: the registry is for
    /// people, and must never stop a host from serving.
    pub fn start(engine: Arc<Engine>, listen_urls: Vec<String>) -> Registration {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REGISTER_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let row = record(&engine, &listen_urls);
                match engine.store().register_host(&row).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("the host is registered in the store again");
                    }
                    Ok(()) => {}
                    // Said once per outage, not every five seconds.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "could not register the host in the store; retrying every {}s", REGISTER_EVERY.as_secs());
                    }
                    Err(_) => {}
                }
            }
        });
        Registration { task }
    }

    /// Stops refreshing.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}
