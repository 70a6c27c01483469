//! An in-process test kit: a vendor, and a real host (real storage, real HTTP on
//! loopback) driven by a hand-set clock, and outside programs the tests start (BIND).
//! Integration tests of every crate use it; it is never a normal dependency.

pub mod browser;
pub mod postgres;
pub mod testbind;

use jiff::Timestamp;
use std::sync::Arc;
use volact_core::catalog::{Catalog, CatalogSource, VendorBundle, demo_source};
use volact_core::certificate::{self, Ledger};
use volact_core::host_key::{DEFAULT_MAX_ACTIVATIONS, DEFAULT_MAX_HOSTS, HostKey};
use volact_core::keys::KeyPair;
use volact_core::token;
use volact_engine::clock::{Clock, ManualClock};
use volact_engine::config::RawConfig;
use volact_engine::data::HostData;
use volact_host::server::{self, Running};
use volact_proto::{ApiError, HostActivationResponse};

/// A vendor whose keys come from a seed, so tests are repeatable.
#[derive(Debug, Clone)]
pub struct TestVendor {
    /// The root key pair.
    pub root: KeyPair,
    /// The catalog.
    pub catalog: Catalog,
    /// The public bundle for hosts and clients.
    pub bundle: VendorBundle,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(volact_proto::ErrorCode::Internal, e.to_string())
}

impl TestVendor {
    /// A vendor with the demo catalog.
    pub fn new(seed: u8) -> Result<TestVendor, ApiError> {
        TestVendor::with_source(seed, &demo_source())
    }

    /// A vendor with the given catalog source.
    pub fn with_source(seed: u8, source: &CatalogSource) -> Result<TestVendor, ApiError> {
        let root = KeyPair::from_seed([seed; 32])?;
        let mut n = 0u8;
        let catalog = Catalog::build(source, 1, Timestamp::UNIX_EPOCH, move || {
            n = n.wrapping_add(1);
            let mut bytes = [seed; 24];
            bytes[0] = n;
            bytes
        })?;
        TestVendor::signed(root, catalog)
    }

    fn signed(root: KeyPair, catalog: Catalog) -> Result<TestVendor, ApiError> {
        let bundle = VendorBundle {
            root_public_key: root.public().to_paserk(),
            catalog: token::sign(&root, &catalog).map_err(internal)?,
        };
        Ok(TestVendor {
            root,
            catalog,
            bundle,
        })
    }

    /// A vendor with the demo catalog in which `product` activates at a count of
    /// `minimum` (1: one machine is enough), for tests of a single client.
    pub fn with_minimum(seed: u8, product: &str, minimum: u32) -> Result<TestVendor, ApiError> {
        let mut source = demo_source();
        for p in &mut source.products {
            if p.id == product {
                p.minimum_count = Some(minimum);
            }
        }
        TestVendor::with_source(seed, &source)
    }

    /// Another vendor (another root key) whose catalog copies this one's products and
    /// setup keys: what an impostor would run.
    pub fn impostor(&self, seed: u8) -> Result<TestVendor, ApiError> {
        TestVendor::signed(KeyPair::from_seed([seed; 32])?, self.catalog.clone())
    }

    /// A host key for key group `group`.
    pub fn host_key(&self, group: &str, seats: Option<u32>) -> Result<String, ApiError> {
        let key = HostKey {
            jti: format!("key-{group}-{}", seats.unwrap_or(0)),
            vendor: self.catalog.vendor.clone(),
            customer: "Test Customer".into(),
            group: group.into(),
            seats,
            exp: None,
            max_hosts: DEFAULT_MAX_HOSTS,
            max_activations: DEFAULT_MAX_ACTIVATIONS,
            iat: Timestamp::UNIX_EPOCH,
            usage_reports: false,
            delegation: None,
        };
        token::sign(&self.root, &key).map_err(internal)
    }

    /// A setup key of a product.
    pub fn setup_key(&self, product: &str) -> String {
        self.catalog
            .product(product)
            .map(|p| p.setup_key.to_string())
            .unwrap_or_default()
    }
}

/// How to start a test host.
#[derive(Debug, Clone, Default)]
pub struct TestHostOptions {
    /// Key group of the host key (default `demo-all`).
    pub group: Option<String>,
    /// Seat cap.
    pub seats: Option<u32>,
    /// Configuration (intervals).
    pub config: RawConfig,
    /// Seed of the host identity (default 42).
    pub host_seed: Option<u8>,
}

/// A running host in a temporary directory, with a hand-set clock.
pub struct TestHost {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The data directory.
    pub data: HostData,
    /// The clock; move it to test time-based rules.
    pub clock: Arc<ManualClock>,
    /// The vendor.
    pub vendor: TestVendor,
    /// The server.
    pub running: Running,
    options: TestHostOptions,
}

/// The time test hosts start at: 2026-01-01T00:00:00Z.
pub fn test_epoch() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl TestHost {
    /// Initialises, installs a key, activates (offline exchange, in process) and serves
    /// on 127.0.0.1 with an ephemeral port.
    pub async fn start(vendor: TestVendor, options: TestHostOptions) -> Result<TestHost, ApiError> {
        let dir = tempfile::tempdir().map_err(internal)?;
        let data = HostData::new(dir.path().join("host"));
        let clock = Arc::new(ManualClock::new(test_epoch()));
        data.init([options.host_seed.unwrap_or(42); 32])?;
        let group = options.group.clone().unwrap_or_else(|| "demo-all".into());
        data.install_key(
            &vendor.host_key(&group, options.seats)?,
            Some(&vendor.bundle),
        )?;
        let request = data.activation_request("test-nonce".into(), clock.now())?;
        let (cert, _) = certificate::activate_host(
            &vendor.root,
            &vendor.catalog,
            &mut Ledger::default(),
            &request,
            clock.now(),
            certificate::DEFAULT_CERTIFICATE_DAYS,
        )?;
        data.install_certificate(
            &HostActivationResponse {
                host_certificate: cert,
            },
            clock.now(),
        )?;
        let running = TestHost::serve(&data, &options, clock.clone()).await?;
        Ok(TestHost {
            dir,
            data,
            clock,
            vendor,
            running,
            options,
        })
    }

    /// [`TestHost::start`] with the clock at the real time: for clients that read the
    /// real clock (the SDK, the `volact` command).
    pub async fn start_now(
        vendor: TestVendor,
        options: TestHostOptions,
    ) -> Result<TestHost, ApiError> {
        let host = TestHost::start(vendor, options).await?;
        host.clock.set(Timestamp::now());
        Ok(host)
    }

    async fn serve(
        data: &HostData,
        options: &TestHostOptions,
        clock: Arc<ManualClock>,
    ) -> Result<Running, ApiError> {
        let mut config = data.config(options.config.clone())?;
        config.listen = ([127, 0, 0, 1], 0).into();
        server::start(data, &config, clock).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// `127.0.0.1:PORT`, as a client pins it.
    pub fn address(&self) -> String {
        self.running.addr.to_string()
    }

    /// The admin token, for `Authorization: Bearer …`.
    pub fn admin_token(&self) -> Result<String, ApiError> {
        self.data.admin_token()
    }

    /// A typed client of this host's admin API (plain HTTP on loopback, with the token).
    pub fn admin(&self) -> Result<volact_client::admin::AdminClient, ApiError> {
        volact_client::admin::AdminClient::new(
            &self.url(),
            &self.admin_token()?,
            &volact_client::tls::TlsTrust::default(),
        )
    }

    /// Runs a maintenance pass now (retention, gauges, storage probe) at the clock's time.
    pub async fn maintain(&self) -> Result<volact_engine::maintenance::Pass, ApiError> {
        self.running.maintenance.run_now().await
    }

    /// Stops the server and starts it again on the same data (the port changes).
    pub async fn restart(self) -> Result<TestHost, ApiError> {
        let TestHost {
            dir,
            data,
            clock,
            vendor,
            running,
            options,
        } = self;
        running.stop().await?;
        let running = TestHost::serve(&data, &options, clock.clone()).await?;
        Ok(TestHost {
            dir,
            data,
            clock,
            vendor,
            running,
            options,
        })
    }
}

/// Reports a test that cannot run because an outside program is missing: a loud
/// `SKIPPED` line written straight to the process's stderr (the test harness captures
/// `eprintln!`, and a skip must be seen), or, when `VOLACT_REQUIRE_ALL=1`, an error the
/// caller turns into a failure. `what` says what is missing and how to install it.
pub fn skip_or_fail(test: &str, what: &str) -> Result<(), ApiError> {
    use std::io::Write;
    let line = format!("SKIPPED: {what} — test {test} did not run");
    if std::env::var("VOLACT_REQUIRE_ALL").as_deref() == Ok("1") {
        return Err(ApiError::new(
            volact_proto::ErrorCode::InvalidState,
            format!("{line}, but VOLACT_REQUIRE_ALL=1 requires it"),
        ));
    }
    let _ = writeln!(std::io::stderr(), "\n*** {line} ***\n");
    Ok(())
}
