//! Sinks: where alerts and events go. Each sink runs on its own thread behind a bounded queue
//! and confirms a batch only once it is written, so sources checkpoint only delivered data.
//!
//! This module has the local sinks (`file`, `stdout`) and the dead-letter file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::config::{Flow, SinkConfig};
use crate::source::Ack;
use crate::telemetry::{Counter, Metrics};

/// JSON lines for one sink from one source batch.
#[derive(Debug)]
pub struct SinkBatch {
    /// Newline-terminated JSON documents.
    pub body: Vec<u8>,
    pub records: usize,
    /// Confirmed once written (`None` for records no source waits for, e.g. silence alerts).
    pub ack: Option<Arc<Ack>>,
}

/// The pipeline's handle on a running sink.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub name: String,
    pub flows: Vec<Flow>,
    pub required: bool,
    pub tx: Sender<SinkBatch>,
}

impl SinkHandle {
    pub fn takes(&self, flow: Flow) -> bool {
        self.flows.contains(&flow)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink `{sink}`: opening {path}: {source}")]
    Open {
        sink: String,
        path: PathBuf,
        source: io::Error,
    },
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

struct SinkMetrics {
    delivered: Counter,
    records: Counter,
    failures: Counter,
    retries: Counter,
    dropped: Counter,
}

/// Write attempts of a non-required sink before a batch is dropped (and dead-lettered).
const OPTIONAL_ATTEMPTS: u32 = 3;

/// Starts the sink described by `cfg`: validates and opens its output before returning.
pub fn start(
    cfg: &SinkConfig,
    index: usize,
    queue: usize,
    metrics: &Metrics,
    stop: Arc<AtomicBool>,
    dead_letters: Arc<DeadLetters>,
) -> Result<(SinkHandle, JoinHandle<()>), SinkError> {
    let name = cfg.name(index);
    let l = [("sink", name.as_str())];
    let m = SinkMetrics {
        delivered: metrics.counter(
            "tripline_sink_batches_delivered_total",
            "Batches a sink wrote.",
            &l,
        ),
        records: metrics.counter(
            "tripline_sink_records_delivered_total",
            "Alerts or events a sink wrote.",
            &l,
        ),
        failures: metrics.counter(
            "tripline_sink_failures_total",
            "Failed writes of a sink (each retried).",
            &l,
        ),
        retries: metrics.counter(
            "tripline_sink_retries_total",
            "Retried writes of a sink.",
            &l,
        ),
        dropped: dropped_counter(metrics, &name),
    };
    let (tx, rx) = crossbeam_channel::bounded(queue);
    let out = match cfg {
        SinkConfig::File(f) => {
            let file = open_append(&f.path).map_err(|source| SinkError::Open {
                sink: name.clone(),
                path: f.path.clone(),
                source,
            })?;
            Output::File(file)
        }
        SinkConfig::Stdout(_) => Output::Stdout(io::stdout()),
    };
    let required = cfg.required();
    let handle = SinkHandle {
        name: name.clone(),
        flows: cfg.flows().to_vec(),
        required,
        tx,
    };
    let thread = std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || run(name, out, rx, m, stop, required, dead_letters))
        .expect("spawning a thread");
    Ok((handle, thread))
}

/// The counter of batches a non-required sink gave up on.
pub fn dropped_counter(metrics: &Metrics, sink: &str) -> Counter {
    metrics.counter(
        "tripline_sink_dropped_total",
        "Batches a non-required sink dropped (queue full or writes failing); each is dead-lettered.",
        &[("sink", sink)],
    )
}

/// Where a local sink writes. Unbuffered: each batch body is one large write, and a write that
/// fails part-way is resumed at the byte where it stopped, so a retry neither repeats nor tears
/// a record.
enum Output {
    File(File),
    Stdout(io::Stdout),
}

impl Output {
    /// Writes `body[*written..]`, advancing `written`; then makes it durable (file sinks fsync
    /// their data before a batch is confirmed, so a checkpoint never runs ahead of the disk).
    fn write_from(&mut self, body: &[u8], written: &mut usize) -> io::Result<()> {
        while *written < body.len() {
            let n = match self {
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
        match self {
            Output::File(f) => f.sync_data(),
            Output::Stdout(o) => o.flush(),
        }
    }
}

fn run(
    name: String,
    mut out: Output,
    rx: Receiver<SinkBatch>,
    m: SinkMetrics,
    stop: Arc<AtomicBool>,
    required: bool,
    dead_letters: Arc<DeadLetters>,
) {
    for batch in rx {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        let mut written = 0;
        loop {
            attempts += 1;
            match out.write_from(&batch.body, &mut written) {
                Ok(()) => {
                    m.delivered.inc();
                    m.records.add(batch.records as u64);
                    if let Some(ack) = &batch.ack {
                        ack.done();
                    }
                    break;
                }
                Err(e) => {
                    m.failures.inc();
                    if !required && attempts >= OPTIONAL_ATTEMPTS {
                        if written > 0 && written < batch.body.len() {
                            // End the torn record so the next batch starts on its own line.
                            let _ = out.write_from(b"\n", &mut 0);
                        }
                        m.dropped.inc();
                        tracing::error!(sink = %name, error = %e, records = batch.records, "write failed; batch dropped (sink not required)");
                        dead_letters.write_dropped(&name, &e.to_string(), &batch.body);
                        break;
                    }
                    tracing::error!(sink = %name, error = %e, "write failed; retrying");
                    // A required batch is retried until it is written or the shutdown deadline
                    // passes (then it is not confirmed and is read again at the next start).
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let until = std::time::Instant::now() + backoff;
                    while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    m.retries.inc();
                }
            }
        }
    }
}

/// Invalid input, kept with its position so that nothing is dropped silently. The file is
/// created with mode 0600: a broken line may still hold secret values.
pub struct DeadLetters {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
    written: Counter,
}

/// How much of an invalid line a dead-letter record keeps.
const DEAD_LETTER_MAX_BYTES: usize = 64 * 1024;

/// Size at which the dead-letter file is rotated to `dead-letter.jsonl.1` (one old file kept),
/// so a flood of bad input cannot fill the node's disk.
const DEAD_LETTER_ROTATE_BYTES: u64 = 64 << 20;

impl DeadLetters {
    pub fn new(state_dir: &Path, metrics: &Metrics) -> DeadLetters {
        DeadLetters {
            path: state_dir.join("dead-letter.jsonl"),
            out: Mutex::new(None),
            written: metrics.counter(
                "tripline_dead_letters_total",
                "Records written to the dead-letter file.",
                &[],
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records output a non-required sink could not deliver.
    pub fn write_dropped(&self, sink: &str, message: &str, body: &[u8]) {
        self.write(sink, "", 0, 0, "sink_dropped", message, body);
    }

    /// Appends one record; failures are logged, never fatal.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        source: &str,
        path: &str,
        line: u64,
        offset: u64,
        reason: &str,
        message: &str,
        raw: &[u8],
    ) {
        let raw = &raw[..raw.len().min(DEAD_LETTER_MAX_BYTES)];
        let record = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "source": source,
            "path": path,
            "line": line,
            "offset": offset,
            "reason": reason,
            "message": message,
            "raw": String::from_utf8_lossy(raw),
            "raw_truncated": raw.len() == DEAD_LETTER_MAX_BYTES,
        });
        let mut guard = match self.out.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let too_big = guard
            .as_ref()
            .and_then(|w| w.get_ref().metadata().ok())
            .is_some_and(|m| m.len() >= DEAD_LETTER_ROTATE_BYTES);
        if too_big {
            *guard = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
        }
        if guard.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            match OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
            {
                Ok(f) => *guard = Some(BufWriter::new(f)),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot open the dead-letter file");
                    return;
                }
            }
        }
        if let Some(w) = guard.as_mut() {
            let res = serde_json::to_writer(&mut *w, &record)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush());
            match res {
                Ok(()) => self.written.inc(),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "dead-letter write failed")
                }
            }
        }
    }
}
