//! The activation journal: append-only files beside the database that take each
//! activation batch as one write.
//!
//! Storing an activation in the inventory and the audit log touches b-tree pages at
//! random places, and SQLite writes every page a commit touches to its log whole: about
//! 20 KB and a hundred write calls per batch, paid on the request path. Appended to a
//! file, a batch is one `write` of a few KB and, shared with the batches beside it, one
//! `fdatasync`. The batches are applied to the database later, thousands at a time (see
//! `fold`), and the files deleted once the database holds them.
//!
//! A file (a segment, named by its first sequence number) is a run of frames, one per
//! batch: a header (magic, length, CRC-32 of the body) and the body (the batch's first
//! sequence number, its rows). A crash can only cut the last frame short, and that
//! batch was never acknowledged, since acknowledging waits for the flush after the
//! write; reading stops at the first frame that does not check out.
//!
//! The journal is owned by one store at a time, marked by a lock file, because two
//! stores applying the same journal would store its activations twice.

use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{ActivationRecord, StoreError};

/// Start of every frame, so a reader never mistakes zeros or garbage for a batch.
const MAGIC: u32 = 0x564A_4E31; // "VJN1"

/// Frame header: magic, body length, body CRC-32.
const HEADER: usize = 12;

/// A segment is closed and a new one begun past this size, so applied rows can be
/// deleted a file at a time.
const SEGMENT_BYTES: u64 = 16 << 20;

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
pub(super) fn lock(path: &Path) -> Result<Option<File>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(e))
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("the journal was left inconsistent by a crashed thread".to_owned())
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
    /// Every batch with a token up to this is on disk; held while flushing, so
    /// latecomers reuse the flush in progress.
    flushed: tokio::sync::Mutex<u64>,
}

impl Journal {
    /// Opens the journal in `dir` (created if missing) and reads every batch it holds,
    /// in order, as (sequence number, row). Call [`Journal::restart`] once they are in
    /// the database.
    pub(super) fn open(dir: &Path) -> Result<(Journal, Vec<(u64, ActivationRecord)>), StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
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
        let mut rows = Vec::new();
        for (_, path) in &segments {
            let bytes = std::fs::read(path).map_err(io)?;
            if let Err(at) = read_frames(&bytes, &mut rows) {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    "the activation journal ends in a damaged or unfinished batch; it was never acknowledged and is ignored"
                );
            }
        }
        // The new segment starts after the last row read; a file of that name can hold
        // nothing readable (its rows would come later), so it is started afresh.
        let first = rows.last().map_or(1, |(seq, _)| seq + 1);
        segments.retain(|(f, _)| *f != first);
        let file = new_segment(dir, first, true)?;
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
        };
        Ok((journal, rows))
    }

    /// Deletes every segment but the current one, once their rows are in the database.
    pub(super) fn restart(&self) -> Result<(), StoreError> {
        let mut current = self.current.lock().map_err(|_| poisoned())?;
        for (_, path) in current.closed.drain(..) {
            std::fs::remove_file(&path).map_err(io)?;
        }
        Ok(())
    }

    /// Appends `batch`, its rows numbered from `first` on; returns the flush token that
    /// makes it durable ([`Journal::sync`]). The write goes to the page cache: a few KB,
    /// done before the caller's next await.
    pub(super) fn append(&self, first: u64, batch: &[ActivationRecord]) -> Result<u64, StoreError> {
        let frame = encode(first, batch)?;
        let mut current = self.current.lock().map_err(|_| poisoned())?;
        if current.bytes >= SEGMENT_BYTES {
            // Everything written to the old segment is flushed before the new one takes
            // writes, so one flush of the current file covers every earlier token.
            current.file.sync_data().map_err(io)?;
            let file = new_segment(&self.dir, first, false)?;
            let old_first = std::mem::replace(&mut current.first, first);
            current
                .closed
                .push((old_first, segment_path(&self.dir, old_first)));
            current.file = std::sync::Arc::new(file);
            current.bytes = 0;
        }
        (&*current.file).write_all(&frame).map_err(io)?;
        current.bytes += frame.len() as u64;
        current.written += 1;
        Ok(current.written)
    }

    /// Returns once every batch up to `token` is on disk. One flush covers every batch
    /// written before it starts, so under load a flush serves many batches.
    pub(super) async fn sync(&self, token: u64) -> Result<(), StoreError> {
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

    /// Deletes the closed segments whose rows are all at or before `through`.
    pub(super) fn forget(&self, through: u64) -> Result<(), StoreError> {
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

/// Creates the segment starting at `first` (emptying it with `fresh`) and makes its
/// name durable.
fn new_segment(dir: &Path, first: u64, fresh: bool) -> Result<File, StoreError> {
    let path = segment_path(dir, first);
    if fresh {
        std::fs::write(&path, b"").map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(file)
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let len = u32::try_from(s.len())
        .map_err(|_| StoreError::Corrupt("a journal field is over 4 GiB".to_owned()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// One frame: header, then the first sequence number, the row count and the rows.
fn encode(first: u64, batch: &[ActivationRecord]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(HEADER + 12 + batch.len() * 200);
    out.resize(HEADER, 0);
    out.extend_from_slice(&first.to_le_bytes());
    let rows = u32::try_from(batch.len())
        .map_err(|_| StoreError::Corrupt("a batch of over 4 billion rows".to_owned()))?;
    out.extend_from_slice(&rows.to_le_bytes());
    for r in batch {
        out.extend_from_slice(&r.at.to_le_bytes());
        out.extend_from_slice(&r.minimum_asked.to_le_bytes());
        out.extend_from_slice(&r.count.to_le_bytes());
        let flags = u8::from(r.counted)
            | (u8::from(r.ticket_id.is_some()) << 1)
            | (u8::from(r.ticket_valid_until.is_some()) << 2);
        out.push(flags);
        out.extend_from_slice(&r.ticket_valid_until.unwrap_or(0).to_le_bytes());
        for s in [
            &r.client_id,
            &r.machine_name,
            &r.address,
            &r.product,
            &r.application,
            &r.result,
        ] {
            put_str(&mut out, s)?;
        }
        put_str(&mut out, r.ticket_id.as_deref().unwrap_or(""))?;
    }
    let body = u32::try_from(out.len() - HEADER)
        .map_err(|_| StoreError::Corrupt("a batch of over 4 GiB".to_owned()))?;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&body.to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads bytes off the front of a frame's body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// Appends the rows of every whole, intact frame in `bytes` to `rows`; `Err(offset)`
/// where a frame does not check out (a crash cut it short).
fn read_frames(mut bytes: &[u8], rows: &mut Vec<(u64, ActivationRecord)>) -> Result<(), usize> {
    let total = bytes.len();
    while !bytes.is_empty() {
        let at = total - bytes.len();
        let mut header = Reader(bytes);
        let (Some(magic), Some(len), Some(crc)) = (header.u32(), header.u32(), header.u32()) else {
            return Err(at);
        };
        let Some(body) = usize::try_from(len).ok().and_then(|l| header.take(l)) else {
            return Err(at);
        };
        if magic != MAGIC || crc32fast::hash(body) != crc {
            return Err(at);
        }
        decode(body, rows).ok_or(at)?;
        bytes = header.0;
    }
    Ok(())
}

fn decode(body: &[u8], rows: &mut Vec<(u64, ActivationRecord)>) -> Option<()> {
    let mut r = Reader(body);
    let first = r.u64()?;
    let count = r.u32()?;
    for seq in (first..).take(usize::try_from(count).ok()?) {
        let at = r.i64()?;
        let minimum_asked = r.u32()?;
        let count = r.u32()?;
        let [flags] = r.array::<1>()?;
        let valid_until = r.i64()?;
        let client_id = r.string()?;
        let machine_name = r.string()?;
        let address = r.string()?;
        let product = r.string()?;
        let application = r.string()?;
        let result = r.string()?;
        let ticket_id = r.string()?;
        rows.push((
            seq,
            ActivationRecord {
                at,
                client_id,
                machine_name,
                address,
                product,
                application,
                minimum_asked,
                count,
                result,
                counted: flags & 1 != 0,
                ticket_id: (flags & 2 != 0).then_some(ticket_id),
                ticket_valid_until: (flags & 4 != 0).then_some(valid_until),
            },
        ));
    }
    r.0.is_empty().then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> ActivationRecord {
        ActivationRecord {
            at: 1_000 + i,
            client_id: format!("client-{i}"),
            machine_name: format!("machine \"{i}\" é"),
            address: "192.0.2.7".into(),
            product: if i % 3 == 0 {
                String::new()
            } else {
                "p".into()
            },
            application: "app".into(),
            minimum_asked: 25,
            count: u32::try_from(i).unwrap_or(0),
            result: "activated".into(),
            counted: i % 2 == 0,
            ticket_id: (i % 4 != 0).then(|| format!("t{i}")),
            ticket_valid_until: (i % 5 != 0).then_some(9_000 + i),
        }
    }

    #[test]
    fn frames_read_back_and_a_cut_frame_is_where_reading_stops() -> Result<(), StoreError> {
        let a: Vec<ActivationRecord> = (0..3).map(record).collect();
        let b: Vec<ActivationRecord> = (3..10).map(record).collect();
        let mut bytes = encode(1, &a)?;
        bytes.extend(encode(4, &b)?);
        let mut rows = Vec::new();
        assert_eq!(read_frames(&bytes, &mut rows), Ok(()));
        let expected: Vec<(u64, ActivationRecord)> =
            (1..).zip(a.iter().chain(&b).cloned()).collect();
        assert_eq!(rows, expected);

        let first_len = encode(1, &a)?.len();
        for cut in [first_len + 1, first_len + HEADER + 3, bytes.len() - 1] {
            let mut rows = Vec::new();
            assert_eq!(read_frames(&bytes[..cut], &mut rows), Err(first_len));
            assert_eq!(rows.len(), 3, "only the whole first frame at cut {cut}");
        }
        let mut flipped = bytes.clone();
        if let Some(byte) = flipped.last_mut() {
            *byte ^= 1;
        }
        let mut rows = Vec::new();
        assert_eq!(read_frames(&flipped, &mut rows), Err(first_len));
        Ok(())
    }

    #[test]
    fn segments_roll_over_and_applied_ones_are_deleted() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let path = dir.path().join("j");
        let (journal, rows) = Journal::open(&path)?;
        assert!(rows.is_empty());
        journal.restart()?;
        let big: Vec<ActivationRecord> = (0..2_000)
            .map(|i| ActivationRecord {
                machine_name: "m".repeat(12_000),
                ..record(i)
            })
            .collect();
        let mut next = 1;
        for chunk in big.chunks(500) {
            journal.append(next, chunk)?;
            next += chunk.len() as u64;
        }
        let files = || std::fs::read_dir(&path).map(|d| d.count()).unwrap_or(0);
        assert!(files() >= 2, "6 MB per 500 rows rolls over past 16 MiB");
        journal.forget(0)?;
        let before = files();
        journal.forget(next - 1)?;
        assert!(files() < before);
        drop(journal);
        let (_, rows) = Journal::open(&path)?;
        assert!(rows.iter().all(|(seq, _)| *seq > 1));
        assert_eq!(rows.last().map(|(seq, _)| *seq), Some(next - 1));
        Ok(())
    }
}
