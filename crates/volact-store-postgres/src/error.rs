//! The backend's own errors, and how each becomes a [`StoreError`] a caller can act on.
//!
//! Driver errors (sqlx, the migrator) never leave this crate: their text is kept in the
//! message, their meaning in the kind, read from PostgreSQL's SQLSTATE where there is one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use volact_store::{StoreError, StoreErrorKind};

/// A failure inside the PostgreSQL backend, converted to a [`StoreError`] at the trait.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// The database refused or failed an operation.
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("could not prepare the PostgreSQL schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The stored data is not what this version expects.
    #[error("stored data is corrupt or from another version: {0}")]
    Corrupt(String),
}

impl DbError {
    /// What a caller can do about it.
    pub(crate) fn kind(&self) -> StoreErrorKind {
        match self {
            DbError::Database(e) => sqlx_kind(e),
            DbError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_kind(e),
            // An applied migration this version does not know, or one edited since.
            DbError::Migrate(_) => StoreErrorKind::Corrupt,
            DbError::Corrupt(_) => StoreErrorKind::Corrupt,
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        let kind = e.kind();
        if kind == StoreErrorKind::Unavailable {
            note_unavailable();
        }
        StoreError::new(kind, e.to_string())
    }
}

/// When the database last failed to answer, in milliseconds after [`epoch`]; 0 for never.
///
/// One for the process rather than one per pool: a second pool in the same process (only
/// tests have one) then pings a little more after the other's failure, which costs
/// nothing that matters.
static LAST_UNAVAILABLE_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Records that the database just failed to answer (a dropped connection, a refused
/// connect, a server shutting down).
pub(crate) fn note_unavailable() {
    let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
    LAST_UNAVAILABLE_MS.store(ms.max(1), Ordering::Relaxed);
}

/// Whether the database failed to answer within the last `window`. While it has, a
/// pooled connection may be one the server dropped even if it was used a moment ago.
pub(crate) fn unavailable_within(window: Duration) -> bool {
    let last = LAST_UNAVAILABLE_MS.load(Ordering::Relaxed);
    if last == 0 {
        return false;
    }
    let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
    now.saturating_sub(last) < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// The kind of a SQLSTATE, <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
pub(crate) fn sqlstate_kind(code: &str) -> StoreErrorKind {
    match code {
        // A serialization failure or deadlock: the same write succeeds when retried.
        "40001" | "40P01" => StoreErrorKind::Unavailable,
        // The server is shutting down, restarting or still starting; the database is
        // missing.
        "57P01" | "57P02" | "57P03" | "3D000" => StoreErrorKind::Unavailable,
        // A write on a read-only server (a standby) or transaction.
        "25006" => StoreErrorKind::Invalid,
        // A table or column missing: the schema is not this version's.
        "42P01" | "42703" => StoreErrorKind::Corrupt,
        "XX001" | "XX002" => StoreErrorKind::Corrupt,
        _ => match code.get(..2) {
            // Connection failures, too many connections, a full disk, out of memory,
            // an operator's intervention (statement or lock timeout, cancel).
            Some("08" | "53" | "57" | "58") => StoreErrorKind::Unavailable,
            Some("23") => StoreErrorKind::Conflict,
            // Wrong password, unknown role, no permission: the settings are wrong.
            Some("28" | "42") => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Internal,
        },
    }
}

fn sqlx_kind(e: &sqlx::Error) -> StoreErrorKind {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .map_or(StoreErrorKind::Internal, |code| sqlstate_kind(&code)),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => StoreErrorKind::Unavailable,
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => StoreErrorKind::Corrupt,
        sqlx::Error::Configuration(_) => StoreErrorKind::Invalid,
        _ => StoreErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_what_a_caller_can_do() {
        let cases = [
            ("08006", StoreErrorKind::Unavailable),
            ("57P01", StoreErrorKind::Unavailable),
            ("53300", StoreErrorKind::Unavailable),
            ("40001", StoreErrorKind::Unavailable),
            ("40P01", StoreErrorKind::Unavailable),
            ("3D000", StoreErrorKind::Unavailable),
            ("23505", StoreErrorKind::Conflict),
            ("28P01", StoreErrorKind::Invalid),
            ("42501", StoreErrorKind::Invalid),
            ("25006", StoreErrorKind::Invalid),
            ("42P01", StoreErrorKind::Corrupt),
            ("XX001", StoreErrorKind::Corrupt),
            ("22003", StoreErrorKind::Internal),
            ("", StoreErrorKind::Internal),
        ];
        for (code, kind) in cases {
            assert_eq!(sqlstate_kind(code), kind, "SQLSTATE {code}");
        }
    }

    #[test]
    fn the_message_keeps_the_driver_text() {
        let e: StoreError = DbError::Database(sqlx::Error::PoolTimedOut).into();
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(e.message().contains("PostgreSQL"), "{e}");
        let e: StoreError = DbError::Corrupt("a negative count".into()).into();
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
        assert!(e.message().contains("a negative count"), "{e}");
    }
}
