//! `volact vendor …`: the vendor's offline key ceremony, kept as files in one directory:
//! the root key, the signed catalog, and the ledger of host activations per host key.

use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use volact_core::catalog::{Catalog, CatalogSource, VendorBundle};
use volact_core::delegation::{self, Delegation, Scope, Signer};
use volact_core::host_key::{HostKey, UnreachableProduct, unreachable_products};
use volact_core::keys::{KeyPair, PublicKey};
use volact_core::token;
use volact_engine::data::write_atomic;
use volact_engine::random_bytes;
use volact_proto::{ApiError, ErrorCode};

const ROOT_KEY: &str = "root.key";
const CATALOG: &str = "catalog.token";
const ADMIN_TOKEN: &str = "admin.token";

/// A vendor directory.
pub struct VendorDir {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

/// What `vendor catalog` reports.
#[derive(Debug, Serialize)]
pub struct CatalogReport {
    /// Catalog version signed.
    pub version: u64,
    /// Product id → setup key.
    pub setup_keys: BTreeMap<String, String>,
    /// The catalog.
    pub catalog: Catalog,
}

impl VendorDir {
    /// The vendor directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> VendorDir {
        VendorDir { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the directory 0700, or narrows it to 0700 and its files to 0600 when an
    /// older version left them readable to others: it holds the root key and the ledger
    /// of every customer's activations.
    fn secure(&self) -> Result<(), ApiError> {
        use volact_store::private::{FILE_MODE, create_dir, narrow};
        create_dir(&self.dir).map_err(|e| io("create", &self.dir, e))?;
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io("read", &self.dir, e))?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let path = entry.path();
                narrow(&path, FILE_MODE).map_err(|e| io("protect", &path, e))?;
            }
        }
        Ok(())
    }

    /// The vendor directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The vendor service's admin token file (mode 0600).
    pub fn admin_token_path(&self) -> PathBuf {
        self.path(ADMIN_TOKEN)
    }

    /// The vendor service's admin token, made on first use.
    pub fn ensure_admin_token(&self) -> Result<String, ApiError> {
        let path = self.admin_token_path();
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
            Ok(_) => volact_engine::data::new_token_file(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.secure()?;
                volact_engine::data::new_token_file(&path)
            }
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// Whether `init` has run.
    pub fn exists(&self) -> bool {
        self.path(ROOT_KEY).exists()
    }

    /// Creates the root key pair; refuses to replace one, since every catalog, host key
    /// and host certificate depends on it.
    pub fn init(&self) -> Result<KeyPair, ApiError> {
        if self.exists() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{} already holds a vendor root key; replacing it would orphan every host and client. Use another directory",
                    self.path(ROOT_KEY).display()
                ),
            ));
        }
        let pair = KeyPair::from_seed(random_bytes()?)?;
        self.secure()?;
        write_atomic(&self.path(ROOT_KEY), pair.to_paserk().as_bytes(), true)?;
        write_atomic(
            &self.path("root.pub"),
            pair.public().to_paserk().as_bytes(),
            false,
        )?;
        Ok(pair)
    }

    /// The root key pair.
    pub fn root(&self) -> Result<KeyPair, ApiError> {
        let path = self.path(ROOT_KEY);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "{} holds no vendor root key; run `volact vendor init --dir {}`",
                        self.dir.display(),
                        self.dir.display()
                    ),
                )
            } else {
                io("read", &path, e)
            }
        })?;
        KeyPair::from_paserk(&text).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} is corrupt", path.display()),
            )
        })
    }

    /// The root public key: `root.pub`, which is all a service whose root key stays
    /// offline holds (or the public half of `root.key`).
    pub fn root_public(&self) -> Result<PublicKey, ApiError> {
        let path = self.path("root.pub");
        match std::fs::read_to_string(&path) {
            Ok(text) => PublicKey::from_paserk(text.trim()).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!("{} is corrupt", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self.root()?.public().clone()),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// Who signs for this directory: the delegated key in `signing` when given, else the
    /// root key.
    pub fn signer(&self, signing: Option<&SigningDir>) -> Result<OwnedSigner, ApiError> {
        Ok(match signing {
            Some(dir) => {
                let (key, delegation) = dir.load()?;
                OwnedSigner {
                    key,
                    delegation: Some(delegation),
                }
            }
            None => OwnedSigner {
                key: self.root()?,
                delegation: None,
            },
        })
    }

    /// The current signed catalog, if any.
    pub fn catalog(&self) -> Result<Option<(String, Catalog)>, ApiError> {
        let path = self.path(CATALOG);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path, e)),
        };
        let root = self.root_public()?;
        let catalog: Catalog = volact_core::catalog::verify_catalog(&root, &text).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} does not verify: {e}", path.display()),
            )
        })?;
        Ok(Some((text.trim().to_string(), catalog)))
    }

    pub(crate) fn require_catalog(&self) -> Result<(String, Catalog), ApiError> {
        self.catalog()?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("no catalog signed yet; run `volact vendor catalog --dir {} --from catalog.toml`", self.dir.display()),
            )
        })
    }

    /// Signs a catalog from a source. Products already in the previous catalog keep their
    /// setup keys unless the source sets one, since keys are printed in documentation.
    pub fn sign_catalog(
        &self,
        source: &CatalogSource,
        now: Timestamp,
    ) -> Result<CatalogReport, ApiError> {
        let root = self.root()?;
        let previous = self.catalog()?.map(|(_, c)| c);
        let mut source = source.clone();
        if let Some(prev) = &previous {
            for p in source.products.iter_mut() {
                if p.setup_key.is_none() {
                    p.setup_key = prev.product(&p.id).map(|old| old.setup_key.to_string());
                }
            }
        }
        let version = previous.as_ref().map(|c| c.version + 1).unwrap_or(1);
        let mut failure = None;
        let catalog = Catalog::build(&source, version, now, || match random_bytes::<24>() {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                [0; 24]
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let signed = token::sign(&root, &catalog).map_err(internal)?;
        write_atomic(&self.path(CATALOG), signed.as_bytes(), false)?;
        let readable = serde_json::to_vec_pretty(&catalog).map_err(internal)?;
        write_atomic(&self.path("catalog.json"), &readable, false)?;
        let setup_keys = catalog
            .products
            .iter()
            .map(|p| (p.id.clone(), p.setup_key.to_string()))
            .collect();
        Ok(CatalogReport {
            version,
            setup_keys,
            catalog,
        })
    }

    /// Signs a catalog from a TOML file.
    pub fn sign_catalog_file(
        &self,
        file: &Path,
        now: Timestamp,
    ) -> Result<CatalogReport, ApiError> {
        let text = std::fs::read_to_string(file).map_err(|e| io("read", file, e))?;
        let source: CatalogSource = toml::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{}: {}", file.display(), e.to_string().trim()),
            )
        })?;
        self.sign_catalog(&source, now)
    }

    /// The public bundle for hosts and clients.
    pub fn export(&self) -> Result<VendorBundle, ApiError> {
        let root = self.root_public()?;
        let (catalog, _) = self.require_catalog()?;
        Ok(VendorBundle {
            root_public_key: root.to_paserk(),
            catalog,
        })
    }

    /// Issues a host key, with the products of its group that its seat cap keeps from
    /// ever activating (a warning). A seat cap below every product's minimum is refused:
    /// such a key makes hosts that can never activate anything.
    pub fn host_key(
        &self,
        spec: HostKeySpec,
        now: Timestamp,
        signing: Option<&SigningDir>,
    ) -> Result<(String, HostKey, Vec<UnreachableProduct>), ApiError> {
        let signer = self.signer(signing)?;
        let (_, catalog) = self.require_catalog()?;
        if catalog.key_group(&spec.group).is_none() {
            let groups: Vec<&str> = catalog.key_groups.iter().map(|g| g.id.as_str()).collect();
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "key group `{}` is not in the catalog; it has: {}",
                    spec.group,
                    groups.join(", ")
                ),
            ));
        }
        let group_products = catalog
            .key_group(&spec.group)
            .map(|g| g.products.clone())
            .unwrap_or_default();
        let unreachable = unreachable_products(&catalog, &group_products, spec.seats);
        if let Some(seats) = spec.seats
            && !group_products.is_empty()
            && unreachable.len() == group_products.len()
        {
            let lowest = unreachable.iter().map(|u| u.minimum).min().unwrap_or(0);
            return Err(ApiError::with_details(
                ErrorCode::BadRequest,
                format!(
                    "--seats {seats} is below the minimum count of every product in key group `{}` (the lowest is {lowest}): hosts with this key could never activate anything. Give --seats {lowest} or more, or leave it out for no cap",
                    spec.group
                ),
                serde_json::json!({
                    "field": "seats",
                    "seats": seats,
                    "group": spec.group,
                    "lowest_minimum": lowest,
                    "unreachable": unreachable,
                }),
            ));
        }
        if spec.customer.trim().is_empty() {
            return Err(ApiError::bad_request("customer", "must not be empty"));
        }
        if spec.max_hosts == 0 || spec.max_activations == 0 {
            return Err(ApiError::bad_request(
                "max-hosts",
                "limits must be at least 1",
            ));
        }
        if spec.expires.is_some_and(|e| e <= now) {
            return Err(ApiError::bad_request("expires", "is in the past"));
        }
        let id: [u8; 8] = random_bytes()?;
        let key = HostKey {
            jti: format!(
                "hk-{}",
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            vendor: catalog.vendor.clone(),
            customer: spec.customer,
            group: spec.group,
            seats: spec.seats,
            exp: spec.expires,
            max_hosts: spec.max_hosts,
            max_activations: spec.max_activations,
            iat: now,
            usage_reports: spec.usage_reports,
            delegation: signer.delegation.clone(),
        };
        Ok((
            token::sign(&signer.key, &key).map_err(internal)?,
            key,
            unreachable,
        ))
    }

    /// Certifies a new signing key for `days` and `scope` and writes it, with the root's
    /// delegation, to `out` (created 0700; the key 0600): what the vendor's activation
    /// service is given instead of the root key. Refuses an `out` that already holds one.
    pub fn delegate(
        &self,
        out: &Path,
        days: u32,
        scope: &[Scope],
        now: Timestamp,
    ) -> Result<Delegation, ApiError> {
        let root = self.root()?;
        let (_, catalog) = self.require_catalog()?;
        let signing = SigningDir::new(out);
        if signing.key_path().exists() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{} already holds a signing key; give the new one another directory",
                    out.display()
                ),
            ));
        }
        let pair = KeyPair::from_seed(random_bytes()?)?;
        let (token, delegation) =
            delegation::delegate(&root, &catalog.vendor, pair.public(), scope, now, days)?;
        volact_store::private::create_dir(out).map_err(|e| io("create", out, e))?;
        write_atomic(&signing.key_path(), pair.to_paserk().as_bytes(), true)?;
        write_atomic(&signing.delegation_path(), token.as_bytes(), false)?;
        Ok(delegation)
    }
}

/// A signing key and, for a delegated one, the root's delegation of it.
pub struct OwnedSigner {
    /// The key.
    pub key: KeyPair,
    /// The delegation token, `None` for the root.
    pub delegation: Option<String>,
}

impl OwnedSigner {
    /// The signer for `volact_core`'s signing functions.
    pub fn as_signer(&self) -> Signer<'_> {
        Signer {
            key: &self.key,
            delegation: self.delegation.clone(),
        }
    }
}

/// A delegated signing key and the root's delegation of it (`vendor delegate --out`).
pub struct SigningDir {
    dir: PathBuf,
}

impl SigningDir {
    /// The signing directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> SigningDir {
        SigningDir { dir: dir.into() }
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("signing.key")
    }

    fn delegation_path(&self) -> PathBuf {
        self.dir.join("delegation")
    }

    /// The signing key and its delegation token. The pair is checked: a delegation of
    /// another key would make certificates no one accepts.
    pub fn load(&self) -> Result<(KeyPair, String), ApiError> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot read {} ({e}); make the signing directory with `volact vendor delegate --dir V --out {}`",
                        path.display(),
                        self.dir.display()
                    ),
                )
            })
        };
        let key = KeyPair::from_paserk(read(self.key_path())?.trim()).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("{} is corrupt", self.key_path().display()),
            )
        })?;
        let token = read(self.delegation_path())?.trim().to_string();
        let claims: Delegation = token::peek(&token).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{} is not a delegation: {e}",
                    self.delegation_path().display()
                ),
            )
        })?;
        if claims.signing_public_key != key.public().to_paserk() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "{} delegates another key than {}",
                    self.delegation_path().display(),
                    self.key_path().display()
                ),
            ));
        }
        Ok((key, token))
    }
}

/// What `vendor host-key` is asked for.
pub struct HostKeySpec {
    /// Customer.
    pub customer: String,
    /// Key group.
    pub group: String,
    /// Seat cap.
    pub seats: Option<u32>,
    /// Expiry.
    pub expires: Option<Timestamp>,
    /// Hosts.
    pub max_hosts: u32,
    /// Activations per host.
    pub max_activations: u32,
    /// Whether its hosts send daily usage reports.
    pub usage_reports: bool,
}

/// Parses `YYYY-MM-DD` (end of that day, UTC) or an RFC 3339 time.
pub fn parse_date(text: &str) -> Result<Timestamp, ApiError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        ApiError::bad_request(
            "expires",
            format!("`{text}` is not a date; write YYYY-MM-DD or an RFC 3339 time"),
        )
    })?;
    date.at(23, 59, 59, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| ApiError::bad_request("expires", e.to_string()))
}
