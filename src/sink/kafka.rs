//! Kafka: alerts and events to topics through librdkafka's idempotent producer. A record counts
//! as delivered when its delivery report says the broker stored it (`acks=all`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;

use crate::config::{Flow, HumanDuration};
use crate::sink::{runtime, Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::telemetry::Metrics;

/// librdkafka batches by itself; a request here is what is in flight at once.
pub const LIMITS: Limits = Limits {
    max_records: 5_000,
    max_bytes: 16 << 20,
    flush_interval: Duration::from_millis(200),
};

/// `sinks: - type: kafka`.
#[derive(Clone, Deserialize)]
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
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold passwords: show their names only.
        f.debug_struct("KafkaSinkConfig")
            .field("brokers", &self.brokers)
            .field("alerts_topic", &self.alerts_topic)
            .field("events_topic", &self.events_topic)
            .field("key", &self.key)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
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

/// Properties tripline sets itself: at-least-once without duplicates from producer retries.
const FIXED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];

pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    producer: FutureProducer,
    rt: tokio::runtime::Runtime,
}

impl KafkaSink {
    pub fn new(
        name: &str,
        cfg: &KafkaSinkConfig,
        _metrics: &Metrics,
    ) -> Result<KafkaSink, SinkError> {
        let setup = |message: String| SinkError::Setup {
            sink: name.to_string(),
            message,
        };
        if cfg.brokers.is_empty() {
            return Err(setup("brokers: at least one broker is required".into()));
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", cfg.brokers.join(","));
        c.set("client.id", format!("tripline-{name}"));
        c.set(
            "message.timeout.ms",
            cfg.message_timeout.0.as_millis().to_string(),
        );
        for (k, v) in &cfg.options {
            if FIXED.iter().any(|(f, _)| f == k) {
                tracing::warn!(sink = name, option = %k, "option ignored: tripline sets it for idempotent delivery");
                continue;
            }
            c.set(k, v);
        }
        for (k, v) in FIXED {
            c.set(*k, *v);
        }
        // librdkafka's messages name the option but not a password's value.
        let producer: FutureProducer = c
            .create()
            .map_err(|e| setup(format!("creating the producer: {e}")))?;
        Ok(KafkaSink {
            cfg: cfg.clone(),
            producer,
            rt: runtime(name)?,
        })
    }

    fn key<'r>(&self, r: &'r Record) -> Option<&'r str> {
        match self.cfg.key {
            KeyChoice::User => r.user.as_deref(),
            KeyChoice::Rule => match &r.rule {
                Some((id, _)) => Some(id),
                None => r.user.as_deref(),
            },
            KeyChoice::Id => Some(&r.id),
            KeyChoice::None => None,
        }
    }
}

/// Whether a failed delivery is about the message itself (retrying cannot help). Everything
/// else (brokers down, authorization, timeouts) is retried until it passes.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

impl Deliver for KafkaSink {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        let mut futures = Vec::with_capacity(records.len());
        for r in records {
            let topic = match r.flow {
                Flow::Alerts => &self.cfg.alerts_topic,
                Flow::Events => &self.cfg.events_topic,
            };
            let headers = OwnedHeaders::new().insert(Header {
                key: "tripline-id",
                value: Some(r.id.as_bytes()),
            });
            let mut rec = FutureRecord::to(topic)
                .payload(r.doc.as_slice())
                .headers(headers);
            let key = self.key(r);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            // The message timestamp is the time of sending, not the event time: brokers apply
            // time-based retention to it, and a replayed backlog with old event times would be
            // deleted as soon as its segment closed. The event time is in the document.
            futures.push(self.producer.send_result(rec).map_err(|(e, _)| e));
        }
        let outcomes = self.rt.block_on(async {
            let mut out = Vec::with_capacity(futures.len());
            for f in futures {
                out.push(match f {
                    Err(e) => Outcome::Retry(format!("enqueueing: {e}")),
                    Ok(fut) => match fut.await {
                        Ok(Ok(_)) => Outcome::Delivered,
                        Ok(Err((e, _))) if is_permanent(&e) => Outcome::Reject(e.to_string()),
                        Ok(Err((e, _))) => Outcome::Retry(e.to_string()),
                        Err(_) => Outcome::Retry("producer dropped the message".into()),
                    },
                });
            }
            out
        });
        if outcomes.iter().all(|o| matches!(o, Outcome::Retry(_))) {
            if let Some(Outcome::Retry(why)) = outcomes.first() {
                return Err(RequestError(why.clone()));
            }
        }
        Ok(outcomes)
    }

    fn probe(&mut self) -> Result<(), RequestError> {
        self.producer
            .client()
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|_| ())
            .map_err(|e| RequestError(format!("metadata: {e}")))
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
