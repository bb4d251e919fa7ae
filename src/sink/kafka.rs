//! Kafka: alerts and events to topics through librdkafka's idempotent producer. A record counts
//! as delivered when its delivery report says the broker stored it (`acks=all`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::types::{HumanDuration, Secret};
use crate::sink::Limits;

#[cfg(feature = "kafka")]
mod producer;
#[cfg(feature = "kafka")]
pub use producer::KafkaSink;

/// Without the `kafka` feature the configuration is still understood, and starting such a
/// sink says how to get it.
#[cfg(not(feature = "kafka"))]
pub enum KafkaSink {}

#[cfg(not(feature = "kafka"))]
impl KafkaSink {
    pub fn new(
        name: &str,
        _cfg: &KafkaSinkConfig,
        _metrics: &crate::telemetry::Metrics,
    ) -> Result<KafkaSink, crate::sink::SinkError> {
        Err(crate::sink::SinkError::Setup {
            sink: name.to_string(),
            message: "this tripline was built without Kafka support (cargo feature `kafka`)"
                .to_string(),
        })
    }
}

#[cfg(not(feature = "kafka"))]
impl crate::sink::Deliver for KafkaSink {
    fn deliver(
        &mut self,
        _records: &[std::sync::Arc<crate::sink::Record>],
    ) -> Result<Vec<crate::sink::Outcome>, crate::sink::RequestError> {
        match *self {}
    }
}

/// librdkafka batches by itself; a request here is what is in flight at once.
pub const LIMITS: Limits = Limits {
    max_records: 5_000,
    max_bytes: 16 << 20,
    flush_interval: Duration::from_millis(200),
};

/// `sinks: - type: kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topic of alerts.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Topic of events.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// Message key: `user` (the event's user: one user's records stay in order on one
    /// partition), `rule` (alerts by rule id, events by user), `id` (the record id) or `none`.
    #[serde(default)]
    pub key: KeyChoice,
    /// How long librdkafka tries to deliver a message before reporting failure (it is then
    /// sent again by tripline).
    #[serde(default = "default_message_timeout")]
    pub message_timeout: HumanDuration,
    /// librdkafka properties passed through (TLS, SASL, compression, ...), e.g.
    /// `security.protocol: SASL_SSL`, `sasl.mechanisms: SCRAM-SHA-512`,
    /// `sasl.password: ${KAFKA_PASSWORD}`, `compression.codec: zstd`.
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
}

impl KafkaSinkConfig {
    /// Problems found without I/O, each `key: message` relative to the sink: everything
    /// [`KafkaSink::new`] rejects before it connects.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.brokers.is_empty() {
            p.push("brokers: at least one broker is required".to_string());
        }
        // librdkafka checks every option's name and value when the settings are built, before
        // any client exists or connects.
        #[cfg(feature = "kafka")]
        if let Err(e) = producer::client_config("check", self).create_native_config() {
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

fn default_alerts_topic() -> String {
    "tripline-alerts".to_string()
}
fn default_events_topic() -> String {
    "kubernetes-audit".to_string()
}
fn default_message_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyChoice {
    #[default]
    User,
    Rule,
    Id,
    None,
}
