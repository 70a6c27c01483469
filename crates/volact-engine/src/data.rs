//! The host's data directory: its identity key, the vendor bundle, the host key, the host
//! certificate, the configuration and the database, each in its own file.

use crate::config::{ConfigLayers, HostConfig, RawConfig};
use jiff::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};
use volact_core::catalog::{Catalog, VendorBundle};
use volact_core::certificate::{self, HostCertificate};
use volact_core::host_key::HostKey;
use volact_core::keys::{KeyPair, PublicKey};
use volact_core::token;
use volact_proto::{ApiError, ErrorCode, HostActivationRequest, HostActivationResponse};

const IDENTITY: &str = "identity.key";
const VENDOR: &str = "vendor.json";
const HOST_KEY: &str = "host-key.txt";
const CERTIFICATE: &str = "certificate.txt";
const DATABASE: &str = "volact.db";
const CONFIG: &str = "volact.toml";
const SERVING: &str = "serving.json";
const ADMIN_TOKEN: &str = "admin.token";
const VENDOR_URL: &str = "vendor-url.txt";
/// The newest revocation list of the vendor the host has verified.
pub const REVOCATIONS: &str = "revocations.token";

/// Where a serving host listens, written when it starts and removed when it stops, so
/// `host status` (a separate process) can say where and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServingInfo {
    /// `http://ADDR`.
    pub url: String,
    /// Process id of the serving process.
    pub pid: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// `https://ADDR`, when the host serves TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_url: Option<String>,
    /// The SHA-256 fingerprint of the certificate it presents (`AB:CD:…`), kept current
    /// across reloads, so tools on the same machine pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl ServingInfo {
    /// Whether the process still runs (known on Linux; assumed elsewhere).
    pub fn is_running(&self) -> bool {
        if cfg!(target_os = "linux") {
            Path::new(&format!("/proc/{}", self.pid)).exists()
        } else {
            true
        }
    }
}

/// A host data directory.
#[derive(Debug, Clone)]
pub struct HostData {
    dir: PathBuf,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

/// Writes a file atomically (temporary file, fsync, rename), with mode 0600 whatever
/// the umask. Every file is private, not only the secrets (`secret`): a data directory's
/// files name its customer, its certificate and where it serves, which are nobody
/// else's business. A missing directory is created 0700.
pub fn write_atomic(path: &Path, contents: &[u8], secret: bool) -> Result<(), ApiError> {
    let _ = secret;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        volact_store::private::create_dir(dir).map_err(|e| io_error("create", dir, e))?;
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error("write in", dir, e))?;
    volact_store::private::fix(tmp.as_file()).map_err(|e| io_error("protect", path, e))?;
    tmp.write_all(contents)
        .map_err(|e| io_error("write", path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_error("sync", path, e))?;
    tmp.persist(path)
        .map_err(|e| io_error("replace", path, e.error))?;
    Ok(())
}

impl HostData {
    /// The data directory at `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> HostData {
        HostData { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (mode 0700) if it is missing, and narrows it to 0700 and
    /// every file in it to 0600 if an older version left them readable to others.
    pub fn secure(&self) -> Result<(), ApiError> {
        use volact_store::private::{FILE_MODE, create_dir, narrow};
        create_dir(&self.dir).map_err(|e| io_error("create", &self.dir, e))?;
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("read", &self.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            // Directories (the journal's) are the store's to narrow when it opens them.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                narrow(&path, FILE_MODE).map_err(|e| io_error("protect", &path, e))?;
            }
        }
        Ok(())
    }

    /// Secures the directory and takes its lock (see [`crate::dirlock`]) for `purpose`:
    /// refused, naming the holder's process id, while another process serves or writes
    /// it.
    pub fn lock(&self, purpose: &str) -> Result<crate::dirlock::DirLock, ApiError> {
        self.secure()?;
        crate::dirlock::lock(&self.dir, purpose)
    }

    /// Path of the database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DATABASE)
    }

    /// Path of the configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str, missing: impl FnOnce() -> ApiError) -> Result<String, ApiError> {
        let path = self.path(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// Whether `init` has run.
    pub fn is_initialised(&self) -> bool {
        self.path(IDENTITY).exists()
    }

    /// Creates the host identity from a 32-byte seed. Refuses to replace an existing one,
    /// since the host id and certificate depend on it.
    pub fn init(&self, seed: [u8; 32]) -> Result<PublicKey, ApiError> {
        if self.is_initialised() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{} already holds a host identity ({}); remove the directory to start over",
                    self.dir.display(),
                    self.identity()?.public().host_id()
                ),
            ));
        }
        let pair = KeyPair::from_seed(seed)?;
        self.secure()?;
        write_atomic(&self.path(IDENTITY), pair.to_paserk().as_bytes(), true)?;
        self.ensure_admin_token()?;
        Ok(pair.public().clone())
    }

    /// Path of the admin token file (mode 0600).
    pub fn admin_token_path(&self) -> PathBuf {
        self.path(ADMIN_TOKEN)
    }

    /// Creates the admin token if there is none; returns the token.
    pub fn ensure_admin_token(&self) -> Result<String, ApiError> {
        if let Ok(token) = self.admin_token() {
            return Ok(token);
        }
        new_token_file(&self.path(ADMIN_TOKEN))
    }

    /// The admin token.
    pub fn admin_token(&self) -> Result<String, ApiError> {
        let dir = self.dir.display().to_string();
        let text = self.read(ADMIN_TOKEN, || {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{dir} has no admin token; run `volact host init --data {dir}` (it creates one)"
                ),
            )
        })?;
        Ok(text.trim().to_string())
    }

    /// The host's key pair.
    pub fn identity(&self) -> Result<KeyPair, ApiError> {
        let dir = self.dir.display().to_string();
        let text = self.read(IDENTITY, || {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{dir} is not a host data directory; run `volact host init --data {dir}` first"
                ),
            )
        })?;
        KeyPair::from_paserk(&text).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} is corrupt", self.path(IDENTITY).display()),
            )
        })
    }

    /// Installs a host key and the vendor bundle it belongs to. The bundle may be left out
    /// when one is installed already. A different key removes the certificate of the old one.
    pub fn install_key(
        &self,
        host_key: &str,
        bundle: Option<&VendorBundle>,
    ) -> Result<HostKey, ApiError> {
        self.identity()?;
        let bundle = match bundle {
            Some(b) => b.clone(),
            None => self.bundle()?,
        };
        let (root, catalog) = bundle.open()?;
        let host_key = host_key.trim();
        let claims: HostKey = volact_core::host_key::verify_host_key(&root, host_key).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("this host key was not issued by the vendor whose bundle is installed ({e}); check you copied the whole key"),
            )
        })?;
        if catalog.key_group(&claims.group).is_none() {
            return Err(ApiError::new(
                ErrorCode::ProductNotInKeyGroup,
                format!(
                    "the host key names key group `{}`, which the vendor's catalog lacks; get a current vendor bundle",
                    claims.group
                ),
            ));
        }
        let bundle_json = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        write_atomic(&self.path(VENDOR), &bundle_json, false)?;
        let previous = self.host_key().ok().map(|(_, k)| k.jti);
        write_atomic(&self.path(HOST_KEY), host_key.as_bytes(), true)?;
        if previous.as_deref() != Some(claims.jti.as_str()) {
            let _ = std::fs::remove_file(self.path(CERTIFICATE));
        }
        Ok(claims)
    }

    /// The installed vendor bundle.
    pub fn bundle(&self) -> Result<VendorBundle, ApiError> {
        let dir = self.dir.display().to_string();
        let text = self.read(VENDOR, || {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("no vendor bundle installed; run `volact host install-key --data {dir} --vendor vendor.pub HOST_KEY`"),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} is corrupt: {e}", self.path(VENDOR).display()),
            )
        })
    }

    /// Installs a newer catalog of the vendor (`catalog`, a token): it must verify
    /// against the installed vendor root (signed by the root, or a key it delegated for
    /// catalogs) and be a higher version than the installed one; an older or equal one
    /// is refused. Written atomically; a serving host takes it within seconds.
    pub fn import_catalog(&self, catalog: &str) -> Result<Catalog, ApiError> {
        let mut bundle = self.bundle()?;
        let (root, current) = bundle.open()?;
        let offered = volact_core::catalog::verify_catalog(&root, catalog.trim()).map_err(|e| {
            ApiError::new(
                ErrorCode::UntrustedHost,
                format!(
                    "{}; import only a catalog from this host's vendor (volact vendor catalog, or the vendor service's /v1/catalog)",
                    e.message
                ),
            )
        })?;
        volact_core::catalog::check_newer(&current, &offered)?;
        bundle.catalog = catalog.trim().to_string();
        let json = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        write_atomic(&self.path(VENDOR), &json, false)?;
        Ok(offered)
    }

    /// The vendor root key and catalog, verified.
    pub fn vendor(&self) -> Result<(PublicKey, Catalog), ApiError> {
        self.bundle()?.open()
    }

    /// The newest revocation list the host keeps (`revocations.token`), as token and
    /// claims, verified again against the host's vendor; `None` when it has none.
    pub fn revocation_list(
        &self,
    ) -> Result<Option<(String, volact_core::revocation::RevocationList)>, ApiError> {
        let token = match self.read(REVOCATIONS, || {
            ApiError::new(ErrorCode::NotFound, "no revocation list")
        }) {
            Ok(t) => t.trim().to_owned(),
            Err(e) if e.code == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (root, catalog) = self.vendor()?;
        volact_core::revocation::verify(&root, &catalog.vendor, &token)
            .map(|list| Some((token, list)))
    }

    /// The installed host key, as text and claims.
    pub fn host_key(&self) -> Result<(String, HostKey), ApiError> {
        let dir = self.dir.display().to_string();
        let text = self.read(HOST_KEY, || {
            ApiError::new(
                ErrorCode::HostNotActivated,
                format!("no host key installed; run `volact host install-key --data {dir} --vendor vendor.pub HOST_KEY`"),
            )
        })?;
        let claims = token::peek::<HostKey>(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} is corrupt: {e}", self.path(HOST_KEY).display()),
            )
        })?;
        Ok((text.trim().to_string(), claims))
    }

    /// The offline activation request to take to the vendor.
    pub fn activation_request(
        &self,
        nonce: String,
        now: Timestamp,
    ) -> Result<HostActivationRequest, ApiError> {
        let identity = self.identity()?;
        let (key, _) = self.host_key()?;
        certificate::make_request(&identity, &key, nonce, now)
    }

    /// Installs the vendor's answer after checking it chains to the vendor root, names
    /// this host's key and the installed host key, and is in force.
    pub fn install_certificate(
        &self,
        response: &HostActivationResponse,
        now: Timestamp,
    ) -> Result<HostCertificate, ApiError> {
        let identity = self.identity()?;
        let (root, _) = self.vendor()?;
        let (_, key) = self.host_key()?;
        let cert = certificate::verify_certificate(
            &root,
            &response.host_certificate,
            Some(identity.public()),
        )?;
        if cert.key_id != key.jti {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "this certificate is for host key {}, but host key {} is installed",
                    cert.key_id, key.jti
                ),
            ));
        }
        if now >= cert.exp {
            return Err(ApiError::new(
                ErrorCode::HostCertificateExpired,
                format!("this certificate expired at {}", cert.exp),
            ));
        }
        write_atomic(
            &self.path(CERTIFICATE),
            response.host_certificate.trim().as_bytes(),
            false,
        )?;
        Ok(cert)
    }

    /// The installed certificate, verified, if any.
    pub fn certificate(&self) -> Result<Option<(String, HostCertificate)>, ApiError> {
        let text = match std::fs::read_to_string(self.path(CERTIFICATE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &self.path(CERTIFICATE), e)),
        };
        let identity = self.identity()?;
        let (root, _) = self.vendor()?;
        let cert = certificate::verify_certificate(&root, &text, Some(identity.public()))?;
        Ok(Some((text.trim().to_string(), cert)))
    }

    /// Remembers the vendor service the host was activated from online, where it renews
    /// its certificate unless `[vendor] url` names another.
    pub fn set_vendor_url(&self, url: &str) -> Result<(), ApiError> {
        write_atomic(&self.path(VENDOR_URL), url.trim().as_bytes(), false)
    }

    /// The vendor service the host was activated from online, if it was.
    pub fn vendor_url(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.path(VENDOR_URL)).ok()?;
        let url = text.trim();
        (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
    }

    /// Records where this process serves.
    pub fn set_serving(&self, info: Option<&ServingInfo>) -> Result<(), ApiError> {
        match info {
            Some(info) => {
                let json = serde_json::to_vec_pretty(info)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                write_atomic(&self.path(SERVING), &json, false)
            }
            None => {
                let _ = std::fs::remove_file(self.path(SERVING));
                Ok(())
            }
        }
    }

    /// Where a host serving from this directory listens, if one does.
    pub fn serving(&self) -> Option<ServingInfo> {
        let bytes = std::fs::read(self.path(SERVING)).ok()?;
        serde_json::from_slice::<ServingInfo>(&bytes)
            .ok()
            .filter(ServingInfo::is_running)
    }

    /// The configuration file, the `VOLACT_…` environment variables and `flags`, each
    /// overriding the one before, resolved.
    pub fn config(&self, flags: RawConfig) -> Result<HostConfig, ApiError> {
        self.resolve_config(&self.config_layers(flags)?)
    }

    /// The configuration's three layers (file, process environment, `flags`), unresolved.
    pub fn config_layers(&self, flags: RawConfig) -> Result<ConfigLayers, ApiError> {
        ConfigLayers::load(&self.config_path(), |name| std::env::var(name).ok(), flags)
    }

    /// Resolves `layers`; relative paths (the metrics token file, TLS files, the storage's
    /// CA and password files) are taken from this directory.
    pub fn resolve_config(&self, layers: &ConfigLayers) -> Result<HostConfig, ApiError> {
        let mut config = layers.resolve()?;
        if let Some(path) = &mut config.metrics_token_file
            && path.is_relative()
        {
            *path = self.dir.join(&*path);
        }
        config.tls = config.tls.rooted(&self.dir);
        for path in [
            &mut config.storage.ca_file,
            &mut config.storage.password_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = self.dir.join(&*path);
            }
        }
        Ok(config)
    }
}

/// Writes a new bearer token of 256 random bits (64 hex digits) to `path`, mode 0600,
/// and returns it: the admin tokens of the host and of the vendor service.
pub fn new_token_file(path: &Path) -> Result<String, ApiError> {
    let bytes: [u8; 32] = crate::random_bytes()?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_atomic(path, format!("{token}\n").as_bytes(), true)?;
    Ok(token)
}
