//! The local sinks: JSON lines appended to a file (fsynced before a batch is confirmed) or
//! written to standard output.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Deliver, Limits, Outcome, Record, RequestError, SinkError};

/// `sinks: - type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// `ecs` (default): the documents as they are; `falco`: one Falco JSON alert per line.
    #[serde(default)]
    pub format: LineFormat,
}

/// `sinks: - type: stdout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `ecs` (default) or `falco`, as for `file`.
    #[serde(default)]
    pub format: LineFormat,
}

/// `format:` of a local sink: what each line holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The ECS document (alert or event) as it is.
    #[default]
    Ecs,
    /// Falco's JSON alert ([`crate::alert::falco`]), for tools made for Falco; alerts only.
    Falco,
}

/// The largest body kept for the next request: the documents of a default batch (1 MiB of
/// events) with room to spare.
const SPARE_BYTES: usize = 4 << 20;

/// Local writes are cheap: write each source batch as it comes.
pub const LIMITS: Limits = Limits {
    max_records: 10_000,
    max_bytes: 8 << 20,
    flush_interval: Duration::ZERO,
};

/// Where a local sink writes. Unbuffered: each request is one large write, and a write that
/// fails part-way is resumed at the byte where it stopped, so a retry neither repeats nor tears
/// a record.
pub struct Local {
    out: Output,
    format: LineFormat,
    /// The body of a request whose write failed part-way, how much of it was written, and the
    /// outcomes of its records once it is.
    partial: Option<(Vec<u8>, usize, Vec<Outcome>)>,
    /// The body of the last request, kept for the next: a batch of documents is megabytes, and a
    /// fresh buffer each time costs the allocator's page faults.
    spare: Vec<u8>,
}

enum Output {
    File(File),
    Stdout(io::Stdout),
}

impl Local {
    pub fn file(sink: &str, path: &Path) -> Result<Local, SinkError> {
        let open_error = |source| SinkError::Open {
            sink: sink.to_string(),
            path: path.to_path_buf(),
            source,
        };
        let file = open_append(path).map_err(open_error)?;
        let cut = match cut_if_readable(&file).map_err(open_error)? {
            Some(cut) => cut,
            None => {
                tracing::warn!(sink, path = %path.display(), "cannot read the file: a partial last line left by an earlier run is not cut");
                0
            }
        };
        if cut > 0 {
            tracing::warn!(sink, path = %path.display(), bytes = cut,
                "cut a partial last line (a write interrupted before a restart); its record is sent again");
        }
        Ok(Local {
            out: Output::File(file),
            format: LineFormat::Ecs,
            partial: None,
            spare: Vec::new(),
        })
    }

    pub fn stdout() -> Local {
        Local {
            out: Output::Stdout(io::stdout()),
            format: LineFormat::Ecs,
            partial: None,
            spare: Vec::new(),
        }
    }

    /// Writes each record in `format`.
    pub fn with_format(mut self, format: LineFormat) -> Local {
        self.format = format;
        self
    }

    /// Writes `body[*written..]`, advancing `written`; then makes it durable (file sinks fsync
    /// their data before a batch is confirmed, so a checkpoint never runs ahead of the disk).
    fn write_from(&mut self, body: &[u8], written: &mut usize) -> io::Result<()> {
        while *written < body.len() {
            let n = match &mut self.out {
                Output::File(f) => f.write(&body[*written..]),
                Output::Stdout(o) => o.write(&body[*written..]),
            };
            match n {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match &mut self.out {
            Output::File(f) => f.sync_data(),
            Output::Stdout(o) => o.flush(),
        }
    }
}

impl Local {
    /// Writes each record's document and a newline with vectored writes, advancing `written`
    /// (bytes of all of them together); then makes it durable, as [`Local::write_from`].
    fn write_records(&mut self, records: &[Arc<Record>], written: &mut usize) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(records.len() * 2);
        for r in records {
            slices.push(io::IoSlice::new(&r.doc));
            slices.push(io::IoSlice::new(b"\n"));
        }
        let mut bufs = &mut slices[..];
        // Empty documents leave empty slices, which a write of zero bytes must not stop at.
        io::IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = match &mut self.out {
                Output::File(f) => f.write_vectored(bufs),
                Output::Stdout(o) => o.write_vectored(bufs),
            };
            match n {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
                Ok(n) => {
                    *written += n;
                    io::IoSlice::advance_slices(&mut bufs, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match &mut self.out {
            Output::File(f) => f.sync_data(),
            Output::Stdout(o) => o.flush(),
        }
    }
}

impl Deliver for Local {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        // The driver retries exactly the records of a failed call, so a pending body and its
        // outcomes are theirs.
        let (body, mut written, outcomes) = match self.partial.take() {
            Some(p) => p,
            None if self.format == LineFormat::Ecs => {
                // The documents as they are: written from the records, without a copy.
                let mut written = 0;
                match self.write_records(records, &mut written) {
                    Ok(()) => return Ok(vec![Outcome::Delivered; records.len()]),
                    Err(e) => {
                        // Resumed from the byte where it stopped, as a body of its own.
                        let mut body =
                            Vec::with_capacity(records.iter().map(|r| r.doc.len() + 1).sum());
                        for r in records {
                            body.extend_from_slice(&r.doc);
                            body.push(b'\n');
                        }
                        let outcomes = vec![Outcome::Delivered; records.len()];
                        self.partial = Some((body, written, outcomes));
                        return Err(RequestError(e.to_string()));
                    }
                }
            }
            None => {
                let mut outcomes = vec![Outcome::Delivered; records.len()];
                let mut body = std::mem::take(&mut self.spare);
                body.clear();
                body.reserve(records.iter().map(|r| r.doc.len() + 1).sum());
                for (r, outcome) in records.iter().zip(&mut outcomes) {
                    match self.format {
                        LineFormat::Ecs => body.extend_from_slice(&r.doc),
                        LineFormat::Falco => match r.to_falco() {
                            Ok(line) => body.extend_from_slice(&line),
                            Err(why) => {
                                *outcome = Outcome::Reject(why);
                                continue;
                            }
                        },
                    }
                    body.push(b'\n');
                }
                (body, 0, outcomes)
            }
        };
        match self.write_from(&body, &mut written) {
            Ok(()) => {
                // Kept unless a batch of very large events made it huge.
                if body.capacity() <= SPARE_BYTES {
                    self.spare = body;
                }
                Ok(outcomes)
            }
            Err(e) => {
                self.partial = Some((body, written, outcomes));
                Err(RequestError(e.to_string()))
            }
        }
    }

    fn abandon(&mut self) {
        if let Some((body, written, _)) = self.partial.take() {
            if written > 0 && written < body.len() {
                // End the torn record so the next batch starts on its own line.
                let _ = self.write_from(b"\n", &mut 0);
            }
        }
    }
}

/// Truncates `file` after its last `\n`, so that the next record starts a line of its own,
/// and returns how many bytes were cut. A record torn by a failed write (a full disk) before a
/// restart was never confirmed, so it is sent again; without the cut, the resent record would
/// be glued to the torn one, leaving an invalid line. Reads backwards, 64 KiB at a time.
/// Anything but a regular file (a device, a FIFO) is left alone.
pub(crate) fn cut_partial_line(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(0);
    }
    let len = meta.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(len - end)
}

/// [`cut_partial_line`], or `None` when `file` was opened for appending only (we may not read
/// it), which fails with EBADF.
fn cut_if_readable(file: &File) -> io::Result<Option<u64>> {
    const EBADF: i32 = 9;
    match cut_partial_line(file) {
        Ok(cut) => Ok(Some(cut)),
        Err(e) if e.raw_os_error() == Some(EBADF) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let open = |read: bool| {
        OpenOptions::new()
            .create(true)
            .read(read)
            .append(true)
            .mode(0o640)
            .open(path)
    };
    // Readable, to cut a partial last line; a file we may only append to is still written.
    match open(true) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => open(false),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(doc: &str) -> Arc<Record> {
        Arc::new(Record {
            flow: crate::config::types::Flow::Events,
            id: doc.to_string(),
            time: None,
            level: None,
            rule: None,
            user: None,
            doc: doc.as_bytes().to_vec(),
        })
    }

    /// Regression: a record torn by ENOSPC before a SIGTERM was glued to the record sent again
    /// after the restart, leaving one invalid JSON line in the output.
    #[test]
    fn opening_a_file_that_ends_in_a_partial_line_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut sink = Local::file("out", &path).unwrap();
        sink.deliver(&[record("{\"c\":3}")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    }

    #[test]
    fn a_file_of_only_a_partial_line_becomes_empty_and_whole_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        // Longer than one backward read, without any newline.
        std::fs::write(&path, "x".repeat(200_000)).unwrap();
        assert_eq!(
            cut_partial_line(&open_append(&path).unwrap()).unwrap(),
            200_000
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        // A newline far back, behind more than one read of partial bytes.
        let whole = "{\"a\":1}\n";
        std::fs::write(&path, format!("{whole}{}", "y".repeat(100_000))).unwrap();
        assert_eq!(
            cut_partial_line(&open_append(&path).unwrap()).unwrap(),
            100_000
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);

        // Opened for appending only (a file we may not read): written, never cut.
        std::fs::write(&path, "{\"a\":1}\n{\"b").unwrap();
        let append_only = OpenOptions::new().append(true).open(&path).unwrap();
        assert_eq!(cut_if_readable(&append_only).unwrap(), None);

        for kept in ["", "{\"a\":1}\n{\"b\":2}\n"] {
            std::fs::write(&path, kept).unwrap();
            assert!(Local::file("out", &path).is_ok());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);
        }
    }
}
