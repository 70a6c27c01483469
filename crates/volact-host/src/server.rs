//! Starting and stopping a serving host from its data directory.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use volact_engine::clock::Clock;
use volact_engine::config::HostConfig;
use volact_engine::data::{HostData, ServingInfo};
use volact_engine::engine::{Engine, EngineParts};
use volact_engine::storage::{OpenMode, count_for, open_configured};
use volact_proto::{ApiError, ErrorCode};

/// The TLS side of a serving host.
struct TlsRunning {
    /// The certificate it presents.
    cert: Arc<crate::tls::CurrentCert>,
    /// Its accept loop.
    task: JoinHandle<std::io::Result<()>>,
    /// Reloads the certificate on SIGHUP or when its files change.
    reloader: JoinHandle<()>,
}

/// A host that is serving.
pub struct Running {
    data: HostData,
    /// The data directory's lock, released (after the store) when this is dropped.
    _lock: volact_engine::dirlock::DirLock,
    /// The address it listens on (the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The TLS listener's address, when it serves TLS.
    pub tls_addr: Option<SocketAddr>,
    /// The TLS listener's certificate and tasks, when it serves TLS.
    tls: Option<Box<TlsRunning>>,
    /// The engine, for in-process callers.
    pub engine: Arc<Engine>,
    stop: Option<watch::Sender<bool>>,
    task: JoinHandle<std::io::Result<()>>,
    /// Retention, store-backed gauges and the storage probe, in the background.
    pub maintenance: volact_engine::maintenance::Maintenance,
    /// The host's row in the store's registry of hosts, refreshed in the background.
    registration: volact_engine::registry::Registration,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://ADDR`, when it serves TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("https://{a}"))
    }

    /// The SHA-256 fingerprint of the certificate new TLS connections get.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|t| crate::tls::fingerprint(&t.cert.get()))
    }

    /// Stops accepting requests, lets answered ones finish, and waits.
    pub async fn stop(mut self) -> Result<(), ApiError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let tls = self.tls.take();
        if let Some(t) = &tls {
            t.reloader.abort();
        }
        self.maintenance.stop();
        self.registration.stop();
        let _ = self.data.set_serving(None);
        let mut served = (&mut self.task).await;
        if let Some(t) = tls {
            let tls_served = t.task.await;
            if matches!(served, Ok(Ok(()))) {
                served = tls_served;
            }
        }
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
    crate::tls::certs::install_default_provider();
    let identity = data.identity()?;
    let lock = data.lock("serving")?;
    let (_, catalog) = data.vendor()?;
    let certificate = data.certificate()?;
    let store = open_configured(config, data.dir(), OpenMode::Serve).await?;
    let count = count_for(store.as_ref(), &config.settings, clock.as_ref()).await?;
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
    // In force before the first connection is accepted: a revoked host never answers
    // even one activation while its list is read in the background.
    match data.revocation_list() {
        Ok(Some((token, list))) => {
            engine.set_revocations(token, list);
            if let Some(e) = engine.not_ready(engine.now())
                && e.code == volact_proto::ErrorCode::HostRevoked
            {
                tracing::error!("{}", e.message);
                let now = engine.now().as_second();
                let stored = engine
                    .store()
                    .record_host_event(now, "host-revoked", "revocations.token", &e.message)
                    .await;
                if let Err(e) = stored {
                    tracing::warn!("cannot add the revocation to the audit log: {e}");
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            code = %e.code,
            "the revocation list the host keeps could not be read; fetch or import a new one: {}",
            e.message
        ),
    }
    let listener = bind(config.listen, "--listen")?;
    let addr = listener
        .local_addr()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no local address: {e}")))?;
    let tls = match &config.tls.listener {
        Some(l) => {
            let cert = Arc::new(crate::tls::CurrentCert::new(crate::tls::load(
                &l.cert_file,
                &l.key_file,
            )?));
            let handshake = crate::tls::Tls::new(cert.clone())?;
            let listener = bind(l.listen, "[tls] listen")?;
            let tls_addr = listener.local_addr().map_err(|e| {
                ApiError::new(ErrorCode::Internal, format!("no local address: {e}"))
            })?;
            Some((listener, tls_addr, handshake, cert, l.clone()))
        }
        None => None,
    };
    warn_about_plain_admin(config, tls.as_ref().map(|t| t.1));
    let (stop, stopped) = watch::channel(false);
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
    let connections =
        crate::listener::Connections::new(limits, Some(engine.metrics().connections()));
    let task = tokio::spawn(crate::listener::serve_on(
        listener,
        crate::listener::Plain,
        crate::listener::Transport::plain(
            config.tls.allow_plain_admin,
            tls.as_ref().map(|t| t.1.port()),
        ),
        router.clone(),
        connections.clone(),
        stopped_signal(stopped.clone()),
    ));
    let mut info = ServingInfo {
        url: format!("http://{addr}"),
        pid: std::process::id(),
        started_at: engine.now(),
        tls_url: None,
        tls_fingerprint: None,
    };
    let (tls_addr, tls) = match tls {
        Some((listener, tls_addr, handshake, cert, files)) => {
            let fingerprint = crate::tls::fingerprint(&cert.get());
            tracing::info!(
                fingerprint = %fingerprint,
                "serving TLS on https://{tls_addr} (certificate {}, SHA-256 {fingerprint})",
                files.cert_file.display()
            );
            info.tls_url = Some(format!("https://{tls_addr}"));
            info.tls_fingerprint = Some(fingerprint);
            let task = tokio::spawn(crate::listener::serve_on(
                listener,
                handshake,
                crate::listener::Transport::tls(),
                router,
                connections,
                stopped_signal(stopped),
            ));
            let serving = data.clone();
            let base = info.clone();
            let reloader = crate::tls::reload::spawn(
                cert.clone(),
                files.cert_file,
                files.key_file,
                Box::new(move |key| {
                    let mut now = base.clone();
                    now.tls_fingerprint = Some(crate::tls::fingerprint(key));
                    if let Err(e) = serving.set_serving(Some(&now)) {
                        tracing::warn!("could not update serving.json: {}", e.message);
                    }
                }),
            );
            (
                Some(tls_addr),
                Some(Box::new(TlsRunning {
                    cert,
                    task,
                    reloader,
                })),
            )
        }
        None => (None, None),
    };
    data.set_serving(Some(&info))?;
    let maintenance =
        volact_engine::maintenance::Maintenance::start(engine.clone(), config.event_retention);
    let listen_urls = std::iter::once(info.url.clone())
        .chain(info.tls_url.clone())
        .collect();
    let registration = volact_engine::registry::Registration::start(engine.clone(), listen_urls);
    Ok(Running {
        _lock: lock,
        maintenance,
        registration,
        data: data.clone(),
        addr,
        tls_addr,
        tls,
        engine,
        stop: Some(stop),
        task,
    })
}

async fn stopped_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

fn bind(addr: SocketAddr, setting: &str) -> Result<tokio::net::TcpListener, ApiError> {
    let std = std::net::TcpListener::bind(addr).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidState,
            format!("cannot listen on {addr}: {e}; is another host running there? choose another with {setting}"),
        )
    })?;
    std.set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(std))
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot listen on {addr}: {e}")))
}

/// Says at every start what plain HTTP serves to other machines.
fn warn_about_plain_admin(config: &HostConfig, tls: Option<SocketAddr>) {
    if config.tls.allow_plain_admin {
        tracing::warn!(
            "[tls] allow_plain_admin = true: the admin API and the dashboard answer over plain HTTP on {} to any machine, so the admin token and session cookie cross the network in clear; remove it once clients use https://",
            config.listen
        );
    } else if tls.is_none() {
        tracing::warn!(
            "no TLS configured ([tls] cert_file, key_file): the admin API and the dashboard answer only on this machine (127.0.0.1, ::1); run `volact host tls-init` to make a certificate and serve them over TLS"
        );
    }
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
