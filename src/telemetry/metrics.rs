//! The metrics registry: counters, gauges and histograms with fixed label names, rendered in
//! the Prometheus text exposition format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
