//! Sigma correlation rules (specification v2): the compiled form of a `correlation:` document.
//!
//! A correlation refers to base rules (and other correlations) by `id` or `name`, groups their
//! matches by `group-by` fields (through `aliases` where the field differs per rule), and
//! fires when its `condition` holds within `timespan` of event time. The stateful engine that
//! evaluates them lives in the detect stage (`detect::correlate`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_yaml::Value as Yaml;

use super::model::{Rule, RuleMeta};
use super::sigma::{
    compile_field_ref, compile_meta, compile_name, str_list, yaml_str, Ctx, RuleError,
};
use crate::config::types::parse_duration;
use crate::event::FieldRef;

/// `correlation.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelationKind {
    /// Count of matching events per group.
    EventCount,
    /// Count of distinct values of `condition.field` per group.
    ValueCount,
    /// Every referenced rule matched for the group within the timespan, in any order.
    Temporal,
    /// Every referenced rule matched for the group within the timespan, in the listed order.
    TemporalOrdered,
}

impl CorrelationKind {
    /// The name as written in `correlation.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationKind::EventCount => "event_count",
            CorrelationKind::ValueCount => "value_count",
            CorrelationKind::Temporal => "temporal",
            CorrelationKind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// `correlation.condition`: one or more bounds, all of which must hold (a range is `gt` with
/// `lte`, for example).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountCondition {
    pub gt: Option<u64>,
    pub gte: Option<u64>,
    pub lt: Option<u64>,
    pub lte: Option<u64>,
    pub eq: Option<u64>,
}

impl CountCondition {
    /// True if `n` satisfies every bound.
    pub fn holds(&self, n: u64) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
            && self.eq.is_none_or(|b| n == b)
    }

    /// True if the condition has only lower bounds (`gt`, `gte`): it can be decided as soon as
    /// it holds, without waiting for the window to close.
    pub fn only_lower_bounds(&self) -> bool {
        self.lt.is_none() && self.lte.is_none() && self.eq.is_none()
    }

    /// The smallest count that satisfies the lower bounds (what a group must keep to decide a
    /// lower-bound-only condition); `None` if there is no lower bound.
    pub fn min_count(&self) -> Option<u64> {
        match (self.gt.map(|b| b.saturating_add(1)), self.gte) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a correlation counts: a base rule (index in the rule set) or another correlation
/// (index among the correlations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelationInput {
    Rule(usize),
    Correlation(usize),
}

/// One `group-by` entry: its name as written (an alias or a field), and for each input (in the
/// order of [`Correlation::inputs`]) the field it reads. For an input that is a correlation,
/// the value is that correlation's group value of the same name, and `per_input` holds `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupField {
    pub name: String,
    pub per_input: Vec<Option<FieldRef>>,
}

/// A compiled correlation rule.
#[derive(Debug, Clone)]
pub struct Correlation {
    /// Title, id, level, tags... as for a rule. `source` is where it was loaded from.
    pub meta: RuleMeta,
    /// The Sigma `name`, if any.
    pub name: Option<String>,
    pub kind: CorrelationKind,
    /// `correlation.rules`, resolved, in the order written (the order that `temporal_ordered`
    /// requires).
    pub inputs: Vec<CorrelationInput>,
    pub group_by: Vec<GroupField>,
    /// `condition.field` of a `value_count`, per input (aliases apply), as in
    /// [`GroupField::per_input`].
    pub value_field: Option<GroupField>,
    /// `correlation.timespan`.
    pub timespan: std::time::Duration,
    /// For `temporal` and `temporal_ordered` without a condition: `gte` the number of inputs.
    pub condition: CountCondition,
    /// `generate`: the referenced rules also alert on their own.
    pub generate: bool,
    /// Line of the document in its source (of `id:`, or of `title:` without an id).
    pub line: usize,
    /// `correlation.rules` as written (ids or names), in order.
    pub references: Vec<String>,
    /// The correlation alerts on its own: false if and only if other correlations refer to it
    /// and none of them has `generate: true`.
    pub alerts: bool,
    /// Why the correlation is inactive: the referenced rules or correlations that are disabled
    /// or inactive (`rule `x` is inactive`, `` `x` is disabled ``). While any is, the correlation
    /// is loaded but must not be evaluated, and [`Correlation::inputs`] leaves out the disabled
    /// references.
    pub inactive: Vec<String>,
    /// Embedded tests (a tripline extension, like a rule's `tests`): event sequences and
    /// whether the correlation alerts on them.
    pub tests: Vec<CorrelationTest>,
}

impl Correlation {
    /// What identifies this correlation's state across reloads and restarts: its id and every
    /// part of its definition that gives windows their meaning (kind, rules referenced as
    /// written, group-by, counted field, timespan, condition). Title, level, tags and tests
    /// can change without losing the windows.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut part = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        part(self.meta.id.as_bytes());
        part(self.kind.as_str().as_bytes());
        for r in &self.references {
            part(r.as_bytes());
        }
        part(b"group-by");
        for g in &self.group_by {
            part(g.name.as_bytes());
            part(format!("{:?}", g.per_input).as_bytes());
        }
        if let Some(v) = &self.value_field {
            part(b"field");
            part(v.name.as_bytes());
            part(format!("{:?}", v.per_input).as_bytes());
        }
        part(&self.timespan.as_secs().to_le_bytes());
        let c = self.condition;
        for b in [c.gt, c.gte, c.lt, c.lte, c.eq] {
            part(&b.map_or([0xff; 8], u64::to_le_bytes));
        }
        h.finalize().to_hex()[..32].to_string()
    }
}

/// One embedded test of a correlation: `events` in order (each with its own times), and
/// whether the correlation alerts on them.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationTest {
    pub name: String,
    pub expect_match: bool,
    /// The audit events as JSON text, in order.
    pub events_json: Vec<String>,
    pub line: usize,
}

impl Correlation {
    /// True if and only if the correlation is evaluated: every rule and correlation it refers
    /// to is loaded and active.
    pub fn is_active(&self) -> bool {
        self.inactive.is_empty()
    }
}

/// A `group-by` entry or `condition.field` as written: a field, or an alias with its field per
/// referenced rule (by the reference as written in `correlation.rules`).
#[derive(Debug, Clone)]
enum FieldSpec {
    Field(FieldRef),
    Alias(Vec<(String, FieldRef)>),
}

/// A parsed correlation document, not yet resolved against the loaded rules (see
/// [`super::RulesConfig::load`]).
#[derive(Debug, Clone)]
pub struct CorrelationDoc {
    pub(super) meta: RuleMeta,
    pub(super) name: Option<String>,
    kind: CorrelationKind,
    rules: Vec<String>,
    rules_line: usize,
    group_by: Vec<(String, FieldSpec)>,
    group_line: usize,
    value_field: Option<(String, FieldSpec)>,
    value_line: usize,
    timespan: Duration,
    condition: CountCondition,
    generate: bool,
    pub(super) alerts: bool,
    pub(super) line: usize,
    tests: Vec<CorrelationTest>,
}

const UNSUPPORTED_KINDS: &[&str] = &["value_sum", "value_avg", "value_percentile", "value_median"];
const CORRELATION_KEYS: &[&str] = &[
    "type",
    "rules",
    "group-by",
    "timespan",
    "condition",
    "aliases",
    "generate",
];

/// Parses one `correlation:` document. Every problem is reported through `ctx` (with its line);
/// the result is meaningful only when `ctx` has no errors.
pub(super) fn compile(ctx: &mut Ctx<'_>, v: &Yaml) -> Option<CorrelationDoc> {
    let Some(map) = v.as_mapping() else {
        ctx.err(&[], "a rule must be a YAML mapping");
        return None;
    };
    let meta = compile_meta(ctx, map, false);
    let name = compile_name(ctx, map);
    for k in ["logsource", "detection"] {
        if map.contains_key(k) {
            ctx.err(
                &[k],
                format!("a correlation rule has no `{k}` (the rules it refers to have one)"),
            );
        }
    }
    let line = if meta.id.is_empty() {
        ctx.line(&["title"])
    } else {
        ctx.line(&["id"])
    };
    let Some(corr) = map.get("correlation").and_then(Yaml::as_mapping) else {
        ctx.err(&["correlation"], "`correlation` must be a mapping");
        return None;
    };
    for k in corr.keys() {
        let key = yaml_str(k).unwrap_or_default();
        if !CORRELATION_KEYS.contains(&key.as_str()) {
            ctx.err(
                &["correlation", &key],
                format!(
                    "unknown key `correlation.{key}` (known: {})",
                    CORRELATION_KEYS.join(", ")
                ),
            );
        }
    }

    let top = bool_key(ctx, map.get("generate"), &["generate"]);
    let inner = bool_key(ctx, corr.get("generate"), &["correlation", "generate"]);
    let generate = match (top, inner) {
        (Some(a), Some(b)) if a != b => {
            ctx.err(
                &["correlation", "generate"],
                "`generate` is given twice with different values",
            );
            false
        }
        (a, b) => a.or(b).unwrap_or(false),
    };

    let kind = match corr.get("type").map(yaml_str) {
        None => {
            ctx.err(
                &["correlation"],
                "missing `correlation.type` (event_count, value_count, temporal, temporal_ordered)",
            );
            None
        }
        Some(Some(t)) => match t.as_str() {
            "event_count" => Some(CorrelationKind::EventCount),
            "value_count" => Some(CorrelationKind::ValueCount),
            "temporal" => Some(CorrelationKind::Temporal),
            "temporal_ordered" => Some(CorrelationKind::TemporalOrdered),
            t if UNSUPPORTED_KINDS.contains(&t) => {
                ctx.err(
                    &["correlation", "type"],
                    format!("correlation type `{t}` is not supported yet (event_count, value_count, temporal, temporal_ordered are)"),
                );
                None
            }
            t => {
                ctx.err(
                    &["correlation", "type"],
                    format!("unknown correlation type `{t}` (event_count, value_count, temporal, temporal_ordered)"),
                );
                None
            }
        },
        Some(None) => {
            ctx.err(
                &["correlation", "type"],
                "`correlation.type` must be a string",
            );
            None
        }
    };

    let rules_line = ctx.line(&["correlation", "rules"]);
    let rules = non_empty_list(ctx, corr.get("rules"), "rules", "rule ids or names");
    if let Some(d) = first_duplicate(&rules) {
        ctx.err(
            &["correlation", "rules"],
            format!("`correlation.rules` names `{d}` twice"),
        );
    }

    let aliases = compile_aliases(ctx, corr.get("aliases"), &rules);

    let group_line = ctx.line(&["correlation", "group-by"]);
    let group_names = non_empty_list(ctx, corr.get("group-by"), "group-by", "fields or aliases");
    if let Some(d) = first_duplicate(&group_names) {
        ctx.err(
            &["correlation", "group-by"],
            format!("`correlation.group-by` names `{d}` twice"),
        );
    }
    let mut group_by = Vec::new();
    for g in group_names {
        if let Some(spec) = field_spec(ctx, &g, &aliases, &["correlation", "group-by"]) {
            group_by.push((g, spec));
        }
    }

    let timespan = match corr.get("timespan").map(yaml_str) {
        None => {
            ctx.err(
                &["correlation"],
                "missing `correlation.timespan` (such as `10m`)",
            );
            Duration::ZERO
        }
        Some(t) => match t.as_deref().and_then(parse_timespan) {
            Some(d) => d,
            None => {
                ctx.err(
                    &["correlation", "timespan"],
                    format!(
                        "`correlation.timespan` must be a positive number and a lowercase unit (`30s`, `10m`, `1h`, `7d`), not `{}`",
                        t.unwrap_or_default()
                    ),
                );
                Duration::ZERO
            }
        },
    };

    let value_line = ctx.line(&["correlation", "condition", "field"]);
    let (condition, value_name) = compile_condition(ctx, corr.get("condition"), kind, rules.len());
    let value_field = value_name.and_then(|n| {
        field_spec(ctx, &n, &aliases, &["correlation", "condition", "field"]).map(|s| (n, s))
    });

    Some(CorrelationDoc {
        meta,
        name,
        kind: kind?,
        rules,
        rules_line,
        group_by,
        group_line,
        value_field,
        value_line,
        timespan,
        condition,
        generate,
        alerts: true,
        line,
        tests: compile_correlation_tests(ctx, map.get("tests")),
    })
}

/// `tests:` of a correlation: a list of `{name, match: true|false, events: [audit events]}`.
fn compile_correlation_tests(ctx: &mut Ctx<'_>, t: Option<&Yaml>) -> Vec<CorrelationTest> {
    let Some(t) = t else {
        return Vec::new();
    };
    let line = ctx.line(&["tests"]);
    let Some(items) = t.as_sequence() else {
        ctx.err(&["tests"], "`tests` must be a list");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = item
            .get("name")
            .and_then(yaml_str)
            .unwrap_or_else(|| format!("test {}", i + 1));
        let Some(Yaml::Bool(expect)) = item.get("match") else {
            ctx.err(
                &["tests"],
                format!("test `{name}`: `match: true|false` is required"),
            );
            continue;
        };
        let Some(events) = item.get("events").and_then(Yaml::as_sequence) else {
            ctx.err(
                &["tests"],
                format!("test `{name}`: `events` must be a list of audit events"),
            );
            continue;
        };
        let mut events_json = Vec::new();
        for ev in events {
            match ev {
                Yaml::Mapping(_) => match serde_json::to_string(ev) {
                    Ok(j) => events_json.push(j),
                    Err(e) => ctx.err(
                        &["tests"],
                        format!("test `{name}`: an event cannot be written as JSON: {e}"),
                    ),
                },
                _ => ctx.err(
                    &["tests"],
                    format!("test `{name}`: each of `events` must be a mapping (an audit event)"),
                ),
            }
        }
        out.push(CorrelationTest {
            name,
            expect_match: *expect,
            events_json,
            line,
        });
    }
    out
}

fn bool_key(ctx: &mut Ctx<'_>, v: Option<&Yaml>, keys: &[&str]) -> Option<bool> {
    match v? {
        Yaml::Bool(b) => Some(*b),
        _ => {
            ctx.err(keys, "`generate` must be `true` or `false`");
            None
        }
    }
}

fn non_empty_list(ctx: &mut Ctx<'_>, v: Option<&Yaml>, key: &str, what: &str) -> Vec<String> {
    match v {
        None => {
            ctx.err(
                &["correlation"],
                format!("missing `correlation.{key}` (a list of {what})"),
            );
            Vec::new()
        }
        Some(v) => match str_list(Some(v)) {
            Ok(l) if !l.is_empty() && l.iter().all(|s| !s.is_empty()) => l,
            _ => {
                ctx.err(
                    &["correlation", key],
                    format!("`correlation.{key}` must be a non-empty list of {what}"),
                );
                Vec::new()
            }
        },
    }
}

fn first_duplicate(items: &[String]) -> Option<&str> {
    let mut seen = HashSet::new();
    items
        .iter()
        .find(|i| !seen.insert(i.as_str()))
        .map(String::as_str)
}

/// `<n>s|m|h|d`, `n` > 0, nothing else (no spaces, no uppercase, no compound).
fn parse_timespan(t: &str) -> Option<Duration> {
    let digits = t.strip_suffix(['s', 'm', 'h', 'd'])?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_duration(t)
}

/// `aliases`: alias -> [(reference as written in `rules`, field)].
fn compile_aliases(
    ctx: &mut Ctx<'_>,
    v: Option<&Yaml>,
    rules: &[String],
) -> HashMap<String, Vec<(String, FieldRef)>> {
    let mut out = HashMap::new();
    let Some(v) = v else {
        return out;
    };
    let Some(m) = v.as_mapping() else {
        ctx.err(
            &["correlation", "aliases"],
            "`correlation.aliases` must map alias names to {rule name: field}",
        );
        return out;
    };
    for (alias, per_rule) in m {
        let alias = yaml_str(alias).unwrap_or_default();
        let keys = ["correlation", "aliases", alias.as_str()];
        let Some(per_rule) = per_rule.as_mapping() else {
            ctx.err(
                &keys,
                format!("`correlation.aliases.{alias}` must map rule names to fields"),
            );
            continue;
        };
        let mut entries = Vec::new();
        for (rule, field) in per_rule {
            let rule = yaml_str(rule).unwrap_or_default();
            if !rules.contains(&rule) {
                ctx.err(
                    &keys,
                    format!(
                        "`correlation.aliases.{alias}`: `{rule}` is not in `correlation.rules`"
                    ),
                );
                continue;
            }
            let compiled = yaml_str(field)
                .ok_or_else(|| "a field name".to_string())
                .and_then(|f| compile_field_ref(ctx.opts, &f));
            match compiled {
                Ok(f) => entries.push((rule, f)),
                Err(e) => ctx.err(&keys, format!("`correlation.aliases.{alias}.{rule}`: {e}")),
            }
        }
        out.insert(alias, entries);
    }
    out
}

fn field_spec(
    ctx: &mut Ctx<'_>,
    name: &str,
    aliases: &HashMap<String, Vec<(String, FieldRef)>>,
    keys: &[&str],
) -> Option<FieldSpec> {
    if let Some(entries) = aliases.get(name) {
        return Some(FieldSpec::Alias(entries.clone()));
    }
    match compile_field_ref(ctx.opts, name) {
        Ok(f) => Some(FieldSpec::Field(f)),
        Err(e) => {
            ctx.err(keys, format!("`{}`: {e}", keys.join(".")));
            None
        }
    }
}

/// `condition` and its `field` (value_count). Absent for `temporal*`: `gte` the number of
/// rules.
fn compile_condition(
    ctx: &mut Ctx<'_>,
    v: Option<&Yaml>,
    kind: Option<CorrelationKind>,
    n_rules: usize,
) -> (CountCondition, Option<String>) {
    let keys = ["correlation", "condition"];
    let temporal = matches!(
        kind,
        Some(CorrelationKind::Temporal | CorrelationKind::TemporalOrdered)
    );
    let Some(v) = v else {
        if temporal {
            let all = CountCondition {
                gte: Some(n_rules as u64),
                ..CountCondition::default()
            };
            return (all, None);
        }
        if let Some(k) = kind {
            ctx.err(
                &["correlation"],
                format!(
                    "missing `correlation.condition` (required for {})",
                    k.as_str()
                ),
            );
        }
        return (CountCondition::default(), None);
    };
    let Some(m) = v.as_mapping() else {
        ctx.err(
            &keys,
            "`correlation.condition` must be a mapping such as `{gte: 10}`",
        );
        return (CountCondition::default(), None);
    };
    let mut c = CountCondition::default();
    let mut field = None;
    for (k, v) in m {
        let key = yaml_str(k).unwrap_or_default();
        let slot = match key.as_str() {
            "gt" => &mut c.gt,
            "gte" => &mut c.gte,
            "lt" => &mut c.lt,
            "lte" => &mut c.lte,
            "eq" => &mut c.eq,
            "field" => {
                match v {
                    Yaml::String(f) if !f.is_empty() => field = Some(f.clone()),
                    _ => ctx.err(
                        &["correlation", "condition", "field"],
                        "`correlation.condition.field` must be a field name",
                    ),
                }
                continue;
            }
            other => {
                ctx.err(
                    &["correlation", "condition", other],
                    format!(
                        "unknown key `correlation.condition.{other}` (gt, gte, lt, lte, eq, field)"
                    ),
                );
                continue;
            }
        };
        match v.as_u64() {
            Some(n) => *slot = Some(n),
            None => ctx.err(
                &["correlation", "condition", &key],
                format!("`correlation.condition.{key}` must be a non-negative integer"),
            ),
        }
    }
    if c == CountCondition::default() {
        ctx.err(
            &keys,
            "`correlation.condition` needs at least one of gt, gte, lt, lte, eq",
        );
    }
    match (kind, &field) {
        (Some(CorrelationKind::ValueCount), None) => ctx.err(
            &keys,
            "`correlation.condition.field` is required for value_count (the field whose distinct values are counted)",
        ),
        (Some(k), Some(_)) if k != CorrelationKind::ValueCount => ctx.err(
            &["correlation", "condition", "field"],
            format!("`correlation.condition.field` is only for value_count, not {}", k.as_str()),
        ),
        _ => {}
    }
    (c, field)
}

/// Records the `generate` semantics: a rule or correlation that correlations refer to alerts
/// on its own only if one of them has `generate: true`. Runs on everything parsed, before
/// `disable` (turning a correlation off does not make its building blocks alert).
pub(super) fn mark_alerts(rules: &mut [Rule], docs: &mut [CorrelationDoc]) {
    let mut referenced: HashMap<String, bool> = HashMap::new();
    for d in docs.iter() {
        for r in &d.rules {
            *referenced.entry(r.clone()).or_default() |= d.generate;
        }
    }
    let alerts = |id: &str, name: Option<&str>| {
        let flags: Vec<bool> = [Some(id), name]
            .into_iter()
            .flatten()
            .filter(|k| !k.is_empty())
            .filter_map(|k| referenced.get(k).copied())
            .collect();
        flags.is_empty() || flags.contains(&true)
    };
    for r in rules.iter_mut() {
        r.alerts = alerts(&r.meta.id, r.name.as_deref());
    }
    for d in docs.iter_mut() {
        d.alerts = alerts(&d.meta.id, d.name.as_deref());
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Rule(usize),
    Doc(usize),
    Disabled,
}

/// Resolves parsed correlations against the loaded `rules` (after `disable`; `disabled` holds
/// the ids and names of the rules and correlations it removed). Returns the correlations that
/// resolved, ordered so that a correlation's correlation inputs come before it; every problem
/// (an unknown reference, a cycle, a group-by that an input cannot supply) is an error at the
/// correlation's file and line, and that correlation (and those that refer to it) is left out.
pub(super) fn resolve(
    docs: Vec<CorrelationDoc>,
    rules: &[Rule],
    disabled: &HashSet<String>,
    errors: &mut Vec<RuleError>,
) -> Vec<Correlation> {
    let mut targets: HashMap<&str, Target> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        for k in [Some(r.meta.id.as_str()), r.name.as_deref()]
            .into_iter()
            .flatten()
        {
            targets.insert(k, Target::Rule(i));
        }
    }
    for (j, d) in docs.iter().enumerate() {
        for k in [Some(d.meta.id.as_str()), d.name.as_deref()]
            .into_iter()
            .flatten()
        {
            if !k.is_empty() {
                targets.insert(k, Target::Doc(j));
            }
        }
    }
    for k in disabled {
        targets.entry(k.as_str()).or_insert(Target::Disabled);
    }
    let n = docs.len();
    let mut failed = vec![false; n];
    let mut err = |failed: &mut Vec<bool>, j: usize, line: usize, message: String| {
        failed[j] = true;
        errors.push(RuleError {
            source: docs[j].meta.source.clone(),
            line,
            message,
        });
    };

    let mut resolved: Vec<Vec<Option<Target>>> = Vec::with_capacity(n);
    for (j, d) in docs.iter().enumerate() {
        let mut ts = Vec::with_capacity(d.rules.len());
        for r in &d.rules {
            let t = targets.get(r.as_str()).copied();
            if t.is_none() {
                err(
                    &mut failed,
                    j,
                    d.rules_line,
                    format!("`correlation.rules`: no loaded rule or correlation has the id or name `{r}`"),
                );
            }
            ts.push(t);
        }
        resolved.push(ts);
    }
    let children = |j: usize| -> Vec<usize> {
        resolved[j]
            .iter()
            .filter_map(|t| match t {
                Some(Target::Doc(c)) => Some(*c),
                _ => None,
            })
            .collect()
    };

    // Children first; what cannot be placed is on a cycle or refers to one.
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    loop {
        let mut progress = false;
        for j in 0..n {
            if !placed[j] && children(j).iter().all(|&c| placed[c]) {
                placed[j] = true;
                order.push(j);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let label = |j: usize| {
        let d = &docs[j];
        d.name.clone().unwrap_or_else(|| {
            if d.meta.id.is_empty() {
                d.meta.title.clone()
            } else {
                d.meta.id.clone()
            }
        })
    };
    for j in (0..n).filter(|&j| !placed[j]) {
        // Breadth-first from j over unplaced correlations; a path back to j is its cycle.
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut queue = std::collections::VecDeque::from([j]);
        let mut cycle = None;
        'search: while let Some(k) = queue.pop_front() {
            for c in children(k) {
                if placed[c] {
                    continue;
                }
                if c == j {
                    cycle = Some(k);
                    break 'search;
                }
                if parent[c].is_none() {
                    parent[c] = Some(k);
                    queue.push_back(c);
                }
            }
        }
        let message = match cycle {
            Some(mut k) => {
                let mut path = vec![label(j)];
                let mut back = vec![];
                while k != j {
                    back.push(label(k));
                    match parent[k] {
                        Some(p) => k = p,
                        None => break,
                    }
                }
                back.reverse();
                path.extend(back);
                path.push(label(j));
                format!(
                    "`correlation.rules`: correlations refer to each other in a cycle: {}",
                    path.join(" -> ")
                )
            }
            None => "`correlation.rules`: refers to correlations that form a cycle".to_string(),
        };
        let line = docs[j].rules_line;
        err(&mut failed, j, line, message);
    }

    let mut inactive: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut new_index: Vec<Option<usize>> = vec![None; n];
    let mut out: Vec<Correlation> = Vec::new();
    for &j in &order {
        if failed[j] {
            continue;
        }
        let d = &docs[j];
        // (reference as written, target) of each input, disabled ones left out.
        let mut inputs: Vec<(&str, CorrelationInput, Option<usize>)> = Vec::new();
        for (r, t) in d.rules.iter().zip(&resolved[j]) {
            match *t {
                Some(Target::Rule(i)) => {
                    if !rules[i].is_active() {
                        inactive[j].push(format!("rule `{r}` is inactive"));
                    }
                    inputs.push((r, CorrelationInput::Rule(i), None));
                }
                Some(Target::Doc(c)) => match new_index[c] {
                    Some(k) => {
                        if !inactive[c].is_empty() {
                            inactive[j].push(format!("correlation `{r}` is inactive"));
                        }
                        inputs.push((r, CorrelationInput::Correlation(k), Some(c)));
                    }
                    None => {
                        err(
                            &mut failed,
                            j,
                            d.rules_line,
                            format!("`correlation.rules`: correlation `{r}` did not load"),
                        );
                    }
                },
                Some(Target::Disabled) => inactive[j].push(format!("`{r}` is disabled")),
                None => {}
            }
        }
        if failed[j] {
            continue;
        }
        let mut problems = Vec::new();
        let mut group_field = |name: &str, spec: &FieldSpec, line: usize| {
            GroupField {
            name: name.to_string(),
            per_input: inputs
                .iter()
                .map(|&(r, _, child)| match (spec, child) {
                    (_, Some(c)) => {
                        if let FieldSpec::Alias(entries) = spec {
                            if entries.iter().any(|(k, _)| k == r) {
                                problems.push((line, format!("alias `{name}` gives a field for correlation `{r}`; a correlation input supplies the value of its own group-by `{name}`")));
                            }
                        }
                        if !docs[c].group_by.iter().any(|(g, _)| g == name) {
                            problems.push((line, format!("`{name}`: correlation `{r}` does not group by `{name}`, so it cannot supply its value")));
                        }
                        None
                    }
                    (FieldSpec::Field(f), None) => Some(f.clone()),
                    (FieldSpec::Alias(entries), None) => {
                        let f = entries.iter().find(|(k, _)| k == r).map(|(_, f)| f.clone());
                        if f.is_none() {
                            problems.push((line, format!("alias `{name}` has no field for rule `{r}` (add `{r}: <field>` under `correlation.aliases.{name}`)")));
                        }
                        f
                    }
                })
                .collect(),
        }
        };
        let group_by: Vec<GroupField> = d
            .group_by
            .iter()
            .map(|(g, spec)| group_field(g, spec, d.group_line))
            .collect();
        let value_field = d
            .value_field
            .as_ref()
            .map(|(g, spec)| group_field(g, spec, d.value_line));
        if !problems.is_empty() {
            for (line, message) in problems {
                err(&mut failed, j, line, message);
            }
            continue;
        }
        new_index[j] = Some(out.len());
        out.push(Correlation {
            meta: d.meta.clone(),
            name: d.name.clone(),
            kind: d.kind,
            inputs: inputs.iter().map(|&(_, i, _)| i).collect(),
            group_by,
            value_field,
            timespan: d.timespan,
            condition: d.condition,
            generate: d.generate,
            line: d.line,
            references: d.rules.clone(),
            alerts: d.alerts,
            inactive: std::mem::take(&mut inactive[j]),
            tests: d.tests.clone(),
        });
        // Kept for the correlations that refer to this one.
        inactive[j] = out.last().map_or_else(Vec::new, |c| c.inactive.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode_value_into, FieldPath};
    use crate::rules::{
        builtin_field_mappings, compile_str, CompileOptions, Compiled, Loaded, RuleSet, RulesConfig,
    };

    fn opts() -> CompileOptions {
        CompileOptions {
            placeholders: [("allowed".to_string(), Vec::new())].into_iter().collect(),
            field_mappings: builtin_field_mappings(),
            ruleset: "test".into(),
        }
    }

    fn field(path: &str) -> FieldRef {
        FieldRef::resolve(&FieldPath::parse(path).unwrap())
    }

    fn link(files: &[(&str, &str)], disable: &[&str]) -> Loaded {
        let mut all = Compiled::default();
        for (name, text) in files {
            all.append(&mut compile_str(name, text, &opts()));
        }
        let cfg = RulesConfig {
            builtin: false,
            disable: disable.iter().map(|d| d.to_string()).collect(),
            ..RulesConfig::default()
        };
        cfg.link(all)
    }

    /// A base rule with a Sigma v2 name: 8 lines.
    const BASE: &str = "title: Forbidden request\nid: 53ba33fd-3a50-4468-a5ef-c583635cfa92\nname: forbidden_request\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  selection:\n    responseStatus.code: 403\n  condition: selection\n";
    /// A correlation over BASE, from line 10 when it follows BASE and `---`.
    const CORR: &str = "title: Many forbidden requests\nid: a8418a5a-5fc4-46b5-b23b-6c73beb19d41\nname: many_forbidden\ncorrelation:\n  type: event_count\n  rules:\n    - forbidden_request\n  group-by:\n    - user.username\n  timespan: 10m\n  condition:\n    gte: 10\nlevel: high\n";

    fn base(id: u32, name: &str, detection: &str) -> String {
        format!(
            "title: R{id}\nid: 00000000-0000-4000-8000-{id:012}\nname: {name}\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n  selection:\n{detection}\n  condition: selection\n"
        )
    }

    #[test]
    fn a_correlation_document_parses_every_key() {
        let text = format!("{BASE}---\n{CORR}");
        let loaded = link(&[("c.yml", &text)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.rules.len(), 1);
        assert_eq!(loaded.rules[0].name.as_deref(), Some("forbidden_request"));
        let c = &loaded.correlations[..];
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.meta.title, "Many forbidden requests");
        assert_eq!(c.meta.id, "a8418a5a-5fc4-46b5-b23b-6c73beb19d41");
        assert_eq!(c.meta.level, crate::rules::Level::High);
        assert_eq!(c.name.as_deref(), Some("many_forbidden"));
        assert_eq!(c.kind, CorrelationKind::EventCount);
        assert_eq!(c.inputs, vec![CorrelationInput::Rule(0)]);
        assert_eq!(c.references, vec!["forbidden_request".to_string()]);
        assert_eq!(
            c.group_by,
            vec![GroupField {
                name: "user.username".into(),
                per_input: vec![Some(field("user.username"))],
            }]
        );
        assert_eq!(c.timespan, Duration::from_secs(600));
        assert_eq!(c.condition.gte, Some(10));
        assert!(!c.generate && c.alerts && c.is_active());
        assert_eq!(c.line, 11);
        assert_eq!(c.meta.source, "c.yml");
    }

    #[test]
    fn value_count_ranges_generate_and_a_missing_id_parse() {
        let text = format!(
            "{BASE}---\ntitle: Many users from one address\nlevel: low\ngenerate: true\ncorrelation:\n  type: value_count\n  rules: [forbidden_request]\n  group-by: [source.ip]\n  timespan: 1d\n  condition:\n    field: user.username\n    gt: 2\n    lte: 20\n"
        );
        let loaded = link(&[("c.yml", &text)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let c = &loaded.correlations[0];
        assert_eq!(c.kind, CorrelationKind::ValueCount);
        assert_eq!(c.meta.id, "");
        assert_eq!(c.line, 10, "the title's line without an id");
        assert_eq!(c.timespan, Duration::from_secs(86400));
        assert_eq!((c.condition.gt, c.condition.lte), (Some(2), Some(20)));
        assert_eq!(
            c.value_field,
            Some(GroupField {
                name: "user.username".into(),
                per_input: vec![Some(field("user.username"))],
            })
        );
        assert!(c.generate);
        assert!(
            loaded.rules[0].alerts,
            "generate: true keeps the rule alerting"
        );

        // `generate` inside `correlation:` (where pySigma reads it) counts the same.
        let inner = text
            .replace("generate: true\n", "")
            .replace("  timespan: 1d\n", "  timespan: 1d\n  generate: true\n");
        let loaded = link(&[("c.yml", &inner)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.correlations[0].generate);
        let both = inner.replace("level: low\n", "level: low\ngenerate: false\n");
        let loaded = link(&[("c.yml", &both)], &[]);
        assert!(
            loaded.errors[0].message.contains("twice"),
            "{:?}",
            loaded.errors
        );
    }

    #[test]
    fn temporal_without_condition_needs_every_rule() {
        let text = format!(
            "{}---\n{}---\ntitle: Both\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [user.username]\n  timespan: 5m\n",
            base(1, "a", "    verb: delete"),
            base(2, "b", "    verb: create")
        );
        let loaded = link(&[("t.yml", &text)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let c = &loaded.correlations[0];
        assert_eq!(c.kind, CorrelationKind::Temporal);
        assert_eq!(
            c.condition,
            CountCondition {
                gte: Some(2),
                ..CountCondition::default()
            }
        );
        assert_eq!(
            c.meta.level,
            crate::rules::Level::Medium,
            "level defaults to medium"
        );
    }

    #[test]
    fn every_correlation_error_names_its_line_and_spares_the_sibling_rule() {
        // (text of CORR, replaced by, line of the error, part of its message)
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "  type: event_count",
                "  type: value_sum",
                14,
                "not supported yet",
            ),
            (
                "  type: event_count",
                "  type: value_percentile",
                14,
                "not supported yet",
            ),
            (
                "  type: event_count",
                "  type: sequence",
                14,
                "unknown correlation type",
            ),
            (
                "  type: event_count\n",
                "",
                13,
                "missing `correlation.type`",
            ),
            (
                "  type: event_count",
                "  type: value_count",
                20,
                "`correlation.condition.field` is required",
            ),
            ("  timespan: 10m", "  timespan: 10M", 19, "lowercase unit"),
            ("  timespan: 10m", "  timespan: 1h30m", 19, "lowercase unit"),
            ("  timespan: 10m", "  timespan: 0s", 19, "positive number"),
            ("  timespan: 10m", "  timespan: 10 m", 19, "lowercase unit"),
            (
                "  timespan: 10m\n",
                "",
                13,
                "missing `correlation.timespan`",
            ),
            ("    gte: 10", "    gte: -1", 21, "non-negative integer"),
            ("    gte: 10", "    gte: ten", 21, "non-negative integer"),
            (
                "    gte: 10",
                "    most: 10",
                21,
                "unknown key `correlation.condition.most`",
            ),
            (
                "    gte: 10",
                "    gte: 10\n    field: user.username",
                22,
                "only for value_count",
            ),
            (
                "  condition:\n    gte: 10\n",
                "  condition: {}\n",
                20,
                "at least one of",
            ),
            (
                "  condition:\n    gte: 10\n",
                "",
                13,
                "missing `correlation.condition`",
            ),
            (
                "  group-by:\n    - user.username\n",
                "",
                13,
                "missing `correlation.group-by`",
            ),
            (
                "  group-by:\n    - user.username",
                "  group-by: []",
                17,
                "non-empty list",
            ),
            (
                "    - user.username",
                "    - user.username\n    - user.username",
                17,
                "twice",
            ),
            (
                "  rules:\n    - forbidden_request",
                "  rules: []",
                15,
                "non-empty list",
            ),
            (
                "  rules:\n    - forbidden_request\n",
                "",
                13,
                "missing `correlation.rules`",
            ),
            (
                "  timespan: 10m",
                "  timespan: 10m\n  window: 5m",
                20,
                "unknown key `correlation.window`",
            ),
            (
                "level: high",
                "level: high\ngenerate: maybe",
                23,
                "`generate` must be",
            ),
            (
                "  timespan: 10m",
                "  timespan: 10m\n  generate: 1",
                20,
                "`generate` must be",
            ),
            (
                "id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41",
                "id: many",
                11,
                "not a UUID",
            ),
            (
                "title: Many forbidden requests\n",
                "",
                10,
                "missing `title`",
            ),
            (
                "name: many_forbidden",
                "name: many forbidden",
                12,
                "`name` must be",
            ),
            ("level: high", "level: severe", 22, "unknown level"),
            (
                "correlation:",
                "detection: {}\ncorrelation:",
                13,
                "has no `detection`",
            ),
            (
                "correlation:",
                "logsource: {product: kubernetes}\ncorrelation:",
                13,
                "has no `logsource`",
            ),
            (
                "correlation:\n  type: event_count",
                "correlation: event_count\nx:\n  type: event_count",
                13,
                "must be a mapping",
            ),
            (
                "    - user.username\n",
                "    - user.username\n  aliases:\n    who:\n      other_rule: user.username\n",
                20,
                "`other_rule` is not in `correlation.rules`",
            ),
            (
                "    - user.username\n",
                "    - user.username\n  aliases: [who]\n",
                19,
                "`correlation.aliases` must map",
            ),
        ];
        for (from, to, line, message) in cases {
            assert!(CORR.contains(from), "{from}");
            let text = format!("{BASE}---\n{}", CORR.replacen(from, to, 1));
            let loaded = link(&[("c.yml", &text)], &[]);
            assert_eq!(loaded.rules.len(), 1, "{to}: the sibling rule still loads");
            assert!(loaded.correlations.is_empty(), "{to}");
            assert!(
                loaded
                    .errors
                    .iter()
                    .any(|e| e.line == *line && e.message.contains(message)),
                "{to}: expected c.yml:{line}: ...{message}..., got {:?}",
                loaded.errors
            );
            assert!(loaded.errors.iter().all(|e| e.source == "c.yml"));
        }
    }

    #[test]
    fn the_spec_example_failed_logins_then_a_success_loads_as_a_chain() {
        let text = "title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
status: experimental
description: Detects multiple failed logins by a single user followed by a successful login of that user
references:
    - https://reference.com
author: Florian Roth (Nextron Systems)
date: 2023-06-16
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - user.username
    timespan: 10m
falsepositives:
    - Unlikely
level: high
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
description: Detects multiple failed logins within a certain amount of time
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - user.username
    timespan: 10m
    condition:
        gte: 10
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: kubernetes
    service: audit
detection:
    selection:
        responseStatus.code: [401, 403]
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
description: Detects a successful login
name: successful_login
logsource:
    product: kubernetes
    service: audit
detection:
    selection:
        responseStatus.code: 200
    condition: selection
";
        let loaded = link(&[("mr_failed_then_success.yml", text)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.rules.len(), 2);
        let [inner, outer] = &loaded.correlations[..] else {
            panic!("{:?}", loaded.correlations);
        };
        // The inner correlation comes first: inputs point backwards.
        assert_eq!(inner.name.as_deref(), Some("multiple_failed_login"));
        assert_eq!(inner.inputs, vec![CorrelationInput::Rule(0)]);
        assert_eq!(outer.kind, CorrelationKind::TemporalOrdered);
        assert_eq!(
            outer.inputs,
            vec![CorrelationInput::Correlation(0), CorrelationInput::Rule(1)]
        );
        assert_eq!(
            outer.group_by[0].per_input,
            vec![None, Some(field("user.username"))]
        );
        assert_eq!(outer.condition.gte, Some(2));
        assert_eq!(outer.line, 2);
        assert_eq!(outer.meta.status.as_deref(), Some("experimental"));
        assert_eq!(outer.meta.falsepositives, vec!["Unlikely".to_string()]);
        // Only the outermost correlation alerts (no `generate`).
        assert!(outer.alerts && !inner.alerts);
        assert!(loaded.rules.iter().all(|r| !r.alerts));

        let set = loaded.into_rule_set(&RulesConfig::default());
        assert_eq!(set.correlations().len(), 2);
        assert_eq!(set.correlation_inputs(0), &[(0, 0)]);
        assert_eq!(set.correlation_inputs(1), &[(1, 1)]);
        assert_eq!(set.correlation_inputs(7), &[]);
    }

    #[test]
    fn aliases_resolve_group_by_fields_per_rule() {
        let text = format!(
            "{}---\n{}---\ntitle: Impersonated error then portforward\ncorrelation:\n  type: temporal\n  rules:\n    - internal_error\n    - port_forward\n  group-by:\n    - actor\n    - client\n  timespan: 10s\n  aliases:\n    actor:\n      internal_error: user.username\n      port_forward: impersonatedUser.username\n    client:\n      internal_error: source.ip\n      port_forward: source.ip\n",
            base(1, "internal_error", "    responseStatus.code: 500"),
            base(2, "port_forward", "    objectRef.subresource: portforward")
        );
        let loaded = link(&[("a.yml", &text)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let c = &loaded.correlations[0];
        assert_eq!(c.group_by[0].name, "actor");
        assert_eq!(
            c.group_by[0].per_input,
            vec![
                Some(field("user.username")),
                Some(field("impersonatedUser.username"))
            ]
        );
        assert_eq!(
            c.group_by[1].per_input,
            vec![Some(field("source.ip")), Some(field("source.ip"))]
        );

        // An alias must give a field for every rule it groups.
        let missing = text.replace("      port_forward: source.ip\n", "");
        let loaded = link(&[("a.yml", &missing)], &[]);
        assert!(loaded.correlations.is_empty());
        assert!(
            loaded.errors.iter().any(|e| e.line == 25
                && e.message
                    .contains("alias `client` has no field for rule `port_forward`")),
            "{:?}",
            loaded.errors
        );
    }

    #[test]
    fn references_resolve_across_files_by_id_and_name() {
        let rules = format!(
            "{}---\n{}",
            base(
                1,
                "delete_pod",
                "    verb: delete\n    objectRef.resource: pods"
            ),
            base(
                2,
                "create_pod",
                "    verb: create\n    objectRef.resource: pods"
            )
        );
        let corr = "title: Pod replaced\ncorrelation:\n  type: temporal_ordered\n  rules:\n    - delete_pod\n    - 00000000-0000-4000-8000-000000000002\n  group-by: [user.username, objectRef.namespace]\n  timespan: 1m\n";
        // The correlation's file may come first.
        let loaded = link(&[("corr.yml", corr), ("rules.yml", &rules)], &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(
            loaded.correlations[0].inputs,
            vec![CorrelationInput::Rule(0), CorrelationInput::Rule(1)]
        );

        let loaded = link(&[("corr.yml", corr)], &[]);
        assert_eq!(loaded.errors.len(), 2, "{:?}", loaded.errors);
        assert_eq!(loaded.errors[0].to_string(), "corr.yml:4: `correlation.rules`: no loaded rule or correlation has the id or name `delete_pod`");
        assert!(loaded.correlations.is_empty());
    }

    #[test]
    fn correlations_that_refer_to_each_other_in_a_cycle_are_errors() {
        let text = format!(
            "{}---\ntitle: A\nname: a\ncorrelation:\n  type: temporal\n  rules: [r, b]\n  group-by: [user.username]\n  timespan: 1m\n---\ntitle: B\nname: b\ncorrelation:\n  type: temporal\n  rules: [a]\n  group-by: [user.username]\n  timespan: 1m\n---\ntitle: C\nname: c\ncorrelation:\n  type: event_count\n  rules: [b]\n  group-by: [user.username]\n  timespan: 1m\n  condition: {{gte: 2}}\n",
            base(1, "r", "    verb: get")
        );
        let loaded = link(&[("cycle.yml", &text)], &[]);
        assert!(loaded.correlations.is_empty());
        let msgs: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert!(
            msgs.contains(&"cycle.yml:14: `correlation.rules`: correlations refer to each other in a cycle: a -> b -> a".to_string()),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("b -> a -> b")), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("cycle.yml:30:") && m.contains("form a cycle")),
            "{msgs:?}"
        );
        assert_eq!(loaded.rules.len(), 1);

        let selfish = "title: S\nname: s\ncorrelation:\n  type: event_count\n  rules: [s]\n  group-by: [user.username]\n  timespan: 1m\n  condition: {gte: 2}\n";
        let loaded = link(&[("s.yml", selfish)], &[]);
        assert!(
            loaded.errors[0].message.contains("cycle: s -> s"),
            "{:?}",
            loaded.errors
        );
    }

    #[test]
    fn a_correlation_input_must_group_by_the_same_names() {
        let text = format!(
            "{}---\ntitle: Inner\nname: inner\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [source.ip]\n  timespan: 1m\n  condition: {{gte: 5}}\n---\ntitle: Outer\ncorrelation:\n  type: event_count\n  rules: [inner]\n  group-by: [user.username]\n  timespan: 1h\n  condition: {{gte: 2}}\n",
            base(1, "r", "    verb: get")
        );
        let loaded = link(&[("g.yml", &text)], &[]);
        assert_eq!(loaded.correlations.len(), 1, "the inner one loads");
        assert!(
            loaded.errors.iter().any(|e| e.line == 23
                && e.message
                    .contains("correlation `inner` does not group by `user.username`")),
            "{:?}",
            loaded.errors
        );
    }

    #[test]
    fn ids_and_names_are_unique_across_rules_and_correlations() {
        let text = format!(
            "{BASE}---\n{}",
            CORR.replace("name: many_forbidden", "name: forbidden_request")
        );
        let loaded = link(&[("c.yml", &text)], &[]);
        assert!(
            loaded.errors.iter().any(|e| e.line == 11
                && e.message
                    == "duplicate rule name `forbidden_request` (first defined in c.yml:2)"),
            "{:?}",
            loaded.errors
        );
        let loaded = link(
            &[("a.yml", &format!("{BASE}---\n{CORR}")), ("b.yml", CORR)],
            &[],
        );
        assert!(
            loaded.errors.iter().any(|e| e.source == "b.yml"
                && e.message
                    .starts_with("duplicate rule id `a8418a5a-5fc4-46b5-b23b-6c73beb19d41`")),
            "{:?}",
            loaded.errors
        );
        assert_eq!(loaded.correlations.len(), 1);
    }

    #[test]
    fn disabled_or_inactive_inputs_make_a_correlation_inactive() {
        let text = format!("{BASE}---\n{CORR}");
        let loaded = link(
            &[("c.yml", &text)],
            &["53ba33fd-3a50-4468-a5ef-c583635cfa92"],
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(loaded.rules.is_empty());
        let c = &loaded.correlations[0];
        assert_eq!(
            c.inactive,
            vec!["`forbidden_request` is disabled".to_string()]
        );
        assert!(c.inputs.is_empty());
        let set = loaded.into_rule_set(&RulesConfig::default());
        assert_eq!(set.correlations().len(), 1);

        // `disable` by id removes a correlation; the ones above it are inactive.
        let outer = "title: Outer\ncorrelation:\n  type: event_count\n  rules: [many_forbidden]\n  group-by: [user.username]\n  timespan: 1h\n  condition: {gte: 2}\n";
        let loaded = link(
            &[("c.yml", &text), ("o.yml", outer)],
            &["a8418a5a-5fc4-46b5-b23b-6c73beb19d41"],
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.correlations.len(), 1);
        assert_eq!(
            loaded.correlations[0].inactive,
            vec!["`many_forbidden` is disabled".to_string()]
        );
        assert!(
            !loaded.rules[0].alerts,
            "still a building block of the disabled correlation"
        );

        // A rule whose required placeholders are empty is inactive, and so is what counts it,
        // transitively.
        let inactive_rule =
            BASE.replace("detection:", "requires_placeholders: [allowed]\ndetection:");
        let loaded = link(
            &[
                ("c.yml", &format!("{inactive_rule}---\n{CORR}")),
                ("o.yml", outer),
            ],
            &[],
        );
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(
            loaded.correlations[0].inactive,
            vec!["rule `forbidden_request` is inactive".to_string()]
        );
        assert_eq!(
            loaded.correlations[1].inactive,
            vec!["correlation `many_forbidden` is inactive".to_string()]
        );
        let set = loaded.into_rule_set(&RulesConfig::default());
        assert_eq!(
            set.correlation_inputs(0),
            &[],
            "inactive correlations count nothing"
        );
    }

    /// (alerting rule indices, correlation input indices) for one event.
    fn fire(set: &RuleSet, json: &str) -> (Vec<usize>, Vec<usize>) {
        let mut alerts = Vec::new();
        let mut inputs = Vec::new();
        decode_value_into(json, &mut |ev| {
            let ev = ev.expect("test events decode");
            let mut m = Vec::new();
            set.matches_into_with_inputs(ev, &mut m, &mut inputs, &Default::default());
            alerts.extend(m.iter().map(|m| m.index));
            let mut plain = Vec::new();
            set.matches_into(ev, &mut plain);
        });
        (alerts, inputs)
    }

    #[test]
    fn generate_decides_whether_referenced_rules_alert_on_their_own() {
        let rules = format!(
            "{}---\n{}",
            base(1, "forbidden", "    responseStatus.code: 403"),
            base(2, "secrets", "    objectRef.resource: secrets")
        );
        let corr = "title: Many forbidden\ncorrelation:\n  type: event_count\n  rules: [forbidden]\n  group-by: [user.username]\n  timespan: 10m\n  condition: {gte: 3}\n";
        let ev = r#"{"kind":"Event","verb":"get","user":{"username":"mallory"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":403}}"#;

        let set =
            link(&[("r.yml", &rules), ("c.yml", corr)], &[]).into_rule_set(&RulesConfig::default());
        assert!(!set.rules()[0].alerts && set.rules()[1].alerts);
        // Rule 0 only feeds the correlation; rule 1, referenced by none, alerts as before.
        assert_eq!(fire(&set, ev), (vec![1], vec![0]));
        let mut plain = Vec::new();
        decode_value_into(ev, &mut |e| {
            set.matches_into(e.expect("decodes"), &mut plain)
        });
        assert_eq!(plain.iter().map(|m| m.index).collect::<Vec<_>>(), vec![1]);

        let corr = corr.replace("  timespan: 10m\n", "  timespan: 10m\n  generate: true\n");
        let set = link(&[("r.yml", &rules), ("c.yml", &corr)], &[])
            .into_rule_set(&RulesConfig::default());
        assert_eq!(fire(&set, ev), (vec![0, 1], vec![0]));

        // Inputs are reported whatever throttling does to alerts.
        let throttled = rules.replacen(
            "detection:",
            "throttle: {key: [user.username], window: 1h}\ndetection:",
            1,
        );
        let set = link(&[("r.yml", &throttled), ("c.yml", &corr)], &[])
            .into_rule_set(&RulesConfig::default());
        assert_eq!(fire(&set, ev), (vec![0, 1], vec![0]));
        assert_eq!(fire(&set, ev), (vec![1], vec![0]));
    }
}
