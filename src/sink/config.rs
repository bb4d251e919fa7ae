//! `sinks:` entries: the settings every sink has ([`SinkConfig`]) and the type's own
//! ([`SinkKind`], each defined by its sink's module), with pure validation.

use serde::Deserialize;

use super::http::HttpTemplate;
use super::local::LineFormat;
use crate::config::types::Flow;
use crate::config::types::HumanDuration;
use crate::rules::Level;

/// One entry of `sinks:`: the settings every sink has, and its type's own.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    /// Names the sink in metrics, logs and dead letters (default `<type>-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `alerts` (ECS alert documents) and/or `events` (every audit event, redacted).
    #[serde(default = "default_flows")]
    pub flows: Vec<Flow>,
    /// Only alerts of this level or higher.
    #[serde(default)]
    pub min_level: Option<Level>,
    /// Only alerts of rules that carry at least one of these tags (`attack.*` matches by prefix).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A required sink must confirm a batch before its offset is checkpointed; a sink that is
    /// not required never holds the pipeline back and dead-letters what it cannot deliver.
    #[serde(default = "yes")]
    pub required: bool,
    /// How records are grouped into requests.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Delivery attempts of a whole request before it is dead-lettered; unset means retry until
    /// delivered (required sinks) or 3 attempts (other sinks).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(flatten)]
    pub kind: SinkKind,
}

/// `batch:` of a sink. Defaults depend on the sink type.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Records per request.
    #[serde(default)]
    pub max_records: Option<usize>,
    /// Bytes of documents per request (before compression).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// How long the first record of a request may wait for more.
    #[serde(default)]
    pub flush_interval: Option<HumanDuration>,
}

/// The type of a sink and its own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines appended to a file.
    File(super::local::FileSinkConfig),
    /// JSON lines on standard output.
    Stdout(super::local::StdoutSinkConfig),
    /// Elasticsearch or OpenSearch bulk API.
    #[serde(alias = "opensearch")]
    Elasticsearch(super::elasticsearch::ElasticsearchConfig),
    /// Kafka topics.
    Kafka(super::kafka::KafkaSinkConfig),
    /// Splunk HTTP Event Collector.
    #[serde(rename = "splunk_hec", alias = "splunk")]
    SplunkHec(super::splunk::SplunkConfig),
    /// RFC 5424 syslog over TCP, TLS or UDP.
    Syslog(super::syslog::SyslogConfig),
    /// JSON POSTed to an HTTP endpoint (generic webhooks, Slack).
    Http(super::http::HttpSinkConfig),
}

fn default_flows() -> Vec<Flow> {
    vec![Flow::Alerts]
}

fn yes() -> bool {
    true
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Http(_) => "http",
        }
    }

    /// The type's own problems found without I/O, each `key: message` relative to the sink.
    pub fn validate(&self) -> Vec<String> {
        match self {
            SinkKind::File(_) | SinkKind::Stdout(_) => Vec::new(),
            SinkKind::Elasticsearch(c) => c.validate(),
            SinkKind::Kafka(c) => c.validate(),
            SinkKind::SplunkHec(c) => c.validate(),
            SinkKind::Syslog(c) => c.validate(),
            SinkKind::Http(c) => c.validate(),
        }
    }
}

impl SinkConfig {
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The configured name, or `<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{index}", self.kind.type_name()))
    }

    /// Problems found without I/O, each `key: message` relative to the sink: everything the
    /// build step ([`super::start`]) would reject short of opening files and connections.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.flows.is_empty() {
            p.push("flows: name at least one of `alerts`, `events`".to_string());
        }
        if let Some(b) = &self.batch {
            p.extend(b.validate().into_iter().map(|e| format!("batch.{e}")));
        }
        if self.max_attempts == Some(0) {
            p.push(
                "max_attempts: must be at least 1 (leave it unset to retry until delivered)"
                    .to_string(),
            );
        }
        p.extend(self.alerts_only_problem());
        p.extend(self.kind.validate());
        p
    }

    /// A sink writing Falco's alert shape (`format: falco`, `template: falco`) takes alerts
    /// only: Falco has no shape for an audit event.
    pub fn alerts_only_problem(&self) -> Option<String> {
        let key = match &self.kind {
            SinkKind::File(c) if c.format == LineFormat::Falco => "format",
            SinkKind::Stdout(c) if c.format == LineFormat::Falco => "format",
            SinkKind::Http(c) if c.template == HttpTemplate::Falco => "template",
            _ => return None,
        };
        self.flows.contains(&Flow::Events).then(|| {
            format!(
                "flows: `{key}: falco` writes Falco alerts, which exist for alerts only: remove `events` from `flows` (or send the events to another sink)"
            )
        })
    }
}

impl BatchConfig {
    /// Problems found without I/O, each `key: message`.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_records == Some(0) {
            p.push("max_records: must be at least 1".to_string());
        }
        if self.max_bytes == Some(0) {
            p.push("max_bytes: must be at least 1".to_string());
        }
        p
    }
}
