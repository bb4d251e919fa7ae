//! Sources of audit events: their configs, and the [`Batch`] of complete lines each hands to
//! the detect workers, with the acknowledgement that lets the source advance its checkpoint
//! only past what every required sink confirmed.

pub mod checkpoint;
pub mod file;
pub mod kafka;
pub mod spool;
pub mod webhook;

use std::sync::Arc;

use serde::Deserialize;

use crate::ack::Confirm;

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
