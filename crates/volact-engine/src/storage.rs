//! Where the host's data lives: one `[storage] url` setting and the one factory that
//! opens the store it names. Every command that opens a store comes through here, so a
//! backend is added in one place.
//!
//! `sqlite://PATH` is the embedded backend. A `PATH` starting with `DATA` (the default,
//! `sqlite://DATA/volact.db`) or any other relative path is taken from the data
//! directory; `sqlite:///abs/volact.db` is an absolute path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use volact_proto::{ApiError, ErrorCode};
use volact_store::Store;
use volact_store_sqlite::SqliteStore;

/// The storage of a host that was given none: `volact.db` in its data directory.
pub const DEFAULT_STORAGE_URL: &str = "sqlite://DATA/volact.db";

/// The schemes [`open_store`] understands, for error messages.
pub const SUPPORTED_SCHEMES: &str = "sqlite://";

/// The placeholder for the data directory at the start of a SQLite path.
const DATA: &str = "DATA";

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// The embedded SQLite backend, at this file.
    Sqlite(PathBuf),
    /// PostgreSQL, named but not built into this volact yet.
    Postgres,
}

impl StorageUrl {
    /// Parses `url`, resolving a SQLite path against `data_dir`.
    pub fn parse(url: &str, data_dir: &Path) -> Result<StorageUrl, ApiError> {
        let url = url.trim();
        let bad = |why: String| {
            ApiError::with_details(
                ErrorCode::BadRequest,
                format!("storage url `{url}`: {why}"),
                serde_json::json!({ "setting": "storage_url", "url": url, "supported": SUPPORTED_SCHEMES }),
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
            "postgres" | "postgresql" => Ok(StorageUrl::Postgres),
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

/// Opens the store `url` names (see the module's documentation), resolving relative
/// SQLite paths against `data_dir`. An unknown scheme is refused naming the supported
/// ones; a failure to open says which store and what the backend reported.
pub async fn open_store(
    url: &str,
    data_dir: &Path,
    mode: OpenMode,
) -> Result<Arc<dyn Store>, ApiError> {
    match StorageUrl::parse(url, data_dir)? {
        StorageUrl::Sqlite(path) => {
            let opened = match mode {
                OpenMode::Serve => SqliteStore::open(&path).await,
                OpenMode::Direct => SqliteStore::open_direct(&path).await,
            };
            let store = opened.map_err(|e| {
                ApiError::with_details(
                    ErrorCode::StorageFailure,
                    format!("cannot open the database {}: {e}", path.display()),
                    serde_json::json!({ "path": path.display().to_string(), "kind": format!("{:?}", e.kind()) }),
                )
            })?;
            Ok(Arc::new(store))
        }
        StorageUrl::Postgres => Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "storage url `{}`: PostgreSQL storage is not built into this volact; use {DEFAULT_STORAGE_URL} (supported: {SUPPORTED_SCHEMES})",
                url.trim()
            ),
            serde_json::json!({ "setting": "storage_url", "supported": SUPPORTED_SCHEMES }),
        )),
    }
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
        assert_eq!(parse("postgres://db/volact"), StorageUrl::Postgres);
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

    #[tokio::test]
    async fn postgres_is_named_as_not_built_in() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_store("postgres://db/volact", dir.path(), OpenMode::Direct)
            .await
            .err()
            .unwrap();
        assert!(e.message.contains("not built into"), "{}", e.message);
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
}
