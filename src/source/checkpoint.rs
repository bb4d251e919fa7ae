//! Checkpoints of file sources: per file identity, the offset up to which every required sink
//! confirmed the events. Written atomically (temp file, fsync, rename, fsync of the directory).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many leading bytes of a file identify it together with its inode.
pub const FINGERPRINT_BYTES: usize = 1024;

/// FNV-1a over the first bytes of a file: stable across versions and platforms.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads up to [`FINGERPRINT_BYTES`] from the start of `path`-opened file `f` (by positioned
/// reads, so the file's read position is untouched).
pub fn read_prefix(f: &File, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len.min(FINGERPRINT_BYTES)];
    let mut got = 0;
    while got < buf.len() {
        let n = f.read_at(&mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// A source name as a file name: letters, digits, `-` and `_` kept, anything else `_`.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One followed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub dev: u64,
    pub ino: u64,
    /// FNV-1a of the first `fingerprint_len` bytes.
    pub fingerprint: u64,
    pub fingerprint_len: u64,
    /// Every event before this byte offset was confirmed.
    pub offset: u64,
    /// The line number at `offset` (lines before it).
    pub line: u64,
    /// The path when last seen (for humans and for finding a compressed backup).
    pub path: String,
}

/// The checkpoint file of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub version: u32,
    pub files: Vec<FileCheckpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("writing checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl Checkpoints {
    /// The checkpoint file of the source named `source` in `state_dir`.
    pub fn path(state_dir: &Path, source: &str) -> PathBuf {
        state_dir.join(format!("checkpoints-{}.json", file_safe(source)))
    }

    /// `Ok(None)` when there is no checkpoint yet (a first start).
    pub fn load(path: &Path) -> Result<Option<Checkpoints>, CheckpointError> {
        let mut text = String::new();
        match File::open(path) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(|source| CheckpointError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Writes atomically: a crash leaves either the old or the new file, never a torn one.
    pub fn store(&self, path: &Path) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        {
            let mut f = File::create(&tmp).map_err(err)?;
            f.write_all(&body).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent() {
            // Persist the rename itself.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_atomically_and_a_missing_file_is_a_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = Checkpoints::path(dir.path(), "audit/logs");
        assert!(p.ends_with("checkpoints-audit_logs.json"));
        assert_eq!(Checkpoints::load(&p).unwrap(), None);
        let c = Checkpoints {
            version: 1,
            files: vec![FileCheckpoint {
                dev: 1,
                ino: 2,
                fingerprint: fingerprint(b"abc"),
                fingerprint_len: 3,
                offset: 10,
                line: 1,
                path: "/x/audit.log".into(),
            }],
        };
        c.store(&p).unwrap();
        assert_eq!(Checkpoints::load(&p).unwrap(), Some(c));
        assert!(!p.with_extension("json.tmp").exists());
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            Checkpoints::load(&p),
            Err(CheckpointError::Corrupt { .. })
        ));
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
