//! Placeholder while this sink is written.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::sink::{Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::telemetry::Metrics;

pub const LIMITS: Limits = Limits {
    max_records: 500,
    max_bytes: 1 << 20,
    flush_interval: Duration::from_secs(1),
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {}

pub struct Elasticsearch;

impl Elasticsearch {
    pub fn new(name: &str, _cfg: &ElasticsearchConfig, _metrics: &Metrics) -> Result<Elasticsearch, SinkError> {
        Err(SinkError::Setup {
            sink: name.to_string(),
            message: "not available yet".to_string(),
        })
    }
}

impl Deliver for Elasticsearch {
    fn deliver(&mut self, _records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        Err(RequestError("not available".into()))
    }
}
