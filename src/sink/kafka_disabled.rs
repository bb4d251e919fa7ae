//! Placeholder while this sink is written.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::telemetry::Metrics;

pub const LIMITS: Limits = Limits {
    max_records: 500,
    max_bytes: 1 << 20,
    flush_interval: Duration::from_secs(1),
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {}

pub struct KafkaSink;

impl KafkaSink {
    pub fn new(name: &str, _cfg: &KafkaSinkConfig, _metrics: &Metrics) -> Result<KafkaSink, SinkError> {
        Err(SinkError::Setup {
            sink: name.to_string(),
            message: "not available yet".to_string(),
        })
    }
}

impl Deliver for KafkaSink {
    fn deliver(&mut self, _records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        Err(RequestError("not available".into()))
    }
}
