//! `tripline rules test`: runs every rule's embedded sample events and reports each failure with
//! what matched.

use std::fmt;

use super::model::{FieldCond, Rule, Selection};
use crate::event::{decode_value_into, Event};

/// One embedded test whose outcome differed from its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub source: String,
    pub line: usize,
    pub rule_id: String,
    pub rule_title: String,
    pub test: String,
    pub expected: bool,
    /// For each detection of the rule: its name and whether it matched (`None` when the event
    /// did not decode).
    pub detections: Option<Vec<(String, bool)>>,
    pub detail: String,
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detections.is_none() {
            return writeln!(
                f,
                "{}:{}: rule `{}` ({}), test `{}`: {}",
                self.source, self.line, self.rule_title, self.rule_id, self.test, self.detail
            );
        }
        writeln!(
            f,
            "{}:{}: rule `{}` ({}), test `{}`: expected {}, got {}",
            self.source,
            self.line,
            self.rule_title,
            self.rule_id,
            self.test,
            if self.expected { "a match" } else { "no match" },
            if self.expected { "no match" } else { "a match" },
        )?;
        if let Some(dets) = &self.detections {
            for (name, hit) in dets {
                writeln!(f, "    {} {name}", if *hit { "+" } else { "-" })?;
            }
        }
        if !self.detail.is_empty() {
            writeln!(f, "    {}", self.detail)?;
        }
        Ok(())
    }
}

fn describe_misses(rule: &Rule, ev: &Event<'_>) -> String {
    // Name the field conditions that did not hold, to show why a positive test missed.
    let mut missed = Vec::new();
    let mut push = |c: &FieldCond| {
        if !c.matches(ev) {
            let vals: Vec<String> = c
                .fields
                .iter()
                .flat_map(|f| ev.values_as_strings(f))
                .collect();
            missed.push(format!("{} (event has {:?})", c.name, vals));
        }
    };
    for s in &rule.selections {
        match s {
            Selection::Map(conds) => conds.iter().for_each(&mut push),
            Selection::AnyOf(maps) => maps.iter().flatten().for_each(&mut push),
            Selection::Keywords(_) | Selection::Falco(_) => {}
        }
    }
    if missed.is_empty() {
        String::new()
    } else {
        format!("conditions that did not hold: {}", missed.join("; "))
    }
}

/// Runs every embedded test of `rules` (detections only: configured exceptions and throttling do
/// not apply). Returns the failures; an empty list means every test passed.
pub fn run_tests(rules: &[Rule]) -> (usize, Vec<TestFailure>) {
    let mut ran = 0;
    let mut failures = Vec::new();
    for rule in rules {
        for t in &rule.tests {
            ran += 1;
            let mut outcome = None;
            let mut decode_err = String::new();
            // The rule as compiled with the test's placeholders, if it has any.
            let rule = t.variant.as_deref().unwrap_or(rule);
            decode_value_into(&t.event_json, &mut |d| match d {
                Ok(ev) => {
                    // An inactive rule is never evaluated: it matches nothing.
                    let hit = rule.is_active() && rule.detection_matches(ev);
                    let dets = rule
                        .names
                        .iter()
                        .zip(&rule.selections)
                        .map(|(n, s)| (n.clone(), s.matches(ev)))
                        .collect::<Vec<_>>();
                    let detail = if t.expect_match && !rule.is_active() {
                        format!(
                            "the rule is inactive: `requires_placeholders` {} empty (give values in the test's `placeholders:`)",
                            rule.empty_placeholders.join(", ")
                        )
                    } else if t.expect_match && !hit {
                        describe_misses(rule, ev)
                    } else {
                        String::new()
                    };
                    outcome = Some((hit, dets, detail));
                }
                Err((reason, msg)) => {
                    decode_err = format!("the test event does not decode ({reason}): {msg}")
                }
            });
            let fail = |detections, detail| TestFailure {
                source: rule.meta.source.clone(),
                line: t.line,
                rule_id: rule.meta.id.clone(),
                rule_title: rule.meta.title.clone(),
                test: t.name.clone(),
                expected: t.expect_match,
                detections,
                detail,
            };
            match outcome {
                Some((hit, _, _)) if hit == t.expect_match => {}
                Some((_, dets, detail)) => failures.push(fail(Some(dets), detail)),
                None => failures.push(fail(None, decode_err)),
            }
        }
    }
    (ran, failures)
}
