//! Falco rules as tripline [`Rule`]s: one selection holding the compiled condition, the
//! `output` format as output parts, and what a Falco-shaped alert needs ([`FalcoInfo`]). They
//! join the Sigma rules in one [`crate::rules::RuleSet`]: the same index (by the verbs and
//! resources a condition requires), alerts, redaction and sinks.

use std::sync::Arc;

use super::fields::{resolve, Field};
use super::loader::{FalcoRule, FalcoRules, Priority};
use super::FalcoCond;
use crate::rules::model::{OutputPart, Rule, RuleMeta, Selection};
use crate::rules::{Expr, RuleError};

/// Which Falco rules alert when several match one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMatching {
    /// The first matching rule in load order (Falco's default).
    #[default]
    First,
    /// Every matching rule.
    All,
}

/// What a Falco rule keeps for Falco-shaped alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct FalcoInfo {
    /// `priority`, as Falco names it in alerts.
    pub priority: Priority,
    /// The fields of `output`, each once, in order (the alert's `output_fields`).
    pub output_fields: Vec<Field>,
    /// `source`.
    pub source: String,
}

/// The prefix of the id of a rule loaded from a Falco rules file (Falco rules have names,
/// not ids): `falco:<rule name>`.
pub const ID_PREFIX: &str = "falco:";

/// The enabled rules of `loaded`, as tripline rules. A rule whose `output` names a field
/// the plugins do not define is an error at its item.
pub fn to_rules(loaded: &FalcoRules) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for r in loaded.enabled() {
        match to_rule(r) {
            Ok(rule) => rules.push(rule),
            Err(message) => errors.push(RuleError {
                source: r.file.clone(),
                line: r.line,
                message: format!("rule '{}': {message}", r.name),
            }),
        }
    }
    (rules, errors)
}

fn to_rule(r: &FalcoRule) -> Result<Rule, String> {
    let (output, output_fields) = parse_output(&r.output)?;
    Ok(Rule {
        meta: RuleMeta {
            id: format!("{ID_PREFIX}{}", r.name),
            title: r.name.clone(),
            description: Some(r.desc.trim().to_string()).filter(|d| !d.is_empty()),
            status: None,
            author: None,
            date: None,
            modified: None,
            level: r.level,
            tags: r.tags.clone(),
            references: Vec::new(),
            falsepositives: Vec::new(),
            source: r.file.clone(),
            ruleset: "falco".into(),
        },
        names: vec!["condition".into()],
        selections: vec![Selection::Falco(Arc::new(FalcoCond::new(&r.condition)))],
        condition: Expr::Sel(0),
        exceptions: Vec::new(),
        output: Some(output),
        throttle: None,
        first_seen: None,
        tests: Vec::new(),
        line: r.line,
        requires_placeholders: Vec::new(),
        empty_placeholders: Vec::new(),
        once_per_request: false,
        several_stages: false,
        name: Some(r.name.clone()),
        alerts: true,
        falco: Some(Box::new(FalcoInfo {
            priority: r.priority,
            output_fields,
            source: r.source.clone(),
        })),
    })
}

/// Falco's `output` format: literal text with `%field` and `%field[argument]` references
/// (libsinsp's formatter; `%%` is a literal `%`). Returns the parts and the distinct fields.
pub fn parse_output(text: &str) -> Result<(Vec<OutputPart>, Vec<Field>), String> {
    let mut parts = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut lit = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'%' {
            let ch = text[i..].chars().next().unwrap_or_default();
            lit.push(ch);
            i += ch.len_utf8();
            continue;
        }
        if bytes.get(i + 1) == Some(&b'%') {
            lit.push('%');
            i += 2;
            continue;
        }
        // `%(field)` is the same as `%field`.
        let paren = bytes.get(i + 1) == Some(&b'(');
        let start = i + 1 + usize::from(paren);
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || b"._-".contains(&bytes[end]))
        {
            end += 1;
        }
        // A trailing `.` ends a sentence, not a field name.
        while end > start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        if end == start {
            lit.push('%');
            i += 1;
            continue;
        }
        let name = &text[start..end];
        let mut arg = None;
        let mut next = end;
        if bytes.get(end) == Some(&b'[') {
            let close = text[end..]
                .find(']')
                .ok_or_else(|| format!("output: unclosed `[` after %{name}"))?;
            arg = Some(&text[end + 1..end + close]);
            next = end + close + 1;
        }
        if paren {
            if bytes.get(next) != Some(&b')') {
                return Err(format!("output: unclosed `(` before {name}"));
            }
            next += 1;
        }
        let field = resolve(name, arg).map_err(|e| format!("output: {e}"))?;
        if !lit.is_empty() {
            parts.push(OutputPart::Lit(std::mem::take(&mut lit)));
        }
        if !fields.contains(&field) {
            fields.push(field.clone());
        }
        parts.push(OutputPart::Falco(field));
        i = next;
    }
    if !lit.is_empty() {
        parts.push(OutputPart::Lit(lit));
    }
    Ok((parts, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_resolve_their_fields() {
        let (parts, fields) =
            parse_output("Pod created (user=%ka.user.name image=%ka.req.pod.containers.image[0] uri=%(ka.uri)) 100%% %ka.user.name.")
                .unwrap();
        let names: Vec<String> = fields.iter().map(|f| f.def.name.to_string()).collect();
        assert_eq!(
            names,
            ["ka.user.name", "ka.req.pod.containers.image", "ka.uri"]
        );
        assert_eq!(parts.len(), 9, "{parts:?}");
        assert_eq!(parts[0], OutputPart::Lit("Pod created (user=".into()));
        assert_eq!(parts[6], OutputPart::Lit(") 100% ".into()));
        assert_eq!(parts[8], OutputPart::Lit(".".into()));
        let e = parse_output("x %ka.nope y").unwrap_err();
        assert!(e.contains("ka.nope"), "{e}");
    }
}
