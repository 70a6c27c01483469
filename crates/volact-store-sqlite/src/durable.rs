//! Making commits durable outside SQLite's commit: the write connection commits with
//! synchronous=NORMAL (into the write-ahead log, not yet flushed), and this flushes the
//! log with one `fdatasync` shared by every commit made before it started.
//!
//! That is exactly what synchronous=FULL does inside each commit, but on the writer's
//! path: with FULL, the next batch cannot start its statements until the disk has
//! flushed the previous one. Here the flush of batch k runs on a blocking thread while
//! the writer commits batch k+1, and a flush covers every batch committed before it
//! began, so under load one flush serves several batches. Nothing is acknowledged
//! before the flush that covers it returns, so an acknowledged write survives a crash or
//! a power failure as before. Checkpoints still flush the log and the database file
//! themselves (SQLite does so at every synchronous level in WAL mode).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::DbError;

/// Commit counter and flush state of one database.
#[derive(Debug)]
pub(super) struct Durability {
    wal: PathBuf,
    dir: PathBuf,
    /// Commits made so far; a commit's token is the value after its own increment.
    committed: AtomicU64,
    /// Held while flushing, so flushes never overlap and latecomers reuse the last one.
    flushed: Mutex<Flushed>,
}

#[derive(Debug, Default)]
struct Flushed {
    /// Every commit with a token up to this is on disk.
    through: u64,
    /// The log file last flushed, kept open, and its identity: a new file (SQLite
    /// recreates it after the last connection closes) is opened again and needs its
    /// directory entry flushed too.
    file: Option<(u64, std::fs::File)>,
}

fn io(e: std::io::Error) -> DbError {
    DbError::Io(e)
}

impl Durability {
    /// For the database at `db`.
    pub(super) fn new(db: &Path) -> Durability {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Durability {
            wal: PathBuf::from(wal),
            dir,
            committed: AtomicU64::new(0),
            flushed: Mutex::new(Flushed::default()),
        }
    }

    /// Notes that a commit has returned; its token for [`Durability::sync`].
    pub(super) fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once every commit up to `token` is on disk.
    pub(super) async fn sync(&self, token: u64) -> Result<(), DbError> {
        let mut flushed = self.flushed.lock().await;
        if flushed.through >= token {
            return Ok(());
        }
        // Every commit counted now has returned, so its frames are in the log file and
        // this flush covers it.
        let target = self.committed.load(Ordering::SeqCst);
        let known = flushed.file.take();
        let (wal, dir) = (self.wal.clone(), self.dir.clone());
        let file = off_thread(move || flush(&wal, &dir, known)).await?;
        flushed.through = target;
        flushed.file = file;
        Ok(())
    }
}

/// Runs a blocking flush on tokio's blocking threads, so the runtime's threads go on
/// serving requests meanwhile; inline on a single-threaded runtime (the simulator,
/// tests), where nothing else could run beside it and the two thread switches are saved.
pub(super) async fn off_thread<T: Send + 'static>(
    flush: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DbError> {
    let single_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    if single_thread {
        return flush().map_err(io);
    }
    tokio::task::spawn_blocking(flush)
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?
        .map_err(io)
}

/// Flushes the log file (and, the first time a file is seen, its directory entry).
/// Returns the file flushed, or `None` when there is no log: SQLite removes it only after
/// checkpointing everything into the database file, which it flushes itself.
fn flush(
    wal: &Path,
    dir: &Path,
    known: Option<(u64, std::fs::File)>,
) -> std::io::Result<Option<(u64, std::fs::File)>> {
    let id = match std::fs::metadata(wal) {
        Ok(m) => meta_id(&m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (id, file) = match known {
        // Still the same file: flush through the handle kept open.
        Some((k, file)) if Some(k) == id => (k, file),
        _ => {
            let file = match std::fs::File::open(wal) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let id = meta_id(&file.metadata()?).unwrap_or(0);
            sync_dir(dir)?;
            (id, file)
        }
    };
    file.sync_data()?;
    Ok(Some((id, file)))
}

/// The identity of a file (its inode), where the platform has one.
#[cfg(unix)]
fn meta_id(m: &std::fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(m.ino())
}

#[cfg(not(unix))]
fn meta_id(_m: &std::fs::Metadata) -> Option<u64> {
    None
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flush_covers_every_earlier_commit() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").map_err(io)?;
        let d = Durability::new(&db);
        assert_eq!(d.wal, dir.path().join("x.db-wal"));
        let (a, b) = (d.committed(), d.committed());
        d.sync(a).await?;
        // The flush for `a` started after `b` had committed, so it covers `b` too.
        assert!(d.flushed.lock().await.through >= b);
        d.sync(b).await?;
        let c = d.committed();
        d.sync(c).await?;
        assert_eq!(d.flushed.lock().await.through, c);
        // No log file at all is not an error.
        let none = Durability::new(&dir.path().join("none.db"));
        let t = none.committed();
        none.sync(t).await
    }
}
