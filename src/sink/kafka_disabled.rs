//! The Kafka sink when tripline is built without the `kafka` feature: the configuration is
//! still understood, and starting such a sink says how to get it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::HumanDuration;
use crate::sink::{Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::telemetry::Metrics;

pub const LIMITS: Limits = Limits {
    max_records: 5_000,
    max_bytes: 16 << 20,
    flush_interval: Duration::from_millis(200),
};

/// `sinks: - type: kafka` (see the `kafka` feature's module for the keys).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct KafkaSinkConfig {
    pub brokers: Vec<String>,
    #[serde(default)]
    pub alerts_topic: Option<String>,
    #[serde(default)]
    pub events_topic: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub message_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkConfig")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

pub enum KafkaSink {}

impl KafkaSink {
    pub fn new(
        name: &str,
        _cfg: &KafkaSinkConfig,
        _metrics: &Metrics,
    ) -> Result<KafkaSink, SinkError> {
        Err(SinkError::Setup {
            sink: name.to_string(),
            message: "this tripline was built without Kafka support (cargo feature `kafka`)"
                .to_string(),
        })
    }
}

impl Deliver for KafkaSink {
    fn deliver(&mut self, _records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        match *self {}
    }
}
