//! The client's state file: what is installed, which host to ask, the held ticket and the
//! last attempt. One JSON file, written atomically so a crash never leaves half a state.

use crate::discovery::FoundBy;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use volact_core::catalog::VendorBundle;
use volact_core::setup_key::SetupKey;
use volact_proto::{ApiError, ErrorCode, HostIntervals};

/// The state format this code writes and reads.
pub const STATE_VERSION: u32 = 1;

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
        }
    }
}

/// What installing a setup key records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    /// The client's random id (hyphenated UUID v4); it survives key changes, like a CMID.
    pub client_id: String,
    /// The installed setup key.
    pub setup_key: SetupKey,
    /// The product id the key names.
    pub product: String,
    /// The product's display name.
    pub product_name: String,
    /// The product's application (count group) id.
    pub application: String,
    /// The application's display name.
    pub application_name: String,
    /// The minimum count from the vendor's catalog.
    pub minimum_count: u32,
    /// The product's initial grace, in days.
    pub grace_days: u32,
    /// When this product's key was first installed; the initial grace runs from here.
    pub installed_at: Timestamp,
    /// The vendor's public bundle: root key and signed catalog.
    pub vendor: VendorBundle,
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

    /// Reads the state file. A missing file is a machine with nothing installed, not an
    /// error; an unreadable or corrupt one is `invalid-state` naming the file.
    pub fn load(path: &Path) -> Result<ClientState, ApiError> {
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
        ClientState::parse(&text, path)
    }

    /// Parses the text of a state file (`path` only names it in errors); what [`load`]
    /// does once the file is read, public so the fuzz targets reach it without a file.
    ///
    /// [`load`]: ClientState::load
    pub fn parse(text: &str, path: &Path) -> Result<ClientState, ApiError> {
        let state: ClientState = serde_json::from_str(text).map_err(|e| {
            state_error(
                path,
                format!(
                    "the client state file {} is not valid volact client state ({e}); restore it from a backup, or delete it and run `volact install-key` again (the machine then gets a new client id)",
                    path.display()
                ),
            )
        })?;
        if state.version != STATE_VERSION {
            return Err(state_error(
                path,
                format!(
                    "the client state file {} has format version {}, but this volact reads version {STATE_VERSION}; use the volact release that wrote it",
                    path.display(),
                    state.version
                ),
            ));
        }
        Ok(state)
    }

    /// Writes the state file atomically: a temporary file in the same directory, flushed
    /// to disk, then renamed over the old one. Parent directories are created; on Unix
    /// the file is readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), ApiError> {
        let fail = |what: &str, e: std::io::Error| {
            state_error(
                path,
                format!(
                    "cannot write the client state file {} ({what}: {e}); check that its directory is writable, or pass --state PATH",
                    path.display()
                ),
            )
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot encode the client state: {e}"),
            )
        })?;
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
