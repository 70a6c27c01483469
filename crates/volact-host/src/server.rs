//! Starting and stopping a serving host from its data directory.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volact_engine::clock::Clock;
use volact_engine::config::HostConfig;
use volact_engine::data::{HostData, ServingInfo};
use volact_engine::engine::{Engine, EngineParts};
use volact_engine::storage::{OpenMode, memory_count, open_store};
use volact_proto::{ApiError, ErrorCode};

/// A host that is serving.
pub struct Running {
    data: HostData,
    /// The data directory's lock, released (after the store) when this is dropped.
    _lock: volact_engine::dirlock::DirLock,
    /// The address it listens on (the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The engine, for in-process callers.
    pub engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// Retention, store-backed gauges and the storage probe, in the background.
    pub maintenance: volact_engine::maintenance::Maintenance,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets answered ones finish, and waits.
    pub async fn stop(mut self) -> Result<(), ApiError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.maintenance.stop();
        let _ = self.data.set_serving(None);
        let served = (&mut self.task).await;
        // Applies what waits in the store's journal and releases it, so a host started
        // next on the same directory (in this process or another) owns it at once.
        self.engine.store().close().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::new(
                ErrorCode::Internal,
                format!("the server failed: {e}"),
            )),
            Err(e) => Err(ApiError::new(
                ErrorCode::Internal,
                format!("the server task failed: {e}"),
            )),
        }
    }
}

/// Loads the host from `data` and serves on `config.listen`.
pub async fn start(
    data: &HostData,
    config: &HostConfig,
    clock: Arc<dyn Clock>,
) -> Result<Running, ApiError> {
    let identity = data.identity()?;
    let lock = data.lock("serving")?;
    let (_, catalog) = data.vendor()?;
    let certificate = data.certificate()?;
    let store = open_store(&config.storage_url, data.dir(), OpenMode::Serve).await?;
    let count = memory_count(store.as_ref(), &config.settings, clock.as_ref()).await?;
    let engine = Engine::start(EngineParts {
        identity,
        catalog,
        certificate,
        settings: config.settings,
        store,
        count,
        clock,
    })
    .await?;
    engine.admission().set_limits(config.rate_limits)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot listen on {}: {e}; is another host running there? choose another with --listen", config.listen),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no local address: {e}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let auth = Arc::new(crate::auth::AdminAuth::new(data.ensure_admin_token()?));
    let metrics_auth = match &config.metrics_token_file {
        Some(path) => Some(Arc::new(crate::auth::AdminAuth::new(read_metrics_token(
            path,
        )?))),
        None => None,
    };
    let state = crate::http::AppState {
        engine: engine.clone(),
        auth,
        data: data.clone(),
        config: Arc::new(config.clone()),
        metrics_auth,
    };
    let router = crate::http::router(state);
    let limits = listen_limits(&config.limits);
    let task = tokio::spawn(crate::listener::serve(
        listener,
        crate::listener::Plain,
        router,
        limits,
        Some(engine.metrics().connections()),
        async move {
            let _ = stopped.await;
        },
    ));
    let info = ServingInfo {
        url: format!("http://{addr}"),
        pid: std::process::id(),
        started_at: engine.now(),
    };
    data.set_serving(Some(&info))?;
    let maintenance =
        volact_engine::maintenance::Maintenance::start(engine.clone(), config.event_retention);
    Ok(Running {
        _lock: lock,
        maintenance,
        data: data.clone(),
        addr,
        engine,
        stop: Some(stop),
        task,
    })
}

/// The limits in force: the soft fd limit raised to the hard one first (it is per
/// process, so raising it again for a second host is harmless), caps derived from it, and
/// both logged, so an operator sees what the host can hold.
fn listen_limits(config: &crate::listener::LimitsConfig) -> crate::listener::Limits {
    let fd_limit = crate::listener::raise_fd_limit();
    let (limits, warnings) = crate::listener::Limits::derive(config, fd_limit);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let fds = fd_limit.map_or_else(|| "unknown".to_string(), |l| l.to_string());
    tracing::info!(
        "connection limits in force: fd limit {fds}; at most {} connections, {} per address, {} more from loopback; timeouts: headers {:?}, body {:?}, idle {:?}",
        limits.max_connections,
        limits.max_connections_per_address,
        limits.loopback_reserve,
        limits.header_read_timeout,
        limits.body_timeout,
        limits.idle_timeout,
    );
    limits
}

/// Reads the token `GET /metrics` requires.
pub fn read_metrics_token(path: &std::path::Path) -> Result<String, ApiError> {
    let token = std::fs::read_to_string(path).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "cannot read the metrics token file {}: {e}; create it (one line, the token) or remove metrics_token_file from the configuration",
                path.display()
            ),
        )
    })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "the metrics token file {} is empty; write a token into it",
                path.display()
            ),
        ));
    }
    Ok(token)
}
