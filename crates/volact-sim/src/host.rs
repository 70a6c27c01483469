//! The simulated host: a real data directory, a real SQLite store and the real engine,
//! driven by a hand-set clock; optionally served over HTTP on 127.0.0.1.

use crate::scenario::Scenario;
use jiff::Timestamp;
use std::path::Path;
use std::sync::Arc;
use volact_core::catalog::Catalog;
use volact_core::certificate::{self, Ledger};
use volact_core::keys::PublicKey;
use volact_engine::config::RawConfig;
use volact_engine::data::HostData;
use volact_engine::engine::{Engine, EngineParts};
use volact_engine::{Clock, ManualClock};
use volact_host::server::{self, Running};
use volact_proto::{ActivationRequest, ActivationResponse, ApiError, ErrorCode};
use volact_testkit::TestVendor;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

/// How requests reach the engine.
pub enum Transport {
    /// Calls into the engine in this process.
    InProcess,
    /// Posts to the real HTTP server on 127.0.0.1.
    Http {
        /// The server (boxed: it is far larger than the other variant).
        running: Box<Running>,
        /// A keep-alive client.
        client: reqwest::Client,
        /// `http://127.0.0.1:PORT/v1/activations`.
        url: String,
    },
}

/// A host set up for a scenario.
pub struct SimHost {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The clock every part of the host reads.
    pub clock: Arc<ManualClock>,
    /// The vendor's root key the clients ship with.
    pub root: PublicKey,
    /// The catalog.
    pub catalog: Catalog,
    /// How requests travel.
    pub transport: Transport,
}

impl SimHost {
    /// Creates the vendor, the host's data directory under `dir`, activates the host at
    /// `start` and starts the engine (and the HTTP server when `http`).
    pub async fn start(
        scenario: &Scenario,
        dir: &Path,
        start: Timestamp,
        http: bool,
    ) -> Result<SimHost, ApiError> {
        let source = scenario.catalog_source();
        let seed = u8::try_from(scenario.seed % 200)
            .unwrap_or(0)
            .wrapping_add(1);
        let vendor = TestVendor::with_source(seed, &source)?;
        let group = match &scenario.host.key_group {
            Some(g) => g.clone(),
            None => vendor
                .catalog
                .key_groups
                .first()
                .map(|g| g.id.clone())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        "the catalog has no key group for the host key",
                    )
                })?,
        };
        let clock = Arc::new(ManualClock::new(start));
        let data = HostData::new(dir.join("host"));
        data.init([seed.wrapping_add(100); 32])?;
        data.install_key(
            &vendor.host_key(&group, scenario.host.seats)?,
            Some(&vendor.bundle),
        )?;
        let request = data.activation_request("simulation".into(), start)?;
        let (cert, _) = certificate::activate_host(
            &vendor.root,
            &vendor.catalog,
            &mut Ledger::default(),
            &request,
            start,
            certificate::DEFAULT_CERTIFICATE_DAYS,
        )?;
        data.install_certificate(
            &volact_proto::HostActivationResponse {
                host_certificate: cert,
            },
            start,
        )?;
        let settings = scenario.settings()?;
        let root = vendor.root.public().clone();
        let catalog = vendor.catalog.clone();
        if http {
            let mut config = data.config(RawConfig::default())?;
            config.listen = ([127, 0, 0, 1], 0).into();
            config.settings = settings;
            let running = server::start(&data, &config, clock.clone()).await?;
            let url = format!("{}/v1/activations", running.url());
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(internal)?;
            return Ok(SimHost {
                engine: running.engine.clone(),
                clock,
                root,
                catalog,
                transport: Transport::Http {
                    running: Box::new(running),
                    client,
                    url,
                },
            });
        }
        let store = volact_engine::storage::open_store(
            &data.config(RawConfig::default())?.storage_url,
            data.dir(),
            volact_engine::storage::OpenMode::Serve,
        )
        .await?;
        let count =
            volact_engine::storage::count_for(store.as_ref(), &settings, clock.as_ref()).await?;
        let engine = Engine::start(EngineParts {
            identity: data.identity()?,
            catalog: vendor.catalog.clone(),
            certificate: data.certificate()?,
            settings,
            store,
            count,
            clock: clock.clone() as Arc<dyn Clock>,
        })
        .await?;
        Ok(SimHost {
            engine,
            clock,
            root,
            catalog,
            transport: Transport::InProcess,
        })
    }

    /// Sends requests, each at its own time (in the given order, which must be by time),
    /// and returns the answers in the same order.
    ///
    /// In process, every request is started (decided under its own clock value and queued
    /// for storage) before any is awaited, so the group-commit writer stores them in a few
    /// transactions instead of one per request: that is what makes a year of a large
    /// fleet take seconds. Over HTTP they go one by one, since the clock must be set
    /// before the server reads it.
    pub async fn send(
        &self,
        batch: Vec<(Timestamp, ActivationRequest)>,
    ) -> Vec<Result<ActivationResponse, ApiError>> {
        match &self.transport {
            Transport::InProcess => self.send_in_process(batch).await,
            Transport::Http { client, url, .. } => {
                let mut out = Vec::with_capacity(batch.len());
                for (at, req) in batch {
                    self.clock.set(at);
                    out.push(post(client, url, &req).await);
                }
                out
            }
        }
    }

    async fn send_in_process(
        &self,
        batch: Vec<(Timestamp, ActivationRequest)>,
    ) -> Vec<Result<ActivationResponse, ApiError>> {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Poll, Waker};
        type Answer = Result<ActivationResponse, ApiError>;
        type Waiting = Pin<Box<dyn Future<Output = Answer> + Send>>;
        let mut started: Vec<Result<Answer, Waiting>> = Vec::with_capacity(batch.len());
        let mut cx = Context::from_waker(Waker::noop());
        for (at, req) in batch {
            let engine = self.engine.clone();
            // The engine reads its clock once, on the first poll, before its first await:
            // setting the clock just before that poll gives each request its own time.
            self.clock.set(at);
            let mut fut: Waiting =
                Box::pin(async move { engine.activate(&req, "simulation").await });
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(answer) => started.push(Ok(answer)),
                Poll::Pending => started.push(Err(fut)),
            }
        }
        let mut out = Vec::with_capacity(started.len());
        for s in started {
            out.push(match s {
                Ok(answer) => answer,
                Err(fut) => fut.await,
            });
        }
        out
    }

    /// Stops the HTTP server, if any.
    pub async fn stop(self) -> Result<(), ApiError> {
        if let Transport::Http { running, .. } = self.transport {
            (*running).stop().await?;
        }
        Ok(())
    }
}

/// Posts one request and reads the answer or the refusal.
async fn post(
    client: &reqwest::Client,
    url: &str,
    req: &ActivationRequest,
) -> Result<ActivationResponse, ApiError> {
    let unreachable = |e: reqwest::Error| {
        ApiError::new(
            ErrorCode::HostUnreachable,
            format!("the simulated host did not answer: {e}"),
        )
    };
    let resp = client
        .post(url)
        .json(req)
        .send()
        .await
        .map_err(unreachable)?;
    let ok = resp.status().is_success();
    let body = resp.bytes().await.map_err(unreachable)?;
    if ok {
        serde_json::from_slice(&body).map_err(internal)
    } else {
        Err(serde_json::from_slice::<ApiError>(&body).map_err(internal)?)
    }
}
