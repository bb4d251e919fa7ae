//! Checkpoints of file sources: per file identity, the offset up to which every required sink
//! confirmed the events. Written atomically (temp file, fsync, rename, fsync of the directory).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format of the checkpoint files this release writes and reads. A file without a
/// `version` (written before the field was read) is this format.
pub const CHECKPOINT_VERSION: u32 = 1;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// The format ([`CHECKPOINT_VERSION`]); absent in files that predate the field.
    #[serde(default = "current_version")]
    pub version: u32,
    pub files: Vec<FileCheckpoint>,
}

fn current_version() -> u32 {
    CHECKPOINT_VERSION
}

impl Default for Checkpoints {
    /// No files, in the current format.
    fn default() -> Self {
        Checkpoints {
            version: CHECKPOINT_VERSION,
            files: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint {path} has format version {version}; this release reads version {CHECKPOINT_VERSION} (was it written by a newer release?)")]
    UnknownVersion { path: PathBuf, version: u32 },
    #[error("writing checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl Checkpoints {
    /// The checkpoint file of the source named `source` in `state_dir`.
    pub fn path(state_dir: &Path, source: &str) -> PathBuf {
        state_dir.join(format!("checkpoints-{}.json", file_safe(source)))
    }

    /// `Ok(None)` when there is no checkpoint yet (a first start). A file of another format
    /// version than [`CHECKPOINT_VERSION`] is refused ([`CheckpointError::UnknownVersion`]).
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
        // The version first, so that a newer format is reported as such even where its
        // fields would not parse as this one.
        #[derive(Deserialize)]
        struct Version {
            #[serde(default = "current_version")]
            version: u32,
        }
        let corrupt = |e: serde_json::Error| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let Version { version } = serde_json::from_str(&text).map_err(corrupt)?;
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::UnknownVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        serde_json::from_str(&text).map(Some).map_err(corrupt)
    }

    /// Writes atomically: a crash leaves either the old or the new file, never a torn one.
    pub fn store(&self, path: &Path) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        };
        let body = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        crate::fsutil::write_atomically(path, &body).map_err(err)
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

    /// The format is versioned: files written before the field existed are read as this
    /// version; a version this release does not know (a newer release wrote it) is refused
    /// with an error that names it, never half-understood.
    #[test]
    fn a_missing_version_is_the_current_format_and_an_unknown_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoints-a.json");
        let file = r#"{"dev": 1, "ino": 2, "fingerprint": 3, "fingerprint_len": 4, "offset": 5, "line": 1, "path": "/x"}"#;
        std::fs::write(&p, format!(r#"{{"files": [{file}]}}"#)).unwrap();
        let c = Checkpoints::load(&p).unwrap().unwrap();
        assert_eq!(c.version, CHECKPOINT_VERSION);
        assert_eq!(c.files[0].offset, 5);
        std::fs::write(&p, format!(r#"{{"version": 1, "files": [{file}]}}"#)).unwrap();
        assert_eq!(Checkpoints::load(&p).unwrap(), Some(c));
        std::fs::write(&p, format!(r#"{{"version": 2, "files": [{file}]}}"#)).unwrap();
        let e = Checkpoints::load(&p).unwrap_err();
        assert!(
            matches!(e, CheckpointError::UnknownVersion { version: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("format version 2"), "{e}");
    }

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
