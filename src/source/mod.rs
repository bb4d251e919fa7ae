//! Sources of audit events: their configs, and the [`Batch`] of complete lines each hands to
//! the detect workers, with the acknowledgement that lets the source advance its checkpoint
//! only past what every required sink confirmed.

pub mod checkpoint;
pub mod file;
pub mod kafka;
pub mod spool;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use serde::Deserialize;

use crate::ack::Confirm;
use crate::config::types::HumanDuration;
use crate::telemetry::{Health, HealthHandle, Metrics};

use file::{FileSource, FileSourceConfig, ReadFrom};

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    File(FileSourceConfig),
    /// The API server's audit webhook (`--audit-webhook-config-file`).
    Webhook(webhook::WebhookSourceConfig),
    /// A Kafka consumer group.
    Kafka(kafka::KafkaSourceConfig),
}

/// The stateful rules that the `partitioned_by` of each Kafka source among `sources` does not
/// cover ([`kafka::KafkaSourceConfig::partition_warnings`]), each as `sources[i].partitioned_by
/// ...`: printed by `tripline config check`, logged by `tripline run` at start.
pub fn partition_warnings(
    sources: &[SourceConfig],
    rules: &[crate::rules::Rule],
    correlations: &[crate::rules::Correlation],
) -> Vec<String> {
    let mut w = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        if let SourceConfig::Kafka(k) = s {
            for m in k.partition_warnings(rules, correlations) {
                w.push(format!("sources[{i}].{m}"));
            }
        }
    }
    w
}

impl SourceConfig {
    /// The configured name, or `<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        match self {
            SourceConfig::File(c) => c.name.clone().unwrap_or(format!("file-{index}")),
            SourceConfig::Webhook(c) => c.name.clone().unwrap_or(format!("webhook-{index}")),
            SourceConfig::Kafka(c) => c.name.clone().unwrap_or(format!("kafka-{index}")),
        }
    }

    /// Problems found without I/O, each `key: message` relative to the source: everything
    /// starting the source would reject short of opening files, ports and connections.
    pub fn validate(&self) -> Vec<String> {
        match self {
            SourceConfig::File(c) => c.validate(),
            SourceConfig::Webhook(c) => c.validate(),
            SourceConfig::Kafka(c) => c.validate(),
        }
    }
}

/// Complete lines read from one file, with where they came from.
#[derive(Debug)]
pub struct Batch {
    /// The source's configured name (a metric label).
    pub source: Arc<str>,
    /// The file path at the time of reading (for dead letters and logs).
    pub path: Arc<str>,
    /// Complete lines, each ending in `\n`.
    pub data: Vec<u8>,
    /// The line number of the first line in `data` (counted from where reading started when a
    /// file was first read from its end).
    pub first_line: u64,
    /// The byte offset of `data[0]` in the file.
    pub start_offset: u64,
    /// For sources of messages (Kafka): byte position in `data` -> message offset, ascending,
    /// so a bad line is reported by its message offset. Empty for files.
    pub message_offsets: Vec<(u64, u64)>,
    /// The Kafka partition (topic, partition) whose own state the stateful rules keep for
    /// this batch (a source with `partitioned_by`); `None`: the daemon's shared state.
    /// With the assignment of the partition it was read under.
    pub state_partition: Option<(Arc<str>, i32, u64)>,
    pub ack: Arc<dyn Confirm>,
}

impl Batch {
    /// The position to report for a line at `offset` (as computed from `start_offset`): the
    /// offset of the message holding it for message sources, else `offset` itself.
    pub fn report_offset(&self, offset: u64) -> u64 {
        if self.message_offsets.is_empty() {
            return offset;
        }
        let rel = offset - self.start_offset;
        let i = self.message_offsets.partition_point(|(pos, _)| *pos <= rel);
        self.message_offsets[i.saturating_sub(1)].1
    }
}

/// What a source reports besides batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// No new data for the configured time (true) or data again after silence (false).
    Silent {
        source: Arc<str>,
        silent: bool,
        for_secs: u64,
    },
}

/// A source ready to run: it hands [`Batch`]es on until `stop` is set, then delivers what is
/// in flight (until `drain_timeout` after the stop) and records its final position.
pub trait Source: Send {
    fn run(self: Box<Self>, stop: Arc<AtomicBool>, drain_timeout: Duration, health: HealthHandle);
}

/// What starting a source needs besides its config.
pub struct SourceContext<'a> {
    /// The source's place in `sources:` (its default name).
    pub index: usize,
    /// Where checkpoints and the webhook spool live.
    pub state_dir: &'a Path,
    pub max_line_bytes: usize,
    pub batch_max_bytes: usize,
    pub batches: Sender<Batch>,
    pub events: Sender<SourceEvent>,
    pub metrics: &'a Arc<Metrics>,
    pub health: &'a Health,
    pub stop: Arc<AtomicBool>,
    pub drain_timeout: Duration,
    /// Where a Kafka source with `partitioned_by` hands its partitions' state over.
    pub partitions: Arc<dyn PartitionHandover>,
}

/// A partition whose state follows it: (source name, topic, partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub source: Arc<str>,
    pub topic: Arc<str>,
    pub partition: i32,
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where the records of a source's partitions go: its changelog topic.
pub trait Changelog: Send + Sync {
    /// Writes the records, each under its partition, and returns once the broker has them.
    fn write(&self, records: &[(PartitionId, Vec<u8>)]) -> Result<(), String>;
    /// The last record of `id`, if any.
    fn read(&self, id: &PartitionId) -> Result<Option<Vec<u8>>, String>;
}

/// Where a Kafka source whose state follows its partitions (`partitioned_by`) hands their
/// state over: the pipeline's keeper of the stateful rules' state.
pub trait PartitionHandover: Send + Sync {
    /// `source` writes its partitions' state to `changelog`.
    fn register(&self, source: Arc<str>, changelog: Arc<dyn Changelog>);
    /// `id` was assigned (its `generation`th assignment here, which its batches carry): its
    /// state is read from the changelog before any of its messages is. The restored record's
    /// `next_offset`, or `None` when none was restored.
    fn assigned(&self, id: &PartitionId, generation: u64) -> Option<i64>;
    /// `id` was lost (the group moved on without this instance, whose state of it is stale):
    /// its state is dropped unwritten.
    fn lost(&self, id: &PartitionId);
    /// `id` was revoked: its state is written to the changelog one last time and dropped.
    /// Whether a state was held.
    fn revoked(&self, id: &PartitionId) -> Result<bool, String>;
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] file::FileSourceError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSourceError),
    #[error("source `{source_name}`: this tripline was built without Kafka support (cargo feature `kafka`)")]
    NoKafka { source_name: String },
    #[error("source `{source_name}`: opening the spool {}: {error}", path.display())]
    Spool {
        source_name: String,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("source `{source_name}`: starting its thread: {error}")]
    Thread {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
}

/// A started source: its reading thread and, for a webhook, the server that fills its spool.
pub struct RunningSource {
    thread: JoinHandle<()>,
    intake: Option<webhook::Webhook>,
}

impl RunningSource {
    /// Stops taking new input where input is pushed to tripline: a webhook answers new batches
    /// with 503 and `Retry-After`, so they stay with the API server. Sources that pull stop
    /// on the `stop` flag.
    pub fn stop_intake(&mut self) {
        if let Some(w) = self.intake.take() {
            w.stop();
        }
    }

    /// Waits until the source has delivered what it could and recorded its final position.
    pub fn join(mut self) {
        self.stop_intake();
        let _ = self.thread.join();
    }
}

/// Starts the source described by `cfg` on its own thread: checks and opens what can be
/// checked before returning (globs, the checkpoint, the webhook's port and TLS material, the
/// Kafka client), so a bad source stops start-up rather than failing later.
pub fn start(cfg: &SourceConfig, ctx: SourceContext<'_>) -> Result<RunningSource, SourceError> {
    let name = cfg.name(ctx.index);
    let file_source = |fc: FileSourceConfig| {
        FileSource::new(
            &name,
            fc,
            ctx.state_dir,
            ctx.max_line_bytes,
            ctx.batch_max_bytes,
            ctx.batches.clone(),
            ctx.events.clone(),
            ctx.metrics,
        )
    };
    let (source, intake): (Box<dyn Source>, _) = match cfg {
        SourceConfig::File(fc) => (Box::new(file_source(fc.clone())?), None),
        // A webhook source spools what it accepts; a file source follows the spool.
        SourceConfig::Webhook(wc) => {
            let dir = webhook::spool_dir(ctx.state_dir, &name);
            let spool = spool::Spool::open(&dir, wc.spool_max_bytes).map_err(|error| {
                SourceError::Spool {
                    source_name: name.clone(),
                    path: dir.clone(),
                    error,
                }
            })?;
            let server = webhook::Webhook::start(
                &name,
                wc,
                Arc::new(spool),
                checkpoint::Checkpoints::path(ctx.state_dir, &name),
                ctx.metrics.clone(),
                ctx.health.component(&format!("webhook:{name}")),
            )?;
            let follow = FileSourceConfig {
                name: Some(name.clone()),
                paths: vec![spool::Spool::glob(&dir)],
                exclude: vec![],
                read_from: ReadFrom::Beginning,
                poll_interval: HumanDuration(Duration::from_millis(100)),
                checkpoint_interval: HumanDuration(Duration::from_millis(500)),
                silence_alert_after: wc.silence_alert_after,
                detect_copies: false,
            };
            (Box::new(file_source(follow)?), Some(server))
        }
        #[cfg(feature = "kafka")]
        SourceConfig::Kafka(kc) => {
            let source = kafka::KafkaSource::new(
                &name,
                kc,
                ctx.batch_max_bytes,
                ctx.batches.clone(),
                ctx.events.clone(),
                ctx.metrics.clone(),
                ctx.partitions.clone(),
            )?;
            (Box::new(source), None)
        }
        #[cfg(not(feature = "kafka"))]
        SourceConfig::Kafka(_) => return Err(SourceError::NoKafka { source_name: name }),
    };
    let health = ctx.health.component(&format!("source:{name}"));
    let (stop, drain) = (ctx.stop, ctx.drain_timeout);
    let thread = std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(move || source.run(stop, drain, health))
        .map_err(|error| SourceError::Thread {
            source_name: name,
            error,
        })?;
    Ok(RunningSource { thread, intake })
}
