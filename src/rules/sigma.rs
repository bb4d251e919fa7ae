//! The Sigma front end: YAML rule documents compiled into [`Rule`]s. Every problem is reported as
//! `file:line: message`; a file with several rules loads the good ones.

use std::collections::HashMap;
use std::fmt;

use serde_yaml::Value as Yaml;

use super::condition;
use super::correlation::CorrelationDoc;
use super::matcher::{compile_tokens, tokenize, union_of_regexes, Cmp, Pattern, StrMatcher, Tok};
use super::model::{
    FieldCond, FirstSeenField, FirstSeenSpec, Level, Normalize, OutputPart, Rule, RuleMeta,
    RuleTest, Selection, ThrottleSpec,
};
use crate::config::types::parse_duration;
use crate::event::{FieldPath, FieldRef};

/// A problem with a rule, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub source: String,
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

impl std::error::Error for RuleError {}

/// What the compiler needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// `expand` placeholders: `%name%` -> values.
    pub placeholders: HashMap<String, Vec<String>>,
    /// Field mappings: a field name as written in rules -> one or more event paths.
    pub field_mappings: HashMap<String, Vec<String>>,
    /// `ruleset` label of the rules compiled (`tripline` for the default pack).
    pub ruleset: String,
}

/// The mapping that makes SigmaHQ's Kubernetes audit rules meaningful: they name a few abstract
/// fields that do not exist in audit events.
pub fn builtin_field_mappings() -> HashMap<String, Vec<String>> {
    [
        ("apiGroup", vec!["objectRef.apiGroup"]),
        ("hostPath", vec!["pod.volumes.hostPath.path"]),
        (
            "capabilities",
            vec!["pod.containers.securityContext.capabilities.add"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect()
}

/// One YAML document of a file and the line it starts on.
pub(crate) struct Doc<'t> {
    pub(crate) text: &'t str,
    pub(crate) first_line: usize,
}

/// Splits a multi-document YAML file at `---` lines, leaving out documents with nothing but
/// blanks and comments.
fn split_documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = split_yaml_documents(text);
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Splits a multi-document YAML file at `---` lines (a `...` line ends a document too), each
/// document with the line it starts on; Sigma and Falco rules files alike.
pub(crate) fn split_yaml_documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t == "..." {
            docs.push(Doc {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Doc {
        text: &text[start..],
        first_line: start_line,
    });
    docs
}

/// Finds the line (0-based, within `doc`) of a nested key, searching each key after its parent.
fn key_line(doc: &str, keys: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut from = 0;
    let mut found = None;
    for key in keys {
        let pos = (from..lines.len()).find(|&i| {
            let t = lines[i].trim_start().trim_start_matches("- ");
            [
                format!("{key}:"),
                format!("'{key}':"),
                format!("\"{key}\":"),
            ]
            .iter()
            .any(|k| t.starts_with(k.as_str()))
        })?;
        found = Some(pos);
        from = pos + 1;
    }
    found
}

pub(super) struct Ctx<'a> {
    pub(super) source: &'a str,
    doc: &'a Doc<'a>,
    pub(super) opts: &'a CompileOptions,
    pub(super) errors: Vec<RuleError>,
}

impl Ctx<'_> {
    pub(super) fn line(&self, keys: &[&str]) -> usize {
        self.doc.first_line + key_line(self.doc.text, keys).unwrap_or(0)
    }

    pub(super) fn err(&mut self, keys: &[&str], message: impl Into<String>) {
        let line = self.line(keys);
        self.err_at(line, message);
    }

    fn err_at(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(RuleError {
            source: self.source.to_string(),
            line,
            message: message.into(),
        });
    }
}

pub(super) fn yaml_str(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn str_list(v: Option<&Yaml>) -> Result<Vec<String>, ()> {
    match v {
        None | Some(Yaml::Null) => Ok(Vec::new()),
        Some(Yaml::Sequence(items)) => items.iter().map(|i| yaml_str(i).ok_or(())).collect(),
        Some(other) => yaml_str(other).map(|s| vec![s]).ok_or(()),
    }
}

/// What one or more rule files hold: the rules that compiled, the correlation documents that
/// parsed (resolved against every loaded rule later, by [`super::RulesConfig::load`]) and every
/// error.
#[derive(Debug, Default)]
pub struct Compiled {
    pub rules: Vec<Rule>,
    pub correlations: Vec<CorrelationDoc>,
    pub errors: Vec<RuleError>,
    /// Findings that do not stop loading (a Falco rules file's deprecated or unknown keys,
    /// items of other sources).
    pub warnings: Vec<RuleError>,
}

impl Compiled {
    pub fn append(&mut self, other: &mut Compiled) {
        self.rules.append(&mut other.rules);
        self.correlations.append(&mut other.correlations);
        self.errors.append(&mut other.errors);
        self.warnings.append(&mut other.warnings);
    }
}

/// Loads every rule in one file's text. Returns the rules that compiled and every error; a
/// correlation document is an error here (correlations need the whole rule set: load them with
/// [`compile_str`] and [`super::RulesConfig::load`]).
pub fn load_str(source: &str, text: &str, opts: &CompileOptions) -> (Vec<Rule>, Vec<RuleError>) {
    let mut c = compile_str(source, text, opts);
    for d in &c.correlations {
        c.errors.push(RuleError {
            source: d.meta.source.clone(),
            line: d.line,
            message: "a correlation rule is resolved against every loaded rule: load it with the rule set".into(),
        });
    }
    (c.rules, c.errors)
}

/// Compiles every document of one file's text: rules, and correlation documents (a
/// `correlation:` key) parsed but not yet resolved. A document with an error is left out and
/// does not affect its siblings.
pub fn compile_str(source: &str, text: &str, opts: &CompileOptions) -> Compiled {
    let mut out = Compiled::default();
    for doc in split_documents(text) {
        let mut ctx = Ctx {
            source,
            doc: &doc,
            opts,
            errors: Vec::new(),
        };
        let value: Yaml = match serde_yaml::from_str(doc.text) {
            Ok(v) => v,
            Err(e) => {
                let line = doc.first_line + e.location().map_or(0, |l| l.line().saturating_sub(1));
                out.errors.push(RuleError {
                    source: source.to_string(),
                    line,
                    message: format!("invalid YAML: {e}"),
                });
                continue;
            }
        };
        // A Sigma "action" document (global/reset/repeat) is a construct tripline does not support.
        if let Some(action) = value.get("action") {
            ctx.err(
                &["action"],
                format!("Sigma rule collections (`action: {}`) are not supported; write each rule in full", yaml_str(action).unwrap_or_default()),
            );
            out.errors.append(&mut ctx.errors);
            continue;
        }
        if value.get("correlation").is_some() {
            if let Some(c) = super::correlation::compile(&mut ctx, &value) {
                if ctx.errors.is_empty() {
                    out.correlations.push(c);
                }
            }
        } else if let Some(rule) = compile_rule(&mut ctx, &value) {
            if ctx.errors.is_empty() {
                out.rules.push(rule);
            }
        }
        out.errors.append(&mut ctx.errors);
    }
    out
}

fn compile_rule(ctx: &mut Ctx<'_>, v: &Yaml) -> Option<Rule> {
    compile_rule_with(ctx, v, true)
}

/// Compiles one rule document; its embedded tests only when `with_tests` (a test's own
/// placeholders compile the rule again, without tests).
fn compile_rule_with(ctx: &mut Ctx<'_>, v: &Yaml, with_tests: bool) -> Option<Rule> {
    let Some(map) = v.as_mapping() else {
        ctx.err(&[], "a rule must be a YAML mapping");
        return None;
    };
    let get = |k: &str| map.get(k);
    let meta = compile_meta(ctx, map, true);
    let name = compile_name(ctx, map);
    check_logsource(ctx, get("logsource"));
    let line = ctx.line(&["id"]);

    let Some(detection) = get("detection").and_then(Yaml::as_mapping) else {
        ctx.err(&[], "missing `detection` mapping");
        return None;
    };
    let mut names = Vec::new();
    let mut selections = Vec::new();
    let mut cond_text = None;
    for (k, v) in detection {
        let Some(name) = k.as_str() else {
            ctx.err(&["detection"], "detection names must be strings");
            continue;
        };
        if name == "condition" {
            cond_text = Some(v.clone());
            continue;
        }
        if name == "timeframe" {
            ctx.err(
                &["detection", "timeframe"],
                "`timeframe` (correlation) is not supported; use `throttle`",
            );
            continue;
        }
        // A selection that failed to compile keeps its name (the rule is rejected anyway), so
        // the condition does not report it a second time as missing.
        let sel = compile_selection(ctx, name, v).unwrap_or(Selection::Keywords(Vec::new()));
        names.push(name.to_string());
        selections.push(sel);
    }
    let condition = match cond_text {
        None => {
            ctx.err(&["detection"], "missing `detection.condition`");
            return None;
        }
        Some(Yaml::String(c)) => condition::parse(&c, &names),
        Some(Yaml::Sequence(items)) if items.is_empty() => {
            ctx.err(&["detection", "condition"], "`condition` is an empty list");
            return None;
        }
        Some(Yaml::Sequence(items)) => {
            // A list of conditions is their `or` (deprecated Sigma form).
            let mut alts = Vec::new();
            let mut res = Ok(());
            for i in &items {
                match yaml_str(i).map(|c| condition::parse(&c, &names)) {
                    Some(Ok(e)) => alts.push(e),
                    Some(Err(e)) => res = Err(e),
                    None => {
                        res = Err(condition::ConditionError {
                            condition: String::new(),
                            message: "condition list items must be strings".into(),
                        })
                    }
                }
            }
            res.map(|()| condition::Expr::Or(alts))
        }
        Some(_) => {
            ctx.err(&["detection", "condition"], "`condition` must be a string");
            return None;
        }
    };
    let condition = match condition {
        Ok(c) => c,
        Err(e) => {
            ctx.err(&["detection", "condition"], e.to_string());
            return None;
        }
    };
    let output = get("output").and_then(|o| match yaml_str(o) {
        Some(t) => match parse_output(&t) {
            Ok(parts) => Some(parts),
            Err(e) => {
                ctx.err(&["output"], format!("`output`: {e}"));
                None
            }
        },
        None => {
            ctx.err(&["output"], "`output` must be a string");
            None
        }
    });
    let throttle = get("throttle").and_then(|t| compile_throttle(ctx, t));
    let first_seen = get("first_seen").and_then(|t| compile_first_seen(ctx, t));
    let requires_placeholders = match str_list(get("requires_placeholders")) {
        Ok(l) => l,
        Err(()) => {
            ctx.err(
                &["requires_placeholders"],
                "`requires_placeholders` must be a list of placeholder names",
            );
            Vec::new()
        }
    };
    let mut empty_placeholders = Vec::new();
    for name in &requires_placeholders {
        match ctx.opts.placeholders.get(name) {
            None => ctx.err(
                &["requires_placeholders"],
                format!("`requires_placeholders`: unknown placeholder `{name}` (define it in placeholders.yaml or `rules.placeholders`)"),
            ),
            Some(values) if values.is_empty() => empty_placeholders.push(name.clone()),
            Some(_) => {}
        }
    }
    let several_stages = selections.iter().any(accepts_several_stages);
    let once_per_request = several_stages || selections.iter().any(accepts_missing_stage);
    let tests = match get("tests") {
        Some(t) if with_tests => compile_tests(ctx, t, v),
        _ => Vec::new(),
    };
    Some(Rule {
        meta,
        names,
        selections,
        condition,
        exceptions: Vec::new(),
        output,
        throttle,
        first_seen,
        tests,
        line,
        requires_placeholders,
        empty_placeholders,
        once_per_request,
        several_stages,
        name,
        alerts: true,
        falco: None,
    })
}

/// True if the selection has an item on `stage` that names more than one stage (such as
/// `[ResponseStarted, ResponseComplete]`): two events of one request can both match it.
fn accepts_several_stages(sel: &Selection) -> bool {
    let item = |c: &FieldCond| {
        c.fields.contains(&FieldRef::Stage)
            && c.patterns
                .iter()
                .filter(|p| !matches!(p, Pattern::Null | Pattern::Exists(_)))
                .count()
                > 1
    };
    match sel {
        Selection::Map(conds) => conds.iter().any(item),
        Selection::AnyOf(maps) => maps.iter().flatten().any(item),
        Selection::Keywords(_) | Selection::Falco(_) => false,
    }
}

/// True if the selection has an item on `stage` that accepts an absent stage (`null` or
/// `exists: false` among its values).
fn accepts_missing_stage(sel: &Selection) -> bool {
    let item = |c: &FieldCond| {
        c.fields.contains(&FieldRef::Stage)
            && c.patterns
                .iter()
                .any(|p| matches!(p, Pattern::Null | Pattern::Exists(false)))
    };
    match sel {
        Selection::Map(conds) => conds.iter().any(item),
        Selection::AnyOf(maps) => maps.iter().flatten().any(item),
        Selection::Keywords(_) | Selection::Falco(_) => false,
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The descriptive attributes shared by rules and correlations. `id` is required when
/// `id_required` (rules), optional otherwise (correlations: an empty `id` when absent); when
/// present it must be a UUID.
pub(super) fn compile_meta(
    ctx: &mut Ctx<'_>,
    map: &serde_yaml::Mapping,
    id_required: bool,
) -> RuleMeta {
    let get = |k: &str| map.get(k);
    let title = get("title").and_then(yaml_str);
    if title.is_none() {
        ctx.err(&[], "missing `title`");
    }
    let id = get("id").and_then(yaml_str);
    match &id {
        None if id_required => ctx.err(
            &[],
            "missing `id` (a UUID that identifies the rule for disabling and exceptions)",
        ),
        Some(id) if !is_uuid(id) => ctx.err(&["id"], format!("`id` `{id}` is not a UUID")),
        _ => {}
    }
    let level = match get("level").map(yaml_str) {
        None => Level::Medium,
        Some(Some(l)) => match Level::parse(&l) {
            Some(l) => l,
            None => {
                ctx.err(
                    &["level"],
                    format!("unknown level `{l}` (informational, low, medium, high, critical)"),
                );
                Level::Medium
            }
        },
        Some(None) => {
            ctx.err(&["level"], "`level` must be a string");
            Level::Medium
        }
    };
    let mut list = |key: &str| match str_list(get(key)) {
        Ok(l) => l,
        Err(()) => {
            ctx.err(&[key], format!("`{key}` must be a list of strings"));
            Vec::new()
        }
    };
    let tags = list("tags");
    let references = list("references");
    let falsepositives = list("falsepositives");
    RuleMeta {
        id: id.unwrap_or_default(),
        title: title.unwrap_or_default(),
        description: get("description").and_then(yaml_str),
        status: get("status").and_then(yaml_str),
        author: get("author").and_then(yaml_str),
        date: get("date").and_then(yaml_str),
        modified: get("modified").and_then(yaml_str),
        level,
        tags,
        references,
        falsepositives,
        source: ctx.source.to_string(),
        ruleset: ctx.opts.ruleset.clone(),
    }
}

/// The Sigma v2 `name` (optional): a non-empty string without spaces.
pub(super) fn compile_name(ctx: &mut Ctx<'_>, map: &serde_yaml::Mapping) -> Option<String> {
    match map.get("name") {
        None => None,
        Some(Yaml::String(n)) if !n.is_empty() && !n.chars().any(char::is_whitespace) => {
            Some(n.clone())
        }
        Some(_) => {
            ctx.err(
                &["name"],
                "`name` must be a non-empty string without spaces (such as `failed_login`)",
            );
            None
        }
    }
}

fn check_logsource(ctx: &mut Ctx<'_>, ls: Option<&Yaml>) {
    let Some(ls) = ls else {
        ctx.err(
            &[],
            "missing `logsource` (product: kubernetes, service: audit)",
        );
        return;
    };
    let product = ls.get("product").and_then(yaml_str);
    let service = ls.get("service").and_then(yaml_str);
    if product.as_deref() != Some("kubernetes") {
        ctx.err(
            &["logsource"],
            format!(
                "`logsource.product` is {:?}; tripline reads `kubernetes` audit events",
                product.unwrap_or_default()
            ),
        );
    }
    if service.as_deref().is_some_and(|s| s != "audit") {
        ctx.err(
            &["logsource", "service"],
            "`logsource.service` must be `audit`",
        );
    }
}

fn compile_selection(ctx: &mut Ctx<'_>, name: &str, v: &Yaml) -> Option<Selection> {
    match v {
        Yaml::Mapping(m) => compile_map(ctx, name, m).map(Selection::Map),
        Yaml::Sequence(items) if !items.is_empty() && items.iter().all(|i| i.is_mapping()) => {
            let mut maps = Vec::new();
            for i in items {
                maps.push(compile_map(ctx, name, i.as_mapping()?)?);
            }
            Some(Selection::AnyOf(maps))
        }
        Yaml::Sequence(items) if !items.is_empty() => {
            let mut pats = Vec::new();
            for i in items {
                match yaml_str(i) {
                    Some(s) => pats.push(compile_keyword(ctx, name, &s)?),
                    None => {
                        ctx.err(
                            &["detection", name],
                            format!("`{name}`: a list must hold only maps or only keywords"),
                        );
                        return None;
                    }
                }
            }
            Some(Selection::Keywords(pats))
        }
        Yaml::String(s) => Some(Selection::Keywords(vec![compile_keyword(ctx, name, s)?])),
        _ => {
            ctx.err(
                &["detection", name],
                format!("`{name}` must be a map, a list of maps, or a list of keywords"),
            );
            None
        }
    }
}

fn compile_keyword(ctx: &mut Ctx<'_>, name: &str, s: &str) -> Option<Pattern> {
    let mut toks = vec![Tok::Star];
    toks.extend(tokenize(s));
    toks.push(Tok::Star);
    toks.dedup_by(|a, b| *a == Tok::Star && *b == Tok::Star);
    match compile_tokens(&toks, false) {
        Ok(m) => Some(Pattern::Str(m)),
        Err(e) => {
            ctx.err(&["detection", name], format!("keyword `{s}`: {e}"));
            None
        }
    }
}

fn compile_map(ctx: &mut Ctx<'_>, name: &str, m: &serde_yaml::Mapping) -> Option<Vec<FieldCond>> {
    let mut conds = Vec::new();
    let mut ok = true;
    for (k, v) in m {
        let Some(key) = k.as_str() else {
            ctx.err(
                &["detection", name],
                format!("`{name}`: field names must be strings"),
            );
            ok = false;
            continue;
        };
        match compile_field(ctx.opts, key, v) {
            Ok(c) => conds.push(c),
            Err(msg) => {
                ctx.err(&["detection", name, key], format!("`{name}.{key}`: {msg}"));
                ok = false;
            }
        }
    }
    if conds.is_empty() && ok {
        ctx.err(&["detection", name], format!("`{name}` is empty"));
        return None;
    }
    // AND is commutative: test typed fields before ones that parse raw JSON on first use.
    conds.sort_by_key(|c| c.fields.iter().map(FieldRef::cost).max().unwrap_or(0));
    ok.then_some(conds)
}

/// One field name (no modifiers) read as a single event path, field mappings applied (a
/// correlation's `group-by` or `condition.field`). A name that a mapping maps to several paths
/// is refused: a group needs one value per field.
pub(super) fn compile_field_ref(opts: &CompileOptions, name: &str) -> Result<FieldRef, String> {
    let path = match opts.field_mappings.get(name).map(Vec::as_slice) {
        Some([one]) => one.as_str(),
        Some(_) => {
            return Err(format!(
                "field `{name}` is mapped to several paths; a group needs one"
            ))
        }
        None => name,
    };
    let path = FieldPath::parse(path).map_err(|e| e.to_string())?;
    Ok(FieldRef::resolve(&path))
}

/// Why a `field|modifiers: value(s)` entry does not compile: an unknown modifier, a bad value
/// for a modifier, a field path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(String);

/// Compiles one `field|modifiers: value(s)` entry (also used for configured exceptions).
pub fn compile_field(opts: &CompileOptions, key: &str, v: &Yaml) -> Result<FieldCond, FieldError> {
    compile_field_text(opts, key, v).map_err(FieldError)
}

fn compile_field_text(opts: &CompileOptions, key: &str, v: &Yaml) -> Result<FieldCond, String> {
    let mut parts = key.split('|');
    let field_name = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    let paths: Vec<String> = match opts.field_mappings.get(field_name) {
        Some(mapped) => mapped.clone(),
        None => vec![field_name.to_string()],
    };
    let mut fields = Vec::new();
    for p in &paths {
        let path = FieldPath::parse(p).map_err(|e| e.to_string())?;
        fields.push(FieldRef::resolve(&path));
    }

    #[derive(PartialEq, Clone, Copy)]
    enum Shape {
        Plain,
        Contains,
        Starts,
        Ends,
    }
    let mut shape = Shape::Plain;
    let (mut all, mut cased, mut expand, mut exists, mut cidr) =
        (false, false, false, false, false);
    let mut re: Option<String> = None;
    let mut cmp = None;
    for m in &mods {
        let set_shape = |shape: &mut Shape, s| {
            if *shape != Shape::Plain {
                return Err(
                    "only one of `contains`, `startswith`, `endswith` may be used".to_string(),
                );
            }
            *shape = s;
            Ok(())
        };
        match *m {
            "contains" => set_shape(&mut shape, Shape::Contains)?,
            "startswith" => set_shape(&mut shape, Shape::Starts)?,
            "endswith" => set_shape(&mut shape, Shape::Ends)?,
            "all" => all = true,
            "cased" => cased = true,
            "expand" => expand = true,
            "exists" => exists = true,
            "cidr" => cidr = true,
            "re" => re = Some(String::new()),
            "i" | "m" | "s" => match re.as_mut() {
                Some(flags) => flags.push_str(m),
                None => return Err(format!("modifier `{m}` must follow `re`")),
            },
            "gt" => cmp = Some(Cmp::Gt),
            "gte" => cmp = Some(Cmp::Gte),
            "lt" => cmp = Some(Cmp::Lt),
            "lte" => cmp = Some(Cmp::Lte),
            "" => return Err("empty modifier".into()),
            other => {
                return Err(format!(
                    "modifier `{other}` is not supported (supported: contains, startswith, endswith, all, re, i, m, s, cidr, exists, gt, gte, lt, lte, cased, expand)"
                ))
            }
        }
    }
    if re.is_some() && (shape != Shape::Plain || cidr || exists || cmp.is_some()) {
        return Err(
            "`re` cannot be combined with string, cidr, exists or numeric modifiers".into(),
        );
    }
    let values: Vec<Yaml> = match v {
        Yaml::Sequence(items) if items.is_empty() => return Err("empty value list".into()),
        Yaml::Sequence(items) => items.clone(),
        Yaml::Mapping(_) => {
            return Err("a field's value must be a scalar or a list of scalars".into())
        }
        other => vec![other.clone()],
    };
    let mut patterns = Vec::new();
    for value in values {
        if let Yaml::Sequence(_) | Yaml::Mapping(_) | Yaml::Tagged(_) = value {
            return Err("nested lists and maps are not allowed as values".into());
        }
        if exists {
            match value {
                Yaml::Bool(b) => patterns.push(Pattern::Exists(b)),
                _ => return Err("`exists` takes `true` or `false`".into()),
            }
            continue;
        }
        if let Some(op) = cmp {
            let n = match &value {
                Yaml::Number(n) => n.as_f64(),
                Yaml::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match n {
                Some(n) => patterns.push(Pattern::Compare(op, n)),
                None => return Err("numeric modifiers take a number".into()),
            }
            continue;
        }
        if value.is_null() {
            if shape != Shape::Plain || re.is_some() || cidr {
                return Err("`null` cannot be used with modifiers".into());
            }
            patterns.push(Pattern::Null);
            continue;
        }
        if shape == Shape::Plain && re.is_none() && !cidr && !expand {
            match value {
                Yaml::Bool(b) => {
                    patterns.push(Pattern::Bool(b));
                    continue;
                }
                Yaml::Number(ref n) => {
                    if let Some(f) = n.as_f64() {
                        patterns.push(Pattern::Num(f));
                        continue;
                    }
                }
                _ => {}
            }
        }
        let s = yaml_str(&value).ok_or("unsupported value type")?;
        let strings = if expand {
            expand_placeholders(&s, &opts.placeholders)?
        } else {
            vec![s]
        };
        for s in strings {
            if let Some(flags) = &re {
                // Flags go inline, so the compiled regex's text identifies it completely (shared
                // conditions are deduplicated by it).
                let mut inline: String = ['i', 'm', 's']
                    .into_iter()
                    .filter(|f| flags.contains(*f))
                    .collect();
                if !inline.is_empty() {
                    inline = format!("(?{inline})");
                }
                let r = super::matcher::LazyRegex::new(&format!("{inline}{s}"))
                    .map_err(|e| format!("invalid regex `{s}`: {e}"))?;
                patterns.push(Pattern::Str(StrMatcher::Regex(r)));
            } else if cidr {
                let net: ipnet::IpNet = s
                    .parse()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{s}` is not a CIDR network"))?;
                patterns.push(Pattern::Cidr(net));
            } else {
                let mut toks = tokenize(&s);
                if matches!(shape, Shape::Contains | Shape::Ends)
                    && toks.first() != Some(&Tok::Star)
                {
                    toks.insert(0, Tok::Star);
                }
                if matches!(shape, Shape::Contains | Shape::Starts)
                    && toks.last() != Some(&Tok::Star)
                {
                    toks.push(Tok::Star);
                }
                let m = compile_tokens(&toks, cased).map_err(|e| format!("value `{s}`: {e}"))?;
                patterns.push(Pattern::Str(m));
            }
        }
    }
    // Any of the values: their regular expressions searched as one.
    if !all {
        patterns = union_of_regexes(patterns);
    }
    // Only `expand` of defined but empty placeholders leaves no pattern (an empty value list
    // is refused above): the condition then matches nothing (see `FieldCond::matches`).
    Ok(FieldCond {
        name: field_name.to_string(),
        fields,
        patterns,
        all,
    })
}

/// Replaces `%name%` in `s` with each value of the placeholder (one output string per value).
fn expand_placeholders(
    s: &str,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    let mut outs = vec![String::new()];
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let name = &after[..end];
        let values = placeholders.get(name).ok_or_else(|| {
            format!("placeholder `%{name}%` has no value; set `rules.placeholders.{name}` in the config")
        })?;
        let prefix = &rest[..start];
        outs = outs
            .iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{prefix}{v}")))
            .collect();
        rest = &after[end + 1..];
    }
    for o in &mut outs {
        o.push_str(rest);
    }
    Ok(outs)
}

/// Parses an `output` template: `{field.path}` is replaced by the field's values; `{{`/`}}` are
/// literal braces.
pub fn parse_output(t: &str) -> Result<Vec<OutputPart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unterminated `{{{name}`")),
                    }
                }
                if !lit.is_empty() {
                    parts.push(OutputPart::Lit(std::mem::take(&mut lit)));
                }
                let path = FieldPath::parse(name.trim()).map_err(|e| e.to_string())?;
                parts.push(OutputPart::Field(FieldRef::resolve(&path)));
            }
            '}' => return Err("unmatched `}` (write `}}` for a literal brace)".into()),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(OutputPart::Lit(lit));
    }
    Ok(parts)
}

fn compile_throttle(ctx: &mut Ctx<'_>, t: &Yaml) -> Option<ThrottleSpec> {
    let key = match str_list(t.get("key")) {
        Ok(k) if !k.is_empty() => k,
        _ => {
            ctx.err(
                &["throttle"],
                "`throttle.key` must be a non-empty list of field paths",
            );
            return None;
        }
    };
    let mut fields = Vec::new();
    for k in &key {
        match FieldPath::parse(k) {
            Ok(p) => fields.push(FieldRef::resolve(&p)),
            Err(e) => {
                ctx.err(&["throttle", "key"], format!("`throttle.key`: {e}"));
                return None;
            }
        }
    }
    let window = t
        .get("window")
        .and_then(yaml_str)
        .and_then(|w| parse_duration(&w));
    let Some(window) = window else {
        ctx.err(
            &["throttle", "window"],
            "`throttle.window` must be a duration like `30s`, `10m`, `1h`",
        );
        return None;
    };
    if let Some(Yaml::Mapping(m)) = Some(t) {
        for k in m.keys() {
            if !matches!(k.as_str(), Some("key" | "window")) {
                ctx.err(
                    &["throttle"],
                    format!("unknown key `throttle.{}`", yaml_str(k).unwrap_or_default()),
                );
            }
        }
    }
    Some(ThrottleSpec {
        key: fields,
        window,
    })
}

fn compile_first_seen(ctx: &mut Ctx<'_>, t: &Yaml) -> Option<FirstSeenSpec> {
    let Some(m) = t.as_mapping() else {
        ctx.err(&["first_seen"], "`first_seen` must be a mapping");
        return None;
    };
    let mut ok = true;
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            Some("fields" | "normalize" | "history" | "learning" | "max_entries")
        ) {
            ctx.err(
                &["first_seen"],
                format!(
                    "unknown key `first_seen.{}`",
                    yaml_str(k).unwrap_or_default()
                ),
            );
            ok = false;
        }
    }
    let names = match str_list(t.get("fields")) {
        Ok(k) if (1..=3).contains(&k.len()) => k,
        _ => {
            ctx.err(
                &["first_seen", "fields"],
                "`first_seen.fields` must be a list of 1 to 3 field paths",
            );
            return None;
        }
    };
    let mut fields = Vec::new();
    for name in &names {
        match FieldPath::parse(name) {
            Ok(p) => fields.push(FirstSeenField {
                name: name.clone(),
                field: FieldRef::resolve(&p),
                normalize: None,
            }),
            Err(e) => {
                ctx.err(
                    &["first_seen", "fields"],
                    format!("`first_seen.fields`: {e}"),
                );
                ok = false;
            }
        }
    }
    match t.get("normalize") {
        None => {}
        Some(Yaml::Mapping(n)) => {
            for (k, v) in n {
                let (Some(field), Some(how)) = (yaml_str(k), yaml_str(v)) else {
                    ctx.err(
                        &["first_seen", "normalize"],
                        "`first_seen.normalize` maps field paths to normalisations",
                    );
                    ok = false;
                    continue;
                };
                let Some(how) = Normalize::parse(&how) else {
                    ctx.err(
                        &["first_seen", "normalize"],
                        format!("`first_seen.normalize`: unknown normalisation `{how}` for `{field}` (product_major, network or lowercase)"),
                    );
                    ok = false;
                    continue;
                };
                match fields.iter_mut().find(|f| f.name == field) {
                    Some(f) => f.normalize = Some(how),
                    None => {
                        ctx.err(
                            &["first_seen", "normalize"],
                            format!("`first_seen.normalize`: `{field}` is not one of `first_seen.fields`"),
                        );
                        ok = false;
                    }
                }
            }
        }
        Some(_) => {
            ctx.err(
                &["first_seen", "normalize"],
                "`first_seen.normalize` must be a mapping of field paths to normalisations",
            );
            ok = false;
        }
    }
    let mut duration = |key: &str| {
        let d = t
            .get(key)
            .and_then(yaml_str)
            .and_then(|w| parse_duration(&w));
        if d.is_none() {
            ctx.err(
                &["first_seen", key],
                format!("`first_seen.{key}` must be a duration like `12h`, `7d`"),
            );
        }
        d
    };
    let history = duration("history");
    let learning = duration("learning");
    let max_entries = match t.get("max_entries") {
        None => super::baseline::DEFAULT_MAX_ENTRIES,
        Some(v) => match v.as_u64().filter(|n| *n > 0) {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => {
                ctx.err(
                    &["first_seen", "max_entries"],
                    "`first_seen.max_entries` must be a positive whole number",
                );
                return None;
            }
        },
    };
    if !ok {
        return None;
    }
    Some(FirstSeenSpec {
        fields,
        history: history?,
        learning: learning?,
        max_entries,
    })
}

fn compile_tests(ctx: &mut Ctx<'_>, t: &Yaml, rule: &Yaml) -> Vec<RuleTest> {
    let Some(items) = t.as_sequence() else {
        ctx.err(&["tests"], "`tests` must be a list");
        return Vec::new();
    };
    let base = key_line(ctx.doc.text, &["tests"]).unwrap_or(0);
    let lines: Vec<&str> = ctx.doc.text.lines().collect();
    // Each test item starts at a `- ` line below `tests:`, at the first item's indentation.
    let item_lines: Vec<usize> = {
        let mut found = Vec::new();
        let mut indent = None;
        for (i, l) in lines.iter().enumerate().skip(base + 1) {
            let ind = l.len() - l.trim_start().len();
            if !l.trim().is_empty() && ind == 0 && !l.trim_start().starts_with('-') {
                break;
            }
            if l.trim_start().starts_with("- ") || l.trim() == "-" {
                if indent.is_none() {
                    indent = Some(ind);
                }
                if Some(ind) == indent {
                    found.push(i);
                }
            }
        }
        found
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let line = ctx.doc.first_line + item_lines.get(i).copied().unwrap_or(base);
        let name = item
            .get("name")
            .and_then(yaml_str)
            .unwrap_or_else(|| format!("test {}", i + 1));
        let expect = match item.get("match") {
            Some(Yaml::Bool(b)) => *b,
            _ => {
                ctx.err_at(
                    line,
                    format!("test `{name}`: `match: true|false` is required"),
                );
                continue;
            }
        };
        let event_json = match item.get("event") {
            Some(ev @ Yaml::Mapping(_)) => match serde_json::to_string(ev) {
                Ok(j) => j,
                Err(e) => {
                    ctx.err_at(
                        line,
                        format!("test `{name}`: event cannot be written as JSON: {e}"),
                    );
                    continue;
                }
            },
            _ => {
                ctx.err_at(
                    line,
                    format!("test `{name}`: `event` must be a mapping (an audit event)"),
                );
                continue;
            }
        };
        let variant = match item.get("placeholders") {
            None | Some(Yaml::Null) => None,
            Some(Yaml::Mapping(m)) => match compile_variant(ctx, rule, m, &name, line) {
                Some(r) => Some(Box::new(r)),
                None => continue,
            },
            Some(_) => {
                ctx.err_at(
                    line,
                    format!("test `{name}`: `placeholders` must map placeholder names to lists of values"),
                );
                continue;
            }
        };
        out.push(RuleTest {
            name,
            expect_match: expect,
            event_json,
            line,
            variant,
        });
    }
    out
}

/// The rule compiled again with a test's `placeholders:` replacing the configured values;
/// problems are reported at the test's line.
fn compile_variant(
    ctx: &mut Ctx<'_>,
    rule: &Yaml,
    overrides: &serde_yaml::Mapping,
    test: &str,
    line: usize,
) -> Option<Rule> {
    if !ctx.errors.is_empty() {
        // The rule does not load anyway; its problems are reported once.
        return None;
    }
    let mut opts = ctx.opts.clone();
    let mut ok = true;
    for (k, v) in overrides {
        let name = yaml_str(k).unwrap_or_default();
        if !opts.placeholders.contains_key(&name) {
            ctx.err_at(
                line,
                format!("test `{test}`: `placeholders`: unknown placeholder `{name}`"),
            );
            ok = false;
            continue;
        }
        match str_list(Some(v)) {
            Ok(values) => {
                opts.placeholders.insert(name, values);
            }
            Err(()) => {
                ctx.err_at(
                    line,
                    format!("test `{test}`: `placeholders.{name}` must be a list of strings"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let mut inner = Ctx {
        source: ctx.source,
        doc: ctx.doc,
        opts: &opts,
        errors: Vec::new(),
    };
    let compiled = compile_rule_with(&mut inner, rule, false);
    let errors = std::mem::take(&mut inner.errors);
    if !errors.is_empty() {
        for e in errors {
            ctx.err_at(
                e.line,
                format!("with the placeholders of test `{test}`: {}", e.message),
            );
        }
        return None;
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CompileOptions {
        CompileOptions {
            placeholders: [(
                "registries".to_string(),
                vec!["a.io/".to_string(), "b.io/".to_string()],
            )]
            .into_iter()
            .collect(),
            field_mappings: builtin_field_mappings(),
            ruleset: "test".into(),
        }
    }

    const GOOD: &str = "title: T\nid: 3f1c2a7e-0d5b-4e3a-9b1e-6c2f8a4d7e10\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n  selection:\n    verb: get\n  condition: selection\nlevel: high\n";

    #[test]
    fn a_good_rule_loads() {
        let (rules, errors) = load_str("r.yml", GOOD, &opts());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].meta.level, Level::High);
        assert_eq!(rules[0].line, 2);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let bad = GOOD.replace("    verb: get", "    verb|base64: get");
        let text = format!("{GOOD}---\n{bad}");
        let (rules, errors) = load_str("r.yml", &text, &opts());
        assert_eq!(rules.len(), 1, "the good rule still loads");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 19, "{}", errors[0]);
        assert!(
            errors[0].to_string().starts_with("r.yml:19: "),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains("base64"), "{}", errors[0]);
    }

    /// `first_seen` is checked at load time, each error at the line of its key.
    #[test]
    fn first_seen_errors_name_the_line_of_the_key() {
        let ok = "first_seen:\n  fields: [user.username, userAgent]\n  normalize: {userAgent: product_major}\n  history: 14d\n  learning: 7d\n";
        let (rules, errors) = load_str("r.yml", &format!("{GOOD}{ok}"), &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let spec = rules[0].first_seen.as_ref().unwrap();
        assert_eq!(spec.fields[1].normalize, Some(Normalize::ProductMajor));
        assert_eq!(spec.history.as_secs(), 14 * 86400);
        // (the block, the line of the error, a part of its message)
        for (block, line, want) in [
            ("first_seen:\n  fields: []\n  history: 1d\n  learning: 1d\n", 12, "1 to 3"),
            ("first_seen:\n  fields: [a, b, c, d]\n  history: 1d\n  learning: 1d\n", 12, "1 to 3"),
            ("first_seen:\n  fields: [a]\n  normalize: {a: upper}\n  history: 1d\n  learning: 1d\n", 13, "unknown normalisation"),
            ("first_seen:\n  fields: [a]\n  normalize: {b: lowercase}\n  history: 1d\n  learning: 1d\n", 13, "not one of"),
            ("first_seen:\n  fields: [a]\n  history: 2 weeks\n  learning: 1d\n", 13, "first_seen.history"),
            ("first_seen:\n  fields: [a]\n  history: 1d\n  learning: 0d\n", 14, "first_seen.learning"),
            ("first_seen:\n  fields: [a]\n  history: 1d\n  learning: 1d\n  window: 1d\n", 11, "unknown key"),
        ] {
            let (rules, errors) = load_str("r.yml", &format!("{GOOD}{block}"), &opts());
            assert!(rules.is_empty(), "{block}");
            assert_eq!(errors.len(), 1, "{block}: {errors:?}");
            assert_eq!(errors[0].line, line, "{block}: {}", errors[0]);
            assert!(errors[0].message.contains(want), "{block}: {}", errors[0]);
        }
    }

    #[test]
    fn unsupported_constructs_are_load_errors() {
        // (a line of GOOD, what it is changed to, a part of the expected error)
        let mut cases: Vec<(&str, String, &str)> = [
            (
                "  condition: selection",
                "  condition: selection | count() > 3",
                "aggregations",
            ),
            (
                "  condition: selection",
                "  condition: selection and missing",
                "not a detection",
            ),
            ("level: high", "level: severe", "unknown level"),
            (
                "id: 3f1c2a7e-0d5b-4e3a-9b1e-6c2f8a4d7e10",
                "id: not-a-uuid",
                "not a UUID",
            ),
            (
                "  product: kubernetes",
                "  product: windows",
                "logsource.product",
            ),
        ]
        .into_iter()
        .map(|(from, to, want)| (from, to.to_string(), want))
        .collect();
        // The selection's `verb: get` changed to `verb<to>`.
        for (to, want) in [
            ("|windash: get", "not supported"),
            ("|i: get", "must follow `re`"),
            ("|contains|startswith: get", "only one of"),
            ("|exists: yes please", "`exists` takes"),
            ("|gt: many", "numeric"),
            ("|cidr: 10.0.0.0/99", "CIDR"),
            ("|re: '('", "invalid regex"),
            ("|expand: '%nope%'", "placeholder `%nope%`"),
            (": {a: b}", "scalar"),
            (": []", "empty value list"),
            ("['x: get", "field path"),
        ] {
            cases.push(("    verb: get", format!("    verb{to}"), want));
        }
        for (from, to, want) in cases {
            let text = GOOD.replace(from, &to);
            assert_ne!(text, GOOD, "{from} not found");
            let (rules, errors) = load_str("r.yml", &text, &opts());
            assert!(rules.is_empty(), "{to}: should not load");
            assert!(
                errors.iter().any(|e| e.message.contains(want)),
                "{to}: want {want:?} in {errors:?}"
            );
        }
    }

    const ALLOW_RULE: &str = "title: T\nid: 3f1c2a7e-0d5b-4e3a-9b1e-6c2f8a4d7e10\nlogsource:\n  product: kubernetes\n  service: audit\nrequires_placeholders: [allowed]\ndetection:\n  selection:\n    verb: get\n  filter:\n    user.username|expand: '%allowed%'\n  condition: selection and not filter\nlevel: high\ntests:\n  - name: a user outside the list\n    match: true\n    placeholders: {allowed: [alice]}\n    event: {kind: Event, verb: get, user: {username: bob}}\n  - name: a user in the list\n    match: false\n    placeholders: {allowed: [alice, carol]}\n    event: {kind: Event, verb: get, user: {username: carol}}\n  - name: inactive without values\n    match: false\n    event: {kind: Event, verb: get, user: {username: bob}}\n";

    fn with_placeholder(name: &str, values: &[&str]) -> CompileOptions {
        let mut o = opts();
        o.placeholders.insert(
            name.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        o
    }

    #[test]
    fn requires_placeholders_names_known_placeholders() {
        let (rules, errors) = load_str("r.yml", ALLOW_RULE, &with_placeholder("allowed", &[]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules[0].requires_placeholders, vec!["allowed"]);
        assert!(!rules[0].is_active());
        let (rules, errors) = load_str("r.yml", ALLOW_RULE, &with_placeholder("allowed", &["x"]));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rules[0].is_active());
        // Unknown: a load error at the key's line.
        let text = ALLOW_RULE.replace(
            "requires_placeholders: [allowed]",
            "requires_placeholders: [alowed]",
        );
        let (rules, errors) = load_str("r.yml", &text, &with_placeholder("allowed", &[]));
        assert!(rules.is_empty());
        assert!(
            errors
                .iter()
                .any(|e| e.line == 6 && e.message.contains("unknown placeholder `alowed`")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_test_with_placeholders_runs_the_rule_compiled_with_them() {
        let (rules, errors) = load_str("r.yml", ALLOW_RULE, &with_placeholder("allowed", &[]));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rules[0].tests[0].variant.is_some());
        assert!(rules[0].tests[2].variant.is_none());
        let (ran, failures) = crate::rules::run_tests(&rules);
        assert_eq!((ran, failures.len()), (3, 0), "{failures:?}");

        // A positive test that leaves the rule inactive fails and says why.
        let text = ALLOW_RULE.replace(
            "  - name: inactive without values\n    match: false",
            "  - name: inactive without values\n    match: true",
        );
        let (rules, _) = load_str("r.yml", &text, &with_placeholder("allowed", &[]));
        let (_, failures) = crate::rules::run_tests(&rules);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].detail.contains("inactive"), "{}", failures[0]);

        // A test's placeholders must name defined placeholders and hold strings.
        for (from, to, want) in [
            (
                "{allowed: [alice]}",
                "{allowd: [alice]}",
                "unknown placeholder `allowd`",
            ),
            (
                "{allowed: [alice]}",
                "{allowed: {a: b}}",
                "must be a list of strings",
            ),
            (
                "{allowed: [alice]}",
                "[alice]",
                "must map placeholder names",
            ),
        ] {
            let text = ALLOW_RULE.replace(from, to);
            let (rules, errors) = load_str("r.yml", &text, &with_placeholder("allowed", &[]));
            assert!(rules.is_empty(), "{to}");
            assert!(
                errors
                    .iter()
                    .any(|e| e.line == 15 && e.message.contains(want)),
                "{to}: {errors:?}"
            );
        }
    }

    #[test]
    fn placeholders_expand_to_a_value_list() {
        let c = compile_field(
            &opts(),
            "image|expand|startswith",
            &Yaml::String("%registries%".into()),
        )
        .unwrap();
        assert_eq!(c.patterns.len(), 2);
        let c = compile_field(
            &opts(),
            "image|expand",
            &Yaml::String("x/%registries%y".into()),
        )
        .unwrap();
        assert_eq!(c.patterns.len(), 2);
    }

    #[test]
    fn field_mappings_apply_to_abstract_names() {
        let c = compile_field(&opts(), "hostPath", &Yaml::String("*".into())).unwrap();
        assert_eq!(
            c.fields,
            vec![FieldRef::Pod(vec![
                "volumes".into(),
                "hostPath".into(),
                "path".into()
            ])]
        );
    }

    #[test]
    fn output_templates_parse_fields_and_escapes() {
        let parts = parse_output("{user.username} read {{x}} {objectRef.name}").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], OutputPart::Lit(" read {x} ".into()));
        assert!(parse_output("{unterminated").is_err());
        assert!(parse_output("a } b").is_err());
    }

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}
