//! The activation journal: append-only files beside the database that take each
//! activation batch as one write.
//!
//! Storing an activation in the inventory and the audit log touches b-tree pages at
//! random places, and SQLite writes every page a commit touches to its log whole: many
//! pages and write calls per batch, paid on the request path. Appended to a file, a
//! batch is one `write` of a few KB and, shared with the batches beside it, one
//! `fdatasync` (figures in docs/PERFORMANCE.md, "The write-behind journal"). The batches are applied to the database later, thousands at a time (see
//! `fold`), and the files deleted once the database holds them.
//!
//! A file (a segment, named by its first sequence number) is a run of frames, one per
//! batch: a header (magic, length, CRC-32 of the body) and the body (the batch's first
//! sequence number, its rows). A crash can only cut the last frame short, and that
//! batch was never acknowledged, since acknowledging waits for the flush after the
//! write; reading stops at the first frame that does not check out.
//!
//! Segments are written in place into files already filled with zeros and flushed (a
//! spare, prepared on a thread of its own while the segment before it fills; the first
//! segment of a store is one left by the store before, or an empty file). Appending
//! to a file changes its size, and then every `fdatasync` must write the file's inode as
//! well as the data: a second disk write per flush. Within a prepared file only the data
//! changes. The zeros after the last frame are where reading a segment ends.
//!
//! The journal is owned by one store at a time, marked by a lock file, because two
//! stores applying the same journal would store its activations twice.

use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::frame::{Frame, read_frames};
use crate::DbError;

/// A segment is closed and a new one begun past this size, so applied rows can be
/// deleted a file at a time.
const SEGMENT_BYTES: u64 = 16 << 20;

/// The spare segment, zero-filled and flushed, waiting to become the next segment.
const SPARE: &str = "spare";

/// The spare is prepared once the current segment is this full: a journal that never
/// fills a quarter of a segment (a quiet host, a test) never writes one.
const SPARE_AT: u64 = SEGMENT_BYTES / 4;

/// The spare while it is being prepared; a leftover is an unfinished one.
const SPARE_UNFINISHED: &str = "spare.unfinished";

/// Where the journal of the database at `db` lives (a directory), and its lock file.
pub(super) fn paths(db: &Path) -> (PathBuf, PathBuf) {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volact".to_owned());
    (
        db.with_file_name(format!("{stem}-journal")),
        db.with_file_name(format!("{stem}-journal.lock")),
    )
}

/// Takes the journal's lock. `Ok(None)` when another store holds it.
pub(super) fn lock(path: &Path) -> Result<Option<File>, DbError> {
    let file = volact_store::private::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    volact_store::private::fix(&file).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

fn io(e: std::io::Error) -> DbError {
    DbError::Io(e)
}

fn poisoned() -> DbError {
    DbError::Corrupt("the journal was left inconsistent by a crashed thread".to_owned())
}

/// The segment being written.
#[derive(Debug)]
struct Current {
    file: std::sync::Arc<File>,
    bytes: u64,
    /// Batches written so far, ever: a batch's flush token.
    written: u64,
    /// Earlier segments not yet deleted, oldest first, by first sequence number.
    closed: Vec<(u64, PathBuf)>,
    /// First sequence number of the current segment.
    first: u64,
}

/// The journal's files and their flushing.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    current: Mutex<Current>,
    /// The thread preparing the next segment, until the current one is full.
    spare: Mutex<Option<std::thread::JoinHandle<std::io::Result<PathBuf>>>>,
    /// Every batch with a token up to this is on disk; held while flushing, so
    /// latecomers reuse the flush in progress.
    flushed: tokio::sync::Mutex<u64>,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing) and reads every batch it holds,
    /// in order. Call [`Journal::restart`] once they are in the database.
    pub(super) fn open(dir: &Path) -> Result<(Journal, Vec<Frame>), DbError> {
        volact_store::private::create_dir(dir).map_err(io)?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            // Segments and spares an older version left readable to all.
            volact_store::private::narrow(&path, volact_store::private::FILE_MODE).map_err(io)?;
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                segments.push((first, path));
            }
        }
        segments.sort();
        let mut frames = Vec::new();
        for (_, path) in &segments {
            let bytes = std::fs::read(path).map_err(io)?;
            if let Err(at) = read_frames(&bytes, &mut frames)
                && bytes[at..].iter().any(|&b| b != 0)
            {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    "the activation journal ends in a damaged or unfinished batch; it was never acknowledged and is ignored"
                );
            }
        }
        // The new segment starts after the last row read; a file of that name can hold
        // nothing readable (its rows would come later), so it is started afresh.
        let first = frames.last().map_or(1, |f| f.last() + 1);
        segments.retain(|(f, _)| *f != first);
        let file = match first_segment(dir, first) {
            Some(file) => file,
            None => new_segment(dir, first)?,
        };
        let journal = Journal {
            dir: dir.to_path_buf(),
            current: Mutex::new(Current {
                file: std::sync::Arc::new(file),
                bytes: 0,
                written: 0,
                closed: segments,
                first,
            }),
            flushed: tokio::sync::Mutex::new(0),
            spare: Mutex::new(None),
        };
        Ok((journal, frames))
    }

    /// Deletes every segment but the current one, once their rows are in the database.
    pub(super) fn restart(&self) -> Result<(), DbError> {
        let mut current = self.current.lock().map_err(|_| poisoned())?;
        for (_, path) in current.closed.drain(..) {
            std::fs::remove_file(&path).map_err(io)?;
        }
        Ok(())
    }

    /// Appends `frame`; returns the flush token that makes it durable
    /// ([`Journal::sync`]). The write goes to the page cache: a few KB, done before the
    /// caller's next await.
    pub(super) fn append(&self, frame: &Frame) -> Result<u64, DbError> {
        let first = frame.first();
        let frame = frame.bytes();
        let mut current = self.current.lock().map_err(|_| poisoned())?;
        if current.bytes > 0 && current.bytes + frame.len() as u64 > SEGMENT_BYTES {
            // Everything written to the old segment is flushed before the new one takes
            // writes, so one flush of the current file covers every earlier token.
            current.file.sync_data().map_err(io)?;
            let file = self.next_segment(first)?;
            let old_first = std::mem::replace(&mut current.first, first);
            current
                .closed
                .push((old_first, segment_path(&self.dir, old_first)));
            current.file = std::sync::Arc::new(file);
            current.bytes = 0;
        }
        write_at(&current.file, frame, current.bytes).map_err(io)?;
        current.bytes += frame.len() as u64;
        if current.bytes >= SPARE_AT {
            let mut spare = self.spare.lock().map_err(|_| poisoned())?;
            if spare.is_none() {
                *spare = Some(prepare_spare(&self.dir)?);
            }
        }
        current.written += 1;
        Ok(current.written)
    }

    /// Returns once every batch up to `token` is on disk. One flush covers every batch
    /// written before it starts, so under load a flush serves many batches.
    pub(super) async fn sync(&self, token: u64) -> Result<(), DbError> {
        let mut flushed = self.flushed.lock().await;
        if *flushed >= token {
            return Ok(());
        }
        let (file, target) = {
            let current = self.current.lock().map_err(|_| poisoned())?;
            (current.file.clone(), current.written)
        };
        super::durable::off_thread(move || file.sync_data()).await?;
        *flushed = target;
        Ok(())
    }

    /// The segment starting at `first`: the spare, when it is ready, renamed; else a new
    /// empty file (its flushes write its size too).
    fn next_segment(&self, first: u64) -> Result<File, DbError> {
        let mut spare = self.spare.lock().map_err(|_| poisoned())?;
        let ready = match spare.take() {
            Some(thread) if thread.is_finished() => match thread.join() {
                Ok(Ok(path)) => Some(path),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not prepare the next activation journal file; appending to a new one instead");
                    None
                }
                Err(_) => None,
            },
            // Still being written: a batch must not wait for it.
            Some(thread) => {
                *spare = Some(thread);
                return new_segment(&self.dir, first);
            }
            None => None,
        };
        match ready {
            Some(path) => adopt_spare(&self.dir, &path, first).map_err(io),
            None => new_segment(&self.dir, first),
        }
    }

    /// Deletes the closed segments whose rows are all at or before `through`.
    pub(super) fn forget(&self, through: u64) -> Result<(), DbError> {
        let mut current = self.current.lock().map_err(|_| poisoned())?;
        let current_first = current.first;
        let mut keep_from = 0;
        for i in 0..current.closed.len() {
            let next_first = current
                .closed
                .get(i + 1)
                .map_or(current_first, |(first, _)| *first);
            if next_first.saturating_sub(1) > through {
                break;
            }
            // A failed deletion leaves a file whose rows the database already holds;
            // start-up skips them.
            let _ = std::fs::remove_file(&current.closed[i].1);
            keep_from = i + 1;
        }
        current.closed.drain(..keep_from);
        Ok(())
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Creates the segment starting at `first`, empty (emptied if a file of that name
/// exists), and makes its name durable.
fn new_segment(dir: &Path, first: u64) -> Result<File, DbError> {
    let file = volact_store::private::create(&segment_path(dir, first)).map_err(io)?;
    sync_dir(dir).map_err(io)?;
    Ok(file)
}

/// Renames the prepared `spare` to the segment starting at `first`, makes the name
/// durable, and opens it for writing in place.
fn adopt_spare(dir: &Path, spare: &Path, first: u64) -> std::io::Result<File> {
    let to = segment_path(dir, first);
    std::fs::rename(spare, &to)?;
    let file = std::fs::OpenOptions::new().write(true).open(&to)?;
    sync_dir(dir)?;
    Ok(file)
}

/// The spare the last store left, whole, renamed to start at `first`; `None` when there
/// is none (or it cannot be used, and a new file will do).
fn first_segment(dir: &Path, first: u64) -> Option<File> {
    let spare = dir.join(SPARE);
    let whole = std::fs::metadata(&spare).is_ok_and(|m| m.len() == SEGMENT_BYTES);
    if !whole {
        return None;
    }
    adopt_spare(dir, &spare, first).ok()
}

/// Makes the names in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Starts writing a spare segment of zeros in `dir`, on a thread of its own; the thread
/// returns its path once it is flushed.
fn prepare_spare(dir: &Path) -> Result<std::thread::JoinHandle<std::io::Result<PathBuf>>, DbError> {
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("volact-journal".into())
        .spawn(move || {
            let unfinished = dir.join(SPARE_UNFINISHED);
            let mut file = volact_store::private::create(&unfinished)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()?;
            let spare = dir.join(SPARE);
            std::fs::rename(&unfinished, &spare)?;
            Ok(spare)
        })
        .map_err(io)
}

/// Writes all of `bytes` at `offset`.
#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

/// Writes all of `bytes` at `offset`.
#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::frame::tests::{record, records};
    use super::*;
    use crate::ActivationRecord;

    /// Appends `batch` as one frame, its rows numbered from `first` on.
    fn append(journal: &Journal, first: u64, batch: &[ActivationRecord]) -> Result<u64, DbError> {
        journal.append(&Frame::encode(first, batch)?)
    }

    /// `n` rows of about 12 KB each, so a few batches fill a segment.
    fn big_records(n: i64) -> Vec<ActivationRecord> {
        (0..n)
            .map(|i| ActivationRecord {
                machine_name: "m".repeat(12_000),
                ..record(i)
            })
            .collect()
    }

    #[test]
    fn segments_roll_over_and_applied_ones_are_deleted() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let path = dir.path().join("j");
        let (journal, frames) = Journal::open(&path)?;
        assert!(frames.is_empty());
        journal.restart()?;
        let big = big_records(2_000);
        let mut next = 1;
        for chunk in big.chunks(500) {
            append(&journal, next, chunk)?;
            next += chunk.len() as u64;
        }
        let files = || {
            std::fs::read_dir(&path).map_or(0, |d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .count()
            })
        };
        assert!(files() >= 2, "6 MB per 500 rows rolls over past 16 MiB");
        journal.forget(0)?;
        let before = files();
        journal.forget(next - 1)?;
        assert!(files() < before);
        drop(journal);
        let (_, frames) = Journal::open(&path)?;
        let rows = records(&frames);
        assert!(rows.iter().all(|(seq, _)| *seq > 1));
        assert_eq!(rows.last().map(|(seq, _)| *seq), Some(next - 1));
        Ok(())
    }

    #[test]
    fn a_torn_frame_at_the_end_of_a_segment_is_ignored_and_order_kept() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let path = dir.path().join("j");
        let (journal, frames) = Journal::open(&path)?;
        assert!(frames.is_empty());
        let a: Vec<ActivationRecord> = (0..3).map(record).collect();
        let torn: Vec<ActivationRecord> = (3..7).map(record).collect();
        append(&journal, 1, &a)?;
        append(&journal, 4, &torn)?;
        drop(journal);
        // The power fails midway through writing the second batch: only part of its
        // frame reached the segment (it was never acknowledged).
        let whole = Frame::encode(1, &a)?.bytes().len();
        let second = Frame::encode(4, &torn)?.bytes().len();
        let segment = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(&path, 1))
            .map_err(io)?;
        segment.set_len((whole + second / 2) as u64).map_err(io)?;
        drop(segment);

        let (journal, frames) = Journal::open(&path)?;
        let expected: Vec<(u64, ActivationRecord)> = (1..).zip(a.clone()).collect();
        assert_eq!(
            records(&frames),
            expected,
            "the whole batch, not the torn one"
        );
        // The next batch is numbered after the last whole one, in a segment of its own
        // that reads back after the torn one's.
        let next: Vec<ActivationRecord> = (10..12).map(record).collect();
        append(&journal, 4, &next)?;
        drop(journal);
        let (_, frames) = Journal::open(&path)?;
        let expected: Vec<(u64, ActivationRecord)> = (1..).zip(a.into_iter().chain(next)).collect();
        assert_eq!(records(&frames), expected);
        Ok(())
    }

    /// Waits (at most a minute) for the spare of the journal in `dir` to be ready.
    fn spare_ready(dir: &Path) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if std::fs::metadata(dir.join(SPARE)).is_ok_and(|m| m.len() == SEGMENT_BYTES) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn prepared_segments_are_written_in_place_and_read_back() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let path = dir.path().join("j");
        let (journal, _) = Journal::open(&path)?;
        journal.restart()?;
        // Batches of 500 rows of about 12 KB: the third no longer fits the first segment.
        let big = big_records(1_500);
        let mut next = 1;
        for (i, chunk) in big.chunks(500).enumerate() {
            if i == 2 {
                // Past a quarter of a segment, the spare is prepared in the background.
                assert!(
                    spare_ready(&path),
                    "a spare before the first segment is full"
                );
            }
            append(&journal, next, chunk)?;
            next += chunk.len() as u64;
        }
        let second = segment_path(&path, 1_001);
        assert_eq!(
            std::fs::metadata(&second).map_err(io)?.len(),
            SEGMENT_BYTES,
            "the spare became the second segment, written in place"
        );
        // The second segment is a quarter full too: another spare.
        assert!(spare_ready(&path));
        drop(journal);
        let (journal, frames) = Journal::open(&path)?;
        let rows = records(&frames);
        assert_eq!(rows.len(), 1_500, "every row, the zeros after them ignored");
        assert!(rows.iter().map(|(seq, _)| *seq).eq(1..=1_500));
        assert_eq!(rows[1_499].1, big[1_499]);
        // The spare left behind starts the next store's journal.
        let third = segment_path(&path, 1_501);
        assert_eq!(std::fs::metadata(&third).map_err(io)?.len(), SEGMENT_BYTES);
        append(&journal, 1_501, &big[..1])?;
        drop(journal);
        let (_, frames) = Journal::open(&path)?;
        assert_eq!(records(&frames).len(), 1_501);
        Ok(())
    }
}
