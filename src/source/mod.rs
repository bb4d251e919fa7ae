//! Sources of audit events and the acknowledgement types that let a source advance its
//! checkpoint only past what every required sink confirmed.

pub mod checkpoint;
pub mod file;
pub mod kafka;
pub mod spool;
pub mod webhook;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use serde::Deserialize;

use file::FileSourceConfig;

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

/// Identifies a file across renames: device, inode and a fingerprint of its first bytes (so a
/// reused inode is not taken for the old file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// Completion of one batch, sent back to its source once every sink that took it confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub file: FileKey,
    /// Which reading of the file (a new one after truncation or inode reuse), so that a late
    /// confirmation never counts for a different file or reading.
    pub instance: u64,
    pub seq: u64,
}

/// Counts the confirmations a batch still needs; the last one notifies the source. Dropping an
/// `Ack` without calling [`Ack::done`] does not confirm: the batch is re-read after a restart.
#[derive(Debug)]
pub struct Ack {
    remaining: AtomicUsize,
    completion: Completion,
    notify: Sender<Completion>,
}

impl Ack {
    /// A batch that needs one confirmation (the worker's); more holders are added with
    /// [`Ack::add`] before it is handed on.
    pub fn new(completion: Completion, notify: Sender<Completion>) -> Arc<Ack> {
        Arc::new(Ack {
            remaining: AtomicUsize::new(1),
            completion,
            notify,
        })
    }

    /// Registers `n` more confirmations to wait for.
    pub fn add(&self, n: usize) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    /// One holder confirms. The last confirmation notifies the source.
    pub fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The source may have stopped (shutdown): then nobody needs the notice.
            let _ = self.notify.send(self.completion);
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
    pub ack: Arc<Ack>,
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
