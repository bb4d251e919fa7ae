//! Alerts as Elastic Common Schema documents (DESIGN.md principle 6).
//!
//! [`render_alert`] turns a rule match into an ECS 8.11 document: the ECS fields Kibana / Elastic
//! Security, OpenSearch and Splunk users know (`event.*`, `rule.*`, `threat.*`, `user.*`,
//! `source.*`, `orchestrator.*`, ...), tripline's own fields under `tripline.*`, and the whole
//! (already redacted) audit event under `kubernetes.audit`.
//!
//! A derived field is omitted when its source is absent, empty or of the wrong type: the derived
//! fields never contain JSON `null`. `kubernetes.audit` is the event exactly as given (a `null`
//! there is the API server's, e.g. a merge patch removing a key, and is kept as evidence).
//!
//! `auditID` comes from a client header and is not trusted (principle 8): it is not copied into
//! any ECS field such as `event.id`; document ids are the sinks' business.

//!
//! The module is split by job: [`AlertTemplate`] (the part of a document that depends only on
//! the rule) here, the ECS fields taken from an event in `fields`, the JSON writer in `writer`
//! and the ATT&CK catalogue in `attack`.

mod attack;
pub mod buffers;
pub mod falco;
mod fields;
mod writer;

#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;

pub use attack::threat_from_tags;
pub use falco::{to_falco, to_falco_bytes};
pub use fields::AuditFields;
pub use writer::{
    with_reduced_event, write_document, write_event_document, write_reduced_event_document,
    EventPart, OMITTED_BODY,
};

use serde_json::{json, Map, Value};

use crate::event::write_json_str;
use crate::rules::model::{Level, RuleMeta};

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// Builds the ECS alert document. `event` is the already-redacted audit event (`serde_json::Value`
/// of the whole event).
///
/// `message` is the rendered rule output (already scrubbed). `suppressed` is the number of matches
/// of this rule+key suppressed by throttling since the previous alert (0 if none).
///
/// Field sources:
///
/// * `@timestamp`: `stageTimestamp`, else `requestReceivedTimestamp`, else the legacy `timestamp`
///   (the first that is a valid RFC 3339 timestamp; omitted if none is, since a malformed date
///   would make Elasticsearch reject the whole document). `event.start`:
///   `requestReceivedTimestamp`.
/// * `event.category` (one value, first match wins):
///   `authentication` when the user is anonymous (`system:anonymous` or group
///   `system:unauthenticated`) or the response is 401; `iam` for `rbac.authorization.k8s.io`
///   resources, `serviceaccounts`, `tokenreviews` and `certificatesigningrequests`; `process` for
///   `pods/exec` and `pods/attach`; `configuration` otherwise.
/// * `event.type` from the verb: `creation` (create), `change` (update, patch), `deletion`
///   (delete, deletecollection), `access` (get, list, watch), `info` otherwise.
/// * `event.outcome` from `responseStatus.code`: `success` below 400, `failure` from 400, `unknown`
///   when there is no (valid, 100..=599) status code.
/// * `source.ip` is the last entry of `sourceIPs`, the address of the peer that connected to the
///   API server; earlier entries come from `X-Forwarded-For` / `X-Real-Ip`, which the client
///   controls. All valid entries go to `related.ip`. Entries that are not IP addresses are skipped
///   (an `ip` field would reject the document).
pub fn render_alert(
    event: &Value,
    rule: &RuleMeta,
    message: &str,
    cluster_name: Option<&str>,
    suppressed: u64,
) -> Value {
    AlertTemplate::new(rule).render(event.clone(), message, cluster_name, suppressed)
}

/// The part of an alert that depends only on the rule (`rule.*`, `threat.*`, severity, ECS
/// constants), built once per rule and reused for each of its alerts, kept both as fields and
/// as the JSON text [`write_document`] splices into each document.
#[derive(Debug, Clone)]
pub struct AlertTemplate {
    fields: Map<String, Value>,
    /// The members of `event`, written (without braces).
    event_members: Vec<u8>,
    /// The members of `tripline`, written (without braces).
    tripline_members: Vec<u8>,
    /// The other top-level members, written (without braces).
    other_members: Vec<u8>,
}

impl AlertTemplate {
    pub fn new(rule: &RuleMeta) -> AlertTemplate {
        let mut doc = Doc::default();
        doc.set("event.kind", "alert");
        level_fields(&mut doc, rule.level);
        doc.set("event.module", "kubernetes");
        doc.set("event.dataset", "kubernetes.audit");
        doc.set("event.provider", "kube-apiserver");
        rule_fields(&mut doc, rule);
        if let Some(threat) = threat_from_tags(&rule.tags) {
            doc.set("threat", threat);
        }
        doc.set("ecs.version", ECS_VERSION);
        AlertTemplate::of(doc.0)
    }

    /// The template of the `events` flow: the same ECS fields as an alert (`@timestamp`,
    /// `user.*`, `source.*`, `event.*`, `kubernetes.audit`) with `event.kind: event` and no rule,
    /// so alerts and events share one index mapping and one set of dashboards.
    pub fn for_events() -> AlertTemplate {
        let mut doc = Doc::default();
        doc.set("event.kind", "event");
        doc.set("event.module", "kubernetes");
        doc.set("event.dataset", "kubernetes.audit");
        doc.set("event.provider", "kube-apiserver");
        doc.set("ecs.version", ECS_VERSION);
        AlertTemplate::of(doc.0)
    }

    fn of(fields: Map<String, Value>) -> AlertTemplate {
        let members = |map: &Map<String, Value>, skip: &[&str]| {
            let mut out = Vec::new();
            for (k, v) in map.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                if !out.is_empty() {
                    out.push(b',');
                }
                write_json_str(&mut out, k);
                out.push(b':');
                // Writing a `Value` to a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut out, v);
            }
            out
        };
        let inner = |key: &str| match fields.get(key) {
            Some(Value::Object(m)) => members(m, &[]),
            _ => Vec::new(),
        };
        AlertTemplate {
            event_members: inner("event"),
            tripline_members: inner("tripline"),
            other_members: members(&fields, &["event", "tripline"]),
            fields,
        }
    }

    /// Adds `host.name`: the node whose API server wrote the event (the daemon's `node_name`).
    pub fn with_host(self, node_name: Option<&str>) -> AlertTemplate {
        match node_name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let mut doc = Doc(self.fields);
                doc.set("host.name", n);
                AlertTemplate::of(doc.0)
            }
            None => self,
        }
    }

    /// Builds the alert for one (redacted) event, taking ownership of it for
    /// `kubernetes.audit`. See [`render_alert`] for the fields.
    pub fn render(
        &self,
        event: Value,
        message: &str,
        cluster_name: Option<&str>,
        suppressed: u64,
    ) -> Value {
        let mut audit = Vec::new();
        // Writing a `Value` to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut audit, &event);
        let mut doc = Vec::new();
        let part = EventPart {
            fields: &AuditFields::of_value(&event),
            message,
            cluster_name,
            suppressed,
            audit: &audit,
        };
        write_document(&mut doc, self, &part);
        serde_json::from_slice(&doc).unwrap_or_default()
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Room for a whole document around an audit event of `audit` bytes (the event's own ECS
    /// fields take a few hundred).
    fn document_capacity(&self, audit: usize) -> usize {
        audit
            + self.other_members.len()
            + self.event_members.len()
            + self.tripline_members.len()
            + 1024
    }
}

fn level_fields(doc: &mut Doc, level: Level) {
    doc.set("event.severity", level.severity());
    doc.set("event.risk_score", level.severity());
    doc.set("tripline.rule.level", level.as_str());
}

fn rule_fields(doc: &mut Doc, rule: &RuleMeta) {
    doc.set_str("rule.id", Some(&rule.id));
    doc.set_str("rule.name", Some(&rule.title));
    doc.set_str("rule.description", rule.description.as_deref());
    doc.set_str("rule.ruleset", Some(&rule.ruleset));
    doc.set_str(
        "rule.reference",
        rule.references.first().map(String::as_str),
    );
    // Sigma `author` is one string, often a comma-separated list; ECS `rule.author` is a list.
    // `rule.version` is omitted: Sigma rules have no version, and `date`/`modified` are dates.
    let authors: Vec<&str> = rule
        .author
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    doc.set_list("rule.author", &authors);
    doc.set_list("tripline.rule.tags", &rule.tags);
    doc.set_list("tripline.rule.falsepositives", &rule.falsepositives);
}

/// The document being built: nested objects addressed by dotted paths.
#[derive(Default)]
struct Doc(Map<String, Value>);

impl Doc {
    /// Sets the field at a dotted path (`event.kind`), creating parent objects. `null` is never
    /// stored.
    fn set(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        if !value.is_null() {
            insert_path(&mut self.0, path, value);
        }
    }

    fn set_opt(&mut self, path: &str, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.set(path, value);
        }
    }

    /// Sets a string field unless the string is absent or empty.
    fn set_str(&mut self, path: &str, value: Option<&str>) {
        self.set_opt(path, value.filter(|s| !s.is_empty()));
    }

    /// Sets a list field unless the list is empty.
    fn set_list<T: AsRef<str>>(&mut self, path: &str, items: &[T]) {
        if !items.is_empty() {
            let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
            self.set(path, json!(items));
        }
    }
}

fn insert_path(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            // Looked up before inserting, so that the key is allocated only when it is new.
            if !matches!(map.get(head), Some(Value::Object(_))) {
                map.insert(head.to_owned(), Value::Object(Map::new()));
            }
            if let Some(Value::Object(child)) = map.get_mut(head) {
                insert_path(child, rest, value);
            }
        }
    }
}
