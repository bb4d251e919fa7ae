//! Scanning audit events with a [`RuleSet`]: alerts as ECS documents, and the summary that
//! `tripline scan` prints.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::alert::{AlertTemplate, Merged};
use crate::event::redact::redact_event;
use crate::event::{DecodeError, DecodeStats, Event, SkipReason};
use crate::rules::{Level, Match, RuleSet};

/// One alert: the rule that fired and its ECS document, kept as two parts that serialize as
/// one: the rule's fields (shared by all its alerts) and the fields from the event.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Index of the rule in the rule set.
    pub rule: usize,
    template: Arc<AlertTemplate>,
    fields: Map<String, Value>,
}

impl Alert {
    /// The whole document, as it serializes.
    pub fn document(&self) -> Merged<'_> {
        Merged {
            base: self.template.fields(),
            over: &self.fields,
        }
    }
}

impl serde::Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.document().serialize(s)
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
        // The same parser decoded the event, so this succeeds; if it ever did not, the alert
        // would carry no event and no rendered fields rather than unredacted ones.
        let parsed = crate::event::parse_value(ev.raw());
        let complete = parsed.is_some();
        let mut value = parsed.unwrap_or(Value::Null);
        let secrets = redact_event(&mut value);
        let last = self.matches.len() - 1;
        for (n, m) in self.matches.iter().enumerate() {
            let message = if complete {
                m.rule.render_output_redacted(ev, &secrets)
            } else {
                m.rule.meta.title.clone()
            };
            let template = self.templates[m.index].get_or_insert_with(|| {
                Arc::new(AlertTemplate::new(&m.rule.meta).with_host(self.node_name.as_deref()))
            });
            // The last alert of this event takes the event; earlier ones copy it.
            let event = if n == last {
                std::mem::take(&mut value)
            } else {
                value.clone()
            };
            let fields = AlertTemplate::render_event_fields(
                event,
                &message,
                self.cluster_name.as_deref(),
                m.suppressed,
            );
            emit(Alert {
                rule: m.index,
                template: Arc::clone(template),
                fields,
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
        let doc = alert.document();
        if s.example.is_none() {
            s.example = doc
                .pointer("/message")
                .and_then(Value::as_str)
                .map(String::from);
        }
        let user = doc
            .pointer("/user/name")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        *s.users.entry(user.to_string()).or_default() += 1;
        if let Some(t) = doc
            .pointer("/@timestamp")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            let t = t.with_timezone(&Utc);
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
