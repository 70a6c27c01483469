//! [`License`]: one product's licence on this machine, kept in one state file.

use crate::check::{Check, Reason, State};
use crate::watch::Watchers;
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use volact_client::{
    ActivateOptions, ActivationOutcome, ClientState, Expiry, InstallReport, MachineId, RearmReport,
    Status,
};
use volact_core::catalog::VendorBundle;
use volact_proto::{ApiError, ErrorCode};

/// How often at most [`License::check`] writes the clock reading into the state: often
/// enough that a clock set back later is seen, seldom enough that a check stays a read.
const CLOCK_NOTE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// What the product trusts: the vendor it was built for and the application it is.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    /// The vendor's public bundle compiled into the product.
    pub bundle: VendorBundle,
    /// The application of the vendor's catalog this product is.
    pub application: String,
}

/// Everything [`License::open_with`] takes. [`Settings::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The application (a catalog's application id, e.g. `demo-os`) the product is.
    pub application: String,
    /// Where the state lives: one file, written atomically, mode 0600.
    pub state_path: PathBuf,
    /// The vendor's public bundle (`volact vendor export`), as compiled into the product.
    pub vendor_bundle: Vec<u8>,
    /// The name the host's inventory shows for this machine (default: the host name).
    pub machine_name: Option<String>,
    /// How hosts are found and trusted (DNS server, TLS pin or CA, timeouts).
    pub activate: ActivateOptions,
}

impl Settings {
    /// Settings with the defaults: the machine's host name, DNS discovery through the
    /// system resolver, system TLS roots for `https://` hosts.
    pub fn new(
        application: impl Into<String>,
        state_path: impl Into<PathBuf>,
        vendor_bundle: impl Into<Vec<u8>>,
    ) -> Settings {
        Settings {
            application: application.into(),
            state_path: state_path.into(),
            vendor_bundle: vendor_bundle.into(),
            machine_name: None,
            activate: ActivateOptions::default(),
        }
    }
}

pub(crate) struct Inner {
    pub path: PathBuf,
    pub trust: Option<Trust>,
    pub machine: MachineId,
    pub machine_name: String,
    pub options: ActivateOptions,
    /// Serialises this process's changes to the state file (checks only read it).
    pub writing: Mutex<()>,
    /// The last time a check wrote the clock reading, so most checks write nothing.
    pub clock_noted: Mutex<Option<Timestamp>>,
    pub watchers: Watchers,
}

/// One product's licence on this machine.
///
/// Cheap to clone (the clones share one state and one set of watchers) and safe to use
/// from several threads. Every method that talks to a host blocks the calling thread
/// and needs no async runtime; [`License::start_renewal`] runs on a thread of its own.
#[derive(Clone)]
pub struct License {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for License {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("License")
            .field("state_path", &self.inner.path)
            .field(
                "application",
                &self.inner.trust.as_ref().map(|t| &t.application),
            )
            .finish_non_exhaustive()
    }
}

/// What [`License::install_key`] did.
pub type Installed = InstallReport;

/// What [`License::activate_now`] obtained.
pub type Activation = ActivationOutcome;

impl License {
    /// Opens the licence of `application` kept at `state_path`, trusting only the vendor
    /// whose public bundle (`volact vendor export`) is `vendor_bundle`: the bytes the
    /// vendor compiles into the product. The bundle is verified now (its catalog must be
    /// signed by its root key and list `application`); the state file need not exist.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), volact_sdk::Error> {
    /// // In a product: `include_bytes!("vendor.pub")`.
    /// let bundle = std::fs::read("vendor.pub").map_err(|e| {
    ///     volact_sdk::Error::new(volact_sdk::ErrorCode::InvalidState, e.to_string())
    /// })?;
    /// let license = volact_sdk::License::open("demo-os", "/var/lib/demo/licence.json", bundle)?;
    /// let check = license.check();
    /// println!("{}: {}", check.state, check.message);
    /// # Ok(()) }
    /// ```
    pub fn open(
        application: &str,
        state_path: impl Into<PathBuf>,
        vendor_bundle: impl Into<Vec<u8>>,
    ) -> Result<License, ApiError> {
        License::open_with(Settings::new(application, state_path, vendor_bundle))
    }

    /// [`License::open`] with every setting.
    pub fn open_with(settings: Settings) -> Result<License, ApiError> {
        let bundle = parse_bundle(&settings.vendor_bundle)?;
        let (_, catalog) = bundle.open()?;
        if !catalog
            .products
            .iter()
            .any(|p| p.application == settings.application)
        {
            let known: std::collections::BTreeSet<&str> = catalog
                .products
                .iter()
                .map(|p| p.application.as_str())
                .collect();
            return Err(ApiError::with_details(
                ErrorCode::BadRequest,
                format!(
                    "the vendor bundle of {} has no application `{}` (it has: {}); open the licence with one of those",
                    catalog.vendor,
                    settings.application,
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
                serde_json::json!({ "application": settings.application }),
            ));
        }
        let trust = Trust {
            bundle,
            application: settings.application,
        };
        Ok(License::build(
            settings.state_path,
            Some(trust),
            MachineId::this(),
            settings.machine_name,
            settings.activate,
        ))
    }

    /// The licence of whatever product a setup key was installed for at `state_path`,
    /// trusting the vendor bundle installed with it: what the `volact` command does,
    /// being no one vendor's product. A product uses [`License::open`] instead, so that
    /// its trust comes from what it was built with, never from a file.
    pub fn for_state_file(
        state_path: impl Into<PathBuf>,
        machine_name: Option<String>,
        options: ActivateOptions,
    ) -> License {
        License::build(
            state_path.into(),
            None,
            MachineId::this(),
            machine_name,
            options,
        )
    }

    fn build(
        path: PathBuf,
        trust: Option<Trust>,
        machine: MachineId,
        machine_name: Option<String>,
        options: ActivateOptions,
    ) -> License {
        License {
            inner: Arc::new(Inner {
                path,
                trust,
                machine,
                machine_name: machine_name.unwrap_or_else(crate::machine_name),
                options,
                writing: Mutex::new(()),
                clock_noted: Mutex::new(None),
                watchers: Watchers::default(),
            }),
        }
    }

    /// Plays another machine (its `/etc/machine-id`), for tests of what a copied state
    /// does; a product never needs it.
    #[doc(hidden)]
    pub fn on_machine(&self, machine: &str) -> License {
        License::build(
            self.inner.path.clone(),
            self.inner.trust.clone(),
            MachineId::new(machine),
            Some(self.inner.machine_name.clone()),
            self.inner.options.clone(),
        )
    }

    /// Where the state lives.
    pub fn state_path(&self) -> &Path {
        &self.inner.path
    }

    /// The licence now, offline: reads the state, verifies its seal, and verifies the
    /// held ticket along the whole chain (vendor root → host certificate → ticket). Never
    /// fails: a state that cannot be read is [`State::Unlicensed`] with
    /// [`Reason::StateUnreadable`]. Fast enough for every start of a product (see
    /// docs/PERFORMANCE.md); it writes to the state at most once an hour, to note the
    /// clock (so that setting it back later is seen).
    pub fn check(&self) -> Check {
        let now = Timestamp::now();
        let check = self.check_at(now);
        self.note_clock(now, &check);
        check
    }

    /// [`License::check`] as if the clock read `now`, writing nothing: for tests, and
    /// for showing what a date will bring.
    pub fn check_at(&self, now: Timestamp) -> Check {
        let check = match self.load() {
            Ok(state) => self.judge(&state, now),
            Err(e) => Check::refused(Reason::StateUnreadable, e.message, None),
        };
        self.inner.watchers.observe(&check);
        check
    }

    /// The full status (`volact status`): host, ticket, last attempt, intervals, rearms.
    pub fn status_at(&self, now: Timestamp) -> Result<Status, ApiError> {
        let state = self.load()?;
        Ok(volact_client::status(&state, now))
    }

    /// When the activation or grace ends, in a sentence (`volact expiry`).
    pub fn expiry_at(&self, now: Timestamp) -> Result<Expiry, ApiError> {
        let state = self.load()?;
        Ok(volact_client::expiry(&state, now))
    }

    /// Installs a setup key (the product's, or the one its administrator typed in). The
    /// machine keeps its client id across keys. A product opened with [`License::open`]
    /// installs its own vendor's bundle with it; a key of another vendor or of another
    /// application is refused with `unknown-setup-key`.
    pub fn install_key(&self, key: &str) -> Result<Installed, ApiError> {
        self.install_key_with(key, None)
    }

    /// [`License::install_key`] with a vendor bundle given alongside, for the `volact`
    /// command (`install-key KEY --vendor FILE`); a product's bundle is the one it was
    /// opened with, and a different one is refused.
    pub fn install_key_with(
        &self,
        key: &str,
        bundle: Option<VendorBundle>,
    ) -> Result<Installed, ApiError> {
        let bundle = match (&self.inner.trust, bundle) {
            (Some(trust), Some(given)) if given != trust.bundle => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "this product trusts the vendor bundle it was built with, not another one",
                ));
            }
            (Some(trust), _) => {
                let key = volact_core::setup_key::SetupKey::parse(key)?;
                let (_, catalog) = trust.bundle.open()?;
                let product = catalog.product_for_key(&key)?;
                if product.application != trust.application {
                    return Err(ApiError::with_details(
                        ErrorCode::UnknownSetupKey,
                        format!(
                            "setup key for {} ({}), which is not this product ({}); enter this product's setup key",
                            product.name, product.application, trust.application
                        ),
                        serde_json::json!({ "application": trust.application }),
                    ));
                }
                Some(trust.bundle.clone())
            }
            (None, given) => given,
        };
        let now = volact_core::util::whole_seconds(Timestamp::now());
        let report = self
            .change(|state| volact_client::install_key(state, key, bundle, now, new_client_id))?;
        self.check_at(now);
        Ok(report)
    }

    /// Pins a host (`HOST`, `HOST:PORT`, `https://HOST[:PORT]`): DNS discovery is off
    /// until [`License::clear_host`]. Returns the host as it will be asked.
    pub fn set_host(&self, host: &str) -> Result<String, ApiError> {
        self.change(|state| volact_client::set_host(state, host))
    }

    /// Clears the pinned host: hosts are found through DNS again.
    pub fn clear_host(&self) -> Result<(), ApiError> {
        self.change(|state| {
            volact_client::clear_host(state);
            Ok(())
        })
    }

    /// Sets the DNS domain hosts are looked up in (`_volact._tcp.DOMAIN`).
    pub fn set_domain(&self, domain: &str) -> Result<String, ApiError> {
        self.change(|state| volact_client::set_domain(state, domain))
    }

    /// Clears the DNS domain: hosts are looked up in the system's search domains again.
    pub fn clear_domain(&self) -> Result<(), ApiError> {
        self.change(|state| {
            state.domain = None;
            Ok(())
        })
    }

    /// Gives the machine a new client id (like `slmgr /rearm`), within the vendor's
    /// rearm limit.
    pub fn rearm(&self) -> Result<RearmReport, ApiError> {
        let now = volact_core::util::whole_seconds(Timestamp::now());
        let report = self.change(|state| volact_client::rearm(state, now, new_client_id))?;
        self.check_at(now);
        Ok(report)
    }

    /// Activates (or renews) now, with the same discovery, failover and error codes as
    /// `volact activate`: the pinned host, else the hosts DNS names, in order. Blocks
    /// until a host answered or every host was tried. A state copied from another
    /// machine first gets this machine's own client id (it activates as itself, never
    /// as the machine it came from). A "not yet" (`count-insufficient`) is an error
    /// whose details say the count, the minimum and when to try again; the background
    /// renewal does that by itself.
    pub fn activate_now(&self) -> Result<Activation, ApiError> {
        let now = volact_core::util::whole_seconds(Timestamp::now());
        let result = self.activate_at(now);
        self.check_at(Timestamp::now());
        result
    }

    pub(crate) fn activate_at(&self, now: Timestamp) -> Result<Activation, ApiError> {
        self.prepare_activation(now)?;
        let inner = Arc::clone(&self.inner);
        run_blocking(move || async move { exchange(&inner, now).await })
    }

    /// What comes before asking a host: a copied state gets this machine's own client
    /// id, and a key the product does not trust is not sent anywhere.
    pub(crate) fn prepare_activation(&self, now: Timestamp) -> Result<(), ApiError> {
        self.change(|state| match volact_client::adopt(state, now, new_client_id) {
            Ok(Some(adopted)) => {
                tracing::warn!(
                    old_client_id = %adopted.old_client_id,
                    client_id = %adopted.client_id,
                    "the client state came from another machine; this machine now has a client id of its own"
                );
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        })?;
        let state = self.load()?;
        let check = self.judge(&state, now);
        if matches!(check.reason, Reason::WrongVendor | Reason::WrongApplication) {
            return Err(ApiError::new(ErrorCode::InvalidState, check.message));
        }
        Ok(())
    }

    /// Calls `f` with every check whose state, reason or until-time differs from the
    /// previous one (from [`License::check`], an activation or the background renewal),
    /// on the thread that made it. Keep it short; it must not call back into this
    /// licence's methods that change the state. Returns an id for
    /// [`License::unsubscribe`].
    pub fn on_change(&self, f: impl Fn(&Check) + Send + Sync + 'static) -> u64 {
        self.inner.watchers.add_callback(Arc::new(f))
    }

    /// A channel that receives every changed check, like [`License::on_change`].
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Check> {
        self.inner.watchers.add_channel()
    }

    /// Stops the callback `id` from [`License::on_change`].
    pub fn unsubscribe(&self, id: u64) {
        self.inner.watchers.remove(id);
    }

    pub(crate) fn load(&self) -> Result<ClientState, ApiError> {
        ClientState::load_on(&self.inner.path, &self.inner.machine)
    }

    /// Reads, changes and writes the state, one change at a time in this process.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut ClientState) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _writing = self.inner.writing.lock();
        let mut state = self.load()?;
        let out = f(&mut state)?;
        state.save_on(&self.inner.path, &self.inner.machine)?;
        Ok(out)
    }

    /// The check of `state` at `now`, under the product's trust.
    pub(crate) fn judge(&self, state: &ClientState, now: Timestamp) -> Check {
        if let (Some(trust), Some(installed)) = (&self.inner.trust, &state.installed) {
            if installed.vendor.root_public_key != trust.bundle.root_public_key {
                return Check::refused(
                    Reason::WrongVendor,
                    "the installed setup key is another vendor's, not the one this product was built for; install this product's setup key".into(),
                    Some(state),
                );
            }
            if let Ok((_, _, product)) = installed.signed()
                && product.application != trust.application
            {
                return Check::refused(
                    Reason::WrongApplication,
                    format!(
                        "the installed setup key is for {} ({}), not this product ({}); install this product's setup key",
                        product.name, product.application, trust.application
                    ),
                    Some(state),
                );
            }
        }
        let status = volact_client::status(state, now);
        let mut check = Check::from_status(&status, state);
        if self.inner.trust.is_some() {
            product_words(&mut check);
        }
        check
    }

    pub(crate) fn note_clock(&self, now: Timestamp, check: &Check) {
        if check.state == State::Unlicensed {
            return;
        }
        let Ok(mut noted) = self.inner.clock_noted.lock() else {
            return;
        };
        if noted.is_some_and(|t| now < volact_core::util::add(t, CLOCK_NOTE_EVERY)) {
            return;
        }
        *noted = Some(now);
        drop(noted);
        let _writing = self.inner.writing.lock();
        // Best effort: a read-only state must not make a check fail, and the reading only
        // strengthens a later rollback check; it never grants anything.
        if let Err(e) = volact_client::note_clock_on(&self.inner.path, &self.inner.machine, now) {
            tracing::debug!(code = %e.code, "could not note the clock in the licence state: {}", e.message);
        }
    }
}

/// Asks the hosts and saves the outcome. No lock is held across the exchange: the outcome
/// is merged into the state as it is when the answer arrives, so changes meanwhile stay.
pub(crate) async fn exchange(inner: &Inner, now: Timestamp) -> Result<Activation, ApiError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    volact_client::activate_and_save_on(
        &inner.path,
        &inner.machine,
        now,
        &inner.machine_name,
        nonce,
        &inner.options,
    )
    .await
}

/// The messages of the core speak of `volact` commands; a product's user never types
/// them, so the reasons that name one are said in the product's terms.
fn product_words(check: &mut Check) {
    let words = match check.reason {
        Reason::NoSetupKey => "no setup key is installed; enter the product's setup key",
        Reason::StateFromAnotherMachine => {
            "the licence state was written on another machine (a copied file or a cloned disk), so it is not believed here; activate, and this machine activates as itself with a client id of its own"
        }
        Reason::StateEdited => {
            "the licence state was changed outside the product, so it is not believed: not licensed, no grace; enter the setup key again, then activate"
        }
        _ => return,
    };
    check.message = words.to_string();
}

fn parse_bundle(bytes: &[u8]) -> Result<VendorBundle, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "the vendor bundle is not one ({e}); compile in the file `volact vendor export --dir V` writes"
            ),
        )
    })
}

fn new_client_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Runs `f`'s future to completion on a thread of its own with a runtime of its own, so
/// that a caller with no runtime, or inside one, can block on it alike.
pub(crate) fn run_blocking<F, Fut, T>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
    T: Send,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::Internal,
                        format!("cannot start the activation's I/O runtime: {e}"),
                    )
                })?;
            runtime.block_on(f())
        });
        worker.join().unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorCode::Internal,
                "the activation thread stopped unexpectedly",
            ))
        })
    })
}
