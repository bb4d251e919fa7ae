//! What `tripline scan` reports: per-rule totals of the alerts a [`Detector`](super::Detector)
//! raised, and what was read and skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::Alert;
use crate::event::{DecodeError, DecodeStats, SkipReason};
use crate::rules::{Level, RuleSet};

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
            let la = rules.meta(*a.0).level;
            let lb = rules.meta(*b.0).level;
            lb.cmp(&la).then(b.1.alerts.cmp(&a.1.alerts))
        });
        let mut current: Option<Level> = None;
        if rows.is_empty() {
            out.push_str("No alerts.\n");
        }
        for (idx, s) in rows {
            let meta = rules.meta(*idx);
            if current != Some(meta.level) {
                current = Some(meta.level);
                let _ = writeln!(out, "\n== {} ==", meta.level.as_str().to_uppercase());
            }
            let _ = write!(out, "{:>6}  {}", s.alerts, meta.title);
            let throttled = rules.suppressed(*idx);
            if throttled > 0 {
                let _ = write!(out, "  (+{throttled} throttled)");
            }
            let _ = writeln!(out, "  [{}]", meta.id);
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
