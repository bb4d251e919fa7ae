//! The detect stage, shared by `tripline scan` and the daemon: a [`Detector`] runs the rule set
//! over decoded events and turns each match into an [`Alert`] (an ECS document written from the
//! redacted event). [`Report`] sums alerts up for `tripline scan`.
//!
//! The stateful stage (correlation windows, first-seen baselines) belongs here too, after the
//! stateless matching.

pub mod correlate;
mod report;

pub use report::{Report, RuleSummary, MAX_ERRORS_SHOWN};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::alert::{AlertTemplate, AuditFields, EventPart};
use crate::event::redact::redacted_event_json;
use crate::event::Event;
use crate::rules::{Match, RuleSet};

/// One alert: the rule that fired and its ECS document, written as JSON.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Index of the rule in the rule set.
    pub rule: usize,
    doc: Vec<u8>,
    message: String,
    user: Option<String>,
    time: Option<DateTime<Utc>>,
}

impl Alert {
    /// The ECS document, as compact JSON.
    pub fn json(&self) -> &[u8] {
        &self.doc
    }

    pub fn into_json(self) -> Vec<u8> {
        self.doc
    }

    /// The ECS document as a value (parsed from [`Alert::json`]).
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.doc).unwrap_or_default()
    }

    /// `message`: the rendered rule output.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `user.name`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// `@timestamp`.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.time
    }
}

/// Turns events into alerts. Shared by `scan` and the daemon.
pub struct Detector<'r> {
    pub rules: &'r RuleSet,
    pub cluster_name: Option<String>,
    /// `host.name` of alerts (the daemon's node).
    pub node_name: Option<String>,
    /// Events larger than this (bytes of JSON text) are matched whole, but their alerts carry
    /// them reduced ([`crate::alert::with_reduced_event`]): bodies replaced by a marker. `None`:
    /// no limit (`scan`).
    pub max_event_bytes: Option<usize>,
    matches: Vec<Match<'r>>,
    /// Per rule, built on its first alert.
    templates: Vec<Option<Arc<AlertTemplate>>>,
}

impl<'r> Detector<'r> {
    pub fn new(rules: &'r RuleSet, cluster_name: Option<String>) -> Self {
        Detector {
            rules,
            cluster_name,
            node_name: None,
            max_event_bytes: None,
            matches: Vec::new(),
            templates: vec![None; rules.len()],
        }
    }

    /// Runs the rules on `ev` and calls `emit` with each alert. Detection sees the original
    /// event; the alert carries the redacted copy, and its message is scrubbed of every value
    /// that redaction removed. Allocates only when a rule fires.
    pub fn detect(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        self.matches.clear();
        self.rules.matches_into(ev, &mut self.matches);
        if self.matches.is_empty() {
            return;
        }
        if self.max_event_bytes.is_some_and(|max| ev.raw().len() > max) {
            let mut emit = Some(emit);
            let done = crate::alert::with_reduced_event(ev, |small| {
                if let Some(emit) = emit.take() {
                    self.alerts(small, emit);
                }
            });
            if done.is_some() {
                return;
            }
            if let Some(emit) = emit {
                self.alerts(ev, emit);
            }
            return;
        }
        self.alerts(ev, emit);
    }

    /// The alerts of `self.matches`, carrying `ev` (the event matched, or its reduced form).
    fn alerts(&mut self, ev: &Event<'_>, emit: &mut dyn FnMut(Alert)) {
        let (audit, redacted) = redacted_event_json(ev);
        // The same scanner, with the same nesting limit, decoded the event, so its text parses
        // again; if it ever did not, the alert would carry no event, no fields from it and the
        // rule's title as its message, rather than anything unredacted.
        let fields = AuditFields::of_redacted(ev, &redacted);
        let time = fields.time().map(|(_, t)| t);
        for m in &self.matches {
            let message = if redacted.complete {
                m.rule.render_output_redacted(ev, &redacted.secrets)
            } else {
                m.rule.meta.title.clone()
            };
            let template = self.templates[m.index].get_or_insert_with(|| {
                Arc::new(AlertTemplate::new(&m.rule.meta).with_host(self.node_name.as_deref()))
            });
            let doc = EventPart {
                fields: &fields,
                message: &message,
                cluster_name: self.cluster_name.as_deref(),
                suppressed: m.suppressed,
                audit: &audit,
            }
            .document(template);
            emit(Alert {
                rule: m.index,
                doc,
                user: fields.username.map(String::from),
                message,
                time,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::render_alert;
    use crate::event::decode_value_into;
    use crate::event::redact::redact_event;

    /// The alert the detector writes is the document built from the redacted event as a value,
    /// field for field.
    #[test]
    fn alerts_are_the_documents_of_their_redacted_events() {
        let set = RuleSet::new(crate::rules::RulesConfig::default().load(&[], true).rules);
        let events = [
            // A secret read with a token in the URI (`url.original` is the redacted one).
            r#"{"kind":"Event","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db?access_token=abcdefgh123","verb":"get","user":{"username":"mallory","groups":["dev","system:authenticated"]},"sourceIPs":["203.0.113.9","10.0.0.1"],"userAgent":"curl/8.0","objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"code":200},"responseObject":{"kind":"Secret","data":{"password":"aHVudGVyMg=="}},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}"#,
            // An exec, pretty-printed, with escapes and an unknown member.
            "{\n  \"kind\": \"Event\", \"stage\": \"ResponseStarted\", \"verb\": \"create\",\n  \"requestURI\": \"/api/v1/namespaces/p/pods/x/exec?command=sh\",\n  \"user\": {\"username\": \"al\\u0069ce\"}, \"sourceIPs\": [\"192.0.2.1\"],\n  \"objectRef\": {\"resource\": \"pods\", \"subresource\": \"exec\", \"namespace\": \"p\", \"name\": \"x\"},\n  \"responseStatus\": {\"code\": 101}, \"x-extra\": [1, 2.50, null],\n  \"stageTimestamp\": \"2026-01-02T03:04:05Z\"\n}",
            // Anonymous access with a bearer token in an annotation.
            r#"{"kind":"Event","stage":"ResponseComplete","verb":"list","requestURI":"/api/v1/pods","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["198.51.100.4"],"objectRef":{"resource":"pods"},"responseStatus":{"code":200},"annotations":{"authorization.k8s.io/decision":"allow","note":"Authorization: Bearer abcdefghijklmnop"},"stageTimestamp":"2026-01-02T03:04:05Z"}"#,
        ];
        let mut seen = 0;
        for text in events {
            let mut detector = Detector::new(&set, Some("prod".into()));
            detector.node_name = Some("cp-1".into());
            decode_value_into(text, &mut |d| {
                let ev = d.unwrap();
                detector.detect(ev, &mut |a| {
                    seen += 1;
                    let mut event = crate::event::parse_value(text).unwrap();
                    redact_event(&mut event);
                    let meta = &set.rules()[a.rule].meta;
                    let want = AlertTemplate::new(meta).with_host(Some("cp-1")).render(
                        event.clone(),
                        a.message(),
                        Some("prod"),
                        0,
                    );
                    assert_eq!(a.to_value(), want, "{text}");
                    // And what building the document field by field from the value gave.
                    assert_eq!(
                        want,
                        crate::alert::reference::render(
                            &AlertTemplate::new(meta).with_host(Some("cp-1")),
                            event.clone(),
                            a.message(),
                            Some("prod"),
                            0
                        )
                    );
                    assert_eq!(want, {
                        let mut w = render_alert(&event, meta, a.message(), Some("prod"), 0);
                        w["host"] = serde_json::json!({"name": "cp-1"});
                        w
                    });
                    assert!(crate::event::unique_keys(
                        std::str::from_utf8(a.json()).unwrap()
                    ));
                    let doc = a.to_value();
                    for secret in ["aHVudGVyMg==", "abcdefgh123", "abcdefghijklmnop"] {
                        assert!(!String::from_utf8_lossy(a.json()).contains(secret), "{doc}");
                    }
                    assert_eq!(a.user(), doc["user"]["name"].as_str());
                    assert_eq!(
                        a.time().map(|t| t.to_rfc3339()),
                        doc["@timestamp"]
                            .as_str()
                            .map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_rfc3339())
                    );
                });
            });
        }
        assert!(seen >= 3, "{seen} alerts");
    }
}
