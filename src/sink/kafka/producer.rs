//! The librdkafka producer behind a `kafka` sink (cargo feature `kafka`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{FieldKey, KafkaSinkConfig, KeyChoice};
use crate::config::types::Flow;
use crate::sink::{runtime, Deliver, Outcome, Record, RequestError, SinkError};
use crate::telemetry::Metrics;

/// Properties tripline sets itself: at-least-once without duplicates from producer retries.
const FIXED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];

pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    /// The key of events for `key: {fields}`.
    field_key: Option<FieldKey>,
    producer: FutureProducer,
    rt: tokio::runtime::Runtime,
}

/// The producer's librdkafka settings: the configured ones (but those tripline fixes), then
/// tripline's fixed ones.
pub(crate) fn client_config(name: &str, cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    c.set("client.id", format!("tripline-{name}"));
    c.set(
        "message.timeout.ms",
        cfg.message_timeout.0.as_millis().to_string(),
    );
    for (k, v) in &cfg.options {
        if !FIXED.iter().any(|(f, _)| f == k) {
            c.set(k, v.expose());
        }
    }
    for (k, v) in FIXED {
        c.set(*k, *v);
    }
    c
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
        SinkError::check(name, cfg.validate())?;
        for k in cfg.options.keys() {
            if FIXED.iter().any(|(f, _)| f == k) {
                tracing::warn!(sink = name, option = %k, "option ignored: tripline sets it for idempotent delivery");
            }
        }
        let c = client_config(name, cfg);
        // librdkafka's messages name the option but not a password's value.
        let producer: FutureProducer = c
            .create()
            .map_err(|e| setup(format!("creating the producer: {e}")))?;
        let field_key = match &cfg.key {
            KeyChoice::Fields(fields) => Some(
                FieldKey::new(fields)
                    .ok_or_else(|| setup("key.fields: a field does not parse".to_string()))?,
            ),
            _ => None,
        };
        Ok(KafkaSink {
            cfg: cfg.clone(),
            field_key,
            producer,
            rt: runtime(name)?,
        })
    }

    fn key<'r>(&self, r: &'r Record) -> Option<Cow<'r, str>> {
        match &self.cfg.key {
            KeyChoice::User => r.user.as_deref().map(Cow::Borrowed),
            KeyChoice::Rule => match &r.rule {
                Some((id, _)) => Some(Cow::Borrowed(id)),
                None => r.user.as_deref().map(Cow::Borrowed),
            },
            KeyChoice::Id => Some(Cow::Borrowed(&r.id)),
            KeyChoice::None => None,
            // Alerts, and a document that holds no event (never written), by user.
            KeyChoice::Fields(_) => match (&self.field_key, r.flow) {
                (Some(k), Flow::Events) => k
                    .of_document(&r.doc)
                    .map(Cow::Owned)
                    .or_else(|| r.user.as_deref().map(Cow::Borrowed)),
                _ => r.user.as_deref().map(Cow::Borrowed),
            },
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
            if let Some(k) = key.as_deref() {
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
