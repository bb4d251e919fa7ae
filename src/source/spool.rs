//! The on-disk spool of a push source (the audit webhook): accepted events are appended to
//! segment files under `state_dir/spool/<source>/` and fsynced before the sender gets its 200;
//! a file source follows the segments with the usual checkpoints and acknowledgements, and a
//! segment is deleted once it is complete and every event in it was confirmed.
//!
//! A SIEM outage therefore fills the disk up to `max_bytes`, not memory; beyond it the spool
//! refuses (the webhook answers 429 and the API server retries).
//!
//! The directory also holds `FORMAT` (the segments' format version, checked on open) and, while
//! requests are received, `.incoming-*` staging files, which the reader never follows and
//! [`Spool::open`] deletes as leftovers of a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::checkpoint::Checkpoints;

/// A segment is closed and a new one started at this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool full ({used} of {max} bytes used)")]
    Full { used: u64, max: u64 },
    #[error("spool write failed: {0}")]
    Io(#[from] io::Error),
}

struct Active {
    file: File,
    seq: u64,
    size: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    active: Mutex<Active>,
    /// Bytes in all segments on disk (updated by appends and by [`Spool::clean`]).
    used: AtomicU64,
}

/// The file in the spool directory that names the format of the segments beside it.
pub const FORMAT_FILE: &str = "FORMAT";

/// The segment format this release writes and reads: JSON lines, one audit event per line,
/// `segment-<12-digit sequence>.jsonl`, torn last lines terminated on open. A spool without a
/// format file was written before the file existed, in this format.
pub const FORMAT_VERSION: u32 = 1;

/// Files being received start with this; they are not segments.
const STAGING_PREFIX: &str = ".incoming-";

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn segment_name(seq: u64) -> String {
    format!("segment-{seq:012}.jsonl")
}

fn segment_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("segment-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl Spool {
    /// The glob a file source follows for this spool.
    pub fn glob(dir: &Path) -> String {
        format!("{}/segment-*.jsonl", dir.display())
    }

    /// Opens the spool in `dir` (created if missing), starting a new segment after the existing
    /// ones. A last segment cut short by a crash gets its torn line terminated, so the reader
    /// can finish it (the torn line was never acknowledged; it is dead-lettered as malformed).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        // Small spools get small segments: confirmed data in the open segment still counts
        // against `max_bytes` until the segment is closed and deleted.
        Self::open_with(dir, max_bytes, SEGMENT_BYTES.min(max_bytes / 4).max(4096))
    }

    pub fn open_with(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        check_format(dir)?;
        // Bodies that were being received when the process stopped were never answered 200.
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(STAGING_PREFIX))
            {
                std::fs::remove_file(e.path())?;
            }
        }
        let segments = list(dir)?;
        if let Some((last, _)) = segments.last() {
            let path = dir.join(segment_name(*last));
            let data_len = std::fs::metadata(&path)?.len();
            if data_len > 0 {
                use std::os::unix::fs::FileExt;
                let f = OpenOptions::new().read(true).append(true).open(&path)?;
                let mut b = [0u8; 1];
                f.read_at(&mut b, data_len - 1)?;
                if b[0] != b'\n' {
                    (&f).write_all(b"\n")?;
                    f.sync_data()?;
                }
            }
        }
        let seq = segments.last().map_or(1, |(s, _)| s + 1);
        let used = segments.iter().map(|(_, len)| len).sum();
        let file = create_segment(dir, seq)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            active: Mutex::new(Active { file, seq, size: 0 }),
            used: AtomicU64::new(used),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes on disk.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether an append of `len` bytes would be accepted now.
    pub fn accepts(&self, len: u64) -> bool {
        self.used() + len <= self.max_bytes
    }

    /// Appends `data` (complete lines) and makes it durable before returning.
    pub fn append(&self, data: &[u8]) -> Result<(), SpoolError> {
        self.append_with(data.len() as u64, |w| w.write_all(data))
    }

    /// Appends exactly `len` bytes of complete lines, written by `fill` through a bounded
    /// buffer (so a large batch is copied from a staging file, never held in memory), and
    /// makes them durable before returning. `fill` writing any other number of bytes is an
    /// error, and the torn data is ended with a newline as for a failed write.
    pub fn append_with(
        &self,
        len: u64,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), SpoolError> {
        let used = self.used();
        if used + len > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }
        let mut a = match self.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        if a.size > 0 && a.size + len > self.segment_bytes {
            let seq = a.seq + 1;
            a.file = create_segment(&self.dir, seq)?;
            a.seq = seq;
            a.size = 0;
        }
        let written = {
            let mut w = CountingWriter {
                inner: io::BufWriter::with_capacity(256 << 10, &mut a.file),
                count: 0,
            };
            fill(&mut w)
                .and_then(|()| w.inner.flush())
                .map(|()| w.count)
        };
        let written = written.and_then(|n| {
            if n == len {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{n} bytes written where {len} were announced"
                )))
            }
        });
        if let Err(e) = written.and_then(|()| a.file.sync_data()) {
            // Part of the data may be on disk: end it so the next append starts a new line
            // (the torn line is reported as malformed by the reader; the sender gets an error
            // and sends the batch again).
            let _ = a.file.write_all(b"\n");
            if let Ok(m) = a.file.metadata() {
                a.size = m.len();
            }
            return Err(SpoolError::Io(e));
        }
        a.size += len;
        self.used.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// A path in the spool directory for a request body being received (never followed by
    /// the reader; leftovers of a crash are deleted by [`Spool::open`]).
    pub fn staging_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{STAGING_PREFIX}{name}"))
    }

    /// Deletes closed segments whose every byte is confirmed in the reader's checkpoint
    /// (`Checkpoints::path(state_dir, source)`), and recounts the bytes in use.
    pub fn clean(&self, checkpoint_path: &Path) -> io::Result<usize> {
        let active = match self.active.lock() {
            Ok(a) => a.seq,
            Err(p) => p.into_inner().seq,
        };
        let checkpoints = Checkpoints::load(checkpoint_path)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut removed = 0;
        let mut used = 0;
        for (seq, len) in list(&self.dir)? {
            let path = self.dir.join(segment_name(seq));
            if seq < active {
                if let Ok(m) = std::fs::metadata(&path) {
                    let done = checkpoints
                        .files
                        .iter()
                        .any(|c| c.dev == m.dev() && c.ino == m.ino() && c.offset >= m.len());
                    if done {
                        std::fs::remove_file(&path)?;
                        removed += 1;
                        continue;
                    }
                }
            }
            used += len;
        }
        self.used.store(used, Ordering::Relaxed);
        Ok(removed)
    }
}

/// Refuses a spool written in a format this release does not know (a newer release's), and
/// marks one without a format file (new, or from before the file existed) as this release's.
fn check_format(dir: &Path) -> io::Result<()> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let version = text.trim();
            match version.parse::<u32>() {
                Ok(FORMAT_VERSION) => Ok(()),
                Ok(v) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} says the spool has format version {v}; this tripline reads version \
                         {FORMAT_VERSION}. Run the release that wrote it until the spool is \
                         drained, or move the directory away (its events are then not delivered)",
                        path.display()
                    ),
                )),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: `{version}` is not a spool format version (this tripline writes {FORMAT_VERSION})",
                        path.display()
                    ),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Written to a temporary name and renamed: a crash leaves no half-written marker.
            let tmp = dir.join(format!("{STAGING_PREFIX}format"));
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{FORMAT_VERSION}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()
        }
        Err(e) => Err(e),
    }
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(segment_name(seq)))?;
    // The new name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Segments in `dir` by sequence number, with their sizes.
fn list(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(seq) = segment_seq(&e.path()) {
            out.push((seq, e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_rotate_and_refuse_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open_with(dir.path(), 100, 40).unwrap();
        s.append(b"0123456789012345678901234567890\n").unwrap();
        s.append(b"abcdefghijabcdefghijabcdefghija\n").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2, "rotated at 40 bytes");
        s.append(b"0123456789012345678901234567890\n").unwrap();
        assert!(matches!(
            s.append(b"0123456789\n"),
            Err(SpoolError::Full { used: 96, max: 100 })
        ));
        assert!(!s.accepts(5));
    }

    #[test]
    fn a_torn_last_line_is_terminated_and_numbering_continues() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(7)), b"{\"a\":1}\n{\"b\":").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(segment_name(7))).unwrap(),
            b"{\"a\":1}\n{\"b\":\n"
        );
        s.append(b"{}\n").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(segment_name(8))).unwrap(),
            b"{}\n"
        );
    }

    #[test]
    fn confirmed_closed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open_with(dir.path(), 1 << 20, 8).unwrap();
        s.append(b"1234567\n").unwrap();
        s.append(b"abcdefg\n").unwrap(); // segment 2 (active)
        let seg1 = dir.path().join(segment_name(1));
        let m = std::fs::metadata(&seg1).unwrap();
        let cp_path = dir.path().join("cp.json");
        let mut cp = Checkpoints::default();
        cp.files.push(crate::source::checkpoint::FileCheckpoint {
            dev: m.dev(),
            ino: m.ino(),
            fingerprint: 0,
            fingerprint_len: 0,
            offset: 4,
            line: 0,
            path: seg1.display().to_string(),
        });
        cp.store(&cp_path).unwrap();
        assert_eq!(s.clean(&cp_path).unwrap(), 0, "not confirmed to its end");
        cp.files[0].offset = 8;
        cp.store(&cp_path).unwrap();
        assert_eq!(s.clean(&cp_path).unwrap(), 1);
        assert!(!seg1.exists());
        assert_eq!(s.used(), 8, "the active segment remains");
    }

    #[test]
    fn the_format_version_is_written_and_a_future_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(),
            "1\n"
        );
        // This release's own spool opens again.
        Spool::open(dir.path(), 1 << 20)
            .unwrap()
            .append(b"{}\n")
            .unwrap();
        Spool::open(dir.path(), 1 << 20).unwrap();

        std::fs::write(dir.path().join(FORMAT_FILE), "2\n").unwrap();
        let e = Spool::open(dir.path(), 1 << 20).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let m = e.to_string();
        assert!(
            m.contains("format version 2") && m.contains("reads version 1"),
            "{m}"
        );
        std::fs::write(dir.path().join(FORMAT_FILE), "banana").unwrap();
        let m = Spool::open(dir.path(), 1 << 20).err().unwrap().to_string();
        assert!(m.contains("`banana`"), "{m}");
    }

    #[test]
    fn a_spool_from_before_the_version_marker_is_read_as_version_1() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(3)), b"{\"a\":1}\n").unwrap();
        Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(),
            "1\n"
        );
        assert!(dir.path().join(segment_name(4)).exists());
    }
}
