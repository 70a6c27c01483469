//! The journal's frame: one activation batch as bytes, written to the journal and kept in
//! memory as it is until folded into the database.
//!
//! A frame takes about 185 bytes a row, the same rows as [`ActivationRecord`]s about 460
//! (a heap string per field). Rows waiting for a fold are kept as frames, which leaves
//! room within the host's memory for folds four times larger (see `fold`), and the fold
//! reads them out of the frames without copying a string.
//!
//! A frame is a header (magic, body length, body CRC-32), then its body: the first row's
//! sequence number (u64) and the row count (u32), then the rows. A row is `at` (i64), the
//! minimum asked (u32), the count (u32), flags (u8: counted, has a ticket id, has a
//! valid-until), valid-until (i64, 0 when absent), then the client id, machine name,
//! address, product, application, result and ticket id (empty when absent), each as a u32
//! length and UTF-8 bytes. Integers are little-endian.

use super::write::Row;
use crate::{ActivationRecord, DbError};

/// Start of every frame, so a reader never mistakes zeros or garbage for a batch.
const MAGIC: u32 = 0x564A_4E31; // "VJN1"

/// Frame header: magic, body length, body CRC-32.
const HEADER: usize = 12;

/// Where the rows start: after the header, the first sequence number and the row count.
const ROWS_START: usize = HEADER + 12;

/// One activation batch, encoded: checked whole when made (encoded here, or read back and
/// checked), so its rows always read back.
#[derive(Debug)]
pub(super) struct Frame {
    /// The whole frame, header included, as written to the journal.
    bytes: Vec<u8>,
    /// The first row's sequence number.
    first: u64,
    rows: u32,
}

impl Frame {
    /// Encodes `batch`, its rows numbered from `first` on.
    pub(super) fn encode(first: u64, batch: &[ActivationRecord]) -> Result<Frame, DbError> {
        let rows = u32::try_from(batch.len())
            .map_err(|_| DbError::Corrupt("a batch of over 4 billion rows".to_owned()))?;
        let mut out = Vec::with_capacity(ROWS_START + batch.len() * 200);
        out.resize(HEADER, 0);
        out.extend_from_slice(&first.to_le_bytes());
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
            .map_err(|_| DbError::Corrupt("a batch of over 4 GiB".to_owned()))?;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&body.to_le_bytes());
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out.shrink_to_fit();
        Ok(Frame {
            bytes: out,
            first,
            rows,
        })
    }

    /// The frame as the journal stores it.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sequence number of its first row.
    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// How many rows it holds.
    pub(super) fn len(&self) -> usize {
        self.rows as usize
    }

    /// The sequence number of its last row (the one before its first, when it has none).
    pub(super) fn last(&self) -> u64 {
        (self.first + u64::from(self.rows)).saturating_sub(1)
    }

    /// Its rows, in order, each with its sequence number and its position in the frame
    /// (for [`Frame::row_at`]).
    pub(super) fn rows(&self) -> Rows<'_> {
        Rows {
            bytes: &self.bytes,
            at: ROWS_START,
            seq: self.first,
            left: self.rows,
        }
    }

    /// The row at `position`, as [`Frame::rows`] gave it.
    pub(super) fn row_at(&self, position: u32) -> Option<Row<'_>> {
        let mut r = Reader(self.bytes.get(usize::try_from(position).ok()?..)?);
        read_row(&mut r)
    }
}

/// The rows of a [`Frame`]: (sequence number, position, row).
#[derive(Debug)]
pub(super) struct Rows<'a> {
    bytes: &'a [u8],
    at: usize,
    seq: u64,
    left: u32,
}

impl<'a> Iterator for Rows<'a> {
    type Item = (u64, u32, Row<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let rest = self.bytes.get(self.at..)?;
        let mut r = Reader(rest);
        let row = read_row(&mut r)?;
        let position = u32::try_from(self.at).ok()?;
        self.at += rest.len() - r.0.len();
        let seq = self.seq;
        self.seq += 1;
        self.left -= 1;
        Some((seq, position, row))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), DbError> {
    let len = u32::try_from(s.len())
        .map_err(|_| DbError::Corrupt("a journal field is over 4 GiB".to_owned()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Reads bytes off the front of a frame.
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
    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u32()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

fn read_row<'a>(r: &mut Reader<'a>) -> Option<Row<'a>> {
    let at = r.i64()?;
    let minimum_asked = r.u32()?;
    let count = r.u32()?;
    let [flags] = r.array::<1>()?;
    let valid_until = r.i64()?;
    let client_id = r.str()?;
    let machine_name = r.str()?;
    let address = r.str()?;
    let product = r.str()?;
    let application = r.str()?;
    let result = r.str()?;
    let ticket_id = r.str()?;
    Some(Row {
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
    })
}

/// Appends every whole, intact frame in `bytes` to `frames`; `Err(offset)` where a frame
/// does not check out (a crash cut it short). Frames without rows are skipped.
pub(super) fn read_frames(mut bytes: &[u8], frames: &mut Vec<Frame>) -> Result<(), usize> {
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
        let frame = check(&bytes[..HEADER + body.len()]).ok_or(at)?;
        if frame.rows > 0 {
            frames.push(frame);
        }
        bytes = header.0;
    }
    Ok(())
}

/// The frame in `bytes` (header included) if every row reads and nothing follows them.
fn check(bytes: &[u8]) -> Option<Frame> {
    let mut r = Reader(bytes.get(HEADER..)?);
    let first = r.u64()?;
    let rows = r.u32()?;
    for _ in 0..rows {
        read_row(&mut r)?;
    }
    r.0.is_empty().then(|| Frame {
        bytes: bytes.to_vec(),
        first,
        rows,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A row for tests; fields vary with `i` (empty product, no ticket, ...).
    pub(crate) fn record(i: i64) -> ActivationRecord {
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

    /// Every row of `frames`, with its sequence number, as records.
    pub(crate) fn records(frames: &[Frame]) -> Vec<(u64, ActivationRecord)> {
        frames
            .iter()
            .flat_map(|f| f.rows().map(|(seq, _, row)| (seq, row.to_record())))
            .collect()
    }

    #[test]
    fn frames_read_back_and_a_cut_frame_is_where_reading_stops() -> Result<(), DbError> {
        let a: Vec<ActivationRecord> = (0..3).map(record).collect();
        let b: Vec<ActivationRecord> = (3..10).map(record).collect();
        let mut bytes = Frame::encode(1, &a)?.bytes;
        bytes.extend(Frame::encode(4, &b)?.bytes);
        let mut frames = Vec::new();
        assert_eq!(read_frames(&bytes, &mut frames), Ok(()));
        let expected: Vec<(u64, ActivationRecord)> =
            (1..).zip(a.iter().chain(&b).cloned()).collect();
        assert_eq!(records(&frames), expected);
        assert_eq!(frames.iter().map(Frame::last).collect::<Vec<_>>(), [3, 10]);

        let first_len = Frame::encode(1, &a)?.bytes.len();
        for cut in [first_len + 1, first_len + HEADER + 3, bytes.len() - 1] {
            let mut frames = Vec::new();
            assert_eq!(read_frames(&bytes[..cut], &mut frames), Err(first_len));
            assert_eq!(
                records(&frames).len(),
                3,
                "only the first frame at cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        if let Some(byte) = flipped.last_mut() {
            *byte ^= 1;
        }
        let mut frames = Vec::new();
        assert_eq!(read_frames(&flipped, &mut frames), Err(first_len));
        Ok(())
    }

    #[test]
    fn a_row_reads_again_at_its_position() -> Result<(), DbError> {
        let batch: Vec<ActivationRecord> = (0..20).map(record).collect();
        let frame = Frame::encode(7, &batch)?;
        assert_eq!(frame.len(), 20);
        for (i, (seq, position, row)) in frame.rows().enumerate() {
            assert_eq!(seq, 7 + i as u64);
            assert_eq!(
                frame.row_at(position).map(|r| r.to_record()),
                Some(row.to_record())
            );
            assert_eq!(row.to_record(), batch[i]);
        }
        assert!(frame.row_at(u32::MAX).is_none());
        Ok(())
    }
}
