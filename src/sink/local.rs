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
}

/// `sinks: - type: stdout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

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
    /// The body of a request whose write failed part-way, and how much of it was written.
    partial: Option<(Vec<u8>, usize)>,
}

enum Output {
    File(File),
    Stdout(io::Stdout),
}

impl Local {
    pub fn file(sink: &str, path: &Path) -> Result<Local, SinkError> {
        let file = open_append(path).map_err(|source| SinkError::Open {
            sink: sink.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Local {
            out: Output::File(file),
            partial: None,
        })
    }

    pub fn stdout() -> Local {
        Local {
            out: Output::Stdout(io::stdout()),
            partial: None,
        }
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

impl Deliver for Local {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        // The driver retries exactly the records of a failed call, so a pending body is theirs.
        let (body, mut written) = self.partial.take().unwrap_or_else(|| {
            let mut body = Vec::with_capacity(records.iter().map(|r| r.doc.len() + 1).sum());
            for r in records {
                body.extend_from_slice(&r.doc);
                body.push(b'\n');
            }
            (body, 0)
        });
        match self.write_from(&body, &mut written) {
            Ok(()) => Ok(vec![Outcome::Delivered; records.len()]),
            Err(e) => {
                self.partial = Some((body, written));
                Err(RequestError(e.to_string()))
            }
        }
    }

    fn abandon(&mut self) {
        if let Some((body, written)) = self.partial.take() {
            if written > 0 && written < body.len() {
                // End the torn record so the next batch starts on its own line.
                let _ = self.write_from(b"\n", &mut 0);
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}
