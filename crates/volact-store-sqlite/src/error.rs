//! The backend's own errors, and how each becomes a [`StoreError`] a caller can act on.
//!
//! Driver errors (sqlx, rusqlite, the migrator, the file system) never leave this crate:
//! their text is kept in the message, their meaning in the kind.

use volact_store::{StoreError, StoreErrorKind};

/// A failure inside the SQLite backend, converted to a [`StoreError`] at the trait.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// The database refused or failed an operation (through sqlx).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database refused or failed an activation write (these run on connections
    /// of their own, through rusqlite).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("could not prepare the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file beside the database (its journal, its logs) could not be used.
    #[error("database error: {0}")]
    Io(#[from] std::io::Error),
    /// The stored data is not what this version expects.
    #[error("stored data is corrupt or from another version: {0}")]
    Corrupt(String),
}

impl DbError {
    /// What a caller can do about it.
    pub(crate) fn kind(&self) -> StoreErrorKind {
        match self {
            DbError::Database(e) => sqlx_kind(e),
            DbError::Sqlite(e) => rusqlite_kind(e),
            DbError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_kind(e),
            // An applied migration this version does not know, or one edited since.
            DbError::Migrate(_) => StoreErrorKind::Corrupt,
            DbError::Io(_) => StoreErrorKind::Unavailable,
            DbError::Corrupt(_) => StoreErrorKind::Corrupt,
        }
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        StoreError::new(e.kind(), e.to_string())
    }
}

/// The kind of an SQLite result code (primary or extended).
fn code_kind(code: i32) -> StoreErrorKind {
    // Primary result codes, <https://sqlite.org/rescode.html>.
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const CORRUPT: i32 = 11;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    const CONSTRAINT: i32 = 19;
    const NOTADB: i32 = 26;
    match code & 0xff {
        BUSY | LOCKED | NOMEM | IOERR | FULL | CANTOPEN | PROTOCOL => StoreErrorKind::Unavailable,
        CORRUPT | NOTADB => StoreErrorKind::Corrupt,
        CONSTRAINT => StoreErrorKind::Conflict,
        // A write to a store opened read-only.
        READONLY => StoreErrorKind::Invalid,
        _ => StoreErrorKind::Internal,
    }
}

fn sqlx_kind(e: &sqlx::Error) -> StoreErrorKind {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map_or(StoreErrorKind::Internal, code_kind),
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

fn rusqlite_kind(e: &rusqlite::Error) -> StoreErrorKind {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => code_kind(failure.extended_code),
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_map_to_what_a_caller_can_do() {
        // Extended codes keep their primary code in the low byte.
        let busy_recovery = 5 | (1 << 8);
        let cases = [
            (5, StoreErrorKind::Unavailable),
            (busy_recovery, StoreErrorKind::Unavailable),
            (6, StoreErrorKind::Unavailable),
            (10, StoreErrorKind::Unavailable),
            (11, StoreErrorKind::Corrupt),
            (26, StoreErrorKind::Corrupt),
            (19, StoreErrorKind::Conflict),
            (2067, StoreErrorKind::Conflict), // SQLITE_CONSTRAINT_UNIQUE
            (8, StoreErrorKind::Invalid),
            (1, StoreErrorKind::Internal),
        ];
        for (code, kind) in cases {
            assert_eq!(code_kind(code), kind, "code {code}");
        }
    }

    #[test]
    fn the_message_keeps_the_driver_text() {
        let e: StoreError = DbError::Io(std::io::Error::other("disk on fire")).into();
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(e.to_string().contains("disk on fire"), "{e}");
        let e: StoreError = DbError::Corrupt("a frame".into()).into();
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
        assert!(e.message().contains("a frame"), "{e}");
    }
}
