//! Where the host's data lives: one `[storage] url` setting and the one factory that
//! opens the store it names. Every command that opens a store comes through here, so a
//! backend is added in one place.
//!
//! `sqlite://PATH` is the embedded backend. A `PATH` starting with `DATA` (the default,
//! `sqlite://DATA/volact.db`) or any other relative path is taken from the data
//! directory; `sqlite:///abs/volact.db` is an absolute path.
//!
//! `postgres://USER@HOST:PORT/DATABASE` (or `postgresql://`) is PostgreSQL, which several
//! hosts may share. Its other settings are `[storage] pool_size`, `ca_file` (TLS with
//! the server's certificate checked against these authorities and its name,
//! `sslmode=verify-full`) and `password_file`; the password may also come from
//! `VOLACT_STORAGE_PASSWORD` or `PGPASSWORD`, never from a command-line argument, which
//! other users of the machine can read in the process list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use volact_proto::{ApiError, ErrorCode};
use volact_store::Store;
use volact_store_postgres::{PgOptions, PgStore};
use volact_store_sqlite::SqliteStore;

/// The storage of a host that was given none: `volact.db` in its data directory.
pub const DEFAULT_STORAGE_URL: &str = "sqlite://DATA/volact.db";

/// The schemes [`open_store`] understands, for error messages.
pub const SUPPORTED_SCHEMES: &str = "sqlite://, postgres://";

/// The environment variable of the PostgreSQL password volact reads first.
pub const PASSWORD_ENV: &str = "VOLACT_STORAGE_PASSWORD";
/// libpq's own password variable, read when volact's and `password_file` are unset.
pub const PG_PASSWORD_ENV: &str = "PGPASSWORD";

/// The PostgreSQL password from the environment, looked up with `lookup`:
/// [`PASSWORD_ENV`] first, then [`PG_PASSWORD_ENV`]; empty values count as unset. With
/// the variable that held it, for messages.
pub fn password_from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<(String, Secret)> {
    [PASSWORD_ENV, PG_PASSWORD_ENV].into_iter().find_map(|var| {
        lookup(var)
            .filter(|v| !v.is_empty())
            .map(|v| (var.to_owned(), Secret::new(v)))
    })
}

/// A password: kept out of `Debug` output, logs and reports.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// `[storage]` beyond its URL, resolved; used by PostgreSQL only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// Connections per host (the backend's default when `None`).
    pub pool_size: Option<u32>,
    /// Certificate authorities for TLS to the database (absolute, or taken from the
    /// data directory).
    pub ca_file: Option<PathBuf>,
    /// A file holding the password (absolute, or taken from the data directory).
    pub password_file: Option<PathBuf>,
    /// A password from the environment, with the variable that held it.
    pub password_env: Option<(String, Secret)>,
}

impl StorageOptions {
    /// Where the password comes from, in the order it is looked for:
    /// `VOLACT_STORAGE_PASSWORD`, `password_file`, the URL (from the file or the
    /// environment only), `PGPASSWORD` (libpq's order: a URL's own password first);
    /// `None` when nowhere.
    pub fn password_source(&self, url: &str) -> Option<String> {
        match (&self.password_env, &self.password_file) {
            (Some((var, _)), _) if var == PASSWORD_ENV => Some(format!("environment {var}")),
            (_, Some(file)) => Some(format!("file {}", file.display())),
            _ if url_has_password(url) => Some("the storage URL".to_owned()),
            (Some((var, _)), None) => Some(format!("environment {var}")),
            (None, None) => None,
        }
    }

    /// The password to send instead of the URL's (`None`: the URL's, or none), read from
    /// where [`StorageOptions::password_source`] says.
    fn password(&self, url: &str) -> Result<Option<String>, ApiError> {
        match (&self.password_env, &self.password_file) {
            (Some((var, secret)), _) if var == PASSWORD_ENV => Ok(Some(secret.expose().to_owned())),
            (_, Some(file)) => read_password_file(file).map(Some),
            _ if url_has_password(url) => Ok(None),
            (Some((_, secret)), None) => Ok(Some(secret.expose().to_owned())),
            (None, None) => Ok(None),
        }
    }
}

/// The first line of `file`, without its line ending.
fn read_password_file(file: &Path) -> Result<String, ApiError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!("[storage] password_file {}: {e}", file.display()),
            serde_json::json!({ "setting": "storage_password_file", "path": file.display().to_string() }),
        )
    })?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "[storage] password_file {} is empty; write the password on its first line",
                file.display()
            ),
            serde_json::json!({ "setting": "storage_password_file", "path": file.display().to_string() }),
        ));
    }
    Ok(password.to_owned())
}

/// Where the user information of a `scheme://user:password@host/…` URL ends, and where
/// the password in it starts, if it holds one.
fn userinfo(url: &str) -> Option<(usize, Option<usize>)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':').map(|c| start + c + 1);
    Some((start + at, colon))
}

/// Whether `url` holds a password (`scheme://user:password@host`).
pub fn url_has_password(url: &str) -> bool {
    matches!(userinfo(url), Some((_, Some(_))))
}

/// `url` with its password, if any, replaced by `***`: what logs and reports show.
pub fn redact(url: &str) -> String {
    match userinfo(url) {
        Some((at, Some(colon))) => format!("{}***{}", &url[..colon], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The placeholder for the data directory at the start of a SQLite path.
const DATA: &str = "DATA";

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// The embedded SQLite backend, at this file.
    Sqlite(PathBuf),
    /// PostgreSQL, at this URL (as written, password included if it holds one).
    Postgres(String),
}

impl StorageUrl {
    /// Parses `url`, resolving a SQLite path against `data_dir`.
    pub fn parse(url: &str, data_dir: &Path) -> Result<StorageUrl, ApiError> {
        let url = url.trim();
        let shown = redact(url);
        let bad = |why: String| {
            ApiError::with_details(
                ErrorCode::BadRequest,
                format!("storage url `{shown}`: {why}"),
                serde_json::json!({ "setting": "storage_url", "url": shown, "supported": SUPPORTED_SCHEMES }),
            )
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(format!(
                "not a URL; write it as {DEFAULT_STORAGE_URL} (supported: {SUPPORTED_SCHEMES})"
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(bad(format!(
                        "names no file; for example {DEFAULT_STORAGE_URL}"
                    )));
                }
                let path = Path::new(rest);
                let path = match path.strip_prefix(DATA) {
                    Ok(inside) => data_dir.join(inside),
                    Err(_) if path.is_absolute() => path.to_path_buf(),
                    Err(_) => data_dir.join(path),
                };
                if path == data_dir {
                    return Err(bad(format!(
                        "names the data directory, not a file in it; for example {DEFAULT_STORAGE_URL}"
                    )));
                }
                Ok(StorageUrl::Sqlite(path))
            }
            "postgres" | "postgresql" => {
                let host = rest.get(userinfo(url).map_or(0, |(at, _)| at + 1 - scheme.len() - 3)..);
                if host.is_none_or(|h| h.is_empty() || h.starts_with(['/', '?'])) {
                    return Err(bad(
                        "names no server; write it as postgres://USER@HOST:PORT/DATABASE".into(),
                    ));
                }
                Ok(StorageUrl::Postgres(url.to_owned()))
            }
            other => Err(bad(format!(
                "unknown scheme `{other}`; supported: {SUPPORTED_SCHEMES}"
            ))),
        }
    }
}

/// How a command uses the store it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// A serving host: activations go through the backend's fastest durable path (for
    /// SQLite, its write-behind journal).
    Serve,
    /// A short-lived tool that writes in bulk or once (seeding, a status command beside
    /// no running host): every write goes straight to the database.
    Direct,
}

/// Opens the store `url` names (see the module's documentation) with no settings beyond
/// it, resolving relative SQLite paths against `data_dir`. An unknown scheme is refused
/// naming the supported ones; a failure to open says which store and what the backend
/// reported.
pub async fn open_store(
    url: &str,
    data_dir: &Path,
    mode: OpenMode,
) -> Result<Arc<dyn Store>, ApiError> {
    open_store_with(url, &StorageOptions::default(), data_dir, mode).await
}

/// Opens the store a host's configuration names, with its `[storage]` settings.
pub async fn open_configured(
    config: &crate::config::HostConfig,
    data_dir: &Path,
    mode: OpenMode,
) -> Result<Arc<dyn Store>, ApiError> {
    open_store_with(&config.storage_url, &config.storage, data_dir, mode).await
}

/// Opens the store `url` names with `options` (see [`open_store`]).
pub async fn open_store_with(
    url: &str,
    options: &StorageOptions,
    data_dir: &Path,
    mode: OpenMode,
) -> Result<Arc<dyn Store>, ApiError> {
    match StorageUrl::parse(url, data_dir)? {
        StorageUrl::Sqlite(path) => {
            let opened = match mode {
                OpenMode::Serve => SqliteStore::open(&path).await,
                OpenMode::Direct => SqliteStore::open_direct(&path).await,
            };
            let store = opened.map_err(|e| sqlite_failed(&path, &e))?;
            Ok(Arc::new(store))
        }
        // Every write commits before it returns, so both modes are the same.
        StorageUrl::Postgres(url) => {
            let store = PgStore::open(&url, &pg_options(options, &url)?)
                .await
                .map_err(|e| postgres_failed(&url, &e))?;
            Ok(Arc::new(store))
        }
    }
}

fn sqlite_failed(path: &Path, e: &volact_store::StoreError) -> ApiError {
    ApiError::with_details(
        ErrorCode::StorageFailure,
        format!("cannot open the database {}: {e}", path.display()),
        serde_json::json!({ "path": path.display().to_string(), "kind": format!("{:?}", e.kind()) }),
    )
}

fn postgres_failed(url: &str, e: &volact_store::StoreError) -> ApiError {
    let shown = redact(url);
    ApiError::with_details(
        ErrorCode::StorageFailure,
        format!("cannot open the PostgreSQL database {shown}: {e}"),
        serde_json::json!({ "url": shown, "kind": format!("{:?}", e.kind()) }),
    )
}

fn pg_options(options: &StorageOptions, url: &str) -> Result<PgOptions, ApiError> {
    Ok(PgOptions {
        pool_size: options.pool_size,
        ca_file: options.ca_file.clone(),
        password: options.password(url)?,
    })
}

/// The vendor service's store when its settings name none: `vendor.db` in the vendor
/// directory.
pub const DEFAULT_VENDOR_STORAGE_URL: &str = "sqlite://DATA/vendor.db";

/// Opens the vendor service's store `url` names (`DATA` being the vendor directory
/// `vendor_dir`), with `options` for PostgreSQL: the same URLs, settings and password
/// sources as a host's store, its own tables and migrations.
pub async fn open_vendor_store(
    url: &str,
    options: &StorageOptions,
    vendor_dir: &Path,
) -> Result<Arc<dyn volact_store::vendor::VendorStore>, ApiError> {
    match StorageUrl::parse(url, vendor_dir)? {
        StorageUrl::Sqlite(path) => {
            let store = volact_store_sqlite::VendorSqliteStore::open(&path)
                .await
                .map_err(|e| sqlite_failed(&path, &e))?;
            Ok(Arc::new(store))
        }
        StorageUrl::Postgres(url) => {
            let store =
                volact_store_postgres::PgVendorStore::open(&url, &pg_options(options, &url)?)
                    .await
                    .map_err(|e| postgres_failed(&url, &e))?;
            Ok(Arc::new(store))
        }
    }
}

/// The host's count: shared with the other hosts of the store when the store has a feed
/// of the count's changes (PostgreSQL), followed from now on; else the embedded count.
pub async fn count_for(
    store: &dyn volact_store::Store,
    settings: &volact_core::settings::Settings,
    clock: &dyn crate::clock::Clock,
) -> Result<Arc<dyn volact_store::count::Count>, ApiError> {
    let Some(feed) = store.count_feed() else {
        return memory_count(store, settings, clock).await;
    };
    let shared = crate::shared_count::SharedCount::load(
        store,
        feed,
        settings.count_window.as_secs(),
        clock.now().as_second(),
    )
    .await
    .map_err(|e| {
        ApiError::new(
            ErrorCode::StorageFailure,
            format!("the host's storage failed: {e}"),
        )
    })?;
    shared.follow();
    Ok(shared)
}

/// The embedded count (the default), loaded from `store` as it stands by `clock`.
pub async fn memory_count(
    store: &dyn volact_store::Store,
    settings: &volact_core::settings::Settings,
    clock: &dyn crate::clock::Clock,
) -> Result<Arc<dyn volact_store::count::Count>, ApiError> {
    let count = volact_store::count::MemoryCount::load(
        store,
        settings.count_window.as_secs(),
        clock.now().as_second(),
    )
    .await
    .map_err(|e| {
        ApiError::new(
            ErrorCode::StorageFailure,
            format!("the host's storage failed: {e}"),
        )
    })?;
    Ok(Arc::new(count))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_resolve_against_the_data_directory() {
        let data = Path::new("/srv/volact");
        let parse = |url: &str| StorageUrl::parse(url, data).unwrap();
        assert_eq!(
            parse(DEFAULT_STORAGE_URL),
            StorageUrl::Sqlite(data.join("volact.db"))
        );
        assert_eq!(
            parse("sqlite://other/x.db"),
            StorageUrl::Sqlite(data.join("other/x.db"))
        );
        assert_eq!(
            parse("sqlite:///var/lib/x.db"),
            StorageUrl::Sqlite(PathBuf::from("/var/lib/x.db"))
        );
        // Only a whole leading component is the placeholder.
        assert_eq!(
            parse("sqlite://DATABASE.db"),
            StorageUrl::Sqlite(data.join("DATABASE.db"))
        );
        assert_eq!(
            parse("postgres://db/volact"),
            StorageUrl::Postgres("postgres://db/volact".into())
        );
        assert_eq!(
            parse("postgresql://u:p@db:5433/volact?sslmode=require"),
            StorageUrl::Postgres("postgresql://u:p@db:5433/volact?sslmode=require".into())
        );
    }

    #[test]
    fn an_unknown_scheme_or_no_file_is_refused_naming_what_works() {
        let data = Path::new("/srv/volact");
        for url in [
            "mysql://db/volact",
            "volact.db",
            "sqlite://",
            "sqlite://DATA",
        ] {
            let e = StorageUrl::parse(url, data).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{url}");
            assert!(e.message.contains(url), "{url}: {}", e.message);
        }
        let e = StorageUrl::parse("mysql://db", data).unwrap_err();
        assert!(e.message.contains("sqlite://"), "{}", e.message);
    }

    #[test]
    fn a_postgres_url_names_a_server_and_its_password_is_never_shown() {
        let data = Path::new("/srv/volact");
        for url in ["postgres://", "postgres:///db", "postgres://u:secret@/db"] {
            let e = StorageUrl::parse(url, data).unwrap_err();
            assert!(
                e.message.contains("names no server"),
                "{url}: {}",
                e.message
            );
            assert!(!e.to_string().contains("secret"), "{e:?}");
        }
        assert!(url_has_password("postgres://u:p@h/db"));
        assert!(url_has_password("postgres://u:@h/db"));
        assert!(!url_has_password("postgres://u@h/db"));
        assert!(!url_has_password("postgres://h/db?user=a:b@c"));
        assert!(!url_has_password("sqlite://DATA/a:b@c.db"));
        assert_eq!(
            redact("postgres://u:s3cr:t@h:5/db?x=1"),
            "postgres://u:***@h:5/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(hidden)");
    }

    #[test]
    fn the_password_comes_from_volacts_variable_then_the_file_then_the_url_then_pgpassword() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let env = |var: &str, value: &str| Some((var.to_owned(), Secret::new(value)));
        let options = |password_env, password_file: Option<PathBuf>| StorageOptions {
            password_env,
            password_file,
            ..StorageOptions::default()
        };
        let url = "postgres://u@h/db";
        let o = options(env(PASSWORD_ENV, "from-env"), Some(file.clone()));
        assert_eq!(o.password(url).unwrap().as_deref(), Some("from-env"));
        assert_eq!(
            o.password_source(url).unwrap(),
            format!("environment {PASSWORD_ENV}")
        );
        let o = options(env(PG_PASSWORD_ENV, "pg"), Some(file.clone()));
        assert_eq!(o.password(url).unwrap().as_deref(), Some("from-file"));
        let o = options(env(PG_PASSWORD_ENV, "pg"), None);
        assert_eq!(o.password(url).unwrap().as_deref(), Some("pg"));
        // A URL's own password beats PGPASSWORD, as with libpq.
        let with_password = "postgres://u:in-url@h/db";
        assert_eq!(o.password(with_password).unwrap(), None);
        assert_eq!(
            o.password_source(with_password).as_deref(),
            Some("the storage URL")
        );
        let o = options(None, None);
        assert_eq!(o.password(url).unwrap(), None);
        assert_eq!(o.password_source(url), None);
        assert_eq!(
            o.password_source("postgres://u:p@h/db").as_deref(),
            Some("the storage URL")
        );
        std::fs::write(&file, "\n").unwrap();
        let e = options(None, Some(file.clone())).password(url).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = options(None, Some(dir.path().join("missing")))
            .password(url)
            .unwrap_err();
        assert!(e.message.contains("password_file"), "{}", e.message);
    }

    #[tokio::test]
    async fn the_default_opens_volact_db_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(DEFAULT_STORAGE_URL, dir.path(), OpenMode::Direct)
            .await
            .unwrap();
        assert_eq!(store.client_total().await.unwrap(), 0);
        store.close().await;
        assert!(dir.path().join("volact.db").is_file());
    }

    #[tokio::test]
    async fn the_vendor_store_opens_by_url_and_an_unknown_scheme_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_vendor_store(
            DEFAULT_VENDOR_STORAGE_URL,
            &StorageOptions::default(),
            dir.path(),
        )
        .await
        .unwrap();
        assert_eq!(store.revocations().await.unwrap().sequence, 0);
        assert!(dir.path().join("vendor.db").is_file());
        let e = open_vendor_store("mysql://x/y", &StorageOptions::default(), dir.path())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(
            e.message.contains("sqlite://, postgres://"),
            "{}",
            e.message
        );
    }
}
