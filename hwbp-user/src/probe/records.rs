//! Raw hits kept in a file, as the ring buffer gave them: the input of the
//! replay benchmark (`hwbp-trace replay`, `cargo xtask bench --only-replay`),
//! which feeds them through the live session's collector without a BPF
//! program or a breakpoint. A live run writes them with the hidden
//! `--capture-records FILE`.
//!
//! The file is [`MAGIC`], then one record after another, each its length
//! (u32, little-endian) and its bytes: a [`Hit`]'s header and the frames
//! it carries, exactly what [`crate::probe::load::Batch::push_record`]
//! takes. A record is written back from the decoded [`Hit`] (its header
//! and its `kstack_len + ustack_len` frames): the bytes the BPF program
//! wrote, for everything the collector reads.

use std::{
    fs::File,
    io::{self, BufWriter, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use hwbp_common::{HIT_HEADER_SIZE, Hit, MAX_STACK_DEPTH};
use thiserror::Error;

/// The first bytes of a records file (the format's version is its digit).
pub const MAGIC: &[u8; 8] = b"HWBPRAW1";

#[derive(Debug, Error)]
pub enum RecordsError {
    #[error("`{path}` is not a file of raw records (it does not start with {magic:?})", magic = String::from_utf8_lossy(MAGIC))]
    NotRecords { path: String },
    #[error("`{path}` ends inside a record at byte {at}: the file is cut short")]
    Truncated { path: String, at: usize },
}

/// The bytes of `hit` as the ring buffer holds them: the header and the
/// frames it has.
pub fn hit_bytes(hit: &Hit) -> &[u8] {
    let frames = (hit.kstack_len as usize).min(MAX_STACK_DEPTH)
        + (hit.ustack_len as usize).min(MAX_STACK_DEPTH);
    let len = HIT_HEADER_SIZE + 8 * frames;
    // SAFETY: Hit is repr(C) and made of integers and integer arrays,
    // padded explicitly (no padding bytes); `len` is at most its size
    // (both stacks are capped at MAX_STACK_DEPTH, and `frames` holds
    // 2 * MAX_STACK_DEPTH), and the slice borrows `hit`.
    unsafe { std::slice::from_raw_parts((hit as *const Hit).cast::<u8>(), len) }
}

/// Writes records to a file, buffered.
pub struct RecordWriter {
    out: BufWriter<File>,
}

impl RecordWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        // Mode 0600 and never through a link, as the trace files: records
        // hold kernel addresses, and hwbp runs as root.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        out.write_all(MAGIC)?;
        Ok(Self { out })
    }

    pub fn write(&mut self, hit: &Hit) -> io::Result<()> {
        let bytes = hit_bytes(hit);
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(bytes)
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The records of a records file's contents, in order; `path` names it
/// in errors.
pub fn parse<'a>(bytes: &'a [u8], path: &str) -> Result<Vec<&'a [u8]>, RecordsError> {
    let mut rest =
        bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| RecordsError::NotRecords {
                path: path.to_owned(),
            })?;
    let mut records = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let truncated = || RecordsError::Truncated {
            path: path.to_owned(),
            at,
        };
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (record, tail) = tail.split_at_checked(len).ok_or_else(truncated)?;
        records.push(record);
        rest = tail;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        // SAFETY: Hit is plain old data: all zeroes is a valid value.
        let mut hit: Hit = unsafe { std::mem::zeroed() };
        hit.kstack_len = 2;
        hit.ustack_len = 1;
        hit.frames[..3].copy_from_slice(&[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020, 0x5000]);
        hit.pid = 7;
        let path = std::env::temp_dir().join(format!("hwbp-records-{}", std::process::id()));
        let mut writer = RecordWriter::create(&path).expect("create");
        writer.write(&hit).expect("write");
        hit.kstack_len = 0;
        writer.write(&hit).expect("write");
        writer.finish().expect("flush");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        let records = parse(&bytes, "t").expect("parse");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].len(), HIT_HEADER_SIZE + 24);
        assert_eq!(records[1].len(), HIT_HEADER_SIZE + 8);
        let mut batch = crate::probe::load::Batch::default();
        assert!(batch.push_record(records[0]));
        assert!(batch.push_record(records[1]));
        let hits = batch.hits();
        assert_eq!(
            hits[0].kstack(),
            [0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]
        );
        assert_eq!(hits[0].ustack(), [0x5000]);
        assert_eq!(hits[1].ustack(), [0xffff_ffff_8100_0010]);
        assert_eq!(hits[1].pid, 7);

        assert!(matches!(
            parse(b"nope", "t"),
            Err(RecordsError::NotRecords { .. })
        ));
        assert!(matches!(
            parse(&bytes[..bytes.len() - 1], "t"),
            Err(RecordsError::Truncated { .. })
        ));
    }
}
