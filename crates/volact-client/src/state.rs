//! The client's state file: what is installed, which host to ask, the held ticket and the
//! last attempt. One JSON file, written atomically so a crash never leaves half a state,
//! and sealed (see [`crate::seal`]) so an edited or copied file is noticed.

use crate::discovery::FoundBy;
use crate::seal::{self, MachineId, Seal};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use volact_core::catalog::{Catalog, Product, VendorBundle};
use volact_core::keys::PublicKey;
use volact_core::license::Tamper;
use volact_core::setup_key::SetupKey;
use volact_proto::{ApiError, ErrorCode, HostIntervals};

/// The state format this code writes: 2 added the seal and the [`Guard`].
pub const STATE_VERSION: u32 = 2;

/// The format before the seal. Such a file is read once as it is, without any check it
/// cannot pass, and sealed at its next save: see [`ClientState::load`].
const UNSEALED_VERSION: u32 = 1;

/// How far the clock must have moved past the latest reading before `status` and the
/// agent write a new one: a rollback smaller than this after the last write goes unseen,
/// and a machine that asks for its status every second does not write every second.
const CLOCK_NOTE_STEP: SignedDuration = SignedDuration::from_hours(1);

/// Everything a client remembers between runs.
///
/// A machine with no setup key is representable: `installed` is `None`, yet a host or a
/// domain may already be set, because an administrator may point machines at a host
/// before installing keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientState {
    /// Format version; always [`STATE_VERSION`].
    pub version: u32,
    /// The installed setup key and product, once `install-key` has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<Installed>,
    /// The pinned host, `host:port`; pinning disables discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_host: Option<String>,
    /// The domain for SRV discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Whether to try the host that last answered before discovering others.
    pub use_host_cache: bool,
    /// The ticket the client holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<StoredTicket>,
    /// The intervals last heard from a host; the built-in defaults apply until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<HostIntervals>,
    /// The most recent activation attempt, successful or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
    /// The host whose signed answer was last verified (the host cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_host: Option<String>,
    /// How `last_host` was found: pinned, from the cache, or which SRV record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_host_found_by: Option<FoundBy>,
    /// The DNS server for discovery, `ADDR:PORT`; the system's when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<String>,
    /// What the seal protects besides the installed key: rearms, the latest time the
    /// clock was seen, when earlier products' graces started.
    pub guard: Guard,
    /// Why the file this state was read from is not believed, if it is not: set by
    /// [`ClientState::load`], never written (the seal carries it). A state made in memory
    /// is believed.
    #[serde(skip)]
    pub tamper: Option<Tamper>,
}

/// The protected record of an installation, kept by volact only and covered by the seal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Guard {
    /// How many times this installation was rearmed.
    pub rearms: u32,
    /// The client id before the last rearm, sent to hosts so that a machine revoked under
    /// it stays refused under the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_client_id: Option<String>,
    /// The latest time this client's clock is known to have reached: its own readings,
    /// or the reading a host's verified answer confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_seen: Option<Timestamp>,
    /// When the initial grace of each product installed before the current one started,
    /// so that switching products back and forth never starts a grace twice.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub earlier_products: BTreeMap<String, Timestamp>,
    /// The initial grace was given up when the key was installed over an edited state.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grace_forfeited: bool,
    /// The vendor's newest revocation list this client received with a verified answer
    /// (signed; verified again at each use): a host it revokes is refused even if the
    /// host does not know it is revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_list: Option<String>,
}

impl Default for ClientState {
    fn default() -> Self {
        ClientState {
            version: STATE_VERSION,
            installed: None,
            pinned_host: None,
            domain: None,
            use_host_cache: true,
            ticket: None,
            intervals: None,
            last_attempt: None,
            last_host: None,
            last_host_found_by: None,
            dns_server: None,
            guard: Guard::default(),
            tamper: None,
        }
    }
}

/// What installing a setup key records.
///
/// Only the client id, the setup key, the install time and the vendor bundle are the
/// record (and sealed). The product's ids, names, minimum and grace are copies for
/// people reading the file: [`ClientState::load`] replaces them from the bundle's signed
/// catalog, and every decision reads the catalog itself ([`Installed::signed`]), so
/// editing them changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    /// The client's random id (hyphenated UUID v4); it survives key changes, like a CMID.
    pub client_id: String,
    /// The installed setup key.
    pub setup_key: SetupKey,
    /// The product id the key names (copied from the signed catalog).
    pub product: String,
    /// The product's display name (copied from the signed catalog).
    pub product_name: String,
    /// The product's application (count group) id (copied from the signed catalog).
    pub application: String,
    /// The application's display name (copied from the signed catalog).
    pub application_name: String,
    /// The minimum count (copied from the signed catalog).
    pub minimum_count: u32,
    /// The product's initial grace, in days (copied from the signed catalog).
    pub grace_days: u32,
    /// When this product's key was first installed; the initial grace runs from here.
    pub installed_at: Timestamp,
    /// The vendor's public bundle: root key and signed catalog.
    pub vendor: VendorBundle,
}

impl Installed {
    /// The vendor root, its signed catalog, and the catalog's product for the installed
    /// setup key: the only source of the product, its minimum, grace and rearm limit.
    pub fn signed(&self) -> Result<(PublicKey, Catalog, Product), ApiError> {
        let (root, catalog) = self.vendor.open()?;
        let product = catalog.product_for_key(&self.setup_key)?.clone();
        Ok((root, catalog, product))
    }

    /// Sets the display copies from the signed catalog's `product`.
    pub(crate) fn copy_from(&mut self, catalog: &Catalog, product: &Product) {
        self.product.clone_from(&product.id);
        self.product_name.clone_from(&product.name);
        self.application.clone_from(&product.application);
        self.application_name = catalog.application_name(&product.application);
        self.minimum_count = product.minimum_count;
        self.grace_days = product.grace_days;
    }
}

/// A ticket as held by the client: the signed tokens, plus their claims for display.
///
/// The tokens are the truth; status re-verifies them against the vendor root, so editing
/// the copied claims in the file changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTicket {
    /// The ticket (PASETO v4.public, signed by the host).
    pub token: String,
    /// The host certificate (PASETO v4.public, signed by the vendor root).
    pub host_certificate: String,
    /// Ticket id.
    pub ticket_id: String,
    /// The id of the host that signed it.
    pub host_id: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum that applied.
    pub minimum: u32,
    /// Issued at.
    pub issued_at: Timestamp,
    /// When to renew.
    pub renew_after: Timestamp,
    /// When it ends.
    pub valid_until: Timestamp,
}

/// The outcome of one activation attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was made (client clock).
    pub at: Timestamp,
    /// The host asked, `host:port`; empty when no host could be found.
    pub host: String,
    /// `activated`, or the error code of the refusal.
    pub result: String,
    /// The count the host reported, if it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The minimum the host reported, if it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u32>,
    /// The message shown to the user.
    pub message: String,
    /// When to try again after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Timestamp>,
}

/// The `result` of a successful attempt.
pub const RESULT_ACTIVATED: &str = "activated";

impl Attempt {
    /// Whether the attempt obtained a ticket.
    pub fn succeeded(&self) -> bool {
        self.result == RESULT_ACTIVATED
    }
}

fn state_error(path: &Path, what: String) -> ApiError {
    ApiError::with_details(
        ErrorCode::InvalidState,
        what,
        serde_json::json!({ "path": path.display().to_string() }),
    )
}

impl ClientState {
    /// The DNS server setting as an address; a value that is not one (the file was edited
    /// by hand) is `invalid-state` saying how to fix it.
    pub fn dns_server_addr(&self) -> Result<Option<std::net::SocketAddr>, ApiError> {
        match &self.dns_server {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "the client state's DNS server `{text}` is not ADDR:PORT; run `volact set-dns-server ADDR:PORT` or `volact clear-dns-server`"
                    ),
                )
            }),
        }
    }

    /// The latest time this client's clock is known to have reached: the guard's mark or
    /// the last attempt's time, whichever is later.
    pub fn latest_trusted(&self) -> Option<Timestamp> {
        let attempt = self.last_attempt.as_ref().map(|a| a.at);
        self.guard.clock_seen.max(attempt)
    }

    /// Records that the clock read `now`; the mark only moves forward.
    pub(crate) fn observe_clock(&mut self, now: Timestamp) {
        self.guard.clock_seen = Some(self.latest_trusted().map_or(now, |t| t.max(now)));
    }

    /// Records that a host's verified answer accepted the clock reading `now`, within the
    /// allowed difference: the mark becomes `now` even if it was later (a clock that ran
    /// ahead and was put right), and an install time after it is pulled back to it, so
    /// the grace never runs from a time the clock only wrongly read.
    pub(crate) fn confirm_clock(&mut self, now: Timestamp) {
        self.guard.clock_seen = Some(now);
        if let Some(installed) = &mut self.installed {
            installed.installed_at = installed.installed_at.min(now);
        }
        for started in self.guard.earlier_products.values_mut() {
            *started = (*started).min(now);
        }
    }

    /// Copies what a finished activation (`done`) learned of the clock into a state
    /// re-read from disk, when both are the same installation.
    pub(crate) fn merge_clock(&mut self, done: &ClientState) {
        if let (Some(fresh), Some(d)) = (&mut self.installed, &done.installed)
            && fresh.client_id == d.client_id
            && fresh.setup_key == d.setup_key
        {
            fresh.installed_at = d.installed_at;
            self.guard.clone_from(&done.guard);
        }
    }

    /// Reads the state file on this machine; see [`ClientState::load_on`].
    pub fn load(path: &Path) -> Result<ClientState, ApiError> {
        ClientState::load_on(path, &MachineId::this())
    }

    /// Reads the state file as `machine` would. A missing file is a machine with nothing
    /// installed, not an error; an unreadable or corrupt one is `invalid-state` naming
    /// the file. A file whose seal does not match is read, with
    /// [`tamper`](ClientState::tamper) saying why it is not believed.
    ///
    /// A file of the unsealed format 1 is read as it is and sealed at its next save. It
    /// gains nothing by that: its grace comes from the signed catalog, an install time
    /// later than the clock reads is refused by the license rule, and its rearms start
    /// at 0 of a limit it never had. Writing such a file by hand gives what deleting the
    /// state and installing the key again gives (a grace from now), no more; refusing
    /// it would instead take every client of an older release out of its grace.
    pub fn load_on(path: &Path, machine: &MachineId) -> Result<ClientState, ApiError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClientState::default()),
            Err(e) => {
                return Err(state_error(
                    path,
                    format!(
                        "cannot read the client state file {} ({e}); check its permissions, or pass --state PATH",
                        path.display()
                    ),
                ));
            }
        };
        ClientState::parse_on(&text, path, machine)
    }

    /// Parses the text of a state file as this machine would (`path` only names it in
    /// errors); see [`ClientState::parse_on`].
    pub fn parse(text: &str, path: &Path) -> Result<ClientState, ApiError> {
        ClientState::parse_on(text, path, &MachineId::this())
    }

    /// Parses the text of a state file as `machine` would: what [`load_on`] does once the
    /// file is read, public so the fuzz targets reach it without a file.
    ///
    /// [`load_on`]: ClientState::load_on
    pub fn parse_on(text: &str, path: &Path, machine: &MachineId) -> Result<ClientState, ApiError> {
        let corrupt = |e: serde_json::Error| {
            state_error(
                path,
                format!(
                    "the client state file {} is not valid volact client state ({e}); restore it from a backup, or delete it and run `volact install-key` again (the machine then gets a new client id)",
                    path.display()
                ),
            )
        };
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(corrupt)?;
        // A seal that is not even shaped like one is an edit like any other.
        let seal = value
            .as_object_mut()
            .and_then(|o| o.remove("seal"))
            .map(|v| {
                serde_json::from_value::<Seal>(v).unwrap_or(Seal {
                    content: String::new(),
                    machine: String::new(),
                })
            });
        let mut state: ClientState = serde_json::from_value(value).map_err(corrupt)?;
        match state.version {
            STATE_VERSION => state.tamper = seal::verify(&state, seal.as_ref(), machine),
            UNSEALED_VERSION => {
                state.version = STATE_VERSION;
                // Its last attempt is the latest clock reading a format-1 client kept.
                state.guard = Guard {
                    clock_seen: state.last_attempt.as_ref().map(|a| a.at),
                    ..Guard::default()
                };
                // The values a seal would never vouch for are refused here too, or the
                // next save would read back as edited (found by the fuzzer).
                if seal::impossible(&state) {
                    state.tamper = Some(Tamper::Edited);
                }
            }
            other => {
                return Err(state_error(
                    path,
                    format!(
                        "the client state file {} has format version {other}, but this volact reads versions {UNSEALED_VERSION} and {STATE_VERSION}; use the volact release that wrote it",
                        path.display(),
                    ),
                ));
            }
        }
        if let Some(installed) = &mut state.installed {
            match installed.signed() {
                Ok((_, catalog, product)) => installed.copy_from(&catalog, &product),
                Err(_) => state.tamper = state.tamper.or(Some(Tamper::Edited)),
            }
        }
        Ok(state)
    }

    /// The text [`ClientState::save_on`] writes: the state as JSON with its seal for
    /// `machine`, which [`ClientState::parse_on`] reads back.
    pub fn sealed_json(&self, machine: &MachineId) -> Result<Vec<u8>, ApiError> {
        let encode = |e: serde_json::Error| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot encode the client state: {e}"),
            )
        };
        let mut value = serde_json::to_value(self).map_err(encode)?;
        if let (Some(object), Some(seal)) = (value.as_object_mut(), seal::seal(self, machine)) {
            object.insert("seal".into(), serde_json::to_value(seal).map_err(encode)?);
        }
        serde_json::to_vec_pretty(&value).map_err(encode)
    }

    /// Writes the state file on this machine; see [`ClientState::save_on`].
    pub fn save(&self, path: &Path) -> Result<(), ApiError> {
        self.save_on(path, &MachineId::this())
    }

    /// Writes the state file atomically, sealed for `machine`: a temporary file in the
    /// same directory, flushed to disk, then renamed over the old one. Parent directories
    /// are created; on Unix the file is readable by its owner only. A state read as
    /// tampered is written with a seal that stays broken, so no command launders it;
    /// only `install-key` and `rearm` make it sound again.
    pub fn save_on(&self, path: &Path, machine: &MachineId) -> Result<(), ApiError> {
        let fail = |what: &str, e: std::io::Error| {
            state_error(
                path,
                format!(
                    "cannot write the client state file {} ({what}: {e}); check that its directory is writable, or pass --state PATH",
                    path.display()
                ),
            )
        };
        let json = self.sealed_json(machine)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail("creating its directory", e))?;
        let mut tmp_name = path
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("client.json"));
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let mut file = open_private(&tmp).map_err(|e| fail("creating the temporary file", e))?;
        file.write_all(&json).map_err(|e| fail("writing", e))?;
        file.write_all(b"\n").map_err(|e| fail("writing", e))?;
        file.sync_all().map_err(|e| fail("flushing", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| fail("renaming the temporary file", e))?;
        sync_dir(&dir);
        Ok(())
    }
}

/// Records in the state file at `path` that this machine's clock read `now`, when that
/// is well past the latest reading it holds, so that setting the clock back later is
/// noticed. `status` and the agent call it: they are what a product runs while its
/// licence runs out. Nothing is written for a tampered state, one with no key, or a
/// clock behind the mark (that is the rollback itself, and the mark never moves back).
pub fn note_clock(path: &Path, now: Timestamp) -> Result<(), ApiError> {
    note_clock_on(path, &MachineId::this(), now)
}

/// [`note_clock`] reading and sealing the state as `machine` does.
pub fn note_clock_on(path: &Path, machine: &MachineId, now: Timestamp) -> Result<(), ApiError> {
    let mut state = ClientState::load_on(path, machine)?;
    let due = state
        .latest_trusted()
        .is_none_or(|t| now >= volact_core::util::add(t, CLOCK_NOTE_STEP));
    if state.installed.is_none() || state.tamper.is_some() || !due {
        return Ok(());
    }
    state.observe_clock(now);
    state.save_on(path, machine)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A temporary file left by a crash keeps its old mode; the mode option only applies
    // to files it creates.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Makes the rename durable. Best effort: some file systems refuse to sync directories,
/// and the data itself is already on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Where the client state lives unless `--state PATH` says otherwise: `$VOLACT_STATE`,
/// else `$XDG_DATA_HOME/volact/client.json`, else `~/.local/share/volact/client.json`.
pub fn default_state_path() -> Result<PathBuf, ApiError> {
    state_path_from(|name| std::env::var_os(name))
}

/// [`default_state_path`] with the environment passed in, so it can be tested without
/// changing the process environment.
pub(crate) fn state_path_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, ApiError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = var("VOLACT_STATE") {
        return Ok(PathBuf::from(path));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(data) = var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(data.join("volact").join("client.json"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("volact")
            .join("client.json"));
    }
    Err(ApiError::new(
        ErrorCode::InvalidState,
        "cannot tell where the client state lives: neither VOLACT_STATE, XDG_DATA_HOME nor HOME is set; pass --state PATH",
    ))
}
