//! Scanning audit events with a [`RuleSet`]: alerts as ECS documents, and the summary that
//! `tripline scan` prints.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::alert::{AlertTemplate, AuditFields, EventPart};
use crate::event::redact::redacted_event_json;
use crate::event::{DecodeError, DecodeStats, Event, SkipReason};
use crate::rules::{Level, Match, RuleSet};

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

/// Per-rule totals for the report.
#[derive(Debug, Default, Clone)]
pub struct RuleSummary {
    pub alerts: u64,
    /// The message of the first alert.
    pub example: Option<String>,
    pub users: HashMap<String, u64>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

/// Everything `tripline scan` reports.
#[derive(Debug, Default)]
pub struct Report {
    pub stats: DecodeStats,
    pub per_rule: BTreeMap<usize, RuleSummary>,
    pub errors_shown: Vec<DecodeError>,
    pub inputs: usize,
}

/// How many decode errors a report lists one by one.
pub const MAX_ERRORS_SHOWN: usize = 20;

impl Report {
    pub fn record_alert(&mut self, alert: &Alert) {
        let s = self.per_rule.entry(alert.rule).or_default();
        s.alerts += 1;
        if s.example.is_none() {
            s.example = Some(alert.message().to_string()).filter(|m| !m.is_empty());
        }
        let user = alert.user().unwrap_or("<none>");
        *s.users.entry(user.to_string()).or_default() += 1;
        if let Some(t) = alert.time() {
            s.first = Some(s.first.map_or(t, |f| f.min(t)));
            s.last = Some(s.last.map_or(t, |l| l.max(t)));
        }
    }

    pub fn record_error(&mut self, e: DecodeError) {
        if self.errors_shown.len() < MAX_ERRORS_SHOWN {
            self.errors_shown.push(e);
        }
    }

    pub fn alerts_total(&self) -> u64 {
        self.per_rule.values().map(|s| s.alerts).sum()
    }

    /// The readable report: alerts grouped by severity then rule, with counts, top users and
    /// first/last time; then the totals of what was read and skipped.
    pub fn render_text(&self, rules: &RuleSet, suppressed_total: u64) -> String {
        let mut out = String::new();
        let mut rows: Vec<(&usize, &RuleSummary)> = self.per_rule.iter().collect();
        rows.sort_by(|a, b| {
            let la = rules.rules()[*a.0].meta.level;
            let lb = rules.rules()[*b.0].meta.level;
            lb.cmp(&la).then(b.1.alerts.cmp(&a.1.alerts))
        });
        let mut current: Option<Level> = None;
        if rows.is_empty() {
            out.push_str("No alerts.\n");
        }
        for (idx, s) in rows {
            let rule = &rules.rules()[*idx];
            if current != Some(rule.meta.level) {
                current = Some(rule.meta.level);
                let _ = writeln!(out, "\n== {} ==", rule.meta.level.as_str().to_uppercase());
            }
            let _ = write!(out, "{:>6}  {}", s.alerts, rule.meta.title);
            let throttled = rules.suppressed(*idx);
            if throttled > 0 {
                let _ = write!(out, "  (+{throttled} throttled)");
            }
            let _ = writeln!(out, "  [{}]", rule.meta.id);
            let mut users: Vec<(&String, &u64)> = s.users.iter().collect();
            users.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = users
                .iter()
                .take(3)
                .map(|(u, n)| format!("{u} ({n})"))
                .collect();
            if let Some(e) = &s.example {
                let _ = writeln!(out, "        e.g.:  {e}");
            }
            let _ = writeln!(out, "        users: {}", top.join(", "));
            if let (Some(f), Some(l)) = (s.first, s.last) {
                let fmt = "%Y-%m-%dT%H:%M:%SZ";
                let _ = writeln!(
                    out,
                    "        first: {}  last: {}",
                    f.format(fmt),
                    l.format(fmt)
                );
            }
        }
        let st = &self.stats;
        let _ = writeln!(
            out,
            "\n{} alerts from {} rules ({} more matches throttled); {} events read from {} lines, {} bytes in {} inputs.",
            self.alerts_total(),
            self.per_rule.len(),
            suppressed_total,
            st.events,
            st.lines,
            st.bytes,
            self.inputs
        );
        if st.skipped_total() > 0 {
            let parts: Vec<String> = SkipReason::ALL
                .iter()
                .filter(|r| st.skipped(**r) > 0)
                .map(|r| format!("{} {}", st.skipped(*r), r))
                .collect();
            let _ = writeln!(out, "Skipped {}: {}.", st.skipped_total(), parts.join(", "));
        }
        if st.bodies_omitted > 0 {
            let _ = writeln!(
                out,
                "Bodies replaced by `skipped-too-big-size-object` (AKS) in {} events: rules on fields inside them could not match.",
                st.bodies_omitted
            );
        }
        out
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
        let set = RuleSet::new(
            crate::rules::load_configured(&crate::config::Config::default(), &[], true).rules,
        );
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
