//! Telemetry: the daemon's logs (`tracing` to stderr, JSON lines or text), a small Prometheus
//! metrics registry, component health, and the HTTP endpoint that serves `/metrics`, `/healthz`
//! and `/readyz`.
//!
//! The registry is deliberately small: counters, gauges and histograms with fixed label names,
//! rendered in the Prometheus text exposition format 0.0.4. A handle is an atomic behind an `Arc`:
//! updating it never takes a lock. The registry's lock is taken only to create a handle and to
//! render, so components create their handles once, at build time, and keep them.
//!
//! Metric names follow the style guide: nouns plus past-tense verbs (`events_received_total`,
//! `lines_skipped_total{reason="too_long"}`), label values from small fixed sets.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::{Future, IntoFuture as _};
use std::io::{self, IsTerminal as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The listener could not be bound or set up (address in use, permission denied, ...).
    #[error("binding the telemetry listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The runtime or the thread that serves the endpoint could not be created.
    #[error("starting the telemetry server on {addr}: {source}")]
    Start {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Histogram buckets for latencies in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A registry of metric families, rendered in the Prometheus text format.
///
/// Each family has a name, a help text, a type and a fixed set of label names, all set by its
/// first registration. Creating a handle takes a lock and allocates; updating a handle is one
/// atomic operation (a histogram: two, plus a compare-and-swap loop for the sum).
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Sorted; the keys of `series` hold the values in the same order.
    label_names: Vec<&'static str>,
    series: BTreeMap<Vec<String>, Series>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Series {
    fn new(kind: Kind) -> Series {
        match kind {
            Kind::Counter => Series::Counter(Counter::detached()),
            Kind::Gauge => Series::Gauge(Gauge::detached()),
            Kind::Histogram(bounds) => Series::Histogram(Histogram::detached(bounds)),
        }
    }
}

/// A monotonically increasing count. Cloning shares the count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    fn detached() -> Counter {
        Counter(Arc::new(AtomicU64::new(0)))
    }

    /// Adds one. Lock-free.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (wrapping at `u64::MAX`). Lock-free.
    pub fn add(&self, n: u64) {
        // Relaxed: a count orders nothing else; readers only need the value eventually.
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (queue lengths, open files). Cloning shares the value.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    fn detached() -> Gauge {
        Gauge(Arc::new(AtomicI64::new(0)))
    }

    /// Lock-free.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `v`, which may be negative (wrapping). Lock-free.
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of observed values over fixed buckets. Cloning shares the distribution.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug)]
struct HistogramCore {
    /// Upper bounds, strictly increasing and finite; `+Inf` is implicit.
    bounds: &'static [f64],
    /// One count per bucket, *not* cumulative, plus a last one for `+Inf`. Keeping them
    /// per bucket makes `observe` a single increment; `render` accumulates.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    fn detached(bounds: &'static [f64]) -> Histogram {
        Histogram(Arc::new(HistogramCore {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records `v` in the first bucket whose upper bound is `>= v` (NaN goes to `+Inf` only).
    /// Lock-free: a binary search, one increment and a compare-and-swap loop for the sum, which
    /// retries only when another thread observes the same series at the same instant.
    pub fn observe(&self, v: f64) {
        let core = &*self.0;
        // NaN compares false with every bound: it lands in `+Inf`, as in client_golang.
        let nan = v.is_nan();
        let bucket = core.bounds.partition_point(|&b| b < v || nan);
        core.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _always_ok = core
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// The number of observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum of observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum_bits.load(Ordering::Relaxed))
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            families: Mutex::new(BTreeMap::new()),
        })
    }

    /// Returns the counter for these label values, creating it at 0, so that it is exported
    /// before its first increment. The same name and labels (in any order) always return the
    /// same underlying counter.
    ///
    /// A name already registered with another type or other label names, or an invalid name,
    /// is a programming error: it is logged with `tracing::error!` and a detached counter (one
    /// that is never exported) is returned. Invalid names also fail a `debug_assert!`.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        match self.series(name, help, labels, Kind::Counter) {
            Some(Series::Counter(c)) => c,
            _ => Counter::detached(),
        }
    }

    /// Returns the gauge for these label values, creating it at 0; see [`Metrics::counter`] for
    /// the guarantees and what happens on a clash.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Gauge {
        match self.series(name, help, labels, Kind::Gauge) {
            Some(Series::Gauge(g)) => g,
            _ => Gauge::detached(),
        }
    }

    /// Returns the histogram for these label values, creating it empty; see
    /// [`Metrics::counter`] for the guarantees. `buckets` are the finite upper bounds, strictly
    /// increasing (`+Inf` is added); registering the same name with other buckets is a clash.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        buckets: &'static [f64],
    ) -> Histogram {
        match self.series(name, help, labels, Kind::Histogram(buckets)) {
            Some(Series::Histogram(h)) => h,
            _ => Histogram::detached(buckets),
        }
    }

    /// Finds or creates a series; `None` on a programming error (already logged).
    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        kind: Kind,
    ) -> Option<Series> {
        let mut labels = labels.to_vec();
        labels.sort_unstable_by_key(|&(label, _)| label);
        let checked = check_definition(name, kind, &labels);
        debug_assert!(checked.is_ok(), "metric `{name}`: {checked:?}");
        if let Err(problem) = checked {
            tracing::error!(
                metric = name,
                problem,
                "invalid metric; its updates are discarded"
            );
            return None;
        }
        let label_names: Vec<&'static str> = labels.iter().map(|&(label, _)| label).collect();
        let values: Vec<String> = labels.iter().map(|&(_, value)| value.to_owned()).collect();

        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            label_names: label_names.clone(),
            series: BTreeMap::new(),
        });
        if family.kind != kind || family.label_names != label_names {
            let registered = format!(
                "{} with labels [{}]{}",
                family.kind.type_name(),
                family.label_names.join(","),
                buckets_note(family.kind),
            );
            drop(families);
            tracing::error!(
                metric = name,
                registered = %registered,
                requested = %format_args!(
                    "{} with labels [{}]{}",
                    kind.type_name(),
                    label_names.join(","),
                    buckets_note(kind),
                ),
                "metric registered twice with different definitions; the second one's updates \
                 are discarded"
            );
            return None;
        }
        Some(
            family
                .series
                .entry(values)
                .or_insert_with(|| Series::new(kind))
                .clone(),
        )
    }

    /// Renders every registered series in the Prometheus text exposition format 0.0.4:
    /// `# HELP` and `# TYPE` per family, families sorted by name, series by label values;
    /// histograms as cumulative `_bucket{le="..."}` lines ending with `le="+Inf"`, then `_sum`
    /// and `_count`. Values are read one atomic at a time, so a series updated during rendering
    /// may be one update ahead in a later line (a histogram's `_count` always equals its
    /// `+Inf` bucket). Holds the registry lock while rendering, which blocks handle creation
    /// but never updates.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(families.len() * 256);
        for (name, family) in families.iter() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_help_into(&mut out, family.help);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(family.kind.type_name());
            out.push('\n');
            for (values, series) in &family.series {
                let labels = Labels {
                    names: &family.label_names,
                    values,
                };
                match series {
                    Series::Counter(c) => sample_into(&mut out, name, "", labels, None, c.get()),
                    Series::Gauge(g) => sample_into(&mut out, name, "", labels, None, g.get()),
                    Series::Histogram(h) => histogram_into(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn buckets_note(kind: Kind) -> String {
    match kind {
        Kind::Histogram(bounds) => format!(" and buckets {bounds:?}"),
        _ => String::new(),
    }
}

/// The checks that catch a misspelt definition before it breaks the whole scrape.
fn check_definition(
    name: &str,
    kind: Kind,
    sorted_labels: &[(&'static str, &str)],
) -> Result<(), String> {
    if !is_valid_metric_name(name) {
        return Err(format!("`{name}` is not a valid Prometheus metric name"));
    }
    for (i, &(label, _)) in sorted_labels.iter().enumerate() {
        if !is_valid_label_name(label) {
            return Err(format!("`{label}` is not a valid Prometheus label name"));
        }
        if i > 0 && sorted_labels[i - 1].0 == label {
            return Err(format!("label `{label}` is given twice"));
        }
        if label == "le" && matches!(kind, Kind::Histogram(_)) {
            return Err("a histogram cannot have a label named `le`".to_owned());
        }
    }
    if let Kind::Histogram(bounds) = kind {
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "buckets {bounds:?} must be finite and strictly increasing"
            ));
        }
    }
    Ok(())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus itself).
fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[derive(Clone, Copy)]
struct Labels<'a> {
    names: &'a [&'static str],
    values: &'a [String],
}

fn histogram_into(out: &mut String, name: &str, labels: Labels<'_>, h: &Histogram) {
    let core = &*h.0;
    let mut le = String::new();
    let mut cumulative = 0u64;
    for (i, count) in core.counts.iter().enumerate() {
        cumulative += count.load(Ordering::Relaxed);
        le.clear();
        match core.bounds.get(i) {
            Some(&bound) => float_into(&mut le, bound),
            None => le.push_str("+Inf"),
        }
        sample_into(out, name, "_bucket", labels, Some(&le), cumulative);
    }
    let mut sum = String::new();
    float_into(&mut sum, h.sum());
    sample_into(out, name, "_sum", labels, None, sum);
    // The last cumulative count rather than a separate counter, so `_count` equals `+Inf`.
    sample_into(out, name, "_count", labels, None, cumulative);
}

fn sample_into(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: Labels<'_>,
    le: Option<&str>,
    value: impl fmt::Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.names.is_empty() || le.is_some() {
        out.push('{');
        for (i, (label, value)) in labels.names.iter().zip(labels.values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value_into(out, value);
            out.push('"');
        }
        if let Some(le) = le {
            if !labels.names.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    writeln!(out, " {value}").expect("writing to a String never fails");
}

/// Go-compatible float text: `1`, `0.25`, `+Inf`, `-Inf`, `NaN` (Rust's `Display` never uses
/// exponents, which Prometheus parses either way).
fn float_into(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        write!(out, "{v}").expect("writing to a String never fails");
    }
}

fn escape_label_value_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help_into(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// The daemon's health: named components that are each ready or not (served by `/readyz`),
/// plus a liveness flag (served by `/healthz`), which starts true.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    components: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
}

/// Updates one component's readiness. Cloning shares the component.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    name: Arc<str>,
    ready: Arc<AtomicBool>,
}

impl HealthHandle {
    /// Lock-free. A change (not a repeat) is logged at info level.
    pub fn set_ready(&self, ready: bool) {
        // Release: what a component did before declaring itself ready is visible to readers
        // that see it ready.
        if self.ready.swap(ready, Ordering::AcqRel) != ready {
            tracing::info!(component = %self.name, ready, "component readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            live: AtomicBool::new(true),
            components: Mutex::new(BTreeMap::new()),
        })
    }

    /// Declares a component, initially not ready, and returns a handle to update it. Declaring
    /// a name that exists returns a handle to the same component, with its state unchanged.
    /// Components cannot be removed.
    pub fn component(&self, name: &str) -> HealthHandle {
        let mut components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ready = components
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        HealthHandle {
            name: Arc::from(name),
            ready,
        }
    }

    /// A handle that is not part of readiness (for components whose state is reported
    /// elsewhere, e.g. as a metric).
    pub fn detached(name: &str) -> HealthHandle {
        HealthHandle {
            name: Arc::from(name),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True if and only if at least one component is declared and every component is ready.
    pub fn is_ready(&self) -> bool {
        let components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        !components.is_empty() && components.values().all(|r| r.load(Ordering::Acquire))
    }

    /// The names of the components that are not ready, sorted.
    pub fn not_ready(&self) -> Vec<String> {
        let components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        components
            .iter()
            .filter(|(_, r)| !r.load(Ordering::Acquire))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks the process as wedged (`false`) so that `/healthz` fails and the kubelet restarts
    /// it, or as alive again (`true`). Lock-free.
    pub fn set_live(&self, live: bool) {
        if self.live.swap(live, Ordering::AcqRel) != live {
            tracing::warn!(live, "liveness changed");
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoint
// ---------------------------------------------------------------------------------------------

/// How many connections are served at once, for how long, and how long shutdown waits for them.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    /// Further clients wait in the kernel's accept backlog.
    max_connections: usize,
    /// How long a connection may stay open, whatever it does: bounds slow or idle clients
    /// (hyper's header timeout needs a timer that `axum::serve` does not configure). Prometheus
    /// and the kubelet reconnect when a kept-alive connection is closed.
    lifetime: Duration,
    /// How long `shutdown` lets requests in flight finish before closing their connections.
    shutdown_grace: Duration,
}

const SERVER_LIMITS: ServerLimits = ServerLimits {
    max_connections: 32,
    lifetime: Duration::from_secs(30),
    shutdown_grace: Duration::from_secs(5),
};

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The HTTP endpoint for Prometheus and the kubelet, served by a current-thread Tokio runtime on
/// its own thread, so that a busy pipeline cannot starve probes:
///
/// - `GET /metrics`: 200, `text/plain; version=0.0.4; charset=utf-8`, [`Metrics::render`];
/// - `GET /healthz`: 200 `ok` while [`Health::is_live`], else 503;
/// - `GET /readyz`: 200 `ready` if [`Health::is_ready`], else 503 naming the components that
///   are not ready;
/// - other paths: 404; other methods on these paths: 405; a request with a body: 413.
///
/// At most 32 connections are served at once, each for at most 30 seconds. Dropping the server
/// without calling [`TelemetryServer::shutdown`] also stops it, without waiting.
#[derive(Debug)]
pub struct TelemetryServer {
    local_addr: SocketAddr,
    /// Dropping it is the shutdown signal.
    stop: watch::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl TelemetryServer {
    /// Binds `addr` (port 0 picks a free port) before returning, so that an address in use or
    /// a permission problem is returned here as [`TelemetryError::Bind`] naming the address,
    /// then serves on a background thread until [`TelemetryServer::shutdown`].
    pub fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<TelemetryServer, TelemetryError> {
        TelemetryServer::start_with(addr, metrics, health, SERVER_LIMITS)
    }

    fn start_with(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        limits: ServerLimits,
    ) -> Result<TelemetryServer, TelemetryError> {
        let bind_error = |source| TelemetryError::Bind { addr, source };
        let start_error = |source| TelemetryError::Start { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = std_listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(start_error)?;
        let listener = {
            // Registering with the reactor needs the runtime's context.
            let _context = runtime.enter();
            TcpListener::from_std(std_listener).map_err(bind_error)?
        };
        let router = router(AppState { metrics, health });
        let (stop, stopped) = watch::channel(());
        let thread = std::thread::Builder::new()
            .name("telemetry-http".to_owned())
            .spawn(move || serve(runtime, listener, limits, router, stopped))
            .map_err(start_error)?;
        tracing::info!(address = %local_addr, "telemetry endpoint listening");
        Ok(TelemetryServer {
            local_addr,
            stop,
            thread,
        })
    }

    /// The bound address (with the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish for up to 5 seconds, closes
    /// the remaining connections and waits for the thread. When it returns, the port is closed.
    pub fn shutdown(self) {
        let TelemetryServer {
            local_addr,
            stop,
            thread,
        } = self;
        drop(stop);
        if thread.join().is_err() {
            tracing::error!(address = %local_addr, "the telemetry server thread panicked");
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(healthz_endpoint))
        .route("/readyz", get(readyz_endpoint))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(reject_bodies))
        .with_state(state)
}

/// The body of the server thread: serves until the stop sender is dropped, then drains.
fn serve(
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    limits: ServerLimits,
    router: Router,
    stopped: watch::Receiver<()>,
) {
    runtime.block_on(async move {
        let mut stop_accepting = stopped.clone();
        let mut stop_waiting = stopped;
        let listener = BoundedListener {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            lifetime: limits.lifetime,
        };
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Only ever an error: nothing is sent, the sender is dropped.
                let _sender_dropped = stop_accepting.changed().await;
            })
            .into_future();
        let grace = async move {
            let _sender_dropped = stop_waiting.changed().await;
            tokio::time::sleep(limits.shutdown_grace).await;
        };
        tokio::select! {
            served = server => {
                if let Err(error) = served {
                    tracing::error!(%error, "the telemetry server failed");
                }
            }
            () = grace => {
                tracing::warn!(
                    grace = ?limits.shutdown_grace,
                    "telemetry connections still open after the shutdown grace; closing them"
                );
            }
        }
    });
    // Dropping the runtime cancels the connection tasks that outlived the grace period.
    drop(runtime);
}

async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz_endpoint(State(state): State<AppState>) -> Response {
    if state.health.is_live() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not live").into_response()
    }
}

async fn readyz_endpoint(State(state): State<AppState>) -> Response {
    if state.health.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let waiting = state.health.not_ready();
    let body = if waiting.is_empty() {
        "not ready: no components declared".to_owned()
    } else {
        format!("not ready: {}", waiting.join(", "))
    };
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// No endpoint takes a body, so none is read: a request that announces one is refused before
/// routing.
async fn reject_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted",
        )
            .into_response();
    }
    next.run(request).await
}

/// A listener that serves a bounded number of connections at once, each for a bounded time.
struct BoundedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedConnection, SocketAddr) {
        // Waiting for a slot before accepting leaves excess clients in the kernel's backlog
        // rather than holding their sockets open here.
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let connection = BoundedConnection {
                        stream,
                        deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                        _slot: slot,
                    };
                    return (connection, peer);
                }
                // The client went away between SYN and accept: nothing to report.
                Err(error) if is_per_connection_error(&error) => {}
                Err(error) => {
                    // Out of file descriptors and the like: retrying at once would spin.
                    tracing::error!(%error, "accepting a telemetry connection; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream whose reads and writes fail with `TimedOut` once its deadline has passed, so
/// that hyper drops the connection. Holds a connection slot until dropped.
struct BoundedConnection {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl BoundedConnection {
    /// Polling the deadline also registers the waker, so a connection idle in a read is woken
    /// (and failed) when the deadline passes.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "telemetry connection lifetime exceeded",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for BoundedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_expired(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// No deadline here, so that an expired connection can still be closed cleanly.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

/// The environment variable that holds the log filter, in `EnvFilter` syntax
/// (`info,tripline::source=debug`).
pub const LOG_FILTER_VAR: &str = "TRIPLINE_LOG";
const DEFAULT_LOG_FILTER: &str = "info";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`, and
    /// the current span, if any.
    Json,
    /// Human-readable lines, coloured only if stderr is a terminal.
    Text,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`, filtered by the
/// `TRIPLINE_LOG` environment variable (`EnvFilter` syntax; `info` when unset or empty). An
/// invalid filter falls back to `info` and is reported as a warning once logging works.
///
/// If a global subscriber is already installed (by an earlier call or anyone else), does
/// nothing: calling it twice is safe.
pub fn init_logging(format: LogFormat) {
    let (filter, problem) = log_filter(std::env::var(LOG_FILTER_VAR));
    let ansi = std::io::stderr().is_terminal();
    if tracing::subscriber::set_global_default(subscriber(format, filter, io::stderr, ansi))
        .is_err()
    {
        return;
    }
    if let Some(problem) = problem {
        tracing::warn!(
            variable = LOG_FILTER_VAR,
            problem,
            "ignoring the log filter; logging at `{DEFAULT_LOG_FILTER}`"
        );
    }
}

/// The filter from the variable's value, or the default and the reason it was not used.
fn log_filter(value: Result<String, std::env::VarError>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(DEFAULT_LOG_FILTER);
    match value {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(error) => (default(), Some(format!("`{spec}`: {error}"))),
        },
        Ok(_) | Err(std::env::VarError::NotPresent) => (default(), None),
        Err(error @ std::env::VarError::NotUnicode(_)) => (default(), Some(error.to_string())),
    }
}

fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    type Setup = fn(&Metrics);

    #[test]
    fn render_matches_the_exposition_format() {
        let cases: &[(&str, Setup, &str)] = &[
            (
                "counter without labels",
                |m| {
                    m.counter("events_received_total", "Events read.", &[])
                        .add(3)
                },
                "# HELP events_received_total Events read.\n\
                 # TYPE events_received_total counter\n\
                 events_received_total 3\n",
            ),
            (
                "counter with labels, series sorted by label value",
                |m| {
                    let help = "Lines skipped.";
                    m.counter("lines_skipped_total", help, &[("reason", "too_long")])
                        .add(2);
                    m.counter("lines_skipped_total", help, &[("reason", "bad_json")])
                        .inc();
                },
                "# HELP lines_skipped_total Lines skipped.\n\
                 # TYPE lines_skipped_total counter\n\
                 lines_skipped_total{reason=\"bad_json\"} 1\n\
                 lines_skipped_total{reason=\"too_long\"} 2\n",
            ),
            (
                "labels given in any order are rendered sorted by name",
                |m| {
                    m.counter(
                        "alerts_emitted_total",
                        "h",
                        &[("sink", "es"), ("flow", "alerts")],
                    )
                    .inc();
                    m.counter(
                        "alerts_emitted_total",
                        "h",
                        &[("flow", "alerts"), ("sink", "es")],
                    )
                    .inc();
                },
                "# HELP alerts_emitted_total h\n\
                 # TYPE alerts_emitted_total counter\n\
                 alerts_emitted_total{flow=\"alerts\",sink=\"es\"} 2\n",
            ),
            (
                "label values escape backslash, quote and newline",
                |m| m.counter("x_total", "h", &[("v", "a\\b\"c\nd")]).inc(),
                "# HELP x_total h\n# TYPE x_total counter\nx_total{v=\"a\\\\b\\\"c\\nd\"} 1\n",
            ),
            (
                "help escapes backslash and newline but not quotes",
                |m| m.counter("x_total", "one\ntwo \\ \"three\"", &[]).inc(),
                "# HELP x_total one\\ntwo \\\\ \"three\"\n# TYPE x_total counter\nx_total 1\n",
            ),
            (
                "gauges go negative",
                |m| {
                    let g = m.gauge("queue_length", "Batches queued.", &[]);
                    g.set(-5);
                    g.add(2);
                },
                "# HELP queue_length Batches queued.\n# TYPE queue_length gauge\nqueue_length -3\n",
            ),
            (
                "registered metrics are exported at 0",
                |m| {
                    m.counter("events_dropped_total", "h", &[("reason", "full")]);
                    m.gauge("files_opened", "h", &[]);
                    m.histogram("batch_seconds", "h", &[], &[0.5]);
                },
                "# HELP batch_seconds h\n# TYPE batch_seconds histogram\n\
                 batch_seconds_bucket{le=\"0.5\"} 0\n\
                 batch_seconds_bucket{le=\"+Inf\"} 0\n\
                 batch_seconds_sum 0\n\
                 batch_seconds_count 0\n\
                 # HELP events_dropped_total h\n# TYPE events_dropped_total counter\n\
                 events_dropped_total{reason=\"full\"} 0\n\
                 # HELP files_opened h\n# TYPE files_opened gauge\nfiles_opened 0\n",
            ),
            (
                "histogram buckets are cumulative, bounds inclusive, +Inf last, then sum and count",
                |m| {
                    let h = m.histogram("decode_seconds", "h", &[], &[0.25, 1.0]);
                    for v in [0.125, 0.25, 0.5, 4.0] {
                        h.observe(v);
                    }
                },
                "# HELP decode_seconds h\n# TYPE decode_seconds histogram\n\
                 decode_seconds_bucket{le=\"0.25\"} 2\n\
                 decode_seconds_bucket{le=\"1\"} 3\n\
                 decode_seconds_bucket{le=\"+Inf\"} 4\n\
                 decode_seconds_sum 4.875\n\
                 decode_seconds_count 4\n",
            ),
            (
                "histogram labels come before le",
                |m| {
                    m.histogram("stage_seconds", "h", &[("stage", "decode")], &[1.0])
                        .observe(2.0)
                },
                "# HELP stage_seconds h\n# TYPE stage_seconds histogram\n\
                 stage_seconds_bucket{stage=\"decode\",le=\"1\"} 0\n\
                 stage_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 1\n\
                 stage_seconds_sum{stage=\"decode\"} 2\n\
                 stage_seconds_count{stage=\"decode\"} 1\n",
            ),
            (
                "NaN and infinite observations land in +Inf",
                |m| {
                    let h = m.histogram("odd", "h", &[], &[1.0]);
                    h.observe(f64::INFINITY);
                    h.observe(f64::NAN);
                },
                "# HELP odd h\n# TYPE odd histogram\n\
                 odd_bucket{le=\"1\"} 0\n\
                 odd_bucket{le=\"+Inf\"} 2\n\
                 odd_sum NaN\n\
                 odd_count 2\n",
            ),
            (
                "families are sorted by name",
                |m| {
                    m.counter("b_total", "h", &[]);
                    m.counter("a_total", "h", &[]);
                },
                "# HELP a_total h\n# TYPE a_total counter\na_total 0\n\
                 # HELP b_total h\n# TYPE b_total counter\nb_total 0\n",
            ),
            ("an empty registry renders nothing", |_| {}, ""),
        ];
        for (what, setup, expected) in cases {
            let metrics = Metrics::new();
            setup(&metrics);
            assert_eq!(metrics.render(), *expected, "{what}");
        }
    }

    #[test]
    fn latency_buckets_render_as_prometheus_floats() {
        let metrics = Metrics::new();
        metrics
            .histogram("request_seconds", "h", &[], LATENCY_BUCKETS)
            .observe(0.003);
        let rendered = metrics.render();
        let les: Vec<&str> = rendered
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            les,
            [
                "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
                "10", "+Inf"
            ]
        );
    }

    #[test]
    fn floats_are_formatted_like_prometheus_clients() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (0.001, "0.001"),
            (2.5, "2.5"),
            (-3.25, "-3.25"),
            (1e21, "1000000000000000000000"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, expected) in cases {
            let mut out = String::new();
            float_into(&mut out, v);
            assert_eq!(out, expected, "{v}");
        }
    }

    #[test]
    fn names_are_checked_against_the_prometheus_grammar() {
        let metric_names: &[(&str, bool)] = &[
            ("events_received_total", true),
            ("_private", true),
            ("job:rate5m", true),
            ("A1", true),
            ("", false),
            ("1events", false),
            ("events-received", false),
            ("événements", false),
            ("has space", false),
        ];
        for &(name, valid) in metric_names {
            assert_eq!(is_valid_metric_name(name), valid, "metric name {name:?}");
        }
        let label_names: &[(&str, bool)] = &[
            ("reason", true),
            ("_x", true),
            ("le", true),
            ("__reserved", false),
            ("a:b", false),
            ("", false),
            ("9", false),
        ];
        for &(name, valid) in label_names {
            assert_eq!(is_valid_label_name(name), valid, "label name {name:?}");
        }
    }

    #[test]
    fn definitions_with_bad_labels_or_buckets_are_refused() {
        type LabelPairs = &'static [(&'static str, &'static str)];
        let cases: &[(&str, Kind, LabelPairs)] = &[
            ("duplicate label", Kind::Counter, &[("a", "1"), ("a", "2")]),
            ("le on a histogram", Kind::Histogram(&[1.0]), &[("le", "1")]),
            ("unsorted buckets", Kind::Histogram(&[1.0, 0.5]), &[]),
            ("repeated bucket", Kind::Histogram(&[1.0, 1.0]), &[]),
            (
                "infinite bucket",
                Kind::Histogram(&[1.0, f64::INFINITY]),
                &[],
            ),
            ("NaN bucket", Kind::Histogram(&[f64::NAN]), &[]),
        ];
        for (what, kind, labels) in cases {
            assert!(check_definition("m", *kind, labels).is_err(), "{what}");
        }
        assert!(check_definition("m", Kind::Gauge, &[("le", "1")]).is_ok());
        assert!(check_definition("m", Kind::Histogram(&[]), &[("a", "")]).is_ok());
    }

    #[test]
    fn same_name_and_labels_return_the_same_handle() {
        let metrics = Metrics::new();
        let first = metrics.counter("events_received_total", "h", &[("source", "file")]);
        let again = metrics.counter("events_received_total", "other help", &[("source", "file")]);
        let other = metrics.counter("events_received_total", "h", &[("source", "kafka")]);
        first.add(2);
        again.inc();
        assert_eq!(first.get(), 3);
        assert_eq!(again.get(), 3);
        assert_eq!(other.get(), 0);

        let gauge = metrics.gauge("open_files", "h", &[]);
        metrics.gauge("open_files", "h", &[]).set(7);
        assert_eq!(gauge.get(), 7);

        let hist = metrics.histogram("x_seconds", "h", &[], LATENCY_BUCKETS);
        metrics
            .histogram("x_seconds", "h", &[], LATENCY_BUCKETS)
            .observe(0.5);
        assert_eq!(hist.count(), 1);
        assert_eq!(hist.sum(), 0.5);

        // The first registration's help text is the one exported.
        assert!(metrics
            .render()
            .contains("# HELP events_received_total h\n"));
    }

    #[test]
    fn a_clash_returns_a_detached_handle_without_panicking() {
        let metrics = Metrics::new();
        metrics.counter("clash_total", "h", &[("a", "1")]).add(5);

        let wrong_type = metrics.gauge("clash_total", "h", &[("a", "1")]);
        wrong_type.set(9);
        let wrong_labels = metrics.counter("clash_total", "h", &[("b", "1")]);
        wrong_labels.inc();
        let fewer_labels = metrics.counter("clash_total", "h", &[]);
        fewer_labels.inc();
        metrics.histogram("latency_seconds", "h", &[], &[1.0]);
        let wrong_buckets = metrics.histogram("latency_seconds", "h", &[], &[2.0]);
        wrong_buckets.observe(0.5);

        // Detached handles still work for their holder, but are never exported.
        assert_eq!(wrong_type.get(), 9);
        assert_eq!(wrong_buckets.count(), 1);
        assert_eq!(
            metrics.render(),
            "# HELP clash_total h\n# TYPE clash_total counter\nclash_total{a=\"1\"} 5\n\
             # HELP latency_seconds h\n# TYPE latency_seconds histogram\n\
             latency_seconds_bucket{le=\"1\"} 0\n\
             latency_seconds_bucket{le=\"+Inf\"} 0\n\
             latency_seconds_sum 0\n\
             latency_seconds_count 0\n"
        );
    }

    #[test]
    fn handles_are_shared_across_threads() {
        let metrics = Metrics::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let metrics = &metrics;
                scope.spawn(move || {
                    let counter = metrics.counter("n_total", "h", &[]);
                    let hist = metrics.histogram("v", "h", &[], &[1.0]);
                    for _ in 0..1000 {
                        counter.inc();
                        hist.observe(0.5);
                    }
                });
            }
        });
        assert_eq!(metrics.counter("n_total", "h", &[]).get(), 4000);
        let hist = metrics.histogram("v", "h", &[], &[1.0]);
        assert_eq!(hist.count(), 4000);
        assert_eq!(hist.sum(), 2000.0);
    }

    #[test]
    fn readiness_needs_every_declared_component() {
        let health = Health::new();
        assert!(!health.is_ready(), "no components declared");
        assert!(health.not_ready().is_empty());

        let source = health.component("source");
        let sink = health.component("sink");
        assert!(!health.is_ready());
        assert_eq!(health.not_ready(), ["sink", "source"]);

        source.set_ready(true);
        assert!(source.is_ready());
        assert_eq!(health.not_ready(), ["sink"]);
        assert!(!health.is_ready());

        sink.set_ready(true);
        sink.set_ready(true);
        assert!(health.is_ready());
        assert!(health.not_ready().is_empty());

        // A later component makes the whole not ready again until it is.
        let rules = health.component("rules");
        assert!(!health.is_ready());
        rules.clone().set_ready(true);
        assert!(health.is_ready());

        source.set_ready(false);
        assert_eq!(health.not_ready(), ["source"]);

        // Declaring an existing name shares the component and keeps its state.
        let source_again = health.component("source");
        assert!(!source_again.is_ready());
        source_again.set_ready(true);
        assert!(source.is_ready());
        assert!(health.is_ready());
        assert_eq!(source_again.name(), "source");
    }

    #[test]
    fn liveness_starts_true_and_can_be_withdrawn() {
        let health = Health::new();
        assert!(health.is_live());
        health.set_live(false);
        assert!(!health.is_live());
        health.set_live(true);
        assert!(health.is_live());
    }

    /// Sends one raw HTTP/1.1 request and returns (status line, headers, body).
    fn request(addr: SocketAddr, head: &str, body: &str) -> (String, String, String) {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        stream
            .write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n{body}").as_bytes())
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (
            status.to_owned(),
            headers.to_ascii_lowercase(),
            body.to_owned(),
        )
    }

    fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
        request(addr, &format!("GET {path} HTTP/1.1"), "")
    }

    #[test]
    fn the_endpoint_serves_metrics_and_probes_then_shuts_down() {
        let metrics = Metrics::new();
        let health = Health::new();
        metrics
            .counter(
                "events_received_total",
                "Events read.",
                &[("source", "file")],
            )
            .add(42);
        let pipeline = health.component("pipeline");
        let server = TelemetryServer::start(
            "127.0.0.1:0".parse().expect("literal address"),
            Arc::clone(&metrics),
            Arc::clone(&health),
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, headers, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("content-type: text/plain; version=0.0.4"),
            "{headers}"
        );
        assert!(
            body.contains("events_received_total{source=\"file\"} 42\n"),
            "{body}"
        );

        let (status, _, body) = get(addr, "/readyz");
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "not ready: pipeline");
        pipeline.set_ready(true);
        let (status, _, body) = get(addr, "/readyz");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "ready");

        let (status, _, body) = get(addr, "/healthz");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "ok");
        health.set_live(false);
        assert_eq!(get(addr, "/healthz").0, "HTTP/1.1 503 Service Unavailable");

        assert_eq!(get(addr, "/nope").0, "HTTP/1.1 404 Not Found");
        assert_eq!(get(addr, "/metrics/").0, "HTTP/1.1 404 Not Found");
        assert_eq!(
            request(addr, "DELETE /metrics HTTP/1.1", "").0,
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            request(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 3", "abc").0,
            "HTTP/1.1 413 Payload Too Large"
        );

        // A client that connects and says nothing must not hold up shutdown.
        let _idle = std::net::TcpStream::connect(addr).expect("connect idle client");
        server.shutdown();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the port still accepts after shutdown"
        );
    }

    #[test]
    fn slow_clients_are_disconnected_and_make_others_wait_at_most_the_lifetime() {
        let limits = ServerLimits {
            max_connections: 1,
            lifetime: Duration::from_millis(300),
            shutdown_grace: Duration::from_secs(5),
        };
        let health = Health::new();
        let server = TelemetryServer::start_with(
            "127.0.0.1:0".parse().expect("literal address"),
            Metrics::new(),
            Arc::clone(&health),
            limits,
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        let started = std::time::Instant::now();

        // Half a request head, then silence: the slowloris pattern.
        let mut slow = std::net::TcpStream::connect(addr).expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("send");
        // The only slot is taken, so this one is served only once the slow client is dropped.
        let (status, _, body) = get(addr, "/healthz");
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "served after {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "served after {waited:?}");

        slow.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut rest = Vec::new();
        // Closed by the server: end of stream or a reset, never a timeout.
        match slow.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty() || rest.starts_with(b"HTTP/1.1 "),
                "{rest:?}"
            ),
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}"),
        }
        server.shutdown();
    }

    #[test]
    fn shutdown_closes_stalled_requests_after_the_grace_period() {
        let limits = ServerLimits {
            max_connections: 4,
            lifetime: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(200),
        };
        let server = TelemetryServer::start_with(
            "127.0.0.1:0".parse().expect("literal address"),
            Metrics::new(),
            Health::new(),
            limits,
        )
        .expect("start on a free port");
        let addr = server.local_addr();
        let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .expect("send");
        // Let the server accept and start reading the head.
        assert_eq!(get(addr, "/healthz").0, "HTTP/1.1 200 OK");

        let started = std::time::Instant::now();
        server.shutdown();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn binding_a_port_in_use_fails_with_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = taken.local_addr().expect("local addr");
        let result = TelemetryServer::start(addr, Metrics::new(), Health::new());
        let Err(error) = result else {
            panic!("started on a port in use")
        };
        assert!(matches!(error, TelemetryError::Bind { addr: a, .. } if a == addr));
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("binding the telemetry listener {addr}: ")),
            "{message}"
        );
    }

    /// A `MakeWriter` that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer lock").clone()).expect("utf-8 logs")
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_expected_keys() {
        let buffer = Captured::default();
        let writer = buffer.clone();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("info"),
            move || writer.clone(),
            true,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(component = "source", lines = 3, "tailing \"audit.log\"");
            tracing::debug!("filtered out at info");
        });
        let text = buffer.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
        assert!(line["timestamp"].is_string(), "{line}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "tripline::telemetry::tests");
        assert_eq!(line["fields"]["message"], "tailing \"audit.log\"");
        assert_eq!(line["fields"]["component"], "source");
        assert_eq!(line["fields"]["lines"], 3);
        assert!(!text.contains('\x1b'), "no colour codes in JSON");
    }

    #[test]
    fn text_logs_have_no_colour_unless_asked() {
        for ansi in [false, true] {
            let buffer = Captured::default();
            let writer = buffer.clone();
            let subscriber = subscriber(
                LogFormat::Text,
                EnvFilter::new("info"),
                move || writer.clone(),
                ansi,
            );
            tracing::subscriber::with_default(subscriber, || tracing::warn!(n = 1, "hello"));
            let text = buffer.text();
            assert!(text.contains("hello"), "{text}");
            assert_eq!(text.contains('\x1b'), ansi, "{text:?}");
        }
    }

    #[test]
    fn the_log_filter_falls_back_to_info_when_unset_empty_or_invalid() {
        use std::env::VarError;
        let cases: &[(Result<String, VarError>, &str, bool)] = &[
            (Err(VarError::NotPresent), "info", false),
            (Ok(String::new()), "info", false),
            (Ok("  ".to_owned()), "info", false),
            (
                Ok("debug,tripline::source=trace".to_owned()),
                "tripline::source=trace,debug",
                false,
            ),
            (Ok("info,[".to_owned()), "info", true),
            (Err(VarError::NotUnicode("\u{fffd}".into())), "info", true),
        ];
        for (value, expected, reported) in cases {
            let (filter, problem) = log_filter(value.clone());
            assert_eq!(filter.to_string(), *expected, "{value:?}");
            assert_eq!(problem.is_some(), *reported, "{value:?}: {problem:?}");
        }
    }

    #[test]
    fn log_format_deserializes_from_lowercase_names() {
        let formats: Vec<LogFormat> =
            serde_json::from_str(r#"["json", "text"]"#).expect("valid formats");
        assert_eq!(formats, [LogFormat::Json, LogFormat::Text]);
        assert!(serde_json::from_str::<LogFormat>(r#""JSON""#).is_err());
    }
}
