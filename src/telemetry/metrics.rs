//! The metrics registry: every metric family the daemon exports, defined once here with typed
//! label sets, on the `prometheus-client` crate, rendered as OpenMetrics text.
//!
//! [`Metrics`] holds one field per family. A component resolves its handles once, when it is
//! built (`metrics.lines_read.get_or_create_owned(&SourceLabels::new(name))`) and keeps them: a
//! [`Counter`] or a [`Gauge`] is an atomic behind an `Arc`, so updating one takes no lock. A
//! family's lock is taken only to resolve a handle and to render. Detection workers resolve the
//! alert counters once per rule set ([`Metrics::alert_counters`]), so counting an alert is one
//! atomic increment too. Histograms take a short lock of their own per observation; they are
//! observed once per batch or per webhook request, never per event.
//!
//! Names: counters are registered without their `_total` suffix, which the OpenMetrics encoder
//! appends (`tripline_events_received` is exported as `tripline_events_received_total`); gauges
//! and histograms are exported under the name they are registered with. Label names are declared
//! in alphabetical order, the order they are rendered in. Label values come from config names,
//! rule ids and small fixed sets (enums here), never from paths or users.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

use crate::event::SkipReason;
use crate::rules::Level;

pub use prometheus_client::metrics::histogram::Histogram;

/// A monotonically increasing count (`inc`, `inc_by`). Cloning shares the count; updates are
/// one relaxed atomic operation.
pub type Counter = prometheus_client::metrics::counter::Counter<u64>;

/// A value that goes up and down (`set`, `inc_by`, `dec_by`). Cloning shares the value; updates
/// are one relaxed atomic operation.
pub type Gauge = prometheus_client::metrics::gauge::Gauge<i64>;

/// A family of histograms whose members are built with [`LATENCY_BUCKETS`].
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Histogram buckets for latencies in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

// ---------------------------------------------------------------------------------------------
// Label sets
// ---------------------------------------------------------------------------------------------

/// `{source}`: a source's configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: Arc<str>,
}

impl SourceLabels {
    pub fn new(source: impl Into<Arc<str>>) -> SourceLabels {
        SourceLabels {
            source: source.into(),
        }
    }
}

/// `{sink}`: a sink's configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: Arc<str>,
}

impl SinkLabels {
    pub fn new(sink: impl Into<Arc<str>>) -> SinkLabels {
        SinkLabels { sink: sink.into() }
    }
}

/// `{reason,source}` of `tripline_lines_skipped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub reason: SkipReason,
    pub source: Arc<str>,
}

impl SkipLabels {
    pub fn new(source: impl Into<Arc<str>>, reason: SkipReason) -> SkipLabels {
        SkipLabels {
            reason,
            source: source.into(),
        }
    }
}

/// `{level,rule_id}` of `tripline_alerts_emitted_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub level: Level,
    pub rule_id: Arc<str>,
}

/// `{result}` of `tripline_rule_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// How a rule reload ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new rule set runs.
    Ok,
    /// The new rule set did not load; the previous one keeps running.
    Failed,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Failed => "failed",
        }
    }
}

/// `{code,source}` of `tripline_webhook_requests_total`: the HTTP status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookRequestLabels {
    pub code: u16,
    pub source: Arc<str>,
}

/// `{partition,source,topic}` of `tripline_kafka_consumer_lag`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLagLabels {
    pub partition: i32,
    pub source: Arc<str>,
    pub topic: String,
}

/// Label values from fixed sets are written as their documented names.
macro_rules! label_value_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}

label_value_as_str!(SkipReason, Level, ReloadResult);

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

/// Every metric family the daemon exports, and the registry that renders them.
///
/// A family is exported once it has a member: per-component families once the component is
/// built, unlabelled metrics (and both `result`s of rule reloads) from the start.
#[derive(Debug)]
pub struct Metrics {
    // Sources, by `{source}`.
    /// `tripline_events_received_total`: audit events decoded.
    pub events_received: Family<SourceLabels, Counter>,
    /// `tripline_events_reduced_total`: events larger than `pipeline.max_event_bytes`, forwarded
    /// in the events flow with their bodies replaced by a marker.
    pub events_reduced: Family<SourceLabels, Counter>,
    /// `tripline_lines_read_total`: complete lines a file source read.
    pub lines_read: Family<SourceLabels, Counter>,
    /// `tripline_bytes_read_total`: bytes a file source read.
    pub bytes_read: Family<SourceLabels, Counter>,
    /// `tripline_lines_skipped_total{reason,source}`.
    pub lines_skipped: Family<SkipLabels, Counter>,
    /// `tripline_file_truncations_total`.
    pub file_truncations: Family<SourceLabels, Counter>,
    /// `tripline_checkpoint_writes_total`.
    pub checkpoint_writes: Family<SourceLabels, Counter>,
    /// `tripline_checkpoint_write_failures_total`.
    pub checkpoint_write_failures: Family<SourceLabels, Counter>,
    /// `tripline_source_files`.
    pub source_files: Family<SourceLabels, Gauge>,
    /// `tripline_source_lag_bytes`.
    pub source_lag_bytes: Family<SourceLabels, Gauge>,
    /// `tripline_source_silent`.
    pub source_silent: Family<SourceLabels, Gauge>,

    // The webhook source, by `{source}`.
    /// `tripline_webhook_requests_total{code,source}`; see [`WebhookRequests`].
    pub webhook_requests: Family<WebhookRequestLabels, Counter>,
    /// `tripline_webhook_events_total`.
    pub webhook_events: Family<SourceLabels, Counter>,
    /// `tripline_webhook_duplicates_total`.
    pub webhook_duplicates: Family<SourceLabels, Counter>,
    /// `tripline_webhook_spool_full_total`.
    pub webhook_spool_full: Family<SourceLabels, Counter>,
    /// `tripline_webhook_request_duration_seconds`.
    pub webhook_request_duration: HistogramFamily<SourceLabels>,
    /// `tripline_spool_bytes`.
    pub spool_bytes: Family<SourceLabels, Gauge>,

    // The Kafka source, by `{source}`.
    /// `tripline_kafka_messages_total`.
    pub kafka_messages: Family<SourceLabels, Counter>,
    /// `tripline_kafka_bytes_total`.
    pub kafka_bytes: Family<SourceLabels, Counter>,
    /// `tripline_kafka_commit_failures_total`.
    pub kafka_commit_failures: Family<SourceLabels, Counter>,
    /// `tripline_kafka_consumer_lag{partition,source,topic}`.
    pub kafka_consumer_lag: Family<ConsumerLagLabels, Gauge>,
    /// `tripline_partition_state_bytes{partition,source,topic}`: the size of the last record
    /// of the partition's state written to the changelog.
    pub partition_state_bytes: Family<ConsumerLagLabels, Gauge>,
    /// `tripline_partition_state_restore_seconds{partition,source,topic}`: how long the last
    /// restore of the partition's state from the changelog took.
    pub partition_state_restore_seconds: Family<
        ConsumerLagLabels,
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    >,
    /// `tripline_partition_state_failures_total{source}`: partition states that could not be
    /// written to or read from the changelog.
    pub partition_state_failures: Family<SourceLabels, Counter>,

    // Detection.
    /// `tripline_alerts_emitted_total{level,rule_id}`; see [`Metrics::alert_counters`].
    pub alerts_emitted: Family<AlertLabels, Counter>,
    /// `tripline_batch_duration_seconds`.
    pub batch_duration: Histogram,
    /// `tripline_queue_batches`.
    pub queue_batches: Gauge,
    /// `tripline_rule_reloads_total{result}`.
    pub rule_reloads: Family<ReloadLabels, Counter>,
    /// `tripline_rules_loaded`.
    pub rules_loaded: Gauge,
    /// `tripline_first_seen_keys`: keys held by the first-seen baselines.
    pub first_seen_keys: Gauge,
    /// `tripline_first_seen_evictions_total`: keys evicted from full first-seen baselines.
    pub first_seen_evictions: Counter,
    /// `tripline_correlation_groups`: groups held by the correlations' windows.
    pub correlation_groups: Gauge,
    /// `tripline_state_snapshot_bytes`: size of the last snapshot of the stateful rules.
    pub state_snapshot_bytes: Gauge,
    /// `tripline_state_snapshot_seconds`: how long the last snapshot took (capture and write).
    pub state_snapshot_seconds:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `tripline_state_snapshot_failures_total`: snapshots that could not be written.
    pub state_snapshot_failures: Counter,
    /// `tripline_dead_letters_total`.
    pub dead_letters: Counter,
    /// `tripline_dead_letter_failures_total`: records that could not be written to the
    /// dead-letter file (it could not be opened, or a write failed), so are lost.
    pub dead_letter_failures: Counter,

    // Sinks, by `{sink}`.
    /// `tripline_sink_batches_delivered_total`.
    pub sink_batches_delivered: Family<SinkLabels, Counter>,
    /// `tripline_sink_records_delivered_total`.
    pub sink_records_delivered: Family<SinkLabels, Counter>,
    /// `tripline_sink_bytes_delivered_total`.
    pub sink_bytes_delivered: Family<SinkLabels, Counter>,
    /// `tripline_sink_failures_total`.
    pub sink_failures: Family<SinkLabels, Counter>,
    /// `tripline_sink_retries_total`.
    pub sink_retries: Family<SinkLabels, Counter>,
    /// `tripline_sink_rejected_total`.
    pub sink_rejected: Family<SinkLabels, Counter>,
    /// `tripline_sink_dropped_total`.
    pub sink_dropped: Family<SinkLabels, Counter>,
    /// `tripline_sink_failovers_total`.
    pub sink_failovers: Family<SinkLabels, Counter>,
    /// `tripline_sink_up`.
    pub sink_up: Family<SinkLabels, Gauge>,

    /// Holds a clone of every field above (clones share their series); never changed after
    /// [`Metrics::new`], so rendering needs no lock of its own.
    registry: Registry,
}

/// Registers a clone of `metric` and returns it. The registry appends a full stop to `help`.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let r = &mut registry;
        let metrics = Metrics {
            events_received: register(
                r,
                "tripline_events_received",
                "Audit events decoded",
                Family::default(),
            ),
            events_reduced: register(
                r,
                "tripline_events_reduced",
                "Events over pipeline.max_event_bytes forwarded with their bodies omitted",
                Family::default(),
            ),
            lines_read: register(
                r,
                "tripline_lines_read",
                "Complete lines read by a source",
                Family::default(),
            ),
            bytes_read: register(
                r,
                "tripline_bytes_read",
                "Bytes read by a source",
                Family::default(),
            ),
            lines_skipped: register(
                r,
                "tripline_lines_skipped",
                "Lines or events skipped, by reason",
                Family::default(),
            ),
            file_truncations: register(
                r,
                "tripline_file_truncations",
                "Files found shorter than what was read (copy-truncate); read again from the start",
                Family::default(),
            ),
            checkpoint_writes: register(
                r,
                "tripline_checkpoint_writes",
                "Checkpoint files written",
                Family::default(),
            ),
            checkpoint_write_failures: register(
                r,
                "tripline_checkpoint_write_failures",
                "Checkpoint files that could not be written",
                Family::default(),
            ),
            source_files: register(
                r,
                "tripline_source_files",
                "Files a source follows",
                Family::default(),
            ),
            source_lag_bytes: register(
                r,
                "tripline_source_lag_bytes",
                "Bytes written to followed files and not yet read",
                Family::default(),
            ),
            source_silent: register(
                r,
                "tripline_source_silent",
                "1 while a source has delivered nothing for longer than its silence threshold",
                Family::default(),
            ),
            webhook_requests: register(
                r,
                "tripline_webhook_requests",
                "Webhook requests, by response status",
                Family::default(),
            ),
            webhook_events: register(
                r,
                "tripline_webhook_events",
                "Events accepted by a webhook source and spooled",
                Family::default(),
            ),
            webhook_duplicates: register(
                r,
                "tripline_webhook_duplicates",
                "Events dropped as already received (a retried batch)",
                Family::default(),
            ),
            webhook_spool_full: register(
                r,
                "tripline_webhook_spool_full",
                "Requests refused with 429 because the spool was full",
                Family::default(),
            ),
            webhook_request_duration: register(
                r,
                "tripline_webhook_request_duration_seconds",
                "Time to answer a webhook request (spooled and fsynced)",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
            spool_bytes: register(
                r,
                "tripline_spool_bytes",
                "Bytes in a source's spool on disk",
                Family::default(),
            ),
            kafka_messages: register(
                r,
                "tripline_kafka_messages",
                "Messages consumed by a Kafka source",
                Family::default(),
            ),
            kafka_bytes: register(
                r,
                "tripline_kafka_bytes",
                "Bytes of messages consumed by a Kafka source",
                Family::default(),
            ),
            kafka_commit_failures: register(
                r,
                "tripline_kafka_commit_failures",
                "Failed offset commits of a Kafka source",
                Family::default(),
            ),
            kafka_consumer_lag: register(
                r,
                "tripline_kafka_consumer_lag",
                "Messages between a partition's end and the consumer's position",
                Family::default(),
            ),
            partition_state_bytes: register(
                r,
                "tripline_partition_state_bytes",
                "Size of the last record of a partition's state written to its changelog",
                Family::default(),
            ),
            partition_state_restore_seconds: register(
                r,
                "tripline_partition_state_restore_seconds",
                "How long the last restore of a partition's state from its changelog took",
                Family::default(),
            ),
            partition_state_failures: register(
                r,
                "tripline_partition_state_failures",
                "Partition states that could not be written to or read from their changelog",
                Family::default(),
            ),
            alerts_emitted: register(
                r,
                "tripline_alerts_emitted",
                "Alerts raised, by rule",
                Family::default(),
            ),
            batch_duration: register(
                r,
                "tripline_batch_duration_seconds",
                "Time to decode and detect one batch",
                latency_histogram(),
            ),
            queue_batches: register(
                r,
                "tripline_queue_batches",
                "Batches waiting for a worker",
                Gauge::default(),
            ),
            rule_reloads: register(
                r,
                "tripline_rule_reloads",
                "Rule reloads, by result",
                Family::default(),
            ),
            rules_loaded: register(
                r,
                "tripline_rules_loaded",
                "Rules in the running rule set",
                Gauge::default(),
            ),
            first_seen_keys: register(
                r,
                "tripline_first_seen_keys",
                "Keys held by the first-seen baselines",
                Gauge::default(),
            ),
            first_seen_evictions: register(
                r,
                "tripline_first_seen_evictions",
                "Keys evicted from full first-seen baselines",
                Counter::default(),
            ),
            correlation_groups: register(
                r,
                "tripline_correlation_groups",
                "Groups held by the correlations' windows",
                Gauge::default(),
            ),
            state_snapshot_bytes: register(
                r,
                "tripline_state_snapshot_bytes",
                "Size of the last snapshot of the stateful rules",
                Gauge::default(),
            ),
            state_snapshot_seconds: register(
                r,
                "tripline_state_snapshot_seconds",
                "How long the last snapshot of the stateful rules took",
                Default::default(),
            ),
            state_snapshot_failures: register(
                r,
                "tripline_state_snapshot_failures",
                "Snapshots of the stateful rules that could not be written",
                Counter::default(),
            ),
            dead_letters: register(
                r,
                "tripline_dead_letters",
                "Records written to the dead-letter file",
                Counter::default(),
            ),
            dead_letter_failures: register(
                r,
                "tripline_dead_letter_failures",
                "Records that could not be written to the dead-letter file, and are lost",
                Counter::default(),
            ),
            sink_batches_delivered: register(
                r,
                "tripline_sink_batches_delivered",
                "Requests a sink completed",
                Family::default(),
            ),
            sink_records_delivered: register(
                r,
                "tripline_sink_records_delivered",
                "Alerts or events a sink delivered",
                Family::default(),
            ),
            sink_bytes_delivered: register(
                r,
                "tripline_sink_bytes_delivered",
                "Bytes of documents a sink delivered (before compression and framing)",
                Family::default(),
            ),
            sink_failures: register(
                r,
                "tripline_sink_failures",
                "Failed requests of a sink (each retried unless given up)",
                Family::default(),
            ),
            sink_retries: register(
                r,
                "tripline_sink_retries",
                "Records a sink sent again",
                Family::default(),
            ),
            sink_rejected: register(
                r,
                "tripline_sink_rejected",
                "Records the destination rejected for their content (dead-lettered)",
                Family::default(),
            ),
            sink_dropped: register(
                r,
                "tripline_sink_dropped",
                "Records a sink gave up on (queue full or delivery failing); each is dead-lettered",
                Family::default(),
            ),
            sink_failovers: register(
                r,
                "tripline_sink_failovers",
                "Requests a sink sent to another endpoint after one failed",
                Family::default(),
            ),
            sink_up: register(
                r,
                "tripline_sink_up",
                "1 while a sink's destination answers (its last request or probe succeeded)",
                Family::default(),
            ),
            registry,
        };
        // Both outcomes are exported from the start, so that the first failure is an increase.
        for result in [ReloadResult::Ok, ReloadResult::Failed] {
            metrics
                .rule_reloads
                .get_or_create_owned(&ReloadLabels { result });
        }
        Arc::new(metrics)
    }

    /// The `tripline_alerts_emitted_total` counter of each rule, in the order given (rule id and
    /// level): resolved when a worker first sees a rule set, at start and after each reload, so
    /// that counting an alert is one atomic increment. A rule that keeps its id and level across
    /// a reload keeps its count.
    pub fn alert_counters<'a>(
        &self,
        rules: impl IntoIterator<Item = (&'a str, Level)>,
    ) -> Vec<Counter> {
        rules
            .into_iter()
            .map(|(rule_id, level)| {
                self.alerts_emitted.get_or_create_owned(&AlertLabels {
                    level,
                    rule_id: Arc::from(rule_id),
                })
            })
            .collect()
    }

    /// Renders every family that has members in the OpenMetrics text format 1.0.0, ending with
    /// `# EOF`. Values are read one series at a time while updates go on, so a series updated
    /// during rendering may be one update ahead of one rendered before it.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Only native histograms fail to encode as text, and none are registered.
            tracing::error!(%error, "rendering the metrics");
        }
        out
    }
}

/// `tripline_webhook_requests_total` of one webhook source. The counters of the status codes the
/// webhook answers with are resolved at their first use and then updated without a lock; any
/// other code (an error of the HTTP layer) is looked up in the family.
#[derive(Debug)]
pub struct WebhookRequests {
    family: Family<WebhookRequestLabels, Counter>,
    source: Arc<str>,
    known: [(u16, OnceLock<Counter>); 9],
}

impl WebhookRequests {
    pub fn new(metrics: &Metrics, source: &str) -> WebhookRequests {
        WebhookRequests {
            family: metrics.webhook_requests.clone(),
            source: Arc::from(source),
            known: [200, 400, 401, 408, 413, 429, 500, 503, 504]
                .map(|code| (code, OnceLock::new())),
        }
    }

    /// Counts one request answered with `code`.
    pub fn inc(&self, code: u16) {
        let resolve = || {
            self.family.get_or_create_owned(&WebhookRequestLabels {
                code,
                source: self.source.clone(),
            })
        };
        match self.known.iter().find(|(known, _)| *known == code) {
            Some((_, counter)) => counter.get_or_init(resolve).inc(),
            None => resolve().inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the daemon exports: its exposed name, type and label names, in the order
    /// they are rendered. The README documents these names; dashboards and alerts query them.
    const EXPORTED: &[(&str, &str, &[&str])] = &[
        ("tripline_events_received_total", "counter", &["source"]),
        ("tripline_events_reduced_total", "counter", &["source"]),
        ("tripline_lines_read_total", "counter", &["source"]),
        ("tripline_bytes_read_total", "counter", &["source"]),
        (
            "tripline_lines_skipped_total",
            "counter",
            &["reason", "source"],
        ),
        ("tripline_file_truncations_total", "counter", &["source"]),
        ("tripline_checkpoint_writes_total", "counter", &["source"]),
        (
            "tripline_checkpoint_write_failures_total",
            "counter",
            &["source"],
        ),
        ("tripline_source_files", "gauge", &["source"]),
        ("tripline_source_lag_bytes", "gauge", &["source"]),
        ("tripline_source_silent", "gauge", &["source"]),
        (
            "tripline_webhook_requests_total",
            "counter",
            &["code", "source"],
        ),
        ("tripline_webhook_events_total", "counter", &["source"]),
        ("tripline_webhook_duplicates_total", "counter", &["source"]),
        ("tripline_webhook_spool_full_total", "counter", &["source"]),
        (
            "tripline_webhook_request_duration_seconds",
            "histogram",
            &["source"],
        ),
        ("tripline_spool_bytes", "gauge", &["source"]),
        ("tripline_kafka_messages_total", "counter", &["source"]),
        ("tripline_kafka_bytes_total", "counter", &["source"]),
        (
            "tripline_kafka_commit_failures_total",
            "counter",
            &["source"],
        ),
        (
            "tripline_kafka_consumer_lag",
            "gauge",
            &["partition", "source", "topic"],
        ),
        (
            "tripline_partition_state_bytes",
            "gauge",
            &["partition", "source", "topic"],
        ),
        (
            "tripline_partition_state_restore_seconds",
            "gauge",
            &["partition", "source", "topic"],
        ),
        (
            "tripline_partition_state_failures_total",
            "counter",
            &["source"],
        ),
        (
            "tripline_alerts_emitted_total",
            "counter",
            &["level", "rule_id"],
        ),
        ("tripline_batch_duration_seconds", "histogram", &[]),
        ("tripline_queue_batches", "gauge", &[]),
        ("tripline_rule_reloads_total", "counter", &["result"]),
        ("tripline_rules_loaded", "gauge", &[]),
        ("tripline_first_seen_keys", "gauge", &[]),
        ("tripline_first_seen_evictions_total", "counter", &[]),
        ("tripline_correlation_groups", "gauge", &[]),
        ("tripline_state_snapshot_bytes", "gauge", &[]),
        ("tripline_state_snapshot_seconds", "gauge", &[]),
        ("tripline_state_snapshot_failures_total", "counter", &[]),
        ("tripline_dead_letters_total", "counter", &[]),
        ("tripline_dead_letter_failures_total", "counter", &[]),
        (
            "tripline_sink_batches_delivered_total",
            "counter",
            &["sink"],
        ),
        (
            "tripline_sink_records_delivered_total",
            "counter",
            &["sink"],
        ),
        ("tripline_sink_bytes_delivered_total", "counter", &["sink"]),
        ("tripline_sink_failures_total", "counter", &["sink"]),
        ("tripline_sink_retries_total", "counter", &["sink"]),
        ("tripline_sink_rejected_total", "counter", &["sink"]),
        ("tripline_sink_dropped_total", "counter", &["sink"]),
        ("tripline_sink_failovers_total", "counter", &["sink"]),
        ("tripline_sink_up", "gauge", &["sink"]),
    ];

    /// A registry with one member in every family, resolved the way components resolve theirs.
    fn populated() -> Arc<Metrics> {
        let m = Metrics::new();
        let source = SourceLabels::new("audit");
        let sink = SinkLabels::new("es");
        for family in [
            &m.events_received,
            &m.events_reduced,
            &m.lines_read,
            &m.bytes_read,
            &m.file_truncations,
            &m.checkpoint_writes,
            &m.checkpoint_write_failures,
            &m.webhook_events,
            &m.webhook_duplicates,
            &m.webhook_spool_full,
            &m.kafka_messages,
            &m.kafka_bytes,
            &m.kafka_commit_failures,
        ] {
            family.get_or_create_owned(&source).inc();
        }
        for family in [
            &m.source_files,
            &m.source_lag_bytes,
            &m.source_silent,
            &m.spool_bytes,
        ] {
            family.get_or_create_owned(&source).set(1);
        }
        for family in [
            &m.sink_batches_delivered,
            &m.sink_records_delivered,
            &m.sink_bytes_delivered,
            &m.sink_failures,
            &m.sink_retries,
            &m.sink_rejected,
            &m.sink_dropped,
            &m.sink_failovers,
        ] {
            family.get_or_create_owned(&sink).inc();
        }
        m.sink_up.get_or_create_owned(&sink).set(1);
        m.lines_skipped
            .get_or_create_owned(&SkipLabels::new("audit", SkipReason::TooLong))
            .inc();
        WebhookRequests::new(&m, "hook").inc(401);
        m.webhook_request_duration
            .get_or_create_owned(&source)
            .observe(0.003);
        m.kafka_consumer_lag
            .get_or_create_owned(&ConsumerLagLabels {
                partition: 3,
                source: Arc::from("kafka"),
                topic: "audit".to_owned(),
            })
            .set(7);
        let part = ConsumerLagLabels {
            partition: 3,
            source: Arc::from("kafka"),
            topic: "audit".to_owned(),
        };
        m.partition_state_bytes.get_or_create_owned(&part).set(2048);
        m.partition_state_restore_seconds
            .get_or_create_owned(&part)
            .set(0.25);
        m.partition_state_failures
            .get_or_create_owned(&SourceLabels::new("kafka"))
            .inc();
        m.alert_counters([("rule-1", Level::High)])[0].inc();
        m.batch_duration.observe(0.5);
        m.queue_batches.set(2);
        m.rules_loaded.set(12);
        m.dead_letters.inc();
        m.dead_letter_failures.inc();
        m
    }

    /// The `# TYPE` lines of a rendering: family name -> type.
    fn types(rendered: &str) -> std::collections::BTreeMap<&str, &str> {
        rendered
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect()
    }

    #[test]
    fn every_metric_is_exported_with_its_name_type_and_labels() {
        let rendered = populated().render();
        let types = types(&rendered);
        for (name, kind, labels) in EXPORTED {
            // Counters' families drop `_total`, which their samples carry.
            let family = match *kind {
                "counter" => name
                    .strip_suffix("_total")
                    .expect("counters end with _total"),
                _ => name,
            };
            assert_eq!(types.get(family), Some(kind), "{name}\n{rendered}");
            let sample = match *kind {
                "histogram" => format!("{name}_count"),
                _ => name.to_string(),
            };
            let line = rendered
                .lines()
                .find(|l| {
                    l.starts_with(&format!("{sample} ")) || l.starts_with(&format!("{sample}{{"))
                })
                .unwrap_or_else(|| panic!("no sample of {name}\n{rendered}"));
            let names: Vec<&str> = line
                .split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(inside, _)| {
                    inside
                        .split("\",")
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, _)| k)
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(names, *labels, "{line}");
        }
        assert_eq!(
            types.len(),
            EXPORTED.len(),
            "unexpected families:\n{rendered}"
        );
        assert!(rendered.ends_with("\n# EOF\n"), "{rendered}");
    }

    #[test]
    fn samples_render_as_before_the_registry_moved_to_prometheus_client() {
        let rendered = populated().render();
        for line in [
            "tripline_events_received_total{source=\"audit\"} 1",
            "tripline_lines_skipped_total{reason=\"too_long\",source=\"audit\"} 1",
            "tripline_webhook_requests_total{code=\"401\",source=\"hook\"} 1",
            "tripline_kafka_consumer_lag{partition=\"3\",source=\"kafka\",topic=\"audit\"} 7",
            "tripline_alerts_emitted_total{level=\"high\",rule_id=\"rule-1\"} 1",
            "tripline_rule_reloads_total{result=\"ok\"} 0",
            "tripline_rule_reloads_total{result=\"failed\"} 0",
            "tripline_rules_loaded 12",
            "tripline_dead_letters_total 1",
            "tripline_sink_up{sink=\"es\"} 1",
            "tripline_batch_duration_seconds_bucket{le=\"0.25\"} 0",
            "tripline_batch_duration_seconds_bucket{le=\"0.5\"} 1",
            "tripline_batch_duration_seconds_bucket{le=\"+Inf\"} 1",
            "tripline_batch_duration_seconds_count 1",
            // prometheus-client writes `le` before the family's labels.
            "tripline_webhook_request_duration_seconds_bucket{le=\"0.005\",source=\"audit\"} 1",
        ] {
            assert!(
                rendered.lines().any(|l| l == line),
                "missing `{line}`\n{rendered}"
            );
        }
        let les: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("tripline_batch_duration_seconds_bucket"))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(
            les,
            [
                "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
                "5.0", "10.0", "+Inf"
            ]
        );
    }

    #[test]
    fn every_metric_the_readme_names_is_exported_with_the_labels_it_names() {
        let readme = include_str!("../../README.md");
        // (name, label names given with it, if any)
        let mut documented: Vec<(String, Vec<&str>)> = Vec::new();
        for code in readme.split('`').skip(1).step_by(2) {
            let Some(start) = code.find("tripline_") else {
                continue;
            };
            let name = &code[start..];
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            let (stem, rest) = name.split_at(end);
            match rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
                // `tripline_sink_{batches,records,bytes}_delivered_total`: three metrics.
                Some((parts, tail)) if tail.starts_with('_') => {
                    let tail_end = tail
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(tail.len());
                    for part in parts.split(',') {
                        let name = format!("{stem}{part}{}", &tail[..tail_end]);
                        documented.push((name, Vec::new()));
                    }
                }
                // `tripline_lines_skipped_total{source,reason}`, `..._total{result="failed"}`.
                Some((labels, _)) => {
                    let labels = labels.split(',').map(|l| l.split('=').next().unwrap_or(l));
                    documented.push((stem.to_owned(), labels.collect()));
                }
                None => documented.push((stem.to_owned(), Vec::new())),
            }
        }
        assert!(documented.len() >= 30, "{documented:?}");
        for (name, labels) in &documented {
            let Some((_, _, exported)) = EXPORTED.iter().find(|(n, _, _)| n == name) else {
                panic!("README names {name}, which is not exported");
            };
            for label in labels {
                assert!(
                    exported.contains(label),
                    "README gives {name} the label {label}; it has {exported:?}"
                );
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.events_received
            .get_or_create_owned(&SourceLabels::new("a\\b\"c\nd"))
            .inc();
        assert!(
            m.render()
                .contains("tripline_events_received_total{source=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{}",
            m.render()
        );
    }

    #[test]
    fn an_empty_registry_renders_unlabelled_metrics_and_reload_results_at_zero() {
        let rendered = Metrics::new().render();
        let families: Vec<&str> = types(&rendered).into_keys().collect();
        assert_eq!(
            families,
            [
                "tripline_batch_duration_seconds",
                "tripline_correlation_groups",
                "tripline_dead_letter_failures",
                "tripline_dead_letters",
                "tripline_first_seen_evictions",
                "tripline_first_seen_keys",
                "tripline_queue_batches",
                "tripline_rule_reloads",
                "tripline_rules_loaded",
                "tripline_state_snapshot_bytes",
                "tripline_state_snapshot_failures",
                "tripline_state_snapshot_seconds"
            ]
        );
        assert!(
            rendered.contains("\ntripline_queue_batches 0\n"),
            "{rendered}"
        );
    }

    #[test]
    fn handles_resolve_to_the_same_series() {
        let m = Metrics::new();
        let first = m.lines_read.get_or_create_owned(&SourceLabels::new("file"));
        let again = m.lines_read.get_or_create_owned(&SourceLabels::new("file"));
        let other = m
            .lines_read
            .get_or_create_owned(&SourceLabels::new("kafka"));
        first.inc_by(2);
        again.inc();
        assert_eq!((first.get(), again.get(), other.get()), (3, 3, 0));

        // A rule keeps its counter across rule sets as long as its id and level stay.
        let before = m.alert_counters([("a", Level::Low), ("b", Level::High)]);
        before[1].inc();
        let after = m.alert_counters([("b", Level::High), ("a", Level::Critical)]);
        after[0].inc();
        assert_eq!(before[1].get(), 2);
        assert_eq!(after[1].get(), 0, "another level is another series");
        assert!(m
            .render()
            .contains("tripline_alerts_emitted_total{level=\"high\",rule_id=\"b\"} 2\n"));

        // Known and unknown status codes count alike.
        let requests = WebhookRequests::new(&m, "hook");
        for code in [200, 200, 418] {
            requests.inc(code);
        }
        let rendered = m.render();
        assert!(
            rendered.contains("tripline_webhook_requests_total{code=\"200\",source=\"hook\"} 2\n")
        );
        assert!(
            rendered.contains("tripline_webhook_requests_total{code=\"418\",source=\"hook\"} 1\n")
        );
    }

    /// Handles resolved once are updated from many threads, while another thread renders and
    /// resolves new series (taking the families' locks): no update is lost, and the updaters
    /// never wait on those locks (a counter is an atomic behind an `Arc`).
    #[test]
    fn handles_are_updated_concurrently_without_locks() {
        const THREADS: u64 = 4;
        const ROUNDS: u64 = 10_000;
        let m = Metrics::new();
        let events = m
            .events_received
            .get_or_create_owned(&SourceLabels::new("audit"));
        let alerts = m.alert_counters([("r", Level::High), ("s", Level::Low)]);
        let lag = m
            .source_lag_bytes
            .get_or_create_owned(&SourceLabels::new("audit"));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let updaters: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (events, alerts, lag) = (events.clone(), alerts.clone(), lag.clone());
                    scope.spawn(move || {
                        for i in 0..ROUNDS {
                            events.inc();
                            alerts[(i % 2) as usize].inc();
                            lag.inc_by(2);
                            lag.dec_by(1);
                        }
                    })
                })
                .collect();
            scope.spawn(|| {
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    m.lines_read
                        .get_or_create_owned(&SourceLabels::new(format!("s{n}")))
                        .inc();
                    assert!(m.render().ends_with("# EOF\n"));
                    n += 1;
                }
            });
            for u in updaters {
                u.join().expect("updater thread");
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(events.get(), THREADS * ROUNDS);
        assert_eq!(alerts[0].get() + alerts[1].get(), THREADS * ROUNDS);
        assert_eq!(lag.get(), (THREADS * ROUNDS) as i64);
        assert!(m.render().contains(&format!(
            "tripline_events_received_total{{source=\"audit\"}} {}\n",
            THREADS * ROUNDS
        )));
    }
}
