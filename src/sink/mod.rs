//! Sinks: where alerts and events go. Each sink runs on its own thread behind a bounded queue
//! and confirms a batch only once every record of it was delivered (or, for a record the
//! destination rejected for its content, written to the dead-letter file), so sources
//! checkpoint only delivered data.
//!
//! A sink type implements [`Deliver`]: send these records, say what happened to each. The
//! [`Driver`] around it does the rest the same way for every type: grouping records into
//! requests (by count, bytes and time), retrying what is worth retrying with exponential backoff
//! and jitter, dead-lettering what is not, confirming source batches, and the metrics.

mod config;
pub mod elasticsearch;
pub mod http;
pub mod kafka;
pub mod local;
pub mod splunk;
mod summary;
pub mod syslog;
mod web;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

pub use config::{BatchConfig, SinkConfig, SinkKind};

use crate::ack::Confirm;
use crate::config::types::{Flow, Secret};
use crate::rules::Level;
use crate::telemetry::{Counter, Health, HealthHandle, Metrics, SinkLabels};

/// One document for the sinks: an alert or an audit event, serialized once and shared by every
/// sink that takes it.
#[derive(Debug, Clone)]
pub struct Record {
    pub flow: Flow,
    /// Deterministic document id (hex): for an event, a hash of its bytes; for an alert, a hash
    /// of the event id and the rule id. The same input always gives the same id, so a retry
    /// after a crash does not duplicate documents in sinks that dedupe by id.
    pub id: String,
    /// The event time (`stageTimestamp`, else `requestReceivedTimestamp`, else `timestamp`),
    /// used for dated index names; `None` when the event has none.
    pub time: Option<DateTime<Utc>>,
    /// The alert's level (alerts only).
    pub level: Option<Level>,
    /// The rule's id and title (alerts only).
    pub rule: Option<(String, String)>,
    /// `user.username` of the event, a partitioning key.
    pub user: Option<String>,
    /// The JSON document, without a trailing newline.
    pub doc: Vec<u8>,
}

/// A delivered record's document buffer goes back for the next document to be written into
/// ([`crate::alert::buffers`]), rather than to the allocator from this thread.
impl Drop for Record {
    fn drop(&mut self) {
        crate::alert::buffers::give_back(std::mem::take(&mut self.doc));
    }
}

impl Record {
    /// The record as one Falco JSON alert (falcosidekick's input); an event (not an alert)
    /// or a document that does not convert is refused.
    pub(crate) fn to_falco(&self) -> Result<Vec<u8>, String> {
        if self.flow != crate::config::types::Flow::Alerts {
            return Err("the Falco format is for alerts only: an event was refused".to_string());
        }
        crate::alert::to_falco_bytes(&self.doc, Some(&self.id), self.time_or_now())
    }

    /// The record's time, or now when the event carries none.
    pub fn time_or_now(&self) -> DateTime<Utc> {
        self.time.unwrap_or_else(Utc::now)
    }
}

/// Document ids: defined with the events, re-exported for the sinks.
pub use crate::event::content_id;

/// Records for one sink from one source batch.
#[derive(Debug)]
pub struct SinkBatch {
    pub records: Vec<Arc<Record>>,
    /// Confirmed once delivered (`None` for records no source waits for, e.g. silence alerts).
    pub ack: Option<Arc<dyn Confirm>>,
    /// The records' share of the in-flight budget, shared by every sink that takes them and
    /// given back when the last of them has finished with them.
    pub charge: Option<Arc<Charge>>,
}

/// One byte budget for the records waiting in all sink queues together
/// (`pipeline.max_inflight_bytes`), whatever the number of workers and sinks: a worker takes its
/// batch's share before handing records to the sinks and waits while the budget is spent, so a
/// slow sink stops the sources instead of growing the queues. A record shared by several sinks
/// counts once.
#[derive(Debug)]
pub struct InflightBudget {
    limit: usize,
    used: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A share of an [`InflightBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<InflightBudget>,
    bytes: usize,
}

impl InflightBudget {
    pub fn new(limit: usize) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            limit: limit.max(1),
            used: Mutex::new(0),
            freed: std::sync::Condvar::new(),
        })
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` once they are free, waiting as long as needed; a share larger than the
    /// whole budget takes the whole budget (it waits until nothing else is in flight). `None`
    /// if `give_up` turned true while waiting (checked every 100 ms).
    pub fn take(self: &Arc<Self>, bytes: usize, give_up: &dyn Fn() -> bool) -> Option<Charge> {
        let bytes = bytes.min(self.limit);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > self.limit {
            if give_up() {
                return None;
            }
            used = match self.freed.wait_timeout(used, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        *used += bytes;
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.bytes);
        drop(used);
        self.budget.freed.notify_all();
    }
}

/// Which records a sink takes.
#[derive(Debug, Clone)]
pub struct SinkFilter {
    pub flows: Vec<Flow>,
    pub min_level: Option<Level>,
    /// Lowercased; an entry ending in `*` matches by prefix.
    pub tags: Vec<String>,
}

impl SinkFilter {
    pub fn from_config(cfg: &SinkConfig) -> SinkFilter {
        SinkFilter {
            flows: cfg.flows.clone(),
            min_level: cfg.min_level,
            tags: cfg.tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
        }
    }

    pub fn takes(&self, flow: Flow) -> bool {
        self.flows.contains(&flow)
    }

    /// Whether an alert of `level` from a rule with `tags` passes the level and tag filters.
    pub fn takes_alert(&self, level: Level, tags: &[String]) -> bool {
        if self.min_level.is_some_and(|min| level < min) {
            return false;
        }
        self.tags.is_empty()
            || tags.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                self.tags.iter().any(|want| match want.strip_suffix('*') {
                    Some(prefix) => t.starts_with(prefix),
                    None => *want == t,
                })
            })
    }
}

/// The pipeline's handle on a running sink.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub name: String,
    pub filter: SinkFilter,
    pub required: bool,
    pub tx: Sender<SinkBatch>,
}

impl SinkHandle {
    pub fn takes(&self, flow: Flow) -> bool {
        self.filter.takes(flow)
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
    #[error("sink `{sink}`: {message}")]
    Setup { sink: String, message: String },
}

impl SinkError {
    /// `Ok` when a config's `validate` found nothing, else one error listing every problem.
    pub fn check(sink: &str, problems: Vec<String>) -> Result<(), SinkError> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(SinkError::Setup {
            sink: sink.to_string(),
            message: problems.join("; "),
        })
    }
}

/// What happened to one record of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or already stored: a duplicate of a deterministic id counts as delivered).
    Delivered,
    /// Rejected for a reason that may pass (overload, a server error): send it again.
    Retry(String),
    /// Rejected for its content: retrying cannot help. Goes to the dead-letter file.
    Reject(String),
}

/// A request that failed as a whole (connection refused, timeout, 5xx, 429): every record of it
/// is retried.
#[derive(Debug, Clone)]
pub struct RequestError(pub String);

impl<E: std::fmt::Display> From<E> for RequestError {
    fn from(e: E) -> Self {
        RequestError(e.to_string())
    }
}

/// One sink type's delivery: send `records` as one request (or one burst), report per record.
pub trait Deliver: Send {
    /// Returns one [`Outcome`] per record, in order, or a [`RequestError`] when the request as a
    /// whole failed.
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError>;

    /// Called when the driver gives up on the records of the last failed call (a sink that is not
    /// required, or `max_attempts` reached), before they are dead-lettered.
    fn abandon(&mut self) {}

    /// Called when the sink has been idle for a while: checks the destination is reachable
    /// (drives `/readyz`). `Ok` by default.
    fn probe(&mut self) -> Result<(), RequestError> {
        Ok(())
    }
}

/// Batching limits after defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub flush_interval: Duration,
}

impl Limits {
    pub fn with(cfg: Option<BatchConfig>, default: Limits) -> Limits {
        let cfg = cfg.unwrap_or_default();
        Limits {
            max_records: cfg.max_records.unwrap_or(default.max_records).max(1),
            max_bytes: cfg.max_bytes.unwrap_or(default.max_bytes).max(1),
            flush_interval: cfg.flush_interval.map_or(default.flush_interval, |d| d.0),
        }
    }
}

struct SinkMetrics {
    delivered: Counter,
    records: Counter,
    bytes: Counter,
    failures: Counter,
    retries: Counter,
    rejected: Counter,
    dropped: Counter,
    up: crate::telemetry::Gauge,
}

impl SinkMetrics {
    fn new(metrics: &Metrics, name: &str) -> SinkMetrics {
        let l = SinkLabels::new(name);
        SinkMetrics {
            delivered: metrics.sink_batches_delivered.get_or_create_owned(&l),
            records: metrics.sink_records_delivered.get_or_create_owned(&l),
            bytes: metrics.sink_bytes_delivered.get_or_create_owned(&l),
            failures: metrics.sink_failures.get_or_create_owned(&l),
            retries: metrics.sink_retries.get_or_create_owned(&l),
            rejected: metrics.sink_rejected.get_or_create_owned(&l),
            dropped: dropped_counter(metrics, name),
            up: metrics.sink_up.get_or_create_owned(&l),
        }
    }
}

/// The counter of records a sink gave up on.
pub fn dropped_counter(metrics: &Metrics, sink: &str) -> Counter {
    metrics
        .sink_dropped
        .get_or_create_owned(&SinkLabels::new(sink))
}

/// What a sink thread needs besides its [`Deliver`].
pub struct SinkContext<'a> {
    pub index: usize,
    pub queue: usize,
    pub metrics: &'a Metrics,
    pub health: &'a Health,
    /// Set when the shutdown deadline passed: stop retrying, leave records unconfirmed.
    pub stop: Arc<AtomicBool>,
    /// Whether the destination's reachability is part of `/readyz` (not with a webhook source:
    /// its readiness is whether the spool accepts; a SIEM outage is what the spool is for).
    pub gates_readiness: bool,
    pub dead_letters: Arc<DeadLetters>,
}

/// Starts the sink described by `cfg`: validates and connects what can be checked before
/// returning (files opened, TLS material read), then runs it on its own thread.
pub fn start(
    cfg: &SinkConfig,
    ctx: SinkContext<'_>,
) -> Result<(SinkHandle, JoinHandle<()>), SinkError> {
    let name = cfg.name(ctx.index);
    let component = format!("sink:{name}");
    let health = if ctx.gates_readiness {
        ctx.health.component(&component)
    } else {
        Health::detached(&component)
    };
    SinkError::check(&name, cfg.alerts_only_problem().into_iter().collect())?;
    let (deliver, defaults): (Box<dyn Deliver>, Limits) = match &cfg.kind {
        SinkKind::File(f) => (
            Box::new(local::Local::file(&name, &f.path)?.with_format(f.format)),
            local::LIMITS,
        ),
        SinkKind::Stdout(c) => (
            Box::new(local::Local::stdout().with_format(c.format)),
            local::LIMITS,
        ),
        SinkKind::Elasticsearch(c) => (
            Box::new(elasticsearch::Elasticsearch::new(&name, c, ctx.metrics)?),
            elasticsearch::LIMITS,
        ),
        SinkKind::Kafka(c) => (
            Box::new(kafka::KafkaSink::new(&name, c, ctx.metrics)?),
            kafka::LIMITS,
        ),
        SinkKind::SplunkHec(c) => (Box::new(splunk::Splunk::new(&name, c)?), splunk::LIMITS),
        SinkKind::Syslog(c) => (Box::new(syslog::Syslog::new(&name, c)?), syslog::LIMITS),
        SinkKind::Http(c) => (Box::new(http::HttpSink::new(&name, c)?), http::LIMITS),
    };
    let (tx, rx) = crossbeam_channel::bounded(ctx.queue);
    let required = cfg.required;
    let handle = SinkHandle {
        name: name.clone(),
        filter: SinkFilter::from_config(cfg),
        required,
        tx,
    };
    let max_attempts = cfg.max_attempts.or(if required {
        None
    } else {
        Some(OPTIONAL_ATTEMPTS)
    });
    let driver = Driver {
        metrics: SinkMetrics::new(ctx.metrics, &name),
        name: name.clone(),
        deliver,
        limits: Limits::with(cfg.batch, defaults),
        max_attempts,
        stop: ctx.stop,
        dead_letters: ctx.dead_letters,
        health,
    };
    let thread = std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || driver.run(rx))
        .map_err(|e| SinkError::Setup {
            sink: name,
            message: format!("spawning a thread: {e}"),
        })?;
    Ok((handle, thread))
}

/// Attempts of a sink that is not required before it gives up on a request.
const OPTIONAL_ATTEMPTS: u32 = 3;
/// First and longest pause between attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An idle sink probes its destination this often (for `/readyz`).
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// A source batch whose records are being delivered.
struct Pending {
    ack: Option<Arc<dyn Confirm>>,
    /// Held until the batch's last record is finished here.
    charge: Option<Arc<Charge>>,
    remaining: usize,
}

/// The source batches in delivery, by absolute index; finished ones are dropped from the front,
/// so a sink that never runs dry does not accumulate them.
#[derive(Default)]
struct PendingQueue {
    base: usize,
    items: std::collections::VecDeque<Pending>,
}

impl PendingQueue {
    /// Takes a batch's records into `todo`, tagged with the batch's index.
    fn push(&mut self, todo: &mut Vec<(Arc<Record>, usize)>, b: SinkBatch) {
        if b.records.is_empty() {
            if let Some(a) = b.ack {
                a.done();
            }
            return;
        }
        let i = self.base + self.items.len();
        self.items.push_back(Pending {
            ack: b.ack,
            charge: b.charge,
            remaining: b.records.len(),
        });
        todo.extend(b.records.into_iter().map(|r| (r, i)));
    }

    /// One record of batch `i` is finished; the batch is confirmed with its last record.
    fn done(&mut self, i: usize) {
        let Some(p) = self.items.get_mut(i - self.base) else {
            return;
        };
        p.remaining -= 1;
        if p.remaining == 0 {
            if let Some(a) = p.ack.take() {
                a.done();
            }
            p.charge = None;
        }
        while self.items.front().is_some_and(|p| p.remaining == 0) {
            self.items.pop_front();
            self.base += 1;
        }
    }
}

/// Runs one sink: groups, delivers, retries, confirms.
pub struct Driver {
    name: String,
    deliver: Box<dyn Deliver>,
    limits: Limits,
    max_attempts: Option<u32>,
    stop: Arc<AtomicBool>,
    dead_letters: Arc<DeadLetters>,
    metrics: SinkMetrics,
    health: HealthHandle,
}

impl Driver {
    fn run(mut self, rx: Receiver<SinkBatch>) {
        let up = self.deliver.probe().is_ok();
        self.set_up(up);
        let mut last_activity = Instant::now();
        // Records waiting for delivery, each with the index of its source batch in `pending`.
        let mut todo: Vec<(Arc<Record>, usize)> = Vec::new();
        let mut pending = PendingQueue::default();
        let mut open = true;
        while open || !todo.is_empty() {
            if todo.is_empty() {
                match rx.recv_timeout(PROBE_INTERVAL) {
                    Ok(b) => pending.push(&mut todo, b),
                    Err(RecvTimeoutError::Timeout) => {
                        if last_activity.elapsed() >= PROBE_INTERVAL {
                            let ok = self.deliver.probe();
                            if let Err(e) = &ok {
                                tracing::warn!(sink = %self.name, error = %e.0, "destination unreachable");
                            }
                            self.set_up(ok.is_ok());
                            last_activity = Instant::now();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // Fill the request up to its limits, waiting at most `flush_interval` after the
            // first record.
            let deadline = Instant::now() + self.limits.flush_interval;
            while open && !self.full(&todo) {
                let wait = deadline.saturating_duration_since(Instant::now());
                let next = if wait.is_zero() {
                    rx.try_recv().map_err(|e| match e {
                        crossbeam_channel::TryRecvError::Empty => RecvTimeoutError::Timeout,
                        crossbeam_channel::TryRecvError::Disconnected => {
                            RecvTimeoutError::Disconnected
                        }
                    })
                } else {
                    rx.recv_timeout(wait)
                };
                match next {
                    Ok(b) => pending.push(&mut todo, b),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            // Deliver in requests within the limits.
            while !todo.is_empty() {
                let n = self.request_len(&todo);
                let chunk: Vec<(Arc<Record>, usize)> = todo.drain(..n).collect();
                if !self.deliver_chunk(chunk, &mut pending) {
                    // Shutdown deadline: leave the rest unconfirmed.
                    return;
                }
                last_activity = Instant::now();
                if self.full(&todo) || !open {
                    continue;
                }
                break;
            }
        }
    }

    /// Readiness and the `tripline_sink_up` gauge.
    fn set_up(&self, up: bool) {
        self.health.set_ready(up);
        self.metrics.up.set(i64::from(up));
    }

    fn full(&self, todo: &[(Arc<Record>, usize)]) -> bool {
        todo.len() >= self.limits.max_records
            || todo.iter().map(|(r, _)| r.doc.len()).sum::<usize>() >= self.limits.max_bytes
    }

    /// How many records from the front of `todo` make one request.
    fn request_len(&self, todo: &[(Arc<Record>, usize)]) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for (r, _) in todo.iter().take(self.limits.max_records) {
            if n > 0 && bytes + r.doc.len() > self.limits.max_bytes {
                break;
            }
            bytes += r.doc.len();
            n += 1;
        }
        n.max(1)
    }

    /// Delivers `chunk` until every record is delivered, rejected or given up; returns false if
    /// the shutdown deadline interrupted it.
    fn deliver_chunk(
        &mut self,
        mut chunk: Vec<(Arc<Record>, usize)>,
        pending: &mut PendingQueue,
    ) -> bool {
        let mut backoff = BACKOFF_START;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let records: Vec<Arc<Record>> = chunk.iter().map(|(r, _)| r.clone()).collect();
            // A panic in a sink type must not end the thread (its batches would never be
            // confirmed): it counts as a failed request.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.deliver.deliver(&records)
            }))
            .unwrap_or_else(|_| Err(RequestError("the sink panicked".into())));
            let error = match result {
                Ok(outcomes) => {
                    self.metrics.delivered.inc();
                    let mut progressed = false;
                    let mut retry = Vec::new();
                    let mut reason = String::new();
                    for ((rec, batch), outcome) in chunk.into_iter().zip(
                        outcomes
                            .into_iter()
                            .chain(std::iter::repeat(Outcome::Retry("no result".into()))),
                    ) {
                        match outcome {
                            Outcome::Delivered => {
                                progressed = true;
                                self.metrics.records.inc();
                                self.metrics.bytes.inc_by(rec.doc.len() as u64);
                                pending.done(batch);
                            }
                            Outcome::Reject(why) => {
                                progressed = true;
                                tracing::warn!(sink = %self.name, id = %rec.id, reason = %why, "record rejected; dead-lettered");
                                // Confirmed only once it is in the dead-letter file.
                                if self.dead_letters.write_record(
                                    &self.name,
                                    "sink_rejected",
                                    &why,
                                    &rec,
                                ) {
                                    self.metrics.rejected.inc();
                                    pending.done(batch);
                                } else {
                                    reason = format!("{why}; and the dead-letter write failed");
                                    retry.push((rec, batch));
                                }
                            }
                            Outcome::Retry(why) => {
                                reason = why;
                                retry.push((rec, batch));
                            }
                        }
                    }
                    self.set_up(progressed);
                    if retry.is_empty() {
                        return true;
                    }
                    chunk = retry;
                    reason
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::error!(sink = %self.name, error = %e.0, attempts, records = chunk.len(), "delivery failed; retrying");
                    }
                    self.set_up(false);
                    e.0
                }
            };
            if self.max_attempts.is_some_and(|max| attempts >= max) {
                self.deliver.abandon();
                tracing::error!(sink = %self.name, error = %error, records = chunk.len(), "giving up; records dead-lettered");
                let mut kept = Vec::new();
                for (rec, batch) in chunk {
                    if self
                        .dead_letters
                        .write_record(&self.name, "sink_dropped", &error, &rec)
                    {
                        self.metrics.dropped.inc();
                        pending.done(batch);
                    } else {
                        kept.push((rec, batch));
                    }
                }
                if kept.is_empty() {
                    return true;
                }
                // Nowhere to put them: keep trying (never acknowledge what is nowhere).
                chunk = kept;
                attempts = 0;
            }
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            // Exponential backoff with jitter (50-100% of the step), interruptible by shutdown.
            let jitter = 0.5 + 0.5 * fastrand_unit();
            let until = Instant::now() + backoff.mul_f64(jitter);
            while Instant::now() < until {
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            self.metrics.retries.inc_by(chunk.len() as u64);
        }
    }
}

/// A uniform number in [0, 1) for backoff jitter (not for anything security-relevant).
fn fastrand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs a future to completion on a small runtime owned by the calling sink thread (the HTTP
/// clients are async; sink threads are not).
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime, SinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Setup {
            sink: name.to_string(),
            message: format!("starting an async runtime: {e}"),
        })
}

/// An `Authorization` value for HTTP basic authentication: `Basic base64(user:password)`
/// (RFC 7617).
pub fn basic_auth(user: &str, password: Option<&str>) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{}", password.unwrap_or(""));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), if known.
pub(crate) fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

/// A secret given inline (usually `${ENV_VAR}`) or in a file (a mounted Kubernetes Secret);
/// see [`Secret::resolve`].
pub fn read_secret(
    sink: &str,
    key: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, SinkError> {
    Secret::resolve(key, inline, file).map_err(|e| SinkError::Setup {
        sink: sink.to_string(),
        message: e.to_string(),
    })
}

/// Invalid input and undeliverable records, kept with their origin so that nothing is dropped
/// silently. The file is created with mode 0600: a broken line may still hold secret values.
pub struct DeadLetters {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
    written: Counter,
    failures: Counter,
}

/// The version of the dead-letter format that this release writes, in every record's `version`.
/// Records without one were written before the format was versioned: version 0, with the same
/// fields. A release reads every version up to its own ([`DeadLetter::parse`]); adding a field
/// keeps the version, changing or removing one bumps it.
pub const DEAD_LETTER_VERSION: u32 = 1;

/// One record of the dead-letter file, read back. A record is about invalid input (`source`,
/// `path`, `line`, `offset`, `raw_truncated`) or about a record a sink could not deliver
/// (`sink`, `flow`, `id`); fields this release does not know are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DeadLetter {
    #[serde(default)]
    pub version: u32,
    pub time: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The line or document (lossy UTF-8; for input, at most 64 KiB of it).
    pub raw: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub raw_truncated: Option<bool>,
    #[serde(default)]
    pub sink: Option<String>,
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

/// Why a dead-letter line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("not a dead-letter record: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("dead-letter format version {0} was written by a newer tripline (this one reads up to {DEAD_LETTER_VERSION})")]
    NewerVersion(u32),
}

impl DeadLetter {
    /// Reads one line of a dead-letter file of any version up to [`DEAD_LETTER_VERSION`].
    pub fn parse(line: &str) -> Result<DeadLetter, DeadLetterError> {
        let record: DeadLetter = serde_json::from_str(line)?;
        if record.version > DEAD_LETTER_VERSION {
            return Err(DeadLetterError::NewerVersion(record.version));
        }
        Ok(record)
    }
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
            written: metrics.dead_letters.clone(),
            failures: metrics.dead_letter_failures.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a document a sink could not deliver, with the record's id and the whole document
    /// (it is already redacted). `reason` is `sink_rejected` (the destination refused its
    /// content) or `sink_dropped` (the sink gave up: queue full or delivery failing).
    /// Returns whether the record is in the file.
    pub fn write_record(&self, sink: &str, reason: &str, message: &str, record: &Record) -> bool {
        let flow = match record.flow {
            Flow::Alerts => "alert",
            Flow::Events => "event",
        };
        let record = serde_json::json!({
            "version": DEAD_LETTER_VERSION,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "sink": sink,
            "reason": reason,
            "message": message,
            "flow": flow,
            "id": record.id,
            "raw": String::from_utf8_lossy(&record.doc),
        });
        self.append(&record)
    }

    /// Appends one record about invalid input; failures are logged, never fatal.
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
            "version": DEAD_LETTER_VERSION,
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
        self.append(&record);
    }

    /// Appends one record; false if it could not be written (counted in
    /// `tripline_dead_letter_failures_total`, and logged at most a few times per window).
    fn append(&self, record: &serde_json::Value) -> bool {
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
            // A write that failed part-way (a full disk) may have left a partial record: cut
            // it, so the next record starts a line of its own.
            let opened = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .and_then(|f| local::cut_partial_line(&f).map(|_| f));
            match opened {
                Ok(f) => *guard = Some(BufWriter::new(f)),
                Err(e) => {
                    self.failures.inc();
                    crate::warn_limited!(
                        "dead-letter",
                        tracing::error!(path = %self.path.display(), error = %e, "cannot open the dead-letter file")
                    );
                    return false;
                }
            }
        }
        if let Some(w) = guard.as_mut() {
            let res = serde_json::to_writer(&mut *w, record)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush());
            match res {
                Ok(()) => {
                    self.written.inc();
                    return true;
                }
                Err(e) => {
                    // Drop the writer: its buffer may hold a partial record.
                    *guard = None;
                    crate::warn_limited!(
                        "dead-letter",
                        tracing::error!(path = %self.path.display(), error = %e, "dead-letter write failed")
                    );
                }
            }
        }
        self.failures.inc();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind of the first sink of `config`, a whole config file read with `env`: for the
    /// sinks' tests of their keys.
    /// The first sink of a config file's `sinks:` (`config`), read and validated as the daemon
    /// reads it, beside a file source.
    pub(super) fn first_sink(config: &str, env: &dyn Fn(&str) -> Option<String>) -> SinkKind {
        let text = format!("sources:\n  - type: file\n    paths: [/var/log/audit.log]\n{config}");
        let c = crate::config::Config::from_str_named("c.yaml", &text, env).unwrap();
        c.sinks.into_iter().next().expect("a sink").kind
    }

    #[test]
    fn falco_shaped_sinks_take_alerts_only() {
        let check = |sink: &str| {
            let text = format!(
                "sources:\n  - type: file\n    paths: [/var/log/audit.log]\nsinks:\n  - {sink}\n"
            );
            crate::config::Config::from_str_named("c.yaml", &text, &|_| None).map(|_| ())
        };
        for (sink, key) in [
            ("type: stdout\n    format: falco\n    flows: [events]", "format"),
            ("type: file\n    path: /tmp/x\n    format: falco\n    flows: [alerts, events]", "format"),
            ("type: http\n    url: http://falcosidekick:2801/\n    template: falco\n    flows: [events]", "template"),
        ] {
            let e = check(sink).expect_err(sink).to_string();
            assert!(
                e.contains(&format!("sinks[0].flows: `{key}: falco` writes Falco alerts, which exist for alerts only: remove `events`")),
                "{e}"
            );
        }
        for sink in [
            "type: stdout\n    format: falco",
            "type: stdout\n    format: ecs\n    flows: [alerts, events]",
            "type: file\n    path: /tmp/x\n    format: falco\n    flows: [alerts]",
            "type: http\n    url: http://falcosidekick:2801/\n    template: falco",
            "type: http\n    url: http://falcosidekick:2801/\n    template: falco\n    mode: single",
            "type: http\n    url: http://h/\n    template: slack\n    flows: [alerts, events]",
        ] {
            check(sink).unwrap_or_else(|e| panic!("{sink}: {e}"));
        }
        assert!(check("type: stdout\n    format: cef").is_err());
    }

    /// Regression (reliability report): a dead-letter write that failed was only logged, so
    /// the metrics said nothing was lost.
    #[test]
    fn dead_letter_write_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        // A state directory that is a file: the dead-letter file cannot be opened.
        let not_a_dir = dir.path().join("state");
        std::fs::write(&not_a_dir, "").unwrap();
        let dl = DeadLetters::new(&not_a_dir, &metrics);
        for line in 1..=3 {
            dl.write(
                "audit",
                "/var/log/audit.log",
                line,
                0,
                "malformed_json",
                "bad",
                b"x",
            );
        }
        let rendered = metrics.render();
        assert!(
            rendered.contains("tripline_dead_letter_failures_total 3"),
            "{rendered}"
        );
        assert!(
            rendered.contains("tripline_dead_letters_total 0"),
            "{rendered}"
        );

        // /dev/full opens, and every write fails.
        let dl = DeadLetters::new(dir.path(), &metrics);
        std::os::unix::fs::symlink("/dev/full", dl.path()).unwrap();
        dl.write(
            "audit",
            "/var/log/audit.log",
            4,
            0,
            "malformed_json",
            "bad",
            b"x",
        );
        let rendered = metrics.render();
        assert!(
            rendered.contains("tripline_dead_letter_failures_total 4"),
            "{rendered}"
        );
    }

    /// A dead-letter file that ends in a partial record (a write that failed part-way, on a
    /// full disk) gets the next record on a line of its own.
    #[test]
    fn dead_letters_after_a_partial_record_start_a_line_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let dl = DeadLetters::new(dir.path(), &metrics);
        std::fs::write(dl.path(), "{\"time\":\"2026-01-01T00:00:00.000Z\",\"reas").unwrap();
        dl.write(
            "audit",
            "/var/log/audit.log",
            7,
            70,
            "malformed_json",
            "bad",
            b"x",
        );
        let text = std::fs::read_to_string(dl.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let record = DeadLetter::parse(text.trim_end()).unwrap();
        assert_eq!(record.line, Some(7));
    }

    /// The dead-letter format is versioned; this release reads what it writes, what releases
    /// before the version field wrote (version 0, the same fields), and refuses a newer one.
    #[test]
    fn dead_letter_records_of_every_released_format_are_read() {
        let unversioned = r#"{"time":"2026-03-01T10:00:00.000Z","source":"audit","path":"/var/log/audit.log","line":3,"offset":120,"reason":"malformed_json","message":"expected value","raw":"garbage","raw_truncated":false}"#;
        let r = DeadLetter::parse(unversioned).unwrap();
        assert_eq!(r.version, 0);
        assert_eq!(
            (r.source.as_deref(), r.line, r.offset, r.raw.as_str()),
            (Some("audit"), Some(3), Some(120), "garbage")
        );
        let v1_sink = r#"{"version":1,"time":"2026-03-01T10:00:00.000Z","sink":"es","reason":"sink_rejected","message":"mapper_parsing_exception","flow":"alert","id":"abc","raw":"{}","future_field":7}"#;
        let r = DeadLetter::parse(v1_sink).unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(
            (r.sink.as_deref(), r.flow.as_deref(), r.id.as_deref()),
            (Some("es"), Some("alert"), Some("abc"))
        );

        // What this release writes, read back.
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let dl = DeadLetters::new(dir.path(), &metrics);
        dl.write(
            "audit",
            "/var/log/audit.log",
            1,
            0,
            "not_an_event",
            "no kind",
            b"{}",
        );
        let record = Record {
            flow: Flow::Events,
            id: "id-1".into(),
            time: None,
            level: None,
            rule: None,
            user: None,
            doc: b"{\"a\":1}".to_vec(),
        };
        assert!(dl.write_record("es", "sink_dropped", "queue full", &record));
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let read: Vec<DeadLetter> = text
            .lines()
            .map(|l| DeadLetter::parse(l).unwrap())
            .collect();
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(|r| r.version == DEAD_LETTER_VERSION));
        assert_eq!(read[0].reason, "not_an_event");
        assert_eq!(read[1].raw, "{\"a\":1}");

        let newer = v1_sink.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            DeadLetter::parse(&newer),
            Err(DeadLetterError::NewerVersion(2))
        ));
        assert!(DeadLetter::parse("{\"time\":").is_err());
    }

    #[test]
    fn the_inflight_budget_waits_for_a_charge_to_be_dropped_and_gives_up_when_told() {
        let budget = InflightBudget::new(100);
        let a = budget.take(60, &|| false).expect("free");
        assert_eq!(budget.used(), 60);
        // Spent: the waiter gives up when told to.
        assert!(budget.take(50, &|| true).is_none());
        // A share larger than the budget takes all of it, once everything else is back.
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(1000, &|| false).map(|c| c.bytes))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits while 60 bytes are taken");
        drop(a);
        assert_eq!(waiter.join().unwrap(), Some(100));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_batch_gives_its_charge_back_when_its_last_record_is_finished() {
        let budget = InflightBudget::new(100);
        let charge = Arc::new(budget.take(40, &|| false).expect("free"));
        let record = Arc::new(Record {
            flow: Flow::Events,
            id: "x".into(),
            time: None,
            level: None,
            rule: None,
            user: None,
            doc: b"{}".to_vec(),
        });
        // Two sinks take the same records.
        let mut queues = [PendingQueue::default(), PendingQueue::default()];
        let mut todo = Vec::new();
        for q in &mut queues {
            q.push(
                &mut todo,
                SinkBatch {
                    records: vec![record.clone(), record.clone()],
                    ack: None,
                    charge: Some(charge.clone()),
                },
            );
        }
        drop(charge);
        queues[0].done(0);
        queues[0].done(0);
        queues[1].done(0);
        assert_eq!(budget.used(), 40, "one sink still has a record of it");
        queues[1].done(0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn content_ids_are_stable_and_separate_parts() {
        let a = content_id(&[b"ab", b"c"]);
        assert_eq!(a.len(), 32);
        assert_eq!(a, content_id(&[b"ab", b"c"]));
        assert_ne!(a, content_id(&[b"a", b"bc"]));
        assert_ne!(a, content_id(&[b"abc"]));
        // The id is the hash in lowercase hex, as it has always been written (ids must not
        // change between releases: id-aware sinks absorb a replay by them).
        let hash = crate::event::content_hash(&[b"ab", b"c"]);
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a, hex);
    }

    #[test]
    fn basic_auth_is_rfc_7617_base64() {
        assert_eq!(
            basic_auth("Aladdin", Some("open sesame")),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", Some("")), "Basic YTo=");
        assert_eq!(basic_auth("ab", Some("c")), "Basic YWI6Yw==");
        assert_eq!(basic_auth("ab", Some("cd")), "Basic YWI6Y2Q=");
        assert_eq!(basic_auth("user", Some("pass")), "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn filter_by_level_and_tags() {
        let f = SinkFilter {
            flows: vec![Flow::Alerts],
            min_level: Some(Level::High),
            tags: vec!["attack.t1609".into(), "attack.privilege*".into()],
        };
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(f.takes_alert(Level::High, &t(&["attack.T1609"])));
        assert!(f.takes_alert(Level::Critical, &t(&["attack.privilege-escalation"])));
        assert!(!f.takes_alert(Level::Medium, &t(&["attack.t1609"])));
        assert!(!f.takes_alert(Level::High, &t(&["attack.t1610"])));
        let all = SinkFilter {
            flows: vec![Flow::Alerts],
            min_level: None,
            tags: vec![],
        };
        assert!(all.takes_alert(Level::Informational, &[]));
    }
}
