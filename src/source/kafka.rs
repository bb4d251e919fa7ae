//! Kafka as a source: a consumer in a consumer group reads audit events from topics; several
//! tripline instances in one group share the partitions.
//!
//! Offsets are stored only for messages whose batches every required sink confirmed, in order
//! per partition (the end of the longest confirmed run), and committed every
//! `commit_interval` by librdkafka, at shutdown, and when a partition is revoked (after waiting up
//! to `revoke_timeout` for its batches in flight). A rebalance or a crash therefore replays at most
//! the unconfirmed tail, and loses nothing.
//!
//! A message may hold one Event, an EventList, or JSON lines. Stateful rules (throttling) see only
//! the partitions of their instance: key audit topics by user so one user's events meet in one
//! instance.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::types::{HumanDuration, Secret};

#[cfg(feature = "kafka")]
mod consumer;
#[cfg(feature = "kafka")]
pub use consumer::{KafkaSource, KafkaSourceError};

/// `sources: - type: kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
    /// The consumer group; instances with the same group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// How often confirmed offsets are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// How long a revoked partition waits for its batches in flight before committing.
    #[serde(default = "default_revoke_timeout")]
    pub revoke_timeout: HumanDuration,
    /// How long messages wait to fill a batch.
    #[serde(default = "default_linger")]
    pub batch_linger: HumanDuration,
    /// Raise "Audit Events Stopped" after this long without messages.
    #[serde(default = "default_silence")]
    pub silence_alert_after: HumanDuration,
    /// librdkafka properties passed through (TLS, SASL, `auto.offset.reset`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
}

fn default_group() -> String {
    "tripline".to_string()
}
fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_revoke_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_linger() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_silence() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Properties tripline sets itself: offsets are stored only once confirmed.
pub(crate) const FIXED: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
    ("enable.partition.eof", "false"),
];

impl KafkaSourceConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.brokers.is_empty() {
            p.push("brokers: at least one broker is required".to_string());
        }
        if self.topics.is_empty() {
            p.push("topics: at least one topic is required".to_string());
        }
        if self.group_id.is_empty() {
            p.push("group_id: must not be empty".to_string());
        }
        for k in self.options.keys() {
            if FIXED.iter().any(|(f, _)| f == k) {
                p.push(format!(
                    "options.{k}: set by tripline (offsets are stored only once confirmed)"
                ));
            }
        }
        // librdkafka checks every option's name and value when the settings are built, before
        // any client exists or connects.
        #[cfg(feature = "kafka")]
        if let Err(e) = consumer::client_config("check", self).create_native_config() {
            p.push(format!("options: {e}"));
        }
        #[cfg(not(feature = "kafka"))]
        p.push(
            "type: this tripline was built without Kafka support (cargo feature `kafka`)"
                .to_string(),
        );
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_tripline_sets_are_refused() {
        let cfg: KafkaSourceConfig = serde_yaml::from_str(
            "brokers: []\ntopics: []\noptions: {enable.auto.offset.store: \"true\"}\n",
        )
        .unwrap();
        let p = cfg.validate().join("\n");
        assert!(
            p.contains("brokers") && p.contains("topics") && p.contains("enable.auto.offset.store"),
            "{p}"
        );
    }
}
