//! The file source: follows audit log files as the API server writes and rotates them.
//!
//! Files are identified by device and inode plus a fingerprint of their first bytes, and are
//! read through a descriptor that stays open, so a file renamed by rotation
//! (`audit.log` -> `audit-<time>.log`) is read to its end through the same descriptor and never
//! read twice, whether or not its new name still matches the globs. A file whose size drops
//! below what was read (copy-truncate) is read again from the start; the reading of its old
//! content is kept (without a descriptor) until its batches are confirmed and a glob scan has
//! passed. A new file whose first bytes are content already read is a copy of it (copytruncate
//! with copies under the globs): a copy of a truncated file's old content continues that
//! reading where it stopped, a copy of content a followed file still holds is not read, and a
//! copy of a checkpointed file not found again (copied and truncated while tripline was down)
//! starts at that checkpoint. A new file is compared once its first line (or 1 KiB) is there.
//! A file that disappears from the globs is released once it has been read to its end and every
//! batch of it was confirmed.
//! Compressed backups are not followed, except to resume a checkpointed file whose unread tail
//! exists only in its `.gz` (the API server compressed and deleted it while tripline was down).
//!
//! Only complete lines leave the source; a partial last line waits for its newline. The
//! checkpoint of a file is the end of the longest run of confirmed batches from its start, so
//! batches may finish out of order without a gap ever being checkpointed.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use serde::Deserialize;

use super::checkpoint::{
    fingerprint, read_prefix, Checkpoints, FileCheckpoint, CHECKPOINT_VERSION, FINGERPRINT_BYTES,
};
use super::{Batch, Source, SourceEvent};
use crate::ack::Ack;
use crate::config::types::HumanDuration;
use crate::event::SkipReason;
use crate::telemetry::{Counter, Gauge, HealthHandle, Metrics, SkipLabels, SourceLabels};

/// Where a file source starts in files that exist when it first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    #[default]
    End,
}

/// `sources: - type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Names the source in metrics, logs and the checkpoint file (default `file-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Glob patterns of the files to follow.
    pub paths: Vec<String>,
    /// Glob patterns of files not to follow.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For files present at the first start (no checkpoint yet): `end` or `beginning`. Files
    /// that appear later are always read from the beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often globs are re-evaluated and files polled (inotify wakes the reader sooner).
    #[serde(default = "default_poll")]
    pub poll_interval: HumanDuration,
    /// How often confirmed offsets are written to `state_dir`.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval: HumanDuration,
    /// Raise an alert when no event arrived for this long.
    #[serde(default = "default_silence")]
    pub silence_alert_after: HumanDuration,
    /// Whether a new file whose first line is content already read is taken for a copy of it
    /// (copy-truncate with the copies under the globs). Always on for configured file sources;
    /// off for the webhook's spool, whose segments are written once each and may begin with
    /// the same event (one sent again after the duplicate window).
    #[serde(skip, default = "copies_are_detected")]
    pub detect_copies: bool,
}

fn copies_are_detected() -> bool {
    true
}

fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}
fn default_checkpoint() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_silence() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl FileSourceConfig {
    /// Problems found without I/O, each `key: message` relative to the source.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.paths.is_empty() {
            p.push("paths: at least one glob is required".to_string());
        }
        for (j, g) in self.paths.iter().chain(&self.exclude).enumerate() {
            if let Err(e) = glob::Pattern::new(g) {
                p.push(format!("paths[{j}]: `{g}` is not a glob: {e}"));
            }
        }
        p
    }
}

/// Identifies a file across renames: device, inode and a fingerprint of its first bytes (so a
/// reused inode is not taken for the old file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// Completion of one batch of a file, sent back once every sink that took it confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub file: FileKey,
    /// Which reading of the file (a new one after truncation or inode reuse), so that a late
    /// confirmation never counts for a different file or reading.
    pub instance: u64,
    pub seq: u64,
}

impl Source for FileSource {
    /// Follows the files, woken early by inotify where it works (polling remains the
    /// fallback, because inotify misses changes on some filesystems).
    fn run(self: Box<Self>, stop: Arc<AtomicBool>, drain_timeout: Duration, health: HealthHandle) {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let _watcher = watch(&self.watch_dirs(), wake_tx, self.rescan.clone(), &self.name);
        self.run_woken_by(stop, drain_timeout, wake_rx, health.clone());
        health.set_ready(false);
    }
}

/// Wakes a source when its directories change (inotify), and sets `rescan` when the change
/// may add or remove a file (a create, a removal, a rename). `None` when inotify is
/// unavailable.
fn watch(
    dirs: &[PathBuf],
    wake: Sender<()>,
    rescan: Arc<AtomicBool>,
    source: &str,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind};
    use notify::Watcher;
    let mut w = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let names_change = match &res {
            Ok(ev) => matches!(
                ev.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
                    | EventKind::Any
                    | EventKind::Other
            ),
            // Overflowed or failed: anything may have changed.
            Err(_) => true,
        };
        if names_change {
            rescan.store(true, Ordering::Relaxed);
        }
        let _ = wake.try_send(());
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(source, error = %e, "inotify unavailable; polling only");
            return None;
        }
    };
    for d in dirs {
        if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(source, dir = %d.display(), error = %e, "cannot watch directory; polling it");
        }
    }
    Some(w)
}

/// A partial-line buffer that grew past this while a long line was read is given back once
/// the line is handed on, so one large event does not leave its size held for the file's
/// life.
const PARTIAL_KEEP_BYTES: usize = 1 << 20;

/// Empties the buffer of a line in progress, freeing it when it grew large.
fn release_partial(partial: &mut Vec<u8>) {
    if partial.capacity() > PARTIAL_KEEP_BYTES {
        *partial = Vec::new();
    } else {
        partial.clear();
    }
}

/// How much is read from a file per system call.
const READ_CHUNK: usize = 256 * 1024;

/// One followed file.
struct Tracked {
    key: FileKey,
    path: PathBuf,
    path_label: Arc<str>,
    /// `None` for a compressed backup, which is read in full when found.
    file: Option<File>,
    /// The file's first bytes as they were read (up to [`FINGERPRINT_BYTES`]): what a copy of
    /// the content is compared with. Taken from the bytes handed on, never read again from the
    /// file afterwards, since the file may be truncated between the two reads.
    head: Vec<u8>,
    /// [`fingerprint`] of `head` (what the checkpoint stores).
    fingerprint: u64,
    fingerprint_len: u64,
    /// Bytes consumed from the file (complete lines handed on, skipped lines, and `partial`).
    read_pos: u64,
    /// The start of a line not yet terminated.
    partial: Vec<u8>,
    /// Discarding an over-long line up to its newline.
    skipping: bool,
    /// Discarding the rest of a line that was being written when reading started at the end.
    skipping_start: bool,
    /// Lines completed so far (the number of the last complete line).
    line: u64,
    /// In flight: (seq, end offset, line at end, confirmed).
    pending: VecDeque<(u64, u64, u64, bool)>,
    next_seq: u64,
    /// Confirmed up to here (the checkpoint).
    confirmed: u64,
    confirmed_line: u64,
    /// Unique per reading of a file (new on open and on truncation): completions of other
    /// readings are ignored.
    instance: u64,
    /// Seen in the last glob evaluation.
    present: bool,
    /// For the reading of a file's content before a truncation (kept without a descriptor, to
    /// take the confirmations of its batches and to be continued by a copy of that content):
    /// the glob scan during which the truncation was found.
    retired_at: Option<u64>,
    /// A new file read from its start: before it is read, its first bytes are compared with
    /// what was read of other files (`copy_of`), once they identify it.
    check_copy: bool,
    /// When the file was first found (an increasing number, kept across truncations and by
    /// the copy that continues a reading): of two files with the same unread content, the one
    /// found first is the original.
    found: u64,
}

impl Tracked {
    /// A file followed from `offset` (the `line`-th line boundary), nothing in flight.
    #[allow(clippy::too_many_arguments)]
    fn new(
        key: FileKey,
        path: PathBuf,
        file: Option<File>,
        head: &[u8],
        offset: u64,
        line: u64,
        instance: u64,
        present: bool,
    ) -> Tracked {
        let head = head[..head.len().min(FINGERPRINT_BYTES)].to_vec();
        Tracked {
            key,
            path_label: Arc::from(path.display().to_string()),
            path,
            file,
            fingerprint: fingerprint(&head),
            fingerprint_len: head.len() as u64,
            head,
            read_pos: offset,
            partial: Vec::new(),
            skipping: false,
            skipping_start: false,
            line,
            pending: VecDeque::new(),
            next_seq: 0,
            confirmed: offset,
            confirmed_line: line,
            instance,
            present,
            retired_at: None,
            check_copy: false,
            found: instance,
        }
    }

    fn checkpoint(&self) -> FileCheckpoint {
        FileCheckpoint {
            dev: self.key.dev,
            ino: self.key.ino,
            fingerprint: self.fingerprint,
            fingerprint_len: self.fingerprint_len,
            offset: self.confirmed,
            line: self.confirmed_line,
            path: self.path.display().to_string(),
        }
    }

    /// Takes `chunk`, the bytes of the file at `read_pos`, into `head` while they lie within its
    /// first [`FINGERPRINT_BYTES`].
    fn extend_head(&mut self, chunk: &[u8]) {
        let Ok(pos) = usize::try_from(self.read_pos) else {
            return;
        };
        if pos >= FINGERPRINT_BYTES || self.head.len() < pos {
            return;
        }
        self.head.truncate(pos);
        let take = chunk.len().min(FINGERPRINT_BYTES - pos);
        self.head.extend_from_slice(&chunk[..take]);
        self.fingerprint = fingerprint(&self.head);
        self.fingerprint_len = self.head.len() as u64;
    }

    /// How `prefix`, the first bytes of another file, compares with the content this reading
    /// consumed. A copy is recognised by everything read before (up to
    /// [`FINGERPRINT_BYTES`]) and at least one complete line: audit events carry unique ids and
    /// times, while their first bytes are the same in every file. A prefix that agrees as far as
    /// it goes but is shorter than that (a copy still being written) decides nothing yet.
    fn compare_head(&self, prefix: &[u8]) -> Head {
        let need = self.read_pos.min(FINGERPRINT_BYTES as u64) as usize;
        if need == 0 || self.head.len() < need {
            return Head::Other;
        }
        let k = need.min(prefix.len());
        if k == 0 || prefix[..k] != self.head[..k] {
            return Head::Other;
        }
        let line = memchr::memchr(b'\n', &prefix[..k]).is_some();
        if k < need {
            return if line { Head::Undecided } else { Head::Other };
        }
        if need == FINGERPRINT_BYTES || line {
            Head::Same
        } else {
            Head::Other
        }
    }

    /// Records a completion; advances the checkpoint over the confirmed prefix.
    fn complete(&mut self, seq: u64) {
        if let Some(front) = self.pending.front().map(|p| p.0) {
            if seq >= front {
                if let Some(p) = self.pending.get_mut((seq - front) as usize) {
                    p.3 = true;
                }
            }
        }
        while let Some(&(_, end, line, true)) = self.pending.front() {
            self.confirmed = end;
            self.confirmed_line = line;
            self.pending.pop_front();
        }
    }

    /// A range that needs no confirmation (a skipped line): confirmed as soon as what precedes
    /// it is.
    fn push_done(&mut self, end: u64, line: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, end, line, true));
        self.complete(seq);
    }

    fn drained(&self) -> bool {
        self.pending.is_empty()
    }
}

/// True if `prefix` (the first bytes of a file) is the file of checkpoint `cp`. The fingerprint
/// must cover everything before the checkpoint offset, up to [`FINGERPRINT_BYTES`]: a shorter
/// one (say, of a file first seen empty) would match unrelated files.
fn fingerprint_matches(cp: &FileCheckpoint, prefix: &[u8]) -> bool {
    starts_with(cp.fingerprint, cp.fingerprint_len, cp.offset, prefix)
}

/// True if `prefix` starts with the bytes of fingerprint `fp` (over `fp_len` bytes), which
/// must cover everything before `offset` up to [`FINGERPRINT_BYTES`].
fn starts_with(fp: u64, fp_len: u64, offset: u64, prefix: &[u8]) -> bool {
    let need = offset.min(FINGERPRINT_BYTES as u64);
    let len = fp_len as usize;
    fp_len >= need && len <= prefix.len() && fingerprint(&prefix[..len]) == fp
}

/// A new file's first bytes against the content of one reading.
#[derive(PartialEq)]
enum Head {
    /// The same content.
    Same,
    /// The same as far as the new file goes, too short to tell.
    Undecided,
    Other,
}

/// What a newly found file is, by its first bytes.
enum CopyOf {
    /// Not a copy of anything read.
    Nothing,
    /// The content of a followed file that still holds it (a copy made before a truncation
    /// the source has not seen yet): not read, since the original is.
    Followed,
    /// The content a followed file held before it was truncated: continues that reading.
    Retired(FileKey),
    /// The content of a checkpointed file not found again (copied and truncated while
    /// tripline was down): continues from its checkpoint.
    Checkpointed(FileKey),
}

/// Metrics of one file source.
struct SourceMetrics {
    lines: Counter,
    bytes: Counter,
    too_long: Counter,
    truncations: Counter,
    checkpoint_writes: Counter,
    checkpoint_failures: Counter,
    files: Gauge,
    lag_bytes: Gauge,
    silent: Gauge,
}

impl SourceMetrics {
    fn new(m: &Metrics, source: &str) -> Self {
        let l = SourceLabels::new(source);
        SourceMetrics {
            lines: m.lines_read.get_or_create_owned(&l),
            bytes: m.bytes_read.get_or_create_owned(&l),
            too_long: m
                .lines_skipped
                .get_or_create_owned(&SkipLabels::new(source, SkipReason::TooLong)),
            truncations: m.file_truncations.get_or_create_owned(&l),
            checkpoint_writes: m.checkpoint_writes.get_or_create_owned(&l),
            checkpoint_failures: m.checkpoint_write_failures.get_or_create_owned(&l),
            files: m.source_files.get_or_create_owned(&l),
            lag_bytes: m.source_lag_bytes.get_or_create_owned(&l),
            silent: m.source_silent.get_or_create_owned(&l),
        }
    }
}

/// A running file source.
pub struct FileSource {
    name: Arc<str>,
    cfg: FileSourceConfig,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    checkpoint_path: PathBuf,
    max_line: usize,
    batch_max: usize,
    tracked: HashMap<FileKey, Tracked>,
    /// Checkpoints loaded at start for files not opened yet.
    restored: HashMap<FileKey, FileCheckpoint>,
    first_start: bool,
    acks_tx: Sender<Completion>,
    acks_rx: Receiver<Completion>,
    out: Sender<Batch>,
    events: Sender<SourceEvent>,
    metrics: SourceMetrics,
    dirty: bool,
    /// When the checkpoint was last written (or found clean).
    last_checkpoint: Instant,
    /// When `tripline_source_lag_bytes` was last measured.
    last_lag: Instant,
    last_data: Instant,
    silent: bool,
    /// Compressed backups are looked for once, at start.
    compressed_checked: bool,
    next_synthetic: u64,
    instances: u64,
    /// Glob scans so far.
    scans: u64,
    /// Set by the watcher when a file is created, removed or renamed under a watched
    /// directory: the globs are evaluated again at once, not at the next poll (a rotation's
    /// new file is read without waiting for it).
    rescan: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    health: Option<crate::telemetry::HealthHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("source `{source_name}`: {message}")]
    Setup {
        source_name: String,
        message: String,
    },
}

impl FileSource {
    /// Prepares a source: compiles globs, loads its checkpoint (a corrupt one is moved aside and
    /// reported, and the source starts as on a first start).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        cfg: FileSourceConfig,
        state_dir: &Path,
        max_line: usize,
        batch_max: usize,
        out: Sender<Batch>,
        events: Sender<SourceEvent>,
        metrics: &Metrics,
    ) -> Result<FileSource, FileSourceError> {
        let setup = |message: String| FileSourceError::Setup {
            source_name: name.to_string(),
            message,
        };
        let compile = |globs: &[String]| -> Result<Vec<glob::Pattern>, FileSourceError> {
            globs
                .iter()
                .map(|g| glob::Pattern::new(g).map_err(|e| setup(format!("glob `{g}`: {e}"))))
                .collect()
        };
        let include = compile(&cfg.paths)?;
        let exclude = compile(&cfg.exclude)?;
        std::fs::create_dir_all(state_dir)
            .map_err(|e| setup(format!("creating state_dir {}: {e}", state_dir.display())))?;
        let checkpoint_path = Checkpoints::path(state_dir, name);
        let (restored, first_start) = match Checkpoints::load(&checkpoint_path) {
            Ok(Some(c)) => (
                c.files
                    .into_iter()
                    .map(|f| {
                        (
                            FileKey {
                                dev: f.dev,
                                ino: f.ino,
                            },
                            f,
                        )
                    })
                    .collect(),
                false,
            ),
            Ok(None) => (HashMap::new(), true),
            Err(e) => {
                tracing::error!(source = name, error = %e, "checkpoint unusable; moving it aside and reading as on a first start");
                let aside = checkpoint_path.with_extension("json.corrupt");
                let _ = std::fs::rename(&checkpoint_path, aside);
                (HashMap::new(), true)
            }
        };
        let (acks_tx, acks_rx) = crossbeam_channel::unbounded();
        let next_synthetic = restored
            .keys()
            .filter(|k: &&FileKey| k.dev == u64::MAX)
            .map(|k| k.ino)
            .max()
            .unwrap_or(0);
        Ok(FileSource {
            name: Arc::from(name),
            cfg,
            include,
            exclude,
            checkpoint_path,
            max_line,
            batch_max,
            tracked: HashMap::new(),
            restored,
            first_start,
            acks_tx,
            acks_rx,
            out,
            events,
            metrics: SourceMetrics::new(metrics, name),
            dirty: false,
            last_checkpoint: Instant::now(),
            last_lag: Instant::now(),
            last_data: Instant::now(),
            silent: false,
            compressed_checked: false,
            next_synthetic,
            instances: 0,
            scans: 0,
            stop: Arc::new(AtomicBool::new(false)),
            rescan: Arc::new(AtomicBool::new(false)),
            health: None,
        })
    }

    /// The directories to watch with inotify (the fixed prefixes of the globs).
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .cfg
            .paths
            .iter()
            .map(|g| {
                let fixed: PathBuf = Path::new(g)
                    .components()
                    .take_while(|c| {
                        let s = c.as_os_str().to_string_lossy();
                        !s.contains(['*', '?', '['])
                    })
                    .collect();
                if fixed.as_os_str() == std::ffi::OsStr::new(g) {
                    fixed.parent().map(Path::to_path_buf).unwrap_or_default()
                } else {
                    fixed
                }
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Runs until `stop` is set, then delivers what is in flight (until `deadline` after the
    /// stop) and writes the final checkpoint. `wake` cuts a poll interval short (inotify).
    pub fn run_woken_by(
        mut self,
        stop: Arc<AtomicBool>,
        drain_timeout: Duration,
        wake: Receiver<()>,
        health: crate::telemetry::HealthHandle,
    ) {
        self.stop = stop.clone();
        health.set_ready(true);
        self.health = Some(health);
        let poll = self.cfg.poll_interval.0;
        self.last_checkpoint = Instant::now();
        let mut last_scan = Instant::now() - poll;
        tracing::info!(source = %self.name, globs = ?self.cfg.paths, first_start = self.first_start, "file source started");
        while !stop.load(Ordering::Relaxed) {
            self.take_completions();
            if last_scan.elapsed() >= poll || self.rescan.swap(false, Ordering::Relaxed) {
                self.scan();
                last_scan = Instant::now();
            }
            let progressed = self.read_all(&stop);
            self.release_finished();
            self.check_silence();
            self.checkpoint_if_due();
            if !progressed {
                // Wait for inotify, a completion, or the poll interval.
                crossbeam_channel::select! {
                    recv(wake) -> _ => {}
                    recv(self.acks_rx) -> c => {
                        if let Ok(c) = c {
                            self.complete(c);
                        }
                    }
                    default(poll) => { last_scan = Instant::now() - poll; }
                }
            }
        }
        // Drain: stop reading, wait for confirmations of what was handed on.
        let deadline = Instant::now() + drain_timeout;
        while self.tracked.values().any(|t| !t.drained()) && Instant::now() < deadline {
            match self.acks_rx.recv_timeout(self.wait_step()) {
                Ok(c) => self.complete(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // A long drain still checkpoints what is confirmed as it goes.
            self.checkpoint_if_due();
        }
        self.take_completions();
        let unconfirmed: usize = self.tracked.values().map(|t| t.pending.len()).sum();
        if unconfirmed > 0 {
            tracing::warn!(source = %self.name, batches = unconfirmed, "shutdown deadline passed with unconfirmed batches; they will be read again at the next start");
        }
        self.dirty = true;
        self.write_checkpoint();
        tracing::info!(source = %self.name, "file source stopped");
    }

    /// How long the source waits at most, blocked on the pipeline or draining, before it
    /// looks at the checkpoint again: 100 ms, or less with a shorter `checkpoint_interval`.
    fn wait_step(&self) -> Duration {
        self.cfg
            .checkpoint_interval
            .0
            .min(Duration::from_millis(100))
    }

    /// Takes the confirmations that arrived and writes the checkpoint once `checkpoint_interval`
    /// has passed since the last write. Called by the loop, and while it is held back (blocked
    /// on the full pipeline, or draining): checkpoints follow confirmations whatever the
    /// reading side is doing. Also refreshes `tripline_source_lag_bytes` every poll interval.
    fn checkpoint_if_due(&mut self) {
        self.take_completions();
        if self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval.0 {
            self.write_checkpoint();
            self.last_checkpoint = Instant::now();
        }
        if self.last_lag.elapsed() >= self.cfg.poll_interval.0 {
            self.measure_lag();
        }
    }

    /// Sets `tripline_source_lag_bytes`: the bytes of the followed files not read yet (a read
    /// takes up to [`READ_CHUNK`] at a time). One `fstat` per followed file. A new file not
    /// compared with what was read yet (`check_copy`) does not count: it may be a copy that
    /// is not going to be read.
    fn measure_lag(&mut self) {
        let lag: u64 = self
            .tracked
            .values()
            .filter(|t| !t.check_copy)
            .filter_map(|t| {
                let m = t.file.as_ref()?.metadata().ok()?;
                Some(m.len().saturating_sub(t.read_pos))
            })
            .sum();
        self.metrics
            .lag_bytes
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        self.last_lag = Instant::now();
    }

    fn take_completions(&mut self) {
        while let Ok(c) = self.acks_rx.try_recv() {
            self.complete(c);
        }
    }

    /// Records a completion for the reading it belongs to. Readings are found by their key,
    /// and, when that key now holds another reading (after a truncation), by their instance:
    /// the reading of the old content may live on under another key (retired, or continued
    /// by a copy).
    fn complete(&mut self, c: Completion) {
        let key = if self
            .tracked
            .get(&c.file)
            .is_some_and(|t| t.instance == c.instance)
        {
            Some(c.file)
        } else {
            self.tracked
                .iter()
                .find(|(_, t)| t.instance == c.instance)
                .map(|(k, _)| *k)
        };
        if let Some(t) = key.and_then(|k| self.tracked.get_mut(&k)) {
            t.complete(c.seq);
            self.dirty = true;
        }
    }

    fn matches(&self, p: &Path) -> bool {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        self.include.iter().any(|g| g.matches_path_with(p, opts))
            && !self.exclude.iter().any(|g| g.matches_path_with(p, opts))
    }

    /// Re-evaluates the globs: opens new files, follows renames, notices disappearances.
    fn scan(&mut self) {
        self.scans += 1;
        for t in self.tracked.values_mut() {
            t.present = false;
        }
        let mut paths = Vec::new();
        for g in &self.cfg.paths {
            match glob::glob(g) {
                Ok(found) => paths.extend(found.filter_map(Result::ok)),
                Err(e) => tracing::warn!(source = %self.name, glob = g, error = %e, "bad glob"),
            }
        }
        paths.sort();
        paths.dedup();
        let mut found = Vec::with_capacity(paths.len());
        for p in paths {
            if !self.matches(&p) {
                continue;
            }
            // Compressed backups are not followed.
            if p.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = FileKey {
                dev: meta.dev(),
                ino: meta.ino(),
            };
            found.push((p, key, meta.len()));
        }
        // Files known by their key first: a file claims its own checkpoint before a copy of
        // it (which may sort first) is taken for the same content.
        found.sort_by_key(|(_, key, _)| {
            !(self.tracked.contains_key(key) || self.restored.contains_key(key))
        });
        for (p, key, len) in found {
            if let Some(t) = self.tracked.get_mut(&key) {
                t.present = true;
                if t.path != p {
                    tracing::debug!(source = %self.name, from = %t.path.display(), to = %p.display(), "file renamed");
                    t.path_label = Arc::from(p.display().to_string());
                    t.path = p;
                }
                continue;
            }
            if let Err(e) = self.open(p.clone(), key, len) {
                tracing::warn!(source = %self.name, path = %p.display(), error = %e, "cannot open file");
            }
        }
        if !std::mem::replace(&mut self.compressed_checked, true) {
            self.resume_compressed();
            // What is still unmatched names files that are gone: forget them.
            for cp in self.restored.values() {
                tracing::info!(source = %self.name, path = %cp.path, "checkpointed file not found; forgetting it");
            }
            self.restored.clear();
            // Files that appear from now on are new: read from their beginning.
            self.first_start = false;
        }
        self.metrics.files.set(self.tracked.len() as i64);
    }

    /// With `--audit-log-compress`, the API server gzips a rotated file and deletes it. If
    /// tripline was down then, the unread tail of a checkpointed file exists only in the `.gz`:
    /// find it (same fingerprint) and read it from the checkpoint, inside the decompressed stream.
    fn resume_compressed(&mut self) {
        let waiting: Vec<FileCheckpoint> = self.restored.values().cloned().collect();
        for cp in waiting {
            let Some(dir) = Path::new(&cp.path).parent() else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut candidates: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            candidates.sort();
            for gz in candidates {
                match self.resume_from(&cp, &gz) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(source = %self.name, path = %gz.display(), error = %e, "cannot read compressed backup")
                    }
                }
            }
        }
    }

    fn next_instance(&mut self) -> u64 {
        self.instances += 1;
        self.instances
    }

    /// Follows a file known from checkpoint `cp` (not present under the globs) from its offset.
    /// `prefix` holds at least the bytes the checkpoint's fingerprint covers.
    fn track_from_checkpoint(
        &mut self,
        key: FileKey,
        path: &Path,
        file: Option<File>,
        cp: &FileCheckpoint,
        prefix: &[u8],
    ) {
        let instance = self.next_instance();
        let head = &prefix[..(cp.fingerprint_len as usize).min(prefix.len())];
        let t = Tracked::new(
            key,
            path.to_path_buf(),
            file,
            head,
            cp.offset,
            cp.line,
            instance,
            false,
        );
        self.tracked.insert(key, t);
    }

    /// A key no real file has (device `u64::MAX`), for files known only by their checkpoint.
    fn synthetic_key(&mut self) -> FileKey {
        self.next_synthetic += 1;
        FileKey {
            dev: u64::MAX,
            ino: self.next_synthetic,
        }
    }

    /// Reads `gz` from the checkpoint if it holds the file of `cp`. Returns whether it did.
    /// An uncompressed file is followed (from the checkpoint) if it is the checkpointed file
    /// renamed out of the globs while tripline was down.
    fn resume_from(&mut self, cp: &FileCheckpoint, gz: &Path) -> io::Result<bool> {
        use std::io::Read;
        if cp.offset == 0 {
            return Ok(false);
        }
        if gz.extension().is_none_or(|e| e != "gz") {
            let meta = std::fs::metadata(gz)?;
            if meta.dev() != cp.dev || meta.ino() != cp.ino {
                return Ok(false);
            }
            let file = File::open(gz)?;
            let prefix = read_prefix(&file, FINGERPRINT_BYTES)?;
            if !fingerprint_matches(cp, &prefix) {
                return Ok(false);
            }
            let key = FileKey {
                dev: cp.dev,
                ino: cp.ino,
            };
            self.restored.retain(|_, c| c != cp);
            tracing::info!(source = %self.name, path = %gz.display(), offset = cp.offset, "following a file renamed out of the globs to its end");
            self.track_from_checkpoint(key, gz, Some(file), cp, &prefix);
            return Ok(true);
        }
        let mut dec = flate2::read::MultiGzDecoder::new(io::BufReader::new(File::open(gz)?));
        let mut prefix = vec![0u8; cp.fingerprint_len as usize];
        if dec.read_exact(&mut prefix).is_err() || !fingerprint_matches(cp, &prefix) {
            return Ok(false);
        }
        // Compressed backups are tracked under keys no real file has: the deleted file's inode
        // may already belong to a new file.
        self.restored.retain(|_, c| c != cp);
        let key = self.synthetic_key();
        tracing::info!(source = %self.name, path = %gz.display(), offset = cp.offset, "resuming a rotated file from its compressed backup");
        self.track_from_checkpoint(key, gz, None, cp, &prefix);
        // Position the stream at the checkpoint.
        let mut buf = vec![0u8; READ_CHUNK];
        if cp.offset < cp.fingerprint_len {
            self.feed(key, &prefix[cp.offset as usize..])?;
        } else {
            io::copy(
                &mut (&mut dec).take(cp.offset - cp.fingerprint_len),
                &mut io::sink(),
            )?;
        }
        loop {
            let n = dec.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.feed(key, &buf[..n])?;
        }
        self.dirty = true;
        Ok(true)
    }

    fn open(&mut self, path: PathBuf, key: FileKey, len: u64) -> io::Result<()> {
        let file = File::open(&path)?;
        // The path may name another file by now: rotation renamed the one just found and
        // created a new one under its name. What was opened is what is followed, under its own
        // identity; the renamed file is found under its new name at the next scan. Keeping the
        // identity found before the open would follow the new file as the old one, and the old
        // one, then taken for known, would never be read.
        let meta = file.metadata()?;
        let opened = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let (key, len) = if opened == key {
            (key, len)
        } else {
            if self.tracked.contains_key(&opened) {
                return Ok(());
            }
            (opened, meta.len())
        };
        let prefix = read_prefix(&file, FINGERPRINT_BYTES)?;
        let mut start = 0;
        let mut line = 0;
        let mut skipping = false;
        let mut by_key = false;
        match self.restored.remove(&key) {
            Some(cp) if fingerprint_matches(&cp, &prefix) => {
                by_key = true;
                if cp.offset <= len {
                    start = cp.offset;
                    line = cp.line;
                } else {
                    tracing::warn!(source = %self.name, path = %path.display(), "file shorter than its checkpoint (truncated while stopped); reading from the start");
                }
            }
            Some(cp) => {
                tracing::info!(source = %self.name, path = %path.display(), "inode reused by a different file; reading from the start");
                // The old file may live on as a compressed backup: keep its checkpoint for that.
                let orphan = self.synthetic_key();
                self.restored.insert(orphan, cp);
            }
            None => {}
        }
        let mut check_copy = false;
        if !by_key {
            match self.copy_of(&prefix, None) {
                // Decided before its first read (`read_some`), when its first bytes identify it.
                CopyOf::Followed | CopyOf::Retired(_) => check_copy = true,
                CopyOf::Checkpointed(k) => {
                    if let Some(cp) = self.restored.remove(&k) {
                        tracing::info!(source = %self.name, path = %path.display(), from = %cp.path, offset = cp.offset, "a copy of a checkpointed file (copy-truncate while stopped); continuing from its checkpoint");
                        // A copy shorter than the checkpoint holds nothing unread.
                        start = cp.offset.min(len);
                        line = cp.line;
                    }
                }
                CopyOf::Nothing if self.first_start && self.cfg.read_from == ReadFrom::End => {
                    start = len;
                    // Starting inside a line: skip to its end.
                    if len > 0 {
                        let mut last = [0u8; 1];
                        file.read_at(&mut last, len - 1)?;
                        skipping = last[0] != b'\n';
                    }
                }
                CopyOf::Nothing => check_copy = true,
            }
        }
        tracing::info!(source = %self.name, path = %path.display(), offset = start, "following file");
        let instance = self.next_instance();
        let mut t = Tracked::new(key, path, Some(file), &prefix, start, line, instance, true);
        t.skipping_start = skipping;
        t.check_copy = check_copy && start == 0;
        self.tracked.insert(key, t);
        self.dirty = true;
        Ok(())
    }

    /// Whether a newly found file, starting with `prefix`, is a copy of content already read.
    /// Content is recognised by a fingerprint that covers everything read before (up to
    /// [`FINGERPRINT_BYTES`]) and at least one complete line: audit events carry unique ids
    /// and times, while their first bytes are the same in every file.
    fn copy_of(&self, prefix: &[u8], this: Option<FileKey>) -> CopyOf {
        if !self.cfg.detect_copies {
            return CopyOf::Nothing;
        }
        let mut followed = false;
        for (k, t) in &self.tracked {
            match t.compare_head(prefix) {
                Head::Same if t.file.is_none() => return CopyOf::Retired(*k),
                // Not read while it may be a copy: looked at again when it has grown.
                Head::Same | Head::Undecided => followed = true,
                Head::Other => {}
            }
        }
        if followed || self.unread_original(prefix, this) {
            return CopyOf::Followed;
        }
        // Checkpoints keep only a fingerprint of their first bytes.
        let same = |cp: &FileCheckpoint| {
            let len = cp.fingerprint_len as usize;
            cp.offset > 0
                && (len == FINGERPRINT_BYTES
                    || prefix
                        .get(..len)
                        .is_some_and(|p| memchr::memchr(b'\n', p).is_some()))
                && fingerprint_matches(cp, prefix)
        };
        self.restored
            .iter()
            .find(|(_, cp)| same(cp))
            .map_or(CopyOf::Nothing, |(k, _)| CopyOf::Checkpointed(*k))
    }

    /// Whether a file found before `this` (a file not tracked yet, when `None`) holds the
    /// content that begins with `prefix`, unread. logrotate's copytruncate copies and then
    /// truncates: a source that finds the copy before it has read the original, and reads the
    /// copy first, would read the original's content again before the truncation. The copy
    /// waits instead: once the original is read, the copy continues that reading after the
    /// truncation (`Retired`); if the original is truncated unread, the copy is read.
    fn unread_original(&self, prefix: &[u8], this: Option<FileKey>) -> bool {
        let found = this
            .and_then(|k| self.tracked.get(&k))
            .map_or(u64::MAX, |t| t.found);
        self.tracked.iter().any(|(k, t)| {
            if Some(*k) == this || t.found >= found || t.read_pos != 0 {
                return false;
            }
            let Some(file) = &t.file else {
                return false;
            };
            let Ok(theirs) = read_prefix(file, FINGERPRINT_BYTES) else {
                return false;
            };
            let m = prefix.len().min(theirs.len());
            m > 0
                && prefix[..m] == theirs[..m]
                && (m == FINGERPRINT_BYTES || memchr::memchr(b'\n', &prefix[..m]).is_some())
        })
    }

    /// Follows `file`, a copy of the content that the reading `retired` read before its file
    /// was truncated, as the continuation of that reading: from where it stopped, with its
    /// batches in flight (their confirmations find it by its instance).
    fn continue_retired(&mut self, retired: FileKey, key: FileKey, prefix: &[u8], len: u64) {
        if !self.tracked.contains_key(&retired) {
            return;
        }
        let Some(Tracked {
            path,
            file: Some(file),
            ..
        }) = self.tracked.remove(&key)
        else {
            return;
        };
        let Some(mut t) = self.tracked.remove(&retired) else {
            return;
        };
        if len < t.read_pos {
            // Shorter than what was read: the last lines went to the original after the copy
            // was made, and were read there. Nothing in the copy is unread: followed from its
            // end (its line number is that of the reading, at most the lines it holds).
            let line = t.line;
            self.tracked.insert(retired, t);
            let instance = self.next_instance();
            let copy = Tracked::new(key, path, Some(file), prefix, len, line, instance, true);
            self.tracked.insert(key, copy);
        } else {
            tracing::info!(source = %self.name, path = %path.display(), offset = t.read_pos, "a copy of a truncated file's content; continuing its reading");
            t.key = key;
            t.path_label = Arc::from(path.display().to_string());
            t.path = path;
            t.file = Some(file);
            t.present = true;
            t.retired_at = None;
            self.tracked.insert(key, t);
        }
        self.dirty = true;
        self.metrics.files.set(self.tracked.len() as i64);
    }

    /// Reads what was appended to every followed file. Returns true if anything was read.
    fn read_all(&mut self, stop: &AtomicBool) -> bool {
        let mut progressed = false;
        // Rotated (renamed or vanished) files first: their events are older.
        let mut keys: Vec<(bool, FileKey)> =
            self.tracked.iter().map(|(k, t)| (t.present, *k)).collect();
        keys.sort();
        let mut buf = vec![0u8; READ_CHUNK];
        for (_, key) in keys {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return progressed;
                }
                match self.read_some(key, &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        progressed = true;
                        // A long backlog read without waiting still checkpoints as it goes.
                        self.checkpoint_if_due();
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.name, error = %e, "read failed");
                        break;
                    }
                }
            }
        }
        self.measure_lag();
        progressed
    }

    /// Reads one chunk of one file and hands on its complete lines. Returns bytes read.
    fn read_some(&mut self, key: FileKey, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tracked.get(&key) else {
            return Ok(0);
        };
        let Some(file) = &t.file else {
            return Ok(0);
        };
        let size = file.metadata()?.len();
        if size < t.read_pos {
            self.retire_truncated(key);
        } else if t.check_copy && size > 0 {
            let prefix = read_prefix(file, FINGERPRINT_BYTES)?;
            if prefix.len() < FINGERPRINT_BYTES && memchr::memchr(b'\n', &prefix).is_none() {
                // Not identifiable yet (a first line still being written, or being copied).
                return Ok(0);
            }
            match self.copy_of(&prefix, Some(key)) {
                CopyOf::Followed => {
                    // A copy of a followed file that still holds the content: not read.
                    // Once that file is truncated, the copy continues its reading.
                    return Ok(0);
                }
                CopyOf::Retired(retired) => {
                    self.continue_retired(retired, key, &prefix, size);
                    return self.read_some(key, buf);
                }
                CopyOf::Checkpointed(_) | CopyOf::Nothing => {
                    if let Some(t) = self.tracked.get_mut(&key) {
                        t.check_copy = false;
                    }
                }
            }
        }
        let Some(t) = self.tracked.get_mut(&key) else {
            return Ok(0);
        };
        let Some(file) = &t.file else {
            return Ok(0);
        };
        let n = file.read_at(buf, t.read_pos)?;
        if n == 0 {
            return Ok(0);
        }
        // The head grows with the bytes read while the file is younger than its full length.
        t.extend_head(&buf[..n]);
        self.feed(key, &buf[..n])?;
        Ok(n)
    }

    /// File `key` got shorter than what was read (copy-truncate): it is read again from the
    /// start, as a new reading. The reading of the old content is kept, without a descriptor,
    /// under a key no real file has: it takes the confirmations of its batches in flight (so
    /// its checkpoint still counts them) and is continued by a copy of that content if one
    /// turns up under the globs (`copy_of`). It is released once its batches are confirmed
    /// and a glob scan has passed since the truncation (the copy is made before it).
    fn retire_truncated(&mut self, key: FileKey) {
        let retired_key = self.synthetic_key();
        let instance = self.next_instance();
        let scans = self.scans;
        let Some(t) = self.tracked.get_mut(&key) else {
            return;
        };
        tracing::warn!(source = %self.name, path = %t.path.display(), read = t.read_pos, "file truncated (copy-truncate?); reading from the start");
        self.metrics.truncations.inc();
        let retired = Tracked {
            key: retired_key,
            path: t.path.clone(),
            path_label: t.path_label.clone(),
            file: None,
            head: std::mem::take(&mut t.head),
            fingerprint: t.fingerprint,
            fingerprint_len: t.fingerprint_len,
            read_pos: t.read_pos,
            partial: std::mem::take(&mut t.partial),
            skipping: t.skipping,
            skipping_start: t.skipping_start,
            line: t.line,
            pending: std::mem::take(&mut t.pending),
            next_seq: t.next_seq,
            confirmed: t.confirmed,
            confirmed_line: t.confirmed_line,
            instance: t.instance,
            present: false,
            retired_at: Some(scans),
            check_copy: false,
            found: t.found,
        };
        t.instance = instance;
        t.read_pos = 0;
        t.skipping = false;
        t.skipping_start = false;
        t.line = 0;
        t.confirmed = 0;
        t.confirmed_line = 0;
        t.next_seq = 0;
        // The old content's fingerprint would not match the new content at a restart: taken
        // again from the new content as it is read.
        t.fingerprint = fingerprint(&[]);
        t.fingerprint_len = 0;
        t.head.clear();
        self.tracked.insert(retired_key, retired);
        self.dirty = true;
    }

    /// Hands on the complete lines of `chunk`, the next bytes of file `key` after its `read_pos`.
    fn feed(&mut self, key: FileKey, chunk: &[u8]) -> io::Result<()> {
        let n = chunk.len();
        let Some(t) = self.tracked.get_mut(&key) else {
            return Ok(());
        };
        t.read_pos += n as u64;
        self.metrics.bytes.inc_by(n as u64);
        self.last_data = Instant::now();
        // Offset of chunk[0] in the file.
        let chunk_start = t.read_pos - n as u64;

        let mut lines = Vec::with_capacity(self.batch_max.min(n + t.partial.len()));
        let mut first_line = t.line + 1;
        // Offset of the first byte of `lines` (a partial line carried over started earlier).
        let mut lines_start = chunk_start - t.partial.len() as u64;
        let mut batch_end = None;
        let mut pos = 0;
        let mut batches = Vec::new();
        while pos < n {
            let nl = memchr::memchr(b'\n', &chunk[pos..]).map(|i| pos + i);
            match nl {
                None => {
                    // No newline in the rest: keep it for later, unless it is too long already.
                    if !t.skipping && !t.skipping_start {
                        t.partial.extend_from_slice(&chunk[pos..]);
                        if t.partial.len() > self.max_line {
                            release_partial(&mut t.partial);
                            t.skipping = true;
                        }
                    }
                    pos = n;
                }
                Some(nl) => {
                    let end_offset = chunk_start + nl as u64 + 1;
                    if std::mem::take(&mut t.skipping_start) {
                        // The tail of a line written before tripline started: not an event.
                        batches.push((Vec::new(), t.line, Some((end_offset, t.line)), end_offset));
                        first_line = t.line + 1;
                        lines_start = end_offset;
                        pos = nl + 1;
                        continue;
                    }
                    t.line += 1;
                    let too_long = std::mem::take(&mut t.skipping)
                        || t.partial.len() + (nl - pos) > self.max_line;
                    // A batch ends before a skipped line, and once it reaches `batch_max`.
                    let cut = if too_long {
                        release_partial(&mut t.partial);
                        self.metrics.too_long.inc();
                        crate::warn_limited!(
                            &self.name,
                            tracing::warn!(source = %self.name, path = %t.path.display(), line = t.line, "line longer than input.max_line_bytes skipped")
                        );
                        true
                    } else {
                        lines.append(&mut t.partial);
                        release_partial(&mut t.partial);
                        lines.extend_from_slice(&chunk[pos..=nl]);
                        batch_end = Some((end_offset, t.line));
                        self.metrics.lines.inc();
                        lines.len() >= self.batch_max
                    };
                    if cut {
                        if !lines.is_empty() {
                            batches.push((
                                std::mem::take(&mut lines),
                                first_line,
                                batch_end,
                                lines_start,
                            ));
                        }
                        if too_long {
                            batches.push((
                                Vec::new(),
                                t.line,
                                Some((end_offset, t.line)),
                                end_offset,
                            ));
                        }
                        first_line = t.line + 1;
                        batch_end = None;
                        lines_start = end_offset;
                    }
                    pos = nl + 1;
                }
            }
        }
        if !lines.is_empty() {
            batches.push((lines, first_line, batch_end, lines_start));
        }
        let instance = t.instance;
        let path_label = t.path_label.clone();
        for (data, first, end, start_offset) in batches {
            let Some((end_offset, end_line)) = end else {
                continue;
            };
            let t = self.tracked.get_mut(&key).expect("tracked above");
            if data.is_empty() {
                t.push_done(end_offset, end_line);
                self.dirty = true;
                continue;
            }
            let seq = t.next_seq;
            t.next_seq += 1;
            t.pending.push_back((seq, end_offset, end_line, false));
            let ack = Ack::for_batch(
                Completion {
                    file: key,
                    instance,
                    seq,
                },
                self.acks_tx.clone(),
            );
            let mut batch = Batch {
                source: self.name.clone(),
                path: path_label.clone(),
                data,
                first_line: first,
                start_offset,
                message_offsets: Vec::new(),
                state_partition: None,
                ack,
            };
            // Backpressure: wait for room. Meanwhile confirmations keep arriving: the
            // checkpoint follows them every interval, whether the pipeline takes a batch now
            // and then (a slow sink) or not at all; otherwise it would stay behind for as long
            // as the backlog lasts, and a crash would send the whole backlog again.
            loop {
                match self.out.send_timeout(batch, self.wait_step()) {
                    Ok(()) => {
                        self.checkpoint_if_due();
                        break;
                    }
                    Err(SendTimeoutError::Timeout(b)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            // Shutting down: the batch stays unconfirmed and is read again at
                            // the next start.
                            return Ok(());
                        }
                        batch = b;
                        self.checkpoint_if_due();
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Ok(()),
                }
            }
        }
        Ok(())
    }

    /// Releases files that left the globs (deleted or renamed away) once read and confirmed.
    fn release_finished(&mut self) {
        let before = self.tracked.len();
        let scans = self.scans;
        self.tracked.retain(|_, t| {
            let at_end = t
                .file
                .as_ref()
                .map(|f| f.metadata().map(|m| m.len() <= t.read_pos).unwrap_or(true))
                .unwrap_or(true);
            let awaiting_copy = t.retired_at.is_some_and(|at| scans <= at + 1);
            let keep = t.present || !at_end || !t.drained() || awaiting_copy;
            if !keep {
                tracing::info!(path = %t.path.display(), "released file");
            }
            keep
        });
        if self.tracked.len() != before {
            self.dirty = true;
            self.metrics.files.set(self.tracked.len() as i64);
        }
    }

    fn check_silence(&mut self) {
        let quiet = self.last_data.elapsed();
        let silent = quiet >= self.cfg.silence_alert_after.0;
        if silent != self.silent {
            let sent = self
                .events
                .try_send(SourceEvent::Silent {
                    source: self.name.clone(),
                    silent,
                    for_secs: quiet.as_secs(),
                })
                .is_ok();
            // Retried at the next check if the pipeline could not take it now.
            if sent {
                self.silent = silent;
                self.metrics.silent.set(i64::from(silent));
            }
        }
    }

    fn write_checkpoint(&mut self) {
        if !self.dirty {
            return;
        }
        // Checkpointed files not found yet (the first scan is still resuming compressed
        // backups, maybe blocked on the pipeline) keep their checkpoints, under the keys they
        // are held by (an inode now reused by another file has a synthetic one).
        let restored = self.restored.iter().map(|(k, cp)| FileCheckpoint {
            dev: k.dev,
            ino: k.ino,
            ..cp.clone()
        });
        let mut files: Vec<FileCheckpoint> = self
            .tracked
            .values()
            .map(Tracked::checkpoint)
            .chain(restored)
            .collect();
        files.sort_by(|a, b| (&a.path, a.dev, a.ino).cmp(&(&b.path, b.dev, b.ino)));
        let c = Checkpoints {
            version: CHECKPOINT_VERSION,
            files,
        };
        match c.store(&self.checkpoint_path) {
            Ok(()) => {
                self.metrics.checkpoint_writes.inc();
                self.dirty = false;
                if let Some(h) = &self.health {
                    h.set_ready(true);
                }
            }
            Err(e) => {
                self.metrics.checkpoint_failures.inc();
                // Not ready: what is read now could not survive a restart.
                if let Some(h) = &self.health {
                    if h.is_ready() {
                        tracing::error!(source = %self.name, error = %e, "checkpoint not written; source not ready until it is");
                    }
                    h.set_ready(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The source driven by hand over real files in a temporary directory: each `step` is one
    //! turn of `run`'s loop (completions, glob scan, reads, releases), without its waiting.

    use super::*;
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    use crate::telemetry::Health;

    struct Opts {
        glob: &'static str,
        read_from: ReadFrom,
        max_line: usize,
        batch_max: usize,
        silence: Duration,
        /// How many batches the channel to the pipeline holds (`None`: no limit).
        queue: Option<usize>,
        detect_copies: bool,
    }

    impl Default for Opts {
        fn default() -> Self {
            Opts {
                glob: "audit.log",
                read_from: ReadFrom::Beginning,
                max_line: 1 << 20,
                batch_max: 1 << 20,
                silence: Duration::from_secs(300),
                queue: None,
                detect_copies: true,
            }
        }
    }

    impl Opts {
        fn batch_max(batch_max: usize) -> Opts {
            Opts {
                batch_max,
                ..Opts::default()
            }
        }

        fn glob(glob: &'static str) -> Opts {
            Opts {
                glob,
                ..Opts::default()
            }
        }
    }

    fn config(logs: &Path, o: &Opts) -> FileSourceConfig {
        FileSourceConfig {
            name: None,
            paths: vec![format!("{}/{}", logs.display(), o.glob)],
            exclude: vec![],
            read_from: o.read_from,
            poll_interval: HumanDuration(Duration::from_millis(2)),
            checkpoint_interval: HumanDuration(Duration::from_millis(5)),
            silence_alert_after: HumanDuration(o.silence),
            detect_copies: o.detect_copies,
        }
    }

    /// A temporary directory with the followed files in `logs` and the source's state in
    /// `state`. A source is started over it, and stopped back to it to change the files while
    /// no source runs.
    struct Dirs {
        root: tempfile::TempDir,
    }

    impl Dirs {
        fn new() -> Dirs {
            let dirs = Dirs {
                root: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(dirs.logs()).unwrap();
            dirs
        }

        fn logs(&self) -> PathBuf {
            self.root.path().join("logs")
        }

        fn path(&self, name: &str) -> PathBuf {
            self.logs().join(name)
        }

        fn state(&self) -> PathBuf {
            self.root.path().join("state")
        }

        fn start(self, o: Opts) -> Harness {
            let (tx, rx) = match o.queue {
                Some(n) => crossbeam_channel::bounded(n),
                None => crossbeam_channel::unbounded(),
            };
            let (etx, events) = crossbeam_channel::bounded(16);
            let src = FileSource::new(
                "audit",
                config(&self.logs(), &o),
                &self.state(),
                o.max_line,
                o.batch_max,
                tx,
                etx,
                &Metrics::new(),
            )
            .unwrap();
            Harness {
                dirs: self,
                src,
                rx,
                events,
                stop: AtomicBool::new(false),
            }
        }
    }

    /// A source over a [`Dirs`], driven by hand.
    struct Harness {
        dirs: Dirs,
        src: FileSource,
        rx: Receiver<Batch>,
        events: Receiver<SourceEvent>,
        stop: AtomicBool,
    }

    impl Harness {
        fn new(o: Opts) -> Harness {
            Dirs::new().start(o)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dirs.path(name)
        }

        /// One turn of the source's loop; returns the batches it handed on.
        fn step(&mut self) -> Vec<Batch> {
            self.src.take_completions();
            self.src.scan();
            self.src.read_all(&self.stop);
            self.src.release_finished();
            self.rx.try_iter().collect()
        }

        /// The followed file last seen as `name`.
        fn file(&self, name: &str) -> &Tracked {
            let p = self.path(name);
            self.src
                .tracked
                .values()
                .find(|t| t.path == p && t.file.is_some())
                .unwrap_or_else(|| panic!("{name} is not followed"))
        }

        /// (confirmed offset, confirmed line) of `name`.
        fn confirmed(&self, name: &str) -> (u64, u64) {
            let t = self.file(name);
            (t.confirmed, t.confirmed_line)
        }

        /// Writes the checkpoint file and reads it back.
        fn stored(&mut self) -> Checkpoints {
            self.src.write_checkpoint();
            Checkpoints::load(&self.src.checkpoint_path)
                .unwrap()
                .expect("a checkpoint was written")
        }

        /// Drops the source (and its channels), keeping its files and state.
        fn stop(self) -> Dirs {
            self.dirs
        }

        /// Stops the source and starts a new one over the same files and state.
        fn restart(self, o: Opts) -> Harness {
            self.stop().start(o)
        }

        /// A clean shutdown: reads what is there, confirms it, writes the checkpoint and
        /// stops. Returns the checkpoint.
        fn confirm_all_and_stop(mut self) -> (Checkpoints, Dirs) {
            ack(&self.step());
            self.step();
            let cp = self.stored();
            (cp, self.stop())
        }
    }

    /// A source running its real loop in a thread (nothing wakes it early: it polls).
    struct Running {
        rx: Receiver<Batch>,
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
        checkpoint_path: PathBuf,
        _events: Receiver<SourceEvent>,
        _dirs: Dirs,
    }

    impl Harness {
        fn run(self, drain_timeout: Duration) -> Running {
            let Harness {
                dirs,
                src,
                rx,
                events,
                ..
            } = self;
            let checkpoint_path = src.checkpoint_path.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (_wake_tx, wake_rx) = crossbeam_channel::bounded(1);
                    src.run_woken_by(stop, drain_timeout, wake_rx, Health::detached("t"))
                })
            };
            Running {
                rx,
                stop,
                thread,
                checkpoint_path,
                _events: events,
                _dirs: dirs,
            }
        }
    }

    impl Running {
        /// The next batch handed on, and its lines.
        fn next(&self) -> (Batch, Vec<String>) {
            let b = self.rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let got = lines(std::slice::from_ref(&b));
            (b, got)
        }

        fn stop(&self) {
            self.stop.store(true, Ordering::Relaxed);
        }

        /// Waits for the loop to end; returns the checkpoint it left.
        fn join(self) -> Checkpoints {
            self.thread.join().unwrap();
            Checkpoints::load(&self.checkpoint_path).unwrap().unwrap()
        }
    }

    /// Cuts `path` to nothing in place (same inode), as `copytruncate` does.
    fn truncate(path: &Path) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    fn append(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// The lines of `batches`, in order, without their newlines; every batch holds only
    /// complete lines.
    fn lines(batches: &[Batch]) -> Vec<String> {
        raw_lines(batches)
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    fn raw_lines(batches: &[Batch]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for b in batches {
            assert!(
                b.data.ends_with(b"\n"),
                "batch ends inside a line: {:?}",
                String::from_utf8_lossy(&b.data)
            );
            out.extend(
                b.data[..b.data.len() - 1]
                    .split(|&c| c == b'\n')
                    .map(<[u8]>::to_vec),
            );
        }
        out
    }

    fn ack(batches: &[Batch]) {
        for b in batches {
            b.ack.done();
        }
    }

    #[test]
    fn complete_lines_are_handed_on_with_their_offsets_and_line_numbers() {
        let mut h = Harness::new(Opts::default());
        fs::write(h.path("audit.log"), b"one\ntwo\n").unwrap();
        let b = h.step();
        assert_eq!(lines(&b), ["one", "two"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (1, 0));
        assert_eq!(&*b[0].source, "audit");
        assert_eq!(&*b[0].path, h.path("audit.log").display().to_string());
        assert!(b[0].message_offsets.is_empty());
        append(&h.path("audit.log"), b"three\n");
        let b = h.step();
        assert_eq!(lines(&b), ["three"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (3, 8));
        assert!(h.step().is_empty(), "nothing new, nothing handed on");
        assert_eq!(h.src.metrics.lines.get(), 3);
        assert_eq!(h.src.metrics.bytes.get(), 14);
    }

    #[test]
    fn a_partial_last_line_waits_for_its_newline() {
        let mut h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"a\nbc").unwrap();
        let a = h.step();
        assert_eq!(lines(&a), ["a"]);
        append(&log, b"d");
        assert!(h.step().is_empty(), "still no newline");
        append(&log, b"e\nf");
        let b = h.step();
        assert_eq!(lines(&b), ["bcde"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (2, 2));
        ack(&a);
        ack(&b);
        h.step();
        // The checkpoint stops at the last newline, not at what was read.
        assert_eq!(h.confirmed("audit.log"), (7, 2));
        assert_eq!(h.file("audit.log").read_pos, 8);
    }

    #[test]
    fn batches_are_cut_at_line_boundaries_once_they_reach_batch_max_bytes() {
        let mut h = Harness::new(Opts::batch_max(8));
        fs::write(h.path("audit.log"), b"aaaa\nbbbb\ncc\ndd\nee\n").unwrap();
        let b = h.step();
        let parts: Vec<(&[u8], u64, u64)> = b
            .iter()
            .map(|b| (&b.data[..], b.first_line, b.start_offset))
            .collect();
        assert_eq!(
            parts,
            [(&b"aaaa\nbbbb\n"[..], 1, 0), (&b"cc\ndd\nee\n"[..], 3, 10),]
        );
    }

    #[test]
    fn rotation_by_rename_reads_the_old_file_to_its_end() {
        let mut h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(b"1\n2\n").unwrap();
        let first = h.step();
        assert_eq!(lines(&first), ["1", "2"]);

        // Rotation: the file is renamed out of the globs; a write through the writer's old
        // descriptor still lands in it, and new events go to a new file under the old name.
        writer.write_all(b"3\n").unwrap();
        fs::rename(&log, h.path("audit-2024.log.old")).unwrap();
        writer.write_all(b"4\n").unwrap();
        fs::write(&log, b"5\n").unwrap();
        let second = h.step();
        // The rotated file first (its events are older), from where it was left.
        assert_eq!(lines(&second), ["3", "4", "5"]);
        assert_eq!((second[0].first_line, second[0].start_offset), (3, 4));
        assert_eq!((second[1].first_line, second[1].start_offset), (1, 0));

        // The old file is kept while its batches are unconfirmed...
        assert_eq!(h.src.tracked.len(), 2);
        ack(&first);
        ack(&second[..1]);
        assert!(h.step().is_empty());
        // ...and released once read to its end and confirmed.
        assert_eq!(h.src.tracked.len(), 1);
        assert_eq!(h.src.metrics.files.get(), 1);
        ack(&second[1..]);
        h.step();
        let cp = h.stored();
        assert_eq!(cp.files.len(), 1);
        assert_eq!((cp.files[0].offset, cp.files[0].line), (2, 1));
        assert_eq!(cp.files[0].path, log.display().to_string());
    }

    #[test]
    fn a_file_renamed_between_finding_and_opening_it_is_not_taken_for_the_new_one() {
        let mut h = Harness::new(Opts::glob("*.log"));
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        // The scan found `audit.log` (this inode) ...
        let meta = fs::metadata(&log).unwrap();
        let found = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        // ... and before it opened it, rotation renamed it and wrote a new file in its place.
        fs::rename(&log, h.path("audit-2024.log")).unwrap();
        fs::write(&log, b"3\n").unwrap();
        h.src.open(log.clone(), found, meta.len()).unwrap();
        assert!(
            !h.src.tracked.contains_key(&found),
            "the new file is not followed as the renamed one"
        );
        // The renamed file is found under its new name and read; nothing is read twice.
        let mut all = h.step();
        all.extend(h.step());
        let mut got = lines(&all);
        got.sort();
        assert_eq!(got, ["1", "2", "3"]);
    }

    #[test]
    fn a_rotated_file_still_under_the_globs_is_not_read_twice() {
        let mut h = Harness::new(Opts::glob("*.log"));
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        let mut all = h.step();
        append(&log, b"3\n");
        fs::rename(&log, h.path("audit-2024.log")).unwrap();
        fs::write(&log, b"4\n").unwrap();
        all.extend(h.step());
        all.extend(h.step());
        let mut got = lines(&all);
        got.sort();
        assert_eq!(got, ["1", "2", "3", "4"]);
        // The renamed file is followed under its new name.
        assert_eq!(h.file("audit-2024.log").read_pos, 6);
        assert_eq!(h.file("audit.log").read_pos, 2);
        ack(&all);
        h.step();
        assert_eq!(h.src.tracked.len(), 2, "both still match the globs");
        assert_eq!(h.confirmed("audit-2024.log"), (6, 3));
    }

    #[test]
    fn a_deleted_file_is_released_only_once_its_batches_are_confirmed() {
        let mut h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"1\n").unwrap();
        let b = h.step();
        fs::remove_file(&log).unwrap();
        assert!(h.step().is_empty());
        assert_eq!(h.src.tracked.len(), 1, "unconfirmed: kept");
        ack(&b);
        h.step();
        assert!(h.src.tracked.is_empty());
        assert!(
            h.stored().files.is_empty(),
            "a released file leaves the checkpoint"
        );
    }

    #[test]
    fn copy_truncate_reads_the_new_content_from_the_start() {
        let mut h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n3\n").unwrap();
        let b = h.step();
        assert_eq!(lines(&b), ["1", "2", "3"]);
        ack(&b);
        h.step();
        assert_eq!(h.confirmed("audit.log"), (6, 3));

        // copytruncate: copied to a backup out of the globs, then truncated in place.
        fs::copy(&log, h.path("audit.log.1")).unwrap();
        truncate(&log);
        append(&log, b"x\n");
        let b = h.step();
        assert_eq!(lines(&b), ["x"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (1, 0));
        assert_eq!(h.src.metrics.truncations.get(), 1);
        let open = h.src.tracked.values().filter(|t| t.file.is_some()).count();
        assert_eq!(open, 1, "the backup is not followed");
        assert_eq!(
            h.confirmed("audit.log"),
            (0, 0),
            "the checkpoint restarts too"
        );
        ack(&b);
        h.step();
        assert_eq!(h.confirmed("audit.log"), (2, 1));
        // The reading of the old content is kept for a scan after the truncation, in case a
        // copy turns up, then released.
        assert_eq!(h.src.tracked.len(), 2);
        h.step();
        assert_eq!(h.src.tracked.len(), 1);
    }

    /// Regression (reliability report): with a glob that matches the copies (`audit.log*`),
    /// every copy made by copytruncate was read again in full. A copy continues the reading of
    /// the content it copied: the lines the source had not read yet when the file was truncated
    /// are read from the copy, and nothing else.
    #[test]
    fn copy_truncate_with_a_glob_that_matches_the_copy_reads_each_line_once() {
        let mut h = Harness::new(Opts {
            batch_max: 1,
            ..Opts::glob("audit.log*")
        });
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n3\n").unwrap();
        let mut all = h.step();
        // The writer goes on, then logrotate copies and truncates before the source reads.
        append(&log, b"4\n5\n");
        fs::copy(&log, h.path("audit.log.1")).unwrap();
        truncate(&log);
        append(&log, b"x\n");
        let mut after = Vec::new();
        for _ in 0..3 {
            after.extend(h.step());
        }
        let mut got: Vec<(String, u64, u64)> = after
            .iter()
            .map(|b| {
                let name = Path::new(&*b.path).file_name().unwrap();
                let name = name.to_string_lossy().into_owned();
                (name, b.first_line, b.start_offset)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("audit.log".to_string(), 1, 0),
                ("audit.log.1".to_string(), 4, 6),
                ("audit.log.1".to_string(), 5, 8),
            ]
        );
        all.extend(after);
        let mut every = lines(&all);
        every.sort();
        assert_eq!(every, ["1", "2", "3", "4", "5", "x"]);
        // Confirmations of the batches read before the truncation count for the copy.
        ack(&all);
        h.step();
        h.step();
        assert_eq!(h.confirmed("audit.log.1"), (10, 5));
        assert_eq!(h.confirmed("audit.log"), (2, 1));
        assert_eq!(h.src.tracked.len(), 2, "nothing else is followed");
        let cp = h.stored();
        assert_eq!(cp.files.len(), 2);
        // A restart reads nothing again.
        let mut h = h.restart(Opts::glob("audit.log*"));
        assert!(h.step().is_empty());
    }

    /// The copy may be found before the truncation: it is not read while the original still
    /// holds its content, then continues where the original was left.
    #[test]
    fn a_copy_found_before_the_truncation_waits_for_it() {
        let mut h = Harness::new(Opts::glob("audit.log*"));
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        let mut all = h.step();
        append(&log, b"3\n");
        fs::copy(&log, h.path("audit.log.1")).unwrap();
        all.extend(h.step());
        all.extend(h.step());
        assert_eq!(
            h.src.metrics.lag_bytes.get(),
            0,
            "a copy not to be read is no lag"
        );
        truncate(&log);
        append(&log, b"x\n");
        all.extend(h.step());
        all.extend(h.step());
        let mut every = lines(&all);
        every.sort();
        assert_eq!(every, ["1", "2", "3", "x"]);
        ack(&all);
        h.step();
        h.step();
        assert_eq!(h.confirmed("audit.log.1"), (6, 3));
        assert_eq!(h.confirmed("audit.log"), (2, 1));
    }

    /// Regression (CI): copytruncate right after a write, before the source read it. The copy
    /// was found and read first, then the original's same content was read before the
    /// truncation: every line twice. The copy now waits for the original, found before it.
    #[test]
    fn a_copy_of_unread_content_found_first_is_not_read_twice() {
        let mut h = Harness::new(Opts::glob("audit.log*"));
        // The copy's file exists before the original (a lower inode: read first in a turn).
        let spare = h.dirs.path("spare");
        File::create(&spare).unwrap();
        let log = h.path("audit.log");
        fs::write(&log, b"0\n").unwrap();
        let mut all = h.step();
        // An earlier rotation: the original is followed from its start again.
        truncate(&log);
        all.extend(h.step());
        append(&log, b"1\n2\n");
        fs::write(&spare, fs::read(&log).unwrap()).unwrap();
        fs::rename(&spare, h.path("audit.log.1")).unwrap();
        // The source turns between the copy and the truncation.
        all.extend(h.step());
        truncate(&log);
        append(&log, b"x\n");
        for _ in 0..3 {
            all.extend(h.step());
        }
        let mut every = lines(&all);
        every.sort();
        assert_eq!(every, ["0", "1", "2", "x"]);
    }

    /// The same with the truncation before the source read the original: the copy is read.
    #[test]
    fn a_copy_of_content_truncated_unread_is_read() {
        let mut h = Harness::new(Opts::glob("audit.log*"));
        let log = h.path("audit.log");
        fs::write(&log, b"0\n").unwrap();
        let mut all = h.step();
        truncate(&log);
        all.extend(h.step());
        append(&log, b"1\n2\n");
        fs::copy(&log, h.path("audit.log.1")).unwrap();
        truncate(&log);
        append(&log, b"x\n");
        for _ in 0..3 {
            all.extend(h.step());
        }
        let mut every = lines(&all);
        every.sort();
        assert_eq!(every, ["0", "1", "2", "x"]);
    }

    /// logrotate creates the copy, then fills it: found empty (or with part of its first
    /// line), it is recognised once its first line is there.
    #[test]
    fn a_copy_found_while_it_is_being_written_is_recognised_by_its_first_line() {
        let mut h = Harness::new(Opts::glob("audit.log*"));
        let log = h.path("audit.log");
        fs::write(&log, b"first-line\n2\n").unwrap();
        let mut all = h.step();
        let copy = h.path("audit.log.1");
        File::create(&copy).unwrap();
        all.extend(h.step());
        append(&copy, b"first-");
        all.extend(h.step());
        append(&copy, b"line\n2\n3\n");
        truncate(&log);
        for _ in 0..3 {
            all.extend(h.step());
        }
        assert_eq!(lines(&all), ["first-line", "2", "3"]);
    }

    /// The copy is found after the truncation, while it holds fewer bytes than were read of the
    /// original (it is still being written): it agrees as far as it goes, so it waits, and once
    /// complete it continues the original's reading instead of being read from its start.
    #[test]
    fn a_copy_shorter_than_what_was_read_waits_until_it_can_be_told_apart() {
        let mut h = Harness::new(Opts::glob("audit.log*"));
        let log = h.path("audit.log");
        fs::write(&log, b"first-line\nsecond-line\n").unwrap();
        let mut all = h.step();
        truncate(&log);
        all.extend(h.step());
        let copy = h.path("audit.log.1");
        fs::write(&copy, b"first-line\n").unwrap();
        for _ in 0..2 {
            all.extend(h.step());
        }
        assert_eq!(lines(&all), ["first-line", "second-line"], "not read yet");
        append(&copy, b"second-line\nthird-line\n");
        for _ in 0..2 {
            all.extend(h.step());
        }
        assert_eq!(lines(&all), ["first-line", "second-line", "third-line"]);
    }

    /// Copytruncate while tripline is down, with logrotate's `dateext` name that matches
    /// `*.log` (and sorts before the original): the copy resumes from the original's checkpoint.
    #[test]
    fn a_copy_made_while_stopped_resumes_from_the_checkpoint_of_the_original() {
        let h = Harness::new(Opts::glob("*.log"));
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        let (_, dirs) = h.confirm_all_and_stop();
        append(&log, b"3\n");
        fs::copy(&log, dirs.path("audit-20240101.log")).unwrap();
        truncate(&log);
        append(&log, b"x\n");
        let mut h = dirs.start(Opts::glob("*.log"));
        let b = h.step();
        let mut got: Vec<(String, u64, u64)> = b
            .iter()
            .map(|b| {
                (
                    lines(std::slice::from_ref(b)).join(","),
                    b.first_line,
                    b.start_offset,
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, [("3".to_string(), 3, 4), ("x".to_string(), 1, 0)]);
    }

    #[test]
    fn a_restart_after_copy_truncate_resumes_without_repeating_lines() {
        let mut h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"old-1\nold-2\nold-3\n").unwrap();
        ack(&h.step());
        truncate(&log);
        append(&log, b"new-1\n");
        let b = h.step();
        assert_eq!(lines(&b), ["new-1"]);
        ack(&b);
        h.step();
        let cp = h.stored();
        // The checkpoint describes the content it points into.
        assert_eq!(cp.files[0].offset, 6);
        assert_eq!(cp.files[0].fingerprint, fingerprint(b"new-1\n"));
        let dirs = h.stop();

        append(&log, b"new-2\n");
        let mut h = dirs.start(Opts::default());
        assert_eq!(lines(&h.step()), ["new-2"]);
    }

    #[test]
    fn a_confirmation_from_before_a_truncation_does_not_count_for_the_new_content() {
        let mut h = Harness::new(Opts::batch_max(1));
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        let old = h.step();
        assert_eq!(old.len(), 2);
        let reading = h.file("audit.log").instance;
        fs::write(&log, b"x\n").unwrap(); // O_TRUNC: same inode, shorter
        let new = h.step();
        assert_eq!(lines(&new), ["x"]);
        // The new batch has the first old one's seq (0), but in another reading of the file.
        assert_ne!(h.file("audit.log").instance, reading);
        assert_eq!(h.file("audit.log").pending.front().map(|p| p.0), Some(0));
        ack(&old);
        h.step();
        assert_eq!(h.confirmed("audit.log"), (0, 0));
        ack(&new);
        h.step();
        assert_eq!(h.confirmed("audit.log"), (2, 1));
    }

    #[test]
    fn an_overlong_line_is_skipped_to_its_newline_and_counted() {
        let mut h = Harness::new(Opts {
            max_line: 10,
            ..Opts::default()
        });
        let log = h.path("audit.log");
        // Exactly max_line bytes before the newline is still a line.
        let long = "x".repeat(30);
        fs::write(&log, format!("short\n{long}\n0123456789\n")).unwrap();
        let b = h.step();
        assert_eq!(lines(&b), ["short", "0123456789"]);
        assert_eq!((b[1].first_line, b[1].start_offset), (3, 37));
        assert_eq!(h.src.metrics.too_long.get(), 1);

        // An over-long line written in pieces, none of them long enough alone.
        append(&log, b"yyyyyyyy");
        assert!(h.step().is_empty());
        append(&log, b"yyyyyyyy");
        assert!(h.step().is_empty());
        assert!(h.file("audit.log").partial.is_empty(), "not buffered");
        append(&log, b"yy\nok\n");
        let c = h.step();
        assert_eq!(lines(&c), ["ok"]);
        assert_eq!(c[0].first_line, 5, "skipped lines are still counted");
        assert_eq!(h.src.metrics.too_long.get(), 2);

        // Skipped lines need no confirmation: the checkpoint passes them with the rest.
        ack(&b);
        ack(&c);
        h.step();
        let len = fs::metadata(&log).unwrap().len();
        assert_eq!(h.confirmed("audit.log"), (len, 5));
    }

    #[test]
    fn read_from_end_skips_existing_content_but_new_files_are_read_whole() {
        let dirs = Dirs::new();
        // Existing content, ending inside a line that is still being written.
        fs::write(dirs.path("a.log"), b"old1\nold2\npart").unwrap();
        fs::write(dirs.path("b.log"), b"old3\n").unwrap();
        let mut h = dirs.start(Opts {
            read_from: ReadFrom::End,
            ..Opts::glob("*.log")
        });
        assert!(h.step().is_empty());
        assert_eq!(h.confirmed("a.log"), (14, 0));
        append(&h.path("a.log"), b"ial\nnew1\n");
        append(&h.path("b.log"), b"new2\n");
        fs::write(h.path("c.log"), b"c1\nc2\n").unwrap();
        let mut b = h.step();
        b.sort_by_key(|b| b.path.clone());
        let got: Vec<(String, Vec<String>, u64)> = b
            .iter()
            .map(|b| {
                let name = Path::new(&*b.path).file_name().unwrap();
                (
                    name.to_string_lossy().into_owned(),
                    lines(std::slice::from_ref(b)),
                    b.first_line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.log".to_string(), vec!["new1".to_string()], 1),
                ("b.log".to_string(), vec!["new2".to_string()], 1),
                (
                    "c.log".to_string(),
                    vec!["c1".to_string(), "c2".to_string()],
                    1
                ),
            ]
        );
        // The tail of the line written before the start is passed without confirmation.
        ack(&b);
        h.step();
        assert_eq!(h.confirmed("a.log"), (23, 1));
    }

    #[test]
    fn a_checkpoint_never_passes_an_unconfirmed_batch() {
        let mut h = Harness::new(Opts::batch_max(1));
        fs::write(h.path("audit.log"), b"a\nbb\nccc\n").unwrap();
        let b = h.step();
        assert_eq!(b.len(), 3);
        // The later batches finish first.
        b[2].ack.done();
        b[1].ack.done();
        h.step();
        assert_eq!(h.confirmed("audit.log"), (0, 0));
        let cp = h.stored();
        assert_eq!((cp.files[0].offset, cp.files[0].line), (0, 0));
        // A batch confirmed by several sinks counts when the last one confirms.
        b[0].ack.add(1);
        b[0].ack.done();
        h.step();
        assert_eq!(h.confirmed("audit.log"), (0, 0));
        b[0].ack.done();
        h.step();
        assert_eq!(h.confirmed("audit.log"), (9, 3));
        let cp = h.stored();
        assert_eq!((cp.files[0].offset, cp.files[0].line), (9, 3));
        assert_eq!(h.src.metrics.checkpoint_writes.get(), 2);
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_without_repeating_lines() {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n3\n").unwrap();
        let (_, dirs) = h.confirm_all_and_stop();

        append(&log, b"4\n5\n");
        // read_from: end only applies to a first start; a checkpoint exists.
        let mut h = dirs.start(Opts {
            read_from: ReadFrom::End,
            ..Opts::default()
        });
        let b = h.step();
        assert_eq!(lines(&b), ["4", "5"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (4, 6));
    }

    /// Regression: spool segments are written once each and may begin with the same event;
    /// without copy detection, a new segment that begins like one already read is read whole.
    #[test]
    fn without_copy_detection_a_file_beginning_like_a_checkpointed_one_is_read_whole() {
        // An event longer than the fingerprint, as audit events at RequestResponse level are.
        let event = format!("{{\"auditID\":\"{}\"}}", "a".repeat(2 * FINGERPRINT_BYTES));
        let run = |detect_copies: bool| {
            let opts = || Opts {
                glob: "*.log",
                detect_copies,
                ..Opts::default()
            };
            let h = Harness::new(opts());
            let first = h.path("segment-1.log");
            fs::write(&first, format!("{event}\nold\n")).unwrap();
            let (_, dirs) = h.confirm_all_and_stop();
            fs::write(dirs.path("segment-2.log"), format!("{event}\nnew\n")).unwrap();
            let mut h = dirs.start(opts());
            lines(&h.step())
        };
        assert_eq!(run(false), [event.as_str(), "new"]);
        // With copy detection (configured file sources), the second file is taken for a copy of
        // the first, which is what spool segments must never be.
        assert_ne!(run(true), [event.as_str(), "new"]);
    }

    /// Regression (reliability report): a 14 MB event kept 14 MB held after it was read.
    #[test]
    fn the_buffer_of_a_long_line_is_freed_once_the_line_is_handed_on() {
        let opts = || Opts {
            max_line: 8 * PARTIAL_KEEP_BYTES,
            batch_max: 8 * PARTIAL_KEEP_BYTES,
            ..Opts::default()
        };
        let mut h = Harness::new(opts());
        let log = h.path("audit.log");
        let long = "x".repeat(3 * PARTIAL_KEEP_BYTES);
        fs::write(&log, &long).unwrap();
        assert!(h.step().is_empty(), "the line waits for its newline");
        assert!(h.file("audit.log").partial.capacity() >= long.len());
        append(&log, b"\n");
        assert_eq!(lines(&h.step()), [long.as_str()]);
        assert!(h.file("audit.log").partial.capacity() <= PARTIAL_KEEP_BYTES);
    }

    #[test]
    fn a_restart_reads_unconfirmed_batches_again() {
        let mut h = Harness::new(Opts::batch_max(1));
        fs::write(h.path("audit.log"), b"1\n2\n3\n").unwrap();
        let b = h.step();
        b[0].ack.done();
        b[2].ack.done();
        h.step();
        h.stored();
        let mut h = h.restart(Opts::batch_max(1));
        let b = h.step();
        assert_eq!(lines(&b), ["2", "3"]);
        assert_eq!(b[0].first_line, 2);
    }

    #[test]
    fn a_reused_inode_with_other_first_bytes_is_a_new_file() {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"old-1\nold-2\n").unwrap();
        let (before, dirs) = h.confirm_all_and_stop();

        // While stopped, the inode gets new content, longer than the checkpoint offset: by
        // device, inode and offset alone it would pass for the old file.
        let ino = fs::metadata(&log).unwrap().ino();
        fs::write(&log, b"new-1\nnew-2\nnew-3\n").unwrap();
        assert_eq!(fs::metadata(&log).unwrap().ino(), ino);
        assert_eq!(before.files[0].ino, ino);

        let mut h = dirs.start(Opts::default());
        let b = h.step();
        assert_eq!(lines(&b), ["new-1", "new-2", "new-3"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (1, 0));
        assert!(h.src.restored.is_empty());
        ack(&b);
        h.step();
        let after = h.stored();
        assert_eq!(after.files.len(), 1);
        assert_eq!(after.files[0].offset, 18);
        assert_eq!(
            after.files[0].fingerprint,
            fingerprint(b"new-1\nnew-2\nnew-3\n")
        );
    }

    #[test]
    fn a_file_shorter_than_its_checkpoint_after_a_restart_is_read_from_the_start() {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n3\n").unwrap();
        let (_, dirs) = h.confirm_all_and_stop();
        // Truncated while stopped; what remains still starts with the fingerprinted bytes
        // only in part, and is shorter than the checkpoint.
        truncate(&log);
        append(&log, b"9\n");
        let mut h = dirs.start(Opts::default());
        assert_eq!(lines(&h.step()), ["9"]);
    }

    #[test]
    fn a_file_renamed_out_of_the_globs_while_stopped_is_read_from_its_checkpoint() {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, b"1\n2\n").unwrap();
        let (_, dirs) = h.confirm_all_and_stop();

        append(&log, b"3\n");
        let rotated = dirs.path("audit-2024.log.old");
        fs::rename(&log, &rotated).unwrap();
        fs::write(&log, b"4\n").unwrap();

        let mut h = dirs.start(Opts::default());
        let b = h.step();
        assert_eq!(lines(&b), ["3", "4"]);
        assert_eq!((b[0].first_line, b[0].start_offset), (3, 4));
        assert_eq!(&*b[0].path, rotated.display().to_string());
        ack(&b);
        h.step();
        assert_eq!(
            h.src.tracked.len(),
            1,
            "the rotated file is released once confirmed"
        );
        assert_eq!(h.confirmed("audit.log"), (2, 1));
    }

    fn gzip(path: &Path, data: &[u8]) {
        let mut enc =
            flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap();
    }

    /// Reads `before`, confirms it, stops; while stopped `after` is appended and the file is
    /// compressed to a `.gz` and deleted, and a new `audit.log` started. Returns the lines of
    /// the first start after that.
    fn resume_through_gzip(before: &[u8], after: &[u8]) -> (Vec<String>, u64) {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        fs::write(&log, before).unwrap();
        let (cp, dirs) = h.confirm_all_and_stop();

        let mut whole = before.to_vec();
        whole.extend_from_slice(after);
        let gz = dirs.path("audit-2024.log.gz");
        gzip(&gz, &whole);
        fs::remove_file(&log).unwrap();
        fs::write(&log, b"fresh\n").unwrap();

        let mut h = dirs.start(Opts::default());
        let b = h.step();
        let got = lines(&b);
        let gz_label = gz.display().to_string();
        let from_gz: Vec<&Batch> = b.iter().filter(|b| *b.path == gz_label).collect();
        assert!(!from_gz.is_empty(), "nothing read from the backup");
        let first = from_gz[0];
        let first_line = first.first_line;
        assert_eq!(first_line, cp.files[0].line + 1);
        assert_eq!(
            first.start_offset,
            before
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i as u64 + 1)
        );
        // The backup is tracked under a key no real file has until it is confirmed, and a
        // restart before that resumes it again from the checkpoint.
        assert!(h.src.tracked.keys().any(|k| k.dev == u64::MAX));
        let stored = h.stored();
        let gz_cp = stored.files.iter().find(|f| f.path == gz_label).unwrap();
        assert_eq!(gz_cp.offset, cp.files[0].offset);
        drop(b);
        let mut h = h.restart(Opts::default());
        let again = h.step();
        assert_eq!(lines(&again), got, "unconfirmed: read again, nothing more");
        ack(&again);
        h.step();
        assert_eq!(
            h.src.tracked.len(),
            1,
            "the backup is released once confirmed"
        );
        assert!(h.stored().files.iter().all(|f| f.path != gz_label));
        (got, first_line)
    }

    #[test]
    fn a_checkpointed_tail_that_exists_only_compressed_is_read_from_the_gz_backup() {
        // The checkpoint lies inside the fingerprinted prefix, with a partial line after it.
        let (got, _) = resume_through_gzip(b"1\n2\npart", b"ial\n3\n");
        assert_eq!(got, ["partial", "3", "fresh"]);
    }

    #[test]
    fn a_gz_backup_is_resumed_from_a_checkpoint_past_the_fingerprinted_bytes() {
        let before: String = (0..200).map(|i| format!("line-{i:04}\n")).collect();
        assert!(before.len() > FINGERPRINT_BYTES);
        let (got, first_line) = resume_through_gzip(before.as_bytes(), b"line-0200\nline-0201\n");
        assert_eq!(got, ["line-0200", "line-0201", "fresh"]);
        assert_eq!(first_line, 201);
    }

    #[test]
    fn compressed_backups_are_not_followed_otherwise() {
        let dirs = Dirs::new();
        gzip(&dirs.path("audit-1.log.gz"), b"old\n");
        fs::write(dirs.path("audit.log"), b"new\n").unwrap();
        let mut h = dirs.start(Opts::glob("audit*"));
        assert_eq!(lines(&h.step()), ["new"]);
        assert_eq!(h.src.tracked.len(), 1);
    }

    #[test]
    fn silence_is_reported_once_and_its_end_too() {
        let mut h = Harness::new(Opts {
            silence: Duration::from_millis(100),
            ..Opts::default()
        });
        h.src.check_silence();
        assert!(h.events.try_recv().is_err());
        std::thread::sleep(Duration::from_millis(110));
        h.src.check_silence();
        h.src.check_silence();
        let e: Vec<SourceEvent> = h.events.try_iter().collect();
        assert!(
            matches!(&e[..], [SourceEvent::Silent { silent: true, .. }]),
            "{e:?}"
        );
        assert_eq!(h.src.metrics.silent.get(), 1);
        fs::write(h.path("audit.log"), b"1\n").unwrap();
        h.step();
        h.src.check_silence();
        let e: Vec<SourceEvent> = h.events.try_iter().collect();
        assert!(
            matches!(&e[..], [SourceEvent::Silent { silent: false, .. }]),
            "{e:?}"
        );
        assert_eq!(h.src.metrics.silent.get(), 0);
    }

    #[test]
    fn watch_dirs_are_the_fixed_prefixes_of_the_globs() {
        let root = tempfile::tempdir().unwrap();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let (etx, _erx) = crossbeam_channel::unbounded();
        let mut cfg = config(Path::new("/x"), &Opts::default());
        cfg.paths = vec![
            "/var/log/kubernetes/audit.log".into(),
            "/var/log/kubernetes/*.log".into(),
            "/var/log/a*/b/*.log".into(),
        ];
        let src = FileSource::new("w", cfg, root.path(), 10, 10, tx, etx, &Metrics::new()).unwrap();
        assert_eq!(
            src.watch_dirs(),
            [
                PathBuf::from("/var/log"),
                PathBuf::from("/var/log/kubernetes")
            ]
        );
    }

    #[test]
    fn a_corrupt_checkpoint_is_moved_aside_and_the_source_starts_afresh() {
        let dirs = Dirs::new();
        let state = dirs.state();
        fs::create_dir_all(&state).unwrap();
        let p = Checkpoints::path(&state, "audit");
        fs::write(&p, b"{oops").unwrap();
        let h = dirs.start(Opts::default());
        assert!(h.src.first_start);
        assert!(p.with_extension("json.corrupt").exists());
        assert!(!p.exists());
    }

    #[test]
    fn a_checkpoint_of_an_unknown_format_version_is_moved_aside_and_the_source_starts_afresh() {
        let dirs = Dirs::new();
        let state = dirs.state();
        fs::create_dir_all(&state).unwrap();
        let p = Checkpoints::path(&state, "audit");
        fs::write(&p, br#"{"version": 99, "files": []}"#).unwrap();
        let h = dirs.start(Opts::default());
        assert!(h.src.first_start);
        assert!(p.with_extension("json.corrupt").exists());
        assert!(!p.exists());
    }

    /// The checkpoint may now be written while the first scan resumes compressed backups
    /// (blocked on a full pipeline): checkpointed files not found yet must stay in it.
    #[test]
    fn a_checkpoint_written_before_the_first_scan_ends_keeps_the_files_not_found_yet() {
        let h = Harness::new(Opts::default());
        fs::write(h.path("audit.log"), b"1\n2\n").unwrap();
        let (_, dirs) = h.confirm_all_and_stop();
        let mut h = dirs.start(Opts::default());
        h.src.dirty = true;
        let cp = h.stored();
        assert_eq!(cp.files.len(), 1);
        assert_eq!((cp.files[0].offset, cp.files[0].line), (4, 2));
    }

    /// The real loop in its thread: batches flow, confirmations arrive while it waits, and a
    /// stop waits for what is in flight before the final checkpoint.
    /// A file created under the globs (a rotation's new `audit.log`) is found when inotify
    /// reports it, not at the next poll: its events were late by up to `poll_interval`.
    #[test]
    fn a_file_created_under_the_glob_is_read_at_once_not_at_the_next_poll() {
        let mut h = Harness::new(Opts::glob("*.log"));
        h.src.cfg.poll_interval = HumanDuration(Duration::from_secs(30));
        let Harness {
            dirs,
            src,
            rx,
            events,
            ..
        } = h;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                Box::new(src).run(stop, Duration::from_millis(100), Health::detached("t"))
            })
        };
        // The first scan has run and the directory is watched.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        fs::write(dirs.path("audit-new.log"), b"1\n").unwrap();
        let b = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the new file is read before the next poll (30 s)");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        b.ack.done();
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        drop(events);
    }

    #[test]
    fn run_confirms_what_is_in_flight_at_stop_and_writes_the_final_checkpoint() {
        let h = Harness::new(Opts::default());
        let log = h.path("audit.log");
        let r = h.run(Duration::from_secs(5));
        fs::write(&log, b"1\n2\n").unwrap();
        let (b, got) = r.next();
        assert_eq!(got, ["1", "2"]);
        b.ack.done();
        append(&log, b"3\n");
        let (c, got) = r.next();
        assert_eq!(got, ["3"]);
        r.stop();
        std::thread::sleep(Duration::from_millis(10));
        assert!(!r.thread.is_finished(), "waits for the batch in flight");
        c.ack.done();
        let cp = r.join();
        assert_eq!((cp.files[0].offset, cp.files[0].line), (6, 3));
    }

    #[test]
    fn a_stop_while_the_pipeline_is_full_ends_the_source_without_checkpointing_the_unsent() {
        let h = Harness::new(Opts {
            queue: Some(1),
            ..Opts::batch_max(1)
        });
        fs::write(h.path("audit.log"), b"1\n2\n3\n").unwrap();
        let r = h.run(Duration::from_millis(30));
        // The first batch fills the channel; the source blocks on the second.
        let (first, got) = r.next();
        assert_eq!(got, ["1"]);
        first.ack.done();
        std::thread::sleep(Duration::from_millis(20));
        r.stop();
        let cp = r.join();
        assert_eq!((cp.files[0].offset, cp.files[0].line), (2, 1));
    }

    /// Regression (reliability report): with a slow sink and a backlog the source sat blocked
    /// on the full channel for 30 s, taking confirmations but writing no checkpoint, so a
    /// `kill -9` sent the whole backlog again; and `tripline_source_lag_bytes` read 0 with the
    /// backlog unread. Both must follow while the source is held back.
    #[test]
    fn checkpoints_and_lag_follow_confirmations_while_the_pipeline_is_full() {
        let h = Harness::new(Opts {
            queue: Some(1),
            ..Opts::batch_max(1)
        });
        let log = h.path("audit.log");
        // More than one read chunk, so that most of the file is still unread while blocked.
        let line = format!("{}\n", "x".repeat(99));
        let total = 2 * READ_CHUNK / line.len() + 10;
        fs::write(&log, line.repeat(total)).unwrap();
        let len = fs::metadata(&log).unwrap().len() as i64;
        let lag = h.src.metrics.lag_bytes.clone();
        let r = h.run(Duration::from_secs(1));
        let offset = || {
            Checkpoints::load(&r.checkpoint_path)
                .unwrap()
                .map_or(0, |c| c.files[0].offset)
        };
        // The source hands on one batch, then blocks sending the next: take and confirm a
        // few while it stays blocked, one interval (5 ms) apart.
        for n in 1..=3u64 {
            let (b, _) = r.next();
            b.ack.done();
            let deadline = Instant::now() + Duration::from_secs(2);
            while offset() < n * line.len() as u64 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(
                offset(),
                n * line.len() as u64,
                "checkpoint after {n} batches"
            );
        }
        // One chunk was read, the rest is lag.
        let deadline = Instant::now() + Duration::from_secs(2);
        while lag.get() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            lag.get() >= len - READ_CHUNK as i64 && lag.get() < len,
            "lag {} of {len}",
            lag.get()
        );
        r.stop();
        r.join();
    }

    /// During the drain at shutdown the checkpoint still follows confirmations every interval,
    /// not only once the drain ends.
    #[test]
    fn checkpoints_are_written_while_draining_at_shutdown() {
        let h = Harness::new(Opts::batch_max(1));
        fs::write(h.path("audit.log"), b"1\n2\n").unwrap();
        let r = h.run(Duration::from_secs(5));
        let (a, _) = r.next();
        let (b, _) = r.next();
        r.stop();
        std::thread::sleep(Duration::from_millis(20));
        a.ack.done();
        let deadline = Instant::now() + Duration::from_secs(2);
        let offset = || {
            Checkpoints::load(&r.checkpoint_path)
                .unwrap()
                .map_or(0, |c| c.files[0].offset)
        };
        while offset() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(offset(), 2, "checkpointed while draining");
        assert!(
            !r.thread.is_finished(),
            "still waiting for the second batch"
        );
        b.ack.done();
        let cp = r.join();
        assert_eq!(cp.files[0].offset, 4);
    }

    /// A line without its newline: any bytes but `\n`, sometimes longer than the `max_line`
    /// the properties use.
    fn any_line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            any::<u8>().prop_map(|b| if b == b'\n' { b'x' } else { b }),
            0..40,
        )
    }

    fn joined(lines: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
        let mut content: Vec<u8> = lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect();
        content.extend_from_slice(tail);
        content
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the sizes of the writes and of the reads between them, what comes out is
        /// every complete line not over `max_line`, in order, once; each batch is the file's
        /// bytes at its offset, numbered by the lines before it; and once all is confirmed the
        /// checkpoint is at the last newline.
        #[test]
        fn lines_come_out_whole_in_order_and_once_however_the_writes_are_split(
            written in proptest::collection::vec(any_line(), 0..30),
            tail in any_line(),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..12),
            batch_max in 1usize..64,
            max_line in 4usize..48,
        ) {
            let mut h = Harness::new(Opts { max_line, batch_max, ..Opts::default() });
            let log = h.path("audit.log");
            let content = joined(&written, &tail);
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(content.len() + 1)).collect();
            cuts.push(content.len());
            cuts.sort_unstable();
            fs::write(&log, b"").unwrap();
            let mut batches = Vec::new();
            let mut at = 0;
            for cut in cuts {
                append(&log, &content[at..cut]);
                at = cut;
                batches.extend(h.step());
            }

            let expected: Vec<Vec<u8>> =
                written.iter().filter(|l| l.len() <= max_line).cloned().collect();
            proptest::prop_assert_eq!(raw_lines(&batches), expected);
            for b in &batches {
                let start = b.start_offset as usize;
                proptest::prop_assert_eq!(&content[start..start + b.data.len()], &b.data[..]);
                let before = content[..start].iter().filter(|&&c| c == b'\n').count() as u64;
                proptest::prop_assert_eq!(b.first_line, before + 1);
                proptest::prop_assert!(b.data.len() < batch_max + max_line + 1);
            }
            let too_long = written.iter().filter(|l| l.len() > max_line).count() as u64;
            proptest::prop_assert_eq!(h.src.metrics.too_long.get(), too_long);

            ack(&batches);
            h.step();
            let complete = (content.len() - tail.len()) as u64;
            proptest::prop_assert_eq!(h.confirmed("audit.log"), (complete, written.len() as u64));
        }

        /// Confirmed in any order, a file's checkpoint is always the start of its earliest
        /// unconfirmed batch (the end of the longest confirmed run, skipped lines included),
        /// numbered by the lines before it; once all are confirmed, the end of the last line.
        #[test]
        fn the_checkpoint_is_the_end_of_the_longest_confirmed_run_whatever_the_order(
            written in proptest::collection::vec(any_line(), 0..30),
            tail in any_line(),
            picks in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 64),
            batch_max in 1usize..32,
            max_line in 4usize..48,
        ) {
            let mut h = Harness::new(Opts { max_line, batch_max, ..Opts::default() });
            let content = joined(&written, &tail);
            fs::write(h.path("audit.log"), &content).unwrap();
            let batches = h.step();
            let complete = (content.len() - tail.len()) as u64;
            let lines_to = |offset: u64| {
                content[..offset as usize].iter().filter(|&&c| c == b'\n').count() as u64
            };
            let mut waiting: Vec<&Batch> = batches.iter().collect();
            let mut picks = picks.iter().cycle();
            loop {
                let expected = waiting.iter().map(|b| b.start_offset).min().unwrap_or(complete);
                proptest::prop_assert_eq!(h.confirmed("audit.log"), (expected, lines_to(expected)));
                if waiting.is_empty() {
                    break;
                }
                let b = waiting.swap_remove(picks.next().unwrap().index(waiting.len()));
                b.ack.done();
                h.step();
            }
            let cp = h.stored();
            proptest::prop_assert_eq!((cp.files[0].offset, cp.files[0].line), (complete, written.len() as u64));
        }
    }
}
