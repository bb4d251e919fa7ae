//! Kafka: alerts and events to topics through librdkafka's idempotent producer. A record counts
//! as delivered when its delivery report says the broker stored it (`acks=all`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::types::{HumanDuration, Secret};
use crate::event::{FieldPath, FieldRef, FieldValue};
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
    /// partition), `rule` (alerts by rule id, events by user), `id` (the record id), `none`,
    /// or `{fields: [user.username, ...]}` (events by the values of these audit-event fields,
    /// after the cluster name of the event when it has one; alerts by user): the key a
    /// detection tier is partitioned by.
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
        if let KeyChoice::Fields(fields) = &self.key {
            p.extend(key_field_problems(fields));
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

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyChoice {
    #[default]
    User,
    Rule,
    Id,
    None,
    /// `{fields: [...]}`: events keyed by these fields ([`FieldKey`]).
    Fields(Vec<String>),
}

/// The most fields a `key: {fields}` may name.
const MAX_KEY_FIELDS: usize = 8;

/// Problems of the fields of a `key: {fields}`, each `key.fields[i]: message`: a path that does
/// not parse, or a field whose value redaction can change ([`FieldRef::may_be_redacted`]). The
/// key is read from the redacted event that is forwarded, and a detection tier partitioned by
/// it groups the events it sees by the same field: a field redaction rewrites would key and
/// group by a value the rules never saw.
pub fn key_field_problems(fields: &[String]) -> Vec<String> {
    let mut p = Vec::new();
    if fields.is_empty() {
        p.push("key.fields: at least one field is required".to_string());
    }
    if fields.len() > MAX_KEY_FIELDS {
        p.push(format!(
            "key.fields: at most {MAX_KEY_FIELDS} fields, not {}",
            fields.len()
        ));
    }
    for (i, f) in fields.iter().enumerate() {
        match FieldPath::parse(f) {
            Err(e) => p.push(format!("key.fields[{i}]: `{f}`: {e}")),
            Ok(path) if FieldRef::resolve(&path).may_be_redacted() => p.push(format!(
                "key.fields[{i}]: `{f}` can be changed by redaction (requestURI, annotations, \
                 user.extra, request and response bodies, fields tripline does not type): \
                 key by fields every copy of an event has as it was logged, such as \
                 user.username, sourceIPs or objectRef.namespace"
            )),
            Ok(_) => {}
        }
    }
    p
}

/// The message key of events-flow documents for a `key: {fields}`: the event's cluster name
/// (stamped in its document) when it has one, then each field's values (several values of one
/// field joined by `,`), separated by `|`: `prod-eu|alice@example.com`. A missing field is an
/// empty value, so events without it share one key.
#[derive(Debug, Clone)]
pub struct FieldKey {
    fields: Vec<FieldRef>,
}

impl FieldKey {
    /// The key of `fields`; `None` if one does not parse (refused by
    /// [`KafkaSinkConfig::validate`]).
    pub fn new(fields: &[String]) -> Option<FieldKey> {
        let fields = fields
            .iter()
            .map(|f| FieldPath::parse(f).ok().map(|p| FieldRef::resolve(&p)))
            .collect::<Option<Vec<_>>>()?;
        Some(FieldKey { fields })
    }

    /// The key of the events-flow document `doc` (the redacted event it holds, and its
    /// cluster); `None` if `doc` holds no audit event. Decodes the document (borrowing from
    /// it) and allocates the key only.
    pub fn of_document(&self, doc: &[u8]) -> Option<String> {
        let text = crate::event::utf8(doc).ok()?;
        let mut key = None;
        crate::event::decode_value_into(text, &mut |d| {
            if let (Ok(ev), None) = (d, &key) {
                key = Some(self.of_event(ev));
            }
        });
        key
    }

    /// The key of `ev`.
    pub fn of_event(&self, ev: &crate::event::Event<'_>) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Some(cluster) = ev.cluster() {
            out.push_str(cluster);
            out.push('|');
        }
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            let mut n = 0;
            ev.any_value(f, &mut |v| {
                let at = out.len();
                if n > 0 {
                    out.push(',');
                }
                let _ = match v {
                    FieldValue::Str(s) => out.write_str(s),
                    FieldValue::Int(i) => write!(out, "{i}"),
                    FieldValue::Float(x) => write!(out, "{x}"),
                    FieldValue::Bool(b) => write!(out, "{b}"),
                    FieldValue::Null | FieldValue::Object => {
                        out.truncate(at);
                        return false;
                    }
                };
                n += 1;
                false
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::config::{SinkConfig, SinkKind};

    fn kafka(yaml: &str) -> KafkaSinkConfig {
        let cfg: SinkConfig = serde_yaml::from_str(yaml).unwrap();
        match cfg.kind {
            SinkKind::Kafka(k) => k,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_is_a_name_or_a_field_list() {
        let k = kafka("type: kafka\nbrokers: [b:9092]\nkey: id\n");
        assert_eq!(k.key, KeyChoice::Id);
        let k = kafka("type: kafka\nbrokers: [b:9092]\n");
        assert_eq!(k.key, KeyChoice::User);
        let k = kafka(
            "type: kafka\nbrokers: [b:9092]\nflows: [events]\nkey: {fields: [user.username, sourceIPs]}\n",
        );
        assert_eq!(
            k.key,
            KeyChoice::Fields(vec!["user.username".into(), "sourceIPs".into()])
        );
        let p = k.validate();
        assert!(!p.iter().any(|p| p.starts_with("key")), "{p:?}");
    }

    #[test]
    fn key_fields_that_redaction_can_change_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "key.fields: at least one field is required"),
            (
                &["requestURI"],
                "key.fields[0]: `requestURI` can be changed by redaction",
            ),
            (
                &["user.username", "annotations.note"],
                "key.fields[1]: `annotations.note` can be changed by redaction",
            ),
            (
                &["requestObject.metadata.name"],
                "key.fields[0]: `requestObject.metadata.name` can be changed",
            ),
            (
                &["responseObject"],
                "key.fields[0]: `responseObject` can be changed",
            ),
            (
                &["user.extra.scopes"],
                "key.fields[0]: `user.extra.scopes` can be changed",
            ),
            (
                &["no.such.field"],
                "key.fields[0]: `no.such.field` can be changed",
            ),
            (&["user..username"], "key.fields[0]: `user..username`: "),
        ];
        for (fields, want) in cases {
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            let p = key_field_problems(&fields);
            assert_eq!(p.len(), 1, "{fields:?}: {p:?}");
            assert!(p[0].starts_with(want), "{fields:?}: {p:?}");
        }
        for ok in [
            "user.username",
            "sourceIPs",
            "objectRef.namespace",
            "user.groups",
            "impersonatedUser.username",
            "userAgent",
        ] {
            assert_eq!(
                key_field_problems(&[ok.to_string()]),
                Vec::<String>::new(),
                "{ok}"
            );
        }
    }

    #[test]
    fn field_keys_start_with_the_cluster_and_join_values() {
        let ev = r#"{"kind":"Event","auditID":"a","verb":"get","user":{"username":"alice","groups":["dev","ops"]},"sourceIPs":["192.0.2.1"],"responseStatus":{"code":200},"stageTimestamp":"2026-01-02T03:04:05Z"}"#;
        let key = FieldKey::new(&[
            "user.username".into(),
            "user.groups".into(),
            "responseStatus.code".into(),
            "objectRef.namespace".into(),
        ])
        .unwrap();
        let doc = |cluster: Option<&str>| {
            let mut doc = None;
            crate::event::decode_value_into(ev, &mut |d| {
                doc = Some(crate::alert::write_event_document(
                    &crate::alert::AlertTemplate::for_events(),
                    d.unwrap(),
                    cluster,
                ));
            });
            doc.unwrap()
        };
        assert_eq!(
            key.of_document(&doc(Some("prod-eu"))).as_deref(),
            Some("prod-eu|alice|dev,ops|200|")
        );
        assert_eq!(
            key.of_document(&doc(None)).as_deref(),
            Some("alice|dev,ops|200|")
        );
        assert_eq!(key.of_document(b"{\"not\":\"an event\"}"), None);
        assert_eq!(key.of_document(b"\xff"), None);
    }
}
