//! One process per data directory. Two hosts serving one directory would each keep a
//! count of their own, and the two would drift apart; a tool writing the store beside a
//! serving host would do the same. Whoever serves or writes takes an advisory lock on
//! `volact.lock` in the directory and writes its process id into it, so the next one is
//! refused with a message naming the holder. The operating system releases the lock
//! when the process ends, even by `kill -9`, so a crash never leaves a stale lock.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use volact_proto::{ApiError, ErrorCode};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "volact.lock";

/// The lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    // Held for its lock; closing the file releases it.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

/// Takes the lock of the data directory `dir` for `purpose` (said in the refusal of the
/// next one, e.g. "serving"). Refused with `invalid-state`, naming the process that
/// holds it, when another one (in this process or another) does.
pub fn lock(dir: &Path, purpose: &str) -> Result<DirLock, ApiError> {
    let path = dir.join(LOCK_FILE);
    let mut file = volact_store::private::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error("open the lock file", &path, e))?;
    volact_store::private::fix(&file).map_err(|e| io_error("protect", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            // The holder may still be writing its pid: then it is just not named.
            let _ = file.read_to_string(&mut text);
            return Err(held(dir, &text));
        }
        Err(TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
    }
    let mine = format!("{}\n{purpose}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(mine.as_bytes()))
        .map_err(|e| io_error("write", &path, e))?;
    Ok(DirLock { _file: file, path })
}

/// The refusal when another process holds the lock; `text` is the lock file's content.
fn held(dir: &Path, text: &str) -> ApiError {
    let mut lines = text.lines();
    let pid = lines.next().and_then(|p| p.trim().parse::<u32>().ok());
    let purpose = lines.next().map(str::trim).filter(|p| !p.is_empty());
    let who = match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    };
    let doing = purpose.unwrap_or("using it");
    ApiError::with_details(
        ErrorCode::InvalidState,
        format!(
            "{} is in use by volact {who} ({doing}); one process at a time may serve or write a data directory, so two counts cannot drift apart. Stop that process first (`volact host status --data {}` says where it serves)",
            dir.display(),
            dir.display()
        ),
        serde_json::json!({ "pid": pid, "lock_file": dir.join(LOCK_FILE) }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "serving").unwrap();
        let e = lock(dir.path(), "seeding").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState);
        let pid = std::process::id();
        assert!(
            e.message.contains(&format!("process {pid}")) && e.message.contains("serving"),
            "{}",
            e.message
        );
        assert_eq!(e.details["pid"], pid);
        drop(first);
        let again = lock(dir.path(), "seeding").unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(text, format!("{pid}\nseeding\n"));
    }
}
