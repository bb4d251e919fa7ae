//! The compiled, immutable [`RuleSet`]: rules indexed by the verbs and resources they can match,
//! evaluation, throttling and output rendering.

use std::collections::HashSet;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::baseline::SharedBaseline as BaselineRef;
use super::condition::Expr;
use super::correlation::{Correlation, CorrelationInput};
use super::matcher::{Cmp, LazyRegex, Pattern, StrMatcher};
use super::model::{FieldCond, OutputPart, Rule, Selection};
use crate::event::{Event, FieldRef, FieldValue};

/// Default bound on the number of throttle keys held at once.
pub const DEFAULT_THROTTLE_MAX_KEYS: usize = 100_000;

/// Default bound on the (rule, request) pairs remembered so that a rule alerts once per
/// request on events without `stage`; the oldest are forgotten first.
pub const DEFAULT_REQUEST_MAX_KEYS: usize = 65_536;

impl FieldCond {
    /// True if and only if this condition holds for `ev`.
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        // No values (an `expand` of empty placeholders): nothing matches, with `all` too.
        if self.patterns.is_empty() {
            return false;
        }
        // Fast path: one typed single-valued field, read once without callbacks.
        if let ([field], false) = (self.fields.as_slice(), self.all) {
            if let Some(v) = ev.scalar(field) {
                // An address is parsed once for all the networks of a `cidr` list.
                let mut ip = None;
                return self.patterns.iter().any(|p| match (p, v) {
                    (Pattern::Null, v) => v.is_none(),
                    (Pattern::Exists(want), v) => v.is_some() == *want,
                    (Pattern::Cidr(net), Some(FieldValue::Str(s))) => ip
                        .get_or_insert_with(|| s.trim().parse::<std::net::IpAddr>().ok())
                        .is_some_and(|ip| net.contains(&ip)),
                    (p, Some(v)) => p.matches_value(v),
                    (_, None) => false,
                });
            }
        }
        if self.all {
            return self
                .patterns
                .iter()
                .all(|p| self.fields.iter().any(|f| p.matches_field(ev, f)));
        }
        self.fields.iter().any(|f| {
            self.patterns
                .iter()
                .any(|p| p.is_field_level() && p.matches_field(ev, f))
                || (self.patterns.iter().any(|p| !p.is_field_level())
                    && ev.any_value(f, &mut |v| {
                        self.patterns
                            .iter()
                            .any(|p| !p.is_field_level() && p.matches_value(v))
                    }))
        })
    }

    /// True if the condition reads only `impersonatedUser` fields and cannot hold without
    /// that member (no `null` or `exists: false` among its values).
    fn needs_impersonation(&self) -> bool {
        self.fields.iter().all(|f| {
            matches!(
                f,
                FieldRef::ImpersonatedName
                    | FieldRef::ImpersonatedUid
                    | FieldRef::ImpersonatedGroups
                    | FieldRef::ImpersonatedExtra(_)
            )
        }) && !self.fields.is_empty()
            && !self
                .patterns
                .iter()
                .any(|p| matches!(p, Pattern::Null | Pattern::Exists(false)))
    }

    /// The lowercased values this condition requires for `field`, if it is a plain equality on it.
    fn required_values(&self, field: &FieldRef) -> Option<HashSet<String>> {
        if self.all || self.fields.len() != 1 || &self.fields[0] != field {
            return None;
        }
        self.patterns
            .iter()
            .map(|p| match p {
                super::matcher::Pattern::Str(m) => m.exact_value().map(str::to_lowercase),
                _ => None,
            })
            .collect()
    }
}

fn map_matches(conds: &[FieldCond], ev: &Event<'_>) -> bool {
    conds.iter().all(|c| c.matches(ev))
}

impl Selection {
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        match self {
            Selection::Map(conds) => map_matches(conds, ev),
            Selection::AnyOf(maps) => maps.iter().any(|m| map_matches(m, ev)),
            Selection::Keywords(pats) => pats
                .iter()
                .any(|p| p.matches_value(FieldValue::Str(ev.raw()))),
            Selection::Falco(c) => super::falco::FalcoCond::applies(ev) && c.matches(ev),
        }
    }

    fn required_values(&self, field: &FieldRef) -> Option<HashSet<String>> {
        let of_map = |conds: &[FieldCond]| {
            conds
                .iter()
                .filter_map(|c| c.required_values(field))
                .reduce(|a, b| a.intersection(&b).cloned().collect())
        };
        match self {
            Selection::Map(conds) => of_map(conds),
            Selection::AnyOf(maps) => maps
                .iter()
                .map(|m| of_map(m))
                .collect::<Option<Vec<_>>>()
                .map(|sets| sets.into_iter().flatten().collect()),
            Selection::Keywords(_) => None,
            Selection::Falco(c) => c.required_values(field),
        }
    }
}

/// The values of `field` that `expr` requires, or `None` if any value (or none) could match.
/// Sound by construction: a rule whose condition holds always has its field in the set.
fn required_values(expr: &Expr, sels: &[Selection], field: &FieldRef) -> Option<HashSet<String>> {
    match expr {
        Expr::Sel(i) => sels[*i].required_values(field),
        Expr::Not(_) => None,
        Expr::And(es) => es
            .iter()
            .filter_map(|e| required_values(e, sels, field))
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
        Expr::Or(es) => es
            .iter()
            .map(|e| required_values(e, sels, field))
            .collect::<Option<Vec<_>>>()
            .map(|sets| sets.into_iter().flatten().collect()),
        Expr::AtLeast(_, ids) => ids
            .iter()
            .map(|i| sels[*i].required_values(field))
            .collect::<Option<Vec<_>>>()
            .map(|sets| sets.into_iter().flatten().collect()),
    }
}

impl Rule {
    /// True if and only if the rule's detection holds for `ev` and no configured exception does.
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        self.detection_matches(ev) && !self.exceptions.iter().any(|e| map_matches(e, ev))
    }

    /// The detection alone, without configured exceptions (what embedded tests check).
    pub fn detection_matches(&self, ev: &Event<'_>) -> bool {
        self.condition.eval(&mut |i| self.selections[i].matches(ev))
    }

    /// Renders the `output` template like [`Rule::render_output`], but never shows a value that
    /// redaction removed from the event (`secrets`, as returned by `redact_event`): a field value
    /// equal to one of them (as text or as a number) renders as `[REDACTED]`, and longer
    /// values are scrubbed of them.
    pub fn render_output_redacted(&self, ev: &Event<'_>, secrets: &[String]) -> String {
        self.render(ev, ev.raw(), secrets).0
    }

    /// Renders the output of `ev`, with the fields of a Falco `output` read from
    /// `falco_text` (the redacted event, so that a field such as `jevt.obj` never shows what
    /// redaction removed), and for a Falco rule its `output_fields` (field name -> value,
    /// `null` where the field has no value, an array for a list field), redacted alike.
    pub fn render(
        &self,
        ev: &Event<'_>,
        falco_text: &str,
        secrets: &[String],
    ) -> (String, serde_json::Map<String, serde_json::Value>) {
        use crate::event::redact::{scrub, REDACTED};
        let mut fields = serde_json::Map::new();
        let Some(parts) = &self.output else {
            return (self.meta.title.clone(), fields);
        };
        let numbers: Vec<f64> = secrets.iter().filter_map(|s| s.parse().ok()).collect();
        let clean = |v: &str, out: &mut String| {
            // Most events had nothing redacted: nothing to compare or scrub.
            if secrets.is_empty() {
                out.push_str(v);
            } else if secrets.iter().any(|s| s == v)
                || (!numbers.is_empty() && v.parse::<f64>().is_ok_and(|n| numbers.contains(&n)))
            {
                out.push_str(REDACTED);
            } else {
                out.push_str(&scrub(v, secrets));
            }
        };
        let members = std::cell::OnceCell::new();
        let doc = std::cell::OnceCell::new();
        let mut out = String::with_capacity(128);
        for p in parts {
            match p {
                OutputPart::Lit(s) => out.push_str(s),
                OutputPart::Field(f) => {
                    let vals = ev.values_as_strings(f);
                    if vals.is_empty() {
                        out.push_str("<none>");
                    }
                    for (i, v) in vals.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        clean(v, &mut out);
                    }
                }
                OutputPart::Falco(f) => {
                    let doc = doc.get_or_init(|| {
                        let members = members.get_or_init(|| crate::event::members_of(falco_text));
                        super::falco::Doc::with_members(falco_text, members.as_deref())
                    });
                    let vals: Vec<String> = doc
                        .extract(f)
                        .unwrap_or_default()
                        .iter()
                        .map(|v| {
                            let mut c = String::with_capacity(v.len());
                            clean(v, &mut c);
                            c
                        })
                        .collect();
                    // As Falco prints them: `<NA>` without a value, `(a,b)` for a list.
                    let text = match (vals.as_slice(), f.def.list) {
                        ([], _) => "<NA>".to_string(),
                        ([v], false) => v.clone(),
                        (vs, _) => format!("({})", vs.join(",")),
                    };
                    out.push_str(&text);
                    let value = match (vals.is_empty(), f.def.list) {
                        (true, _) => serde_json::Value::Null,
                        (false, true) => serde_json::Value::from(vals),
                        (false, false) => serde_json::Value::from(text),
                    };
                    fields.insert(f.to_string(), value);
                }
            }
        }
        (out, fields)
    }

    /// Renders the `output` template (or the title) for `ev`. Fields with several values are
    /// joined with `, `; a missing field renders as `<none>`.
    pub fn render_output(&self, ev: &Event<'_>) -> String {
        self.render_output_redacted(ev, &[])
    }
}

#[inline]
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Candidate rules for one verb (or, in [`Index::any_verb`], for rules that require none).
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Rules that require no particular resource.
    any_resource: Vec<u32>,
    /// Rules by each resource they require.
    by_resource: rustc_hash::FxHashMap<String, Vec<u32>>,
}

impl Bucket {
    fn add(&mut self, rule: u32, resources: &Option<HashSet<String>>) {
        match resources {
            None => self.any_resource.push(rule),
            Some(set) => {
                for r in set {
                    self.by_resource.entry(r.clone()).or_default().push(rule);
                }
            }
        }
    }

    /// The candidates for an event with this resource; each rule at most once.
    fn candidates<'s>(&'s self, resource: Option<&'s str>) -> impl Iterator<Item = u32> + 's {
        let by_res = resource
            .and_then(|r| self.by_resource.get(r))
            .map_or(&[][..], Vec::as_slice);
        self.any_resource.iter().chain(by_res.iter()).copied()
    }
}

/// Rules indexed by the verbs and resources their conditions require: an event is tested only
/// against rules that can match its verb and resource.
#[derive(Debug, Default, Clone)]
struct Index {
    by_verb: rustc_hash::FxHashMap<String, Bucket>,
    any_verb: Bucket,
}

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let mut idx = Index::default();
        for (i, r) in rules.iter().enumerate() {
            if !r.is_active() {
                // Never a candidate: inactive rules are not evaluated.
                continue;
            }
            let i = i as u32;
            let resources = required_values(&r.condition, &r.selections, &FieldRef::ObjResource);
            match required_values(&r.condition, &r.selections, &FieldRef::Verb) {
                Some(verbs) => {
                    for v in verbs {
                        idx.by_verb.entry(v).or_default().add(i, &resources);
                    }
                }
                None => idx.any_verb.add(i, &resources),
            }
        }
        idx
    }

    fn candidates<'s>(
        &'s self,
        verb: Option<&str>,
        resource: Option<&'s str>,
    ) -> impl Iterator<Item = u32> + 's {
        verb.and_then(|v| self.by_verb.get(v))
            .into_iter()
            .flat_map(move |b| b.candidates(resource))
            .chain(self.any_verb.candidates(resource))
    }
}

/// A selection in terms of shared condition ids.
#[derive(Debug, Clone)]
enum SharedSel {
    Map(Vec<u32>),
    AnyOf(Vec<Vec<u32>>),
    /// Keywords and Falco conditions are evaluated from the rule's own selection.
    Keywords,
}

/// Field conditions deduplicated across all rules (the same `user.username|expand:
/// '%system_components%'` filter appears in many rules), so that each is evaluated at most once
/// per event.
#[derive(Debug, Default, Clone)]
struct Shared {
    conds: Vec<FieldCond>,
    /// The same conditions in their fastest form (parallel to `conds`).
    preds: Vec<Pred>,
    rules: Vec<Vec<SharedSel>>,
    exceptions: Vec<Vec<Vec<u32>>>,
    /// Per rule: clauses that must all hold for the rule to match, each a set of conditions at
    /// least one of which is true (empty: none known). Checked, memoised, before the rule's
    /// condition is evaluated, so most rules are rejected with a few cached lookups.
    guards: Vec<Vec<Vec<u32>>>,
    /// Per rule: how many of its first guard clauses are on fields read without parsing (cost
    /// at most 1). [`RuleSet::eval`] checks those, then the rule's [`Shared::vetoes`], then
    /// the guard clauses on an annotation, `extra` or a body.
    eager_guards: Vec<usize>,
    /// Per rule: the maps of its condition's top-level `not` filters whose conditions are all
    /// plain string comparisons of typed fields ([`Pred::Str`]): when every condition of one
    /// holds, the rule cannot match. `not 1 of filter_*` with a service-account or
    /// `%system_components%` filter turns most events away before an annotation is decoded.
    vetoes: Vec<Vec<Vec<u32>>>,
    /// Per rule: its condition as clauses and vetoes alone, when it has that shape
    /// ([`exact`]); [`RuleSet::eval`] then checks them directly instead of walking the
    /// condition.
    exact: Vec<Option<Exact>>,
}

/// A condition that is a conjunction of clauses (each: one of its conditions holds), vetoes
/// (maps that must not hold entirely) and alternatives: `selection and response_ok and not 1
/// of filter_*` with `response_ok` a list of one-condition maps, or `selection and 1 of
/// admin_*` and `selection and (not service_account or client)`.
#[derive(Debug, Clone, Default)]
struct Exact {
    clauses: Vec<Vec<u32>>,
    vetoes: Vec<Vec<u32>>,
    /// Each holds when one of its maps holds entirely (`false`) or does not (`true`).
    alternatives: Vec<Vec<(bool, Vec<u32>)>>,
}

impl Shared {
    fn build(rules: &[Rule]) -> Shared {
        let mut shared = Shared::default();
        let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut intern = |c: &FieldCond, conds: &mut Vec<FieldCond>| -> u32 {
            // Fields, `all` and each pattern's key identify a condition exactly (flags and
            // case sensitivity included).
            let patterns: Vec<String> = c.patterns.iter().map(Pattern::key).collect();
            let key = format!("{:?}|{}|{}", c.fields, c.all, patterns.join("\u{1f}"));
            *ids.entry(key).or_insert_with(|| {
                conds.push(c.clone());
                (conds.len() - 1) as u32
            })
        };
        for r in rules {
            let mut sels = Vec::new();
            for sel in &r.selections {
                sels.push(match sel {
                    Selection::Map(cs) => {
                        SharedSel::Map(cs.iter().map(|c| intern(c, &mut shared.conds)).collect())
                    }
                    Selection::AnyOf(maps) => SharedSel::AnyOf(
                        maps.iter()
                            .map(|m| m.iter().map(|c| intern(c, &mut shared.conds)).collect())
                            .collect(),
                    ),
                    Selection::Keywords(_) | Selection::Falco(_) => SharedSel::Keywords,
                });
            }
            shared.rules.push(sels);
            shared.exceptions.push(
                r.exceptions
                    .iter()
                    .map(|m| m.iter().map(|c| intern(c, &mut shared.conds)).collect())
                    .collect(),
            );
        }
        shared.preds = shared.conds.iter().map(Pred::from_cond).collect();
        shared.guards = rules
            .iter()
            .zip(&shared.rules)
            .map(|(r, sels)| {
                let mut clauses = match &r.condition {
                    Expr::And(es) => es
                        .iter()
                        .filter_map(|e| necessary(e, sels, &shared.conds))
                        .collect(),
                    e => necessary(e, sels, &shared.conds)
                        .into_iter()
                        .collect::<Vec<_>>(),
                };
                // Cheap, single-condition clauses first.
                clauses.sort_by_key(|c| clause_order(c, &shared.conds));
                clauses
            })
            .collect();
        // Regular expressions wait until the vetoes have had their say.
        shared.eager_guards = shared
            .guards
            .iter()
            .map(|clauses| {
                clauses
                    .iter()
                    .take_while(|c| {
                        clause_cost(c, &shared.conds) <= 1
                            && clause_match_cost(c, &shared.conds) < 2
                    })
                    .count()
            })
            .collect();
        shared.vetoes = rules
            .iter()
            .zip(&shared.rules)
            .map(|(r, sels)| vetoes(&r.condition, sels, &shared.preds))
            .collect();
        shared.exact = rules
            .iter()
            .zip(&shared.rules)
            .enumerate()
            .map(|(i, (r, sels))| {
                let mut plan = Exact::default();
                let exact = exact(&r.condition, sels, false, &mut plan);
                // Every clause must hold: any order gives the same result, so the cheap ones go
                // first (the order written among equals). Vetoes keep the written order.
                plan.clauses.sort_by_key(|c| clause_order(c, &shared.conds));
                // [`RuleSet::eval`] has checked the guards and vetoes before the plan: what
                // they settled is not looked up again.
                let same = |a: &[u32], b: &[u32]| {
                    let (mut a, mut b) = (a.to_vec(), b.to_vec());
                    a.sort_unstable();
                    b.sort_unstable();
                    a == b
                };
                plan.clauses
                    .retain(|c| !shared.guards[i].iter().any(|g| same(g, c)));
                plan.vetoes
                    .retain(|v| !shared.vetoes[i].iter().any(|w| same(w, v)));
                exact.then_some(plan)
            })
            .collect();
        shared
    }
}

impl Shared {
    /// The guard clause of rule `i` that rejects the most events, as far as can be told
    /// without data: one of string comparisons with given values, else any clause on a field
    /// whose values vary, else the first.
    fn gate(&self, i: usize) -> Option<&Vec<u32>> {
        let guards = &self.guards[i];
        let varied = |c: &&Vec<u32>| !weak(c, &self.conds);
        let values = |c: &&Vec<u32>| {
            c.iter().all(|&id| {
                matches!(
                    self.preds[id as usize],
                    Pred::Str {
                        or_absent: false,
                        or_present: false,
                        ..
                    }
                )
            })
        };
        guards
            .iter()
            .filter(varied)
            .find(values)
            .or_else(|| guards.iter().find(varied))
            .or(guards.first())
    }
}

/// [`Shared::vetoes`] of a rule with condition `expr` and selections `sels`.
fn vetoes(expr: &Expr, sels: &[SharedSel], preds: &[Pred]) -> Vec<Vec<u32>> {
    let Expr::And(es) = expr else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let maps_of = |i: usize, out: &mut Vec<Vec<u32>>| match &sels[i] {
        SharedSel::Map(ids) => out.push(ids.clone()),
        SharedSel::AnyOf(maps) => out.extend(maps.iter().cloned()),
        SharedSel::Keywords => {}
    };
    for e in es {
        let Expr::Not(inner) = e else { continue };
        match &**inner {
            Expr::Sel(i) => maps_of(*i, &mut out),
            // `1 of x*` parses to an `Or` of selections.
            Expr::Or(alts) => {
                for a in alts {
                    if let Expr::Sel(i) = a {
                        maps_of(*i, &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out.retain(|m| {
        !m.is_empty()
            && m.iter()
                .all(|&c| matches!(preds[c as usize], Pred::Str { .. } | Pred::Code { .. }))
    });
    out
}

/// Adds `expr` (negated if `negated`) to `plan` as clauses and vetoes; false if it has another
/// shape (then `plan` is incomplete and must not be used). Empty maps and lists, which match
/// everything or nothing, are left to the condition.
fn exact(expr: &Expr, sels: &[SharedSel], negated: bool, plan: &mut Exact) -> bool {
    match (expr, negated) {
        (Expr::And(es), false) => es.iter().all(|e| exact(e, sels, false, plan)),
        // `not (a or b)` is `not a and not b`.
        (Expr::Or(es), true) => es.iter().all(|e| exact(e, sels, true, plan)),
        (Expr::Not(e), false) => exact(e, sels, true, plan),
        (Expr::Sel(i), false) => match &sels[*i] {
            SharedSel::Map(ids) if !ids.is_empty() => {
                plan.clauses.extend(ids.iter().map(|&c| vec![c]));
                true
            }
            SharedSel::AnyOf(maps) if !maps.is_empty() && maps.iter().all(|m| m.len() == 1) => {
                plan.clauses.push(maps.iter().map(|m| m[0]).collect());
                true
            }
            SharedSel::AnyOf(_) => match maps_of(&sels[*i]) {
                Some(maps) => {
                    plan.alternatives
                        .push(maps.iter().map(|m| (false, m.to_vec())).collect());
                    true
                }
                None => false,
            },
            _ => false,
        },
        (Expr::Or(es), false) => {
            let mut alternative = Vec::new();
            let all = es.iter().all(|e| match e {
                Expr::Sel(i) => match maps_of(&sels[*i]) {
                    Some(maps) => {
                        alternative.extend(maps.iter().map(|m| (false, m.to_vec())));
                        true
                    }
                    None => false,
                },
                // `not` of a map: the map does not hold entirely.
                Expr::Not(inner) => match &**inner {
                    Expr::Sel(i) => match &sels[*i] {
                        SharedSel::Map(ids) if !ids.is_empty() => {
                            alternative.push((true, ids.clone()));
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                },
                _ => false,
            });
            if all && !alternative.is_empty() {
                plan.alternatives.push(alternative);
            }
            all
        }
        (Expr::Sel(i), true) => match &sels[*i] {
            SharedSel::Map(ids) if !ids.is_empty() => {
                plan.vetoes.push(ids.clone());
                true
            }
            // No map of the list may hold.
            SharedSel::AnyOf(maps) if !maps.is_empty() && maps.iter().all(|m| !m.is_empty()) => {
                plan.vetoes.extend(maps.iter().cloned());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// True if every condition of the clause reads a field most events share a few values of
/// (`stage`, `level`, ...): such clauses reject few events, so they are checked last.
fn weak(clause: &[u32], conds: &[FieldCond]) -> bool {
    clause.iter().all(|c| {
        conds[*c as usize].fields.iter().all(|f| {
            matches!(
                f,
                FieldRef::Stage | FieldRef::Level | FieldRef::Kind | FieldRef::ApiVersion
            )
        })
    })
}

/// The maps of a selection, one of which must hold entirely for it to hold; `None` for
/// keywords and for an empty map or list (which the condition decides).
fn maps_of(sel: &SharedSel) -> Option<Vec<&[u32]>> {
    match sel {
        SharedSel::Map(ids) if !ids.is_empty() => Some(vec![ids.as_slice()]),
        SharedSel::AnyOf(maps) if !maps.is_empty() && maps.iter().all(|m| !m.is_empty()) => {
            Some(maps.iter().map(Vec::as_slice).collect())
        }
        _ => None,
    }
}

/// How much matching a condition's values costs once its field is read: 0 for comparisons
/// with given values, 1 for substring and network tests, 2 for regular expressions (which
/// include wildcards inside a value).
fn match_cost(c: &FieldCond) -> u8 {
    c.patterns
        .iter()
        .map(|p| match p {
            Pattern::Str(StrMatcher::Regex(_)) => 2,
            Pattern::Str(StrMatcher::Contains { .. }) | Pattern::Cidr(_) => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

fn clause_match_cost(clause: &[u32], conds: &[FieldCond]) -> u8 {
    clause
        .iter()
        .map(|c| match_cost(&conds[*c as usize]))
        .max()
        .unwrap_or(0)
}

/// The order in which clauses are tested: the cheap to read and match first, then those that
/// reject more events, then the short.
fn clause_order(clause: &[u32], conds: &[FieldCond]) -> (u8, u8, bool, usize) {
    (
        clause_cost(clause, conds),
        clause_match_cost(clause, conds),
        weak(clause, conds),
        clause.len(),
    )
}

fn clause_cost(clause: &[u32], conds: &[FieldCond]) -> u8 {
    clause
        .iter()
        .flat_map(|c| conds[*c as usize].fields.iter().map(FieldRef::cost))
        .max()
        .unwrap_or(0)
}

/// Rules that name no verb or resource, tested together when one condition of their shared
/// guard clause holds.
#[derive(Debug, Clone)]
struct Gate {
    clause: Vec<u32>,
    rules: Vec<u32>,
    /// Every condition of the clause reads `impersonatedUser` and fails without it, so the
    /// group is skipped at once for the (many) events without impersonation.
    impersonation: bool,
}

/// A set of conditions at least one of which holds whenever `expr` holds, preferring few and
/// cheap conditions; `None` if none is known (under `not`, or for keywords).
fn necessary(expr: &Expr, sels: &[SharedSel], conds: &[FieldCond]) -> Option<Vec<u32>> {
    let cost = |c: &u32| {
        let one = [*c];
        (clause_cost(&one, conds), clause_match_cost(&one, conds))
    };
    // Of a map's conditions, a cheap one that rejects many events: the verb and resource are
    // what the rule index already looked up, and `stage`, `exists` and the like reject few.
    let pick = |c: &u32| {
        let cond = &conds[*c as usize];
        let index_or_weak = weak(&[*c], conds)
            || cond
                .patterns
                .iter()
                .all(|p| matches!(p, Pattern::Exists(true)))
            || cond
                .fields
                .iter()
                .all(|f| matches!(f, FieldRef::Verb | FieldRef::ObjResource));
        (cost(c), index_or_weak)
    };
    let of_sel = |i: usize| match &sels[i] {
        // Every condition of a map is necessary: take the cheapest.
        SharedSel::Map(ids) => ids.iter().min_by_key(|c| pick(c)).map(|c| vec![*c]),
        SharedSel::AnyOf(maps) => maps
            .iter()
            .map(|m| m.iter().min_by_key(|c| pick(c)).copied())
            .collect::<Option<Vec<_>>>(),
        SharedSel::Keywords => None,
    };
    let union = |sets: Option<Vec<Vec<u32>>>| {
        sets.map(|v| {
            let mut all: Vec<u32> = v.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            all
        })
    };
    match expr {
        Expr::Sel(i) => of_sel(*i),
        Expr::Not(_) => None,
        Expr::And(es) => es
            .iter()
            .filter_map(|e| necessary(e, sels, conds))
            .min_by_key(|set| (set.iter().map(cost).max().unwrap_or((0, 0)), set.len())),
        Expr::Or(es) => union(es.iter().map(|e| necessary(e, sels, conds)).collect()),
        Expr::AtLeast(_, ids) => union(ids.iter().map(|i| of_sel(*i)).collect()),
    }
}

/// How a string compares in a [`Pred`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum StrOp {
    Eq,
    Prefix,
    Suffix,
}

/// A condition specialised for the commonest shapes, tested without going through the general
/// field and pattern machinery: one typed single-valued string field (verb, user name,
/// objectRef parts, ...) compared case-insensitively with a few ASCII values (each equal,
/// prefix or suffix: an `expand` list mixes them) or tested for presence, and the response
/// code compared with numbers.
#[derive(Debug, Clone)]
enum Pred {
    Str {
        field: FieldRef,
        /// Lowercase ASCII.
        needles: Box<[(StrOp, Box<str>)]>,
        /// `null` or `exists: false` is among the values: an absent field matches.
        or_absent: bool,
        /// `exists: true` is among the values: a present field matches (single-valued fields
        /// only).
        or_present: bool,
        /// A list field (`user.groups`, `sourceIPs`): any element may match.
        list: bool,
    },
    /// `responseStatus.code` (an integer when present) against numbers: equal (no operator),
    /// `gt`, `gte`, `lt`, `lte` (compared as [`Pattern::matches_value`] does), `exists`, or
    /// `null`.
    Code {
        tests: Box<[(Option<Cmp>, f64)]>,
        /// `null` or `exists: false` is among the values.
        or_absent: bool,
        /// `exists: true` is among the values.
        or_present: bool,
    },
    General,
}

impl Pred {
    fn from_cond(c: &FieldCond) -> Pred {
        let ([field], false) = (c.fields.as_slice(), c.all) else {
            return Pred::General;
        };
        if *field == FieldRef::StatusCode {
            return Pred::code(&c.patterns);
        }
        let single_string_field = matches!(
            field,
            FieldRef::Kind
                | FieldRef::ApiVersion
                | FieldRef::Level
                | FieldRef::AuditId
                | FieldRef::Stage
                | FieldRef::RequestUri
                | FieldRef::Verb
                | FieldRef::UserAgent
                | FieldRef::SourceIp
                | FieldRef::UserName
                | FieldRef::UserUid
                | FieldRef::ImpersonatedName
                | FieldRef::ObjResource
                | FieldRef::ObjSubresource
                | FieldRef::ObjNamespace
                | FieldRef::ObjName
                | FieldRef::ObjApiGroup
                | FieldRef::ObjApiVersion
                | FieldRef::StatusReason
                | FieldRef::StatusStatus
        );
        let list = matches!(
            field,
            FieldRef::UserGroups | FieldRef::ImpersonatedGroups | FieldRef::SourceIps
        );
        if !single_string_field && !list {
            return Pred::General;
        }
        let mut needles = Vec::new();
        let (mut or_absent, mut or_present) = (false, false);
        for p in &c.patterns {
            let (this, needle) = match p {
                Pattern::Null => {
                    or_absent = true;
                    continue;
                }
                Pattern::Exists(want) if !list => {
                    *if *want {
                        &mut or_present
                    } else {
                        &mut or_absent
                    } = true;
                    continue;
                }
                Pattern::Str(StrMatcher::Exact {
                    needle,
                    cased: false,
                }) => (StrOp::Eq, needle),
                Pattern::Str(StrMatcher::Prefix {
                    needle,
                    cased: false,
                }) => (StrOp::Prefix, needle),
                Pattern::Str(StrMatcher::Suffix {
                    needle,
                    cased: false,
                }) => (StrOp::Suffix, needle),
                _ => return Pred::General,
            };
            if !needle.is_ascii() {
                return Pred::General;
            }
            needles.push((this, needle.clone().into_boxed_str()));
        }
        // A single-valued field may be tested for presence alone; a list needs values.
        let decides = !needles.is_empty() || or_present || (or_absent && !list);
        if !decides {
            return Pred::General;
        }
        Pred::Str {
            field: field.clone(),
            needles: needles.into_boxed_slice(),
            or_absent,
            or_present,
            list,
        }
    }

    /// [`Pred::Code`] for these values of `responseStatus.code`, or [`Pred::General`] for
    /// values it does not cover (strings, booleans, networks).
    fn code(patterns: &[Pattern]) -> Pred {
        let mut tests = Vec::new();
        let (mut or_absent, mut or_present) = (false, false);
        for p in patterns {
            match p {
                Pattern::Num(n) => tests.push((None, *n)),
                Pattern::Compare(op, n) => tests.push((Some(*op), *n)),
                Pattern::Null | Pattern::Exists(false) => or_absent = true,
                Pattern::Exists(true) => or_present = true,
                _ => return Pred::General,
            }
        }
        Pred::Code {
            tests: tests.into_boxed_slice(),
            or_absent,
            or_present,
        }
    }
}

/// Case-insensitive ASCII comparison of `hay` with a lowercase ASCII `needle`. Non-ASCII bytes
/// in `hay` never equal ASCII needle bytes, so no Unicode lowercasing is needed.
#[inline]
fn ascii_op(op: StrOp, hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if h.len() < n.len() {
        return false;
    }
    match op {
        StrOp::Eq => h.len() == n.len() && lower_eq(h, n),
        StrOp::Prefix => lower_eq(&h[..n.len()], n),
        StrOp::Suffix => lower_eq(&h[h.len() - n.len()..], n),
    }
}

/// `h` (any bytes) lowercased as ASCII equals `n` (lowercase ASCII, as long as `h`): eight
/// bytes at a time, stopping at the first word that differs.
#[inline]
fn lower_eq(h: &[u8], n: &[u8]) -> bool {
    let mut hs = h.chunks_exact(8);
    let mut ns = n.chunks_exact(8);
    for (a, b) in (&mut hs).zip(&mut ns) {
        let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
            return false;
        };
        if lower8(u64::from_le_bytes(a)) != u64::from_le_bytes(b) {
            return false;
        }
    }
    let (h, n) = (hs.remainder(), ns.remainder());
    h.len() == n.len() && h.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// The eight bytes of `x` with ASCII capitals lowercased (other bytes, non-ASCII included, as
/// they are).
#[inline]
fn lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = x & (ONES * 0x7f);
    // The top bit of each byte: its low seven bits are at least b'A', and above b'Z'.
    let from_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let past_z = low7 + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = from_a & !past_z & !x & (ONES * 0x80);
    x | (upper >> 2)
}

/// Per-thread memo of condition results for the event being evaluated: `(generation, result)`
/// per shared condition; a slot from an older generation is unknown.
struct Memo {
    generation: u64,
    slots: Vec<(u64, bool)>,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = const {
        std::cell::RefCell::new(Memo { generation: 0, slots: Vec::new() })
    };
}

#[derive(Debug)]
struct ThrottleEntry {
    window_start: DateTime<Utc>,
    /// `window_start` plus the rule's window (for sweeping without knowing the rule).
    expires: DateTime<Utc>,
    suppressed: u64,
}

/// A hash of the values of a throttle key's fields, as text (so `1` and `"1"` share a window,
/// as they always have), each value and each field closed by a byte UTF-8 never contains,
/// after the event's [`Event::cluster`] when it has one (closed by another such byte): two
/// clusters never share a window, and an event without a cluster keeps the key it always had
/// (saved throttle state stays valid). Allocates nothing. The hash is keyed with `keys`, chosen at random per rule set: values come
/// from clients, and a collision chosen in advance could hide one key's alerts in another's
/// window.
#[allow(deprecated)] // SipHash-2-4 with explicit keys: the keys are saved with the state.
fn throttle_key(keys: (u64, u64), ev: &Event<'_>, fields: &[crate::event::FieldRef]) -> u64 {
    struct Text<'h>(&'h mut std::hash::SipHasher);
    impl std::fmt::Write for Text<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut h = std::hash::SipHasher::new_with_keys(keys.0, keys.1);
    if let Some(cluster) = ev.cluster() {
        h.write(cluster.as_bytes());
        h.write_u8(0xfd);
    }
    for f in fields {
        ev.any_value(f, &mut |v| {
            use std::fmt::Write as _;
            let mut t = Text(&mut h);
            let written = match v {
                FieldValue::Str(s) => t.write_str(s),
                FieldValue::Int(i) => write!(t, "{i}"),
                FieldValue::Float(x) => write!(t, "{x}"),
                FieldValue::Bool(b) => write!(t, "{b}"),
                FieldValue::Null | FieldValue::Object => return false,
            };
            debug_assert!(written.is_ok());
            h.write_u8(0xff);
            false
        });
        h.write_u8(0xfe);
    }
    h.finish()
}

/// True if and only if `rule`'s `first_seen` key in `ev` is new to `baseline` after its learning
/// period; learns the key either way. An event without the key's fields or without a time
/// neither alerts nor is learned. `time` holds the event's time once read; `now`, the time
/// throttling uses, is set to it when the event has one.
fn first_seen(
    rule: &Rule,
    baseline: &BaselineRef,
    ev: &Event<'_>,
    time: &std::cell::OnceCell<Option<DateTime<Utc>>>,
    now: &std::cell::OnceCell<DateTime<Utc>>,
) -> bool {
    let Some(spec) = &rule.first_seen else {
        return true;
    };
    let Some(key) = super::baseline::key_of(spec, ev) else {
        return false;
    };
    let Some(time) = *time.get_or_init(|| ev.time()) else {
        return false;
    };
    // Throttling would read the same time.
    let _ = now.set(time);
    observe_first_seen(baseline, spec, key, time)
}

/// [`first_seen`] of an event with key `key` and time `time`.
fn observe_first_seen(
    baseline: &BaselineRef,
    spec: &super::model::FirstSeenSpec,
    key: (u64, u64),
    time: DateTime<Utc>,
) -> bool {
    baseline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .observe(key, time.timestamp(), spec)
}

/// The fields that identify one request across its stages. `auditID` alone comes from a
/// client header (a client could reuse one to hide a later request); the receive time, verb,
/// URI and user are the same in every stage of a request and differ between requests.
static REQUEST_FIELDS: &[FieldRef] = &[
    FieldRef::AuditId,
    FieldRef::RequestReceivedTimestamp,
    FieldRef::Verb,
    FieldRef::RequestUri,
    FieldRef::UserName,
];

/// Shards of [`RequestsSeen`]: workers alerting at once rarely wait for one another.
const REQUEST_SHARDS: usize = 16;

#[derive(Debug, Default)]
struct SeenShard {
    set: std::collections::HashSet<(u32, u64), std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
    /// Insertion order, oldest first, for eviction.
    order: std::collections::VecDeque<(u32, u64)>,
}

/// A bounded set of (rule index, request hash) pairs that already alerted; each shard forgets
/// its oldest pair when full.
#[derive(Debug)]
struct RequestsSeen {
    shards: Box<[std::sync::Mutex<SeenShard>]>,
    per_shard: usize,
}

impl RequestsSeen {
    /// The bound it was made with (rounded up to whole shards).
    fn max_keys(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    fn new(max_keys: usize) -> RequestsSeen {
        RequestsSeen {
            shards: (0..REQUEST_SHARDS).map(|_| Default::default()).collect(),
            per_shard: max_keys.div_ceil(REQUEST_SHARDS).max(1),
        }
    }

    /// True if and only if `key` was not in the set; it is in the set afterwards.
    fn insert(&self, key: (u32, u64)) -> bool {
        // The request hash is keyed and random: its top bits spread the shards.
        let shard = &self.shards[((key.1 >> 59) as usize ^ key.0 as usize) % REQUEST_SHARDS];
        // A worker that panicked holding the lock left the set consistent (every step below
        // keeps `set` and `order` in step or merely stale): keep using it.
        let mut s = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.set.contains(&key) {
            return false;
        }
        if s.order.len() >= self.per_shard {
            if let Some(old) = s.order.pop_front() {
                s.set.remove(&old);
            }
        }
        s.set.insert(key);
        s.order.push_back(key);
        true
    }

    /// Every pair, oldest first within each shard.
    fn entries(&self) -> Vec<(u32, u64)> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .order
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.set.len()))
            .sum()
    }
}

/// What [`RuleSet::snapshot`] copies: plain data, written to `state_dir` with the source
/// positions it reflects.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RuleSetSnapshot {
    hash_keys: (u64, u64),
    throttles: Vec<ThrottleSnapshot>,
    /// Per rule id, the request hashes that alerted, oldest first.
    requests: Vec<(String, Vec<u64>)>,
    /// Content hashes of the recent events stateful rules counted, oldest first.
    deliveries: Vec<u64>,
}

impl RuleSetSnapshot {
    /// Throttle windows held.
    pub fn throttle_windows(&self) -> usize {
        self.throttles.iter().map(|t| t.windows.len()).sum()
    }
}

/// One rule's throttle windows: (key hash, window start, expiry, suppressed since the alert).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ThrottleSnapshot {
    rule: String,
    /// [`throttle_digest`] of the rule's `throttle`: windows of another key or length are not
    /// taken over.
    spec: String,
    windows: Vec<(u64, DateTime<Utc>, DateTime<Utc>, u64)>,
}

/// A digest of a `throttle` spec: its key fields and window.
fn throttle_digest(spec: &super::model::ThrottleSpec) -> String {
    let text = format!("{:?}/{}", spec.key, spec.window.as_secs());
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

/// Two random words, the key of a rule set's hashes.
fn random_keys() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    let word = |n: u64| {
        let mut h = s.build_hasher();
        h.write_u64(n);
        h.finish()
    };
    (word(1), word(2))
}

/// A bounded set of recent content hashes, the oldest forgotten first.
#[derive(Debug)]
struct Deliveries {
    max: usize,
    seen: std::sync::Mutex<SeenDeliveries>,
}

#[derive(Debug, Default)]
struct SeenDeliveries {
    set: std::collections::HashSet<u64, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
    order: std::collections::VecDeque<u64>,
}

impl Deliveries {
    fn new(max: usize) -> Deliveries {
        Deliveries {
            max,
            seen: Default::default(),
        }
    }

    /// True if and only if `hash` was not in the set (or the set is off).
    fn insert(&self, hash: u64) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut s = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !s.set.insert(hash) {
            return false;
        }
        s.order.push_back(hash);
        while s.order.len() > self.max {
            if let Some(old) = s.order.pop_front() {
                s.set.remove(&old);
            }
        }
        true
    }

    fn entries(&self) -> Vec<u64> {
        self.seen.lock().map_or_else(
            |p| p.into_inner().order.iter().copied().collect(),
            |s| s.order.iter().copied().collect(),
        )
    }
}

/// The rules whose detection matched one event ([`RuleSet::hits`]), in rule order.
pub type Hits = smallvec::SmallVec<[usize; 8]>;

/// An event with hits as the stateful step reads it ([`RuleSet::prepare`]), without the event.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The rules whose detection matched ([`RuleSet::hits`]).
    pub hits: Hits,
    time: Option<DateTime<Utc>>,
    /// [`crate::event::content_hash`] of the event, when a hit rule is throttled or counted by
    /// a correlation.
    hash: Option<[u8; 16]>,
    /// The once-per-request key, when a hit rule needs it.
    request: Option<u64>,
    /// Per hit, in order.
    keys: smallvec::SmallVec<[HitKeys; 2]>,
}

impl Prepared {
    /// The event's time.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.time
    }

    /// The event's [`crate::event::content_hash`], when worked out.
    pub fn hash(&self) -> Option<&[u8; 16]> {
        self.hash.as_ref()
    }
}

/// What one hit rule's stateful step reads of an event.
#[derive(Debug, Default, Clone, Copy)]
struct HitKeys {
    /// Once-per-request applies to this rule and event.
    request: bool,
    first_seen: Option<(u64, u64)>,
    throttle: u64,
}

/// One rule that fired on an event.
#[derive(Debug)]
pub struct Match<'r> {
    /// Index of the rule in the set.
    pub index: usize,
    pub rule: &'r Rule,
    /// Matches of this rule and throttle key suppressed since the previous alert.
    pub suppressed: u64,
}

/// An immutable set of compiled rules with its index and shared throttle state.
/// `Sync`: worker threads share one `RuleSet`.
#[derive(Debug)]
pub struct RuleSet {
    /// The compiled rules, shared by the rule sets that differ only in their state
    /// ([`RuleSet::with_fresh_state`]: one per Kafka partition whose state follows it).
    c: Arc<Compiled>,
    /// By rule and throttle key. The keys are already keyed hashes, so the table spreads them
    /// with a plain multiplicative hash rather than hashing them again.
    throttle:
        DashMap<(u32, u64), ThrottleEntry, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
    /// The random key of throttle-key and request hashes (kept with the saved state, so that
    /// the hashes stay valid after a restart or a reload).
    throttle_hash_keys: (u64, u64),
    /// The number of keys in `throttle`, kept alongside (`DashMap::len` locks every shard).
    /// Workers racing past the limit can overshoot it by one key each.
    throttle_keys: AtomicUsize,
    throttle_max_keys: usize,
    /// Matches not alerted because of throttling.
    pub suppressed_total: AtomicU64,
    /// The same, per rule (by index).
    suppressed_by_rule: Vec<AtomicU64>,
    /// Matches alerted without throttling because the key table was full.
    pub throttle_overflow_total: AtomicU64,
    /// The requests (rule, request hash) that alerted from an event without `stage`, for
    /// rules that accept one ([`Rule::once_per_request`]).
    requests_seen: RequestsSeen,
    /// Matches not alerted because their request already alerted for the rule (events of
    /// one request without `stage`).
    pub repeats_suppressed_total: AtomicU64,
    /// Wall-clock second of the last sweep of expired keys.
    last_sweep: AtomicU64,
    /// Content hashes of the recent events that throttled rules or correlations counted: one
    /// delivered again (a source re-reading after a restart) is not counted twice. Off (no
    /// memory, no hashing) unless [`RuleSet::with_redelivery_window`] sets a size.
    deliveries: Deliveries,
    /// By rule index, the baseline of each rule with `first_seen`; empty when no rule has one.
    baselines: Vec<Option<BaselineRef>>,
}

/// What a [`RuleSet`] compiled: the same for every state it is used with.
#[derive(Debug, Clone)]
struct Compiled {
    rules: Vec<Rule>,
    index: Index,
    shared: Shared,
    /// The rules that name no verb or resource (the index cannot skip them), grouped by their
    /// first guard clause: a group is tested only when one condition of its clause holds, so
    /// an event that is not, say, anonymous costs the anonymous-access rules one test together.
    gated: Vec<Gate>,
    /// Correlation rules over `rules`.
    correlations: Vec<Correlation>,
    /// By rule index: the (correlation index, input position) pairs of the active
    /// correlations that count its matches. Empty (no allocation) without correlations.
    inputs_of: Vec<Vec<(usize, usize)>>,
    /// Whether only the first matching Falco rule (in load order) alerts on an event.
    falco_first: bool,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut index = Index::build(&rules);
        let shared = Shared::build(&rules);
        let mut gated: Vec<Gate> = Vec::new();
        index.any_verb.any_resource.retain(|&i| {
            let Some(clause) = shared.gate(i as usize) else {
                return true;
            };
            match gated.iter_mut().find(|g| &g.clause == clause) {
                Some(g) => g.rules.push(i),
                None => gated.push(Gate {
                    impersonation: clause
                        .iter()
                        .all(|&c| shared.conds[c as usize].needs_impersonation()),
                    clause: clause.clone(),
                    rules: vec![i],
                }),
            }
            false
        });
        let suppressed_by_rule = rules.iter().map(|_| AtomicU64::new(0)).collect();
        RuleSet {
            suppressed_by_rule,
            c: Arc::new(Compiled {
                rules,
                index,
                shared,
                gated,
                correlations: Vec::new(),
                inputs_of: Vec::new(),
                falco_first: true,
            }),
            throttle: DashMap::default(),
            throttle_hash_keys: random_keys(),
            throttle_keys: AtomicUsize::new(0),
            throttle_max_keys: DEFAULT_THROTTLE_MAX_KEYS,
            suppressed_total: AtomicU64::new(0),
            throttle_overflow_total: AtomicU64::new(0),
            requests_seen: RequestsSeen::new(DEFAULT_REQUEST_MAX_KEYS),
            repeats_suppressed_total: AtomicU64::new(0),
            last_sweep: AtomicU64::new(0),
            deliveries: Deliveries::new(0),
            baselines: Vec::new(),
        }
        .with_baselines(&super::baseline::Baselines::default())
    }

    /// A rule set with the same compiled rules (shared, not copied) and the same limits, but
    /// state of its own: no throttle window, request or delivery yet, the same hash key, and
    /// the baselines of `store`. The state of one Kafka partition is kept this way, so that it
    /// can be handed to the partition's next owner on its own.
    pub fn with_fresh_state(&self, store: &super::baseline::Baselines) -> RuleSet {
        RuleSet {
            c: self.c.clone(),
            throttle: DashMap::default(),
            throttle_hash_keys: self.throttle_hash_keys,
            throttle_keys: AtomicUsize::new(0),
            throttle_max_keys: self.throttle_max_keys,
            suppressed_total: AtomicU64::new(0),
            suppressed_by_rule: self.c.rules.iter().map(|_| AtomicU64::new(0)).collect(),
            throttle_overflow_total: AtomicU64::new(0),
            requests_seen: RequestsSeen::new(self.requests_seen.max_keys()),
            repeats_suppressed_total: AtomicU64::new(0),
            last_sweep: AtomicU64::new(0),
            deliveries: Deliveries::new(self.deliveries.max),
            baselines: Vec::new(),
        }
        .with_baselines(store)
    }

    /// Whether `other` was compiled from the same rules (one is the other's
    /// [`RuleSet::with_fresh_state`], or both are of one rule set).
    pub fn same_rules(&self, other: &RuleSet) -> bool {
        Arc::ptr_eq(&self.c, &other.c)
    }

    /// Which Falco rules alert when several match an event (`first` by default, as in Falco).
    /// Sigma rules are not affected: each alerts on its own.
    pub fn with_rule_matching(mut self, m: super::falco::RuleMatching) -> RuleSet {
        Arc::make_mut(&mut self.c).falco_first = m == super::falco::RuleMatching::First;
        self
    }

    /// Takes the first-seen baselines of this set's rules from `store` (the daemon's, shared by
    /// its workers and kept across reloads and restarts); until then, each rule with
    /// `first_seen` has an empty baseline of its own, in memory (`scan`).
    pub fn with_baselines(mut self, store: &super::baseline::Baselines) -> RuleSet {
        self.baselines = if self.c.rules.iter().any(|r| r.first_seen.is_some()) {
            store.attach(&self.c.rules)
        } else {
            Vec::new()
        };
        self
    }

    /// Adds the correlation rules over this set's rules (as resolved by
    /// [`super::RulesConfig::load`]: `CorrelationInput::Rule` indices into [`RuleSet::rules`]).
    /// Inactive correlations are kept but count nothing.
    pub fn with_correlations(mut self, correlations: Vec<Correlation>) -> RuleSet {
        let mut inputs_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.c.rules.len()];
        for (c, corr) in correlations.iter().enumerate() {
            if !corr.is_active() {
                continue;
            }
            for (pos, input) in corr.inputs.iter().enumerate() {
                if let CorrelationInput::Rule(i) = *input {
                    if let Some(v) = inputs_of.get_mut(i) {
                        v.push((c, pos));
                    }
                }
            }
        }
        let c = Arc::make_mut(&mut self.c);
        c.correlations = correlations;
        c.inputs_of = inputs_of;
        self
    }

    /// The correlation rules, in the order of [`CorrelationInput::Correlation`] indices (a
    /// correlation's correlation inputs come before it).
    pub fn correlations(&self) -> &[Correlation] {
        &self.c.correlations
    }

    /// The (correlation index, input position) pairs of the active correlations that count
    /// matches of rule `rule`; empty for a rule no correlation refers to (or out of range).
    pub fn correlation_inputs(&self, rule: usize) -> &[(usize, usize)] {
        self.c.inputs_of.get(rule).map_or(&[], Vec::as_slice)
    }

    pub fn with_throttle_max_keys(mut self, n: usize) -> RuleSet {
        self.throttle_max_keys = n.max(1);
        self
    }

    /// Bounds the (rule, request) pairs remembered to alert once per request
    /// ([`DEFAULT_REQUEST_MAX_KEYS`] by default).
    pub fn with_request_max_keys(mut self, n: usize) -> RuleSet {
        self.requests_seen = RequestsSeen::new(n);
        self
    }

    /// Remembers the content hashes of the last `n` events that throttled rules or
    /// correlations counted, so that an event delivered again is not counted twice (0: off).
    pub fn with_redelivery_window(mut self, n: usize) -> RuleSet {
        self.deliveries = Deliveries::new(n);
        self
    }

    /// How many recent deliveries it remembers (0: off).
    pub fn redelivery_window(&self) -> usize {
        self.deliveries.max
    }

    /// True unless `ev` is among the recent events the stateful rules counted (a source
    /// re-reading after a restart delivers events again); remembers it. Always true when the
    /// redelivery window is off.
    pub fn first_delivery(&self, ev: &Event<'_>) -> bool {
        if self.deliveries.max == 0 {
            return true;
        }
        self.first_delivery_of(&ev.content_hash())
    }

    /// [`RuleSet::first_delivery`] of the event whose [`crate::event::content_hash`] is `hash`.
    pub fn first_delivery_of(&self, hash: &[u8; 16]) -> bool {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hash[..8]);
        self.deliveries.insert(u64::from_le_bytes(w))
    }

    /// A copy of the state the rules keep between events: throttle windows, the requests that
    /// alerted once, the recent deliveries, and the key of their hashes.
    pub fn snapshot(&self) -> RuleSetSnapshot {
        let mut throttles: Vec<ThrottleSnapshot> = Vec::new();
        let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for e in self.throttle.iter() {
            let (rule, key) = *e.key();
            let Some(r) = self.c.rules.get(rule as usize) else {
                continue;
            };
            let Some(spec) = &r.throttle else { continue };
            let slot = *at.entry(rule).or_insert_with(|| {
                throttles.push(ThrottleSnapshot {
                    rule: r.meta.id.clone(),
                    spec: throttle_digest(spec),
                    windows: Vec::new(),
                });
                throttles.len() - 1
            });
            let v = e.value();
            throttles[slot]
                .windows
                .push((key, v.window_start, v.expires, v.suppressed));
        }
        let mut requests: Vec<(String, Vec<u64>)> = Vec::new();
        let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for (rule, hash) in self.requests_seen.entries() {
            let Some(r) = self.c.rules.get(rule as usize) else {
                continue;
            };
            let slot = *at.entry(rule).or_insert_with(|| {
                requests.push((r.meta.id.clone(), Vec::new()));
                requests.len() - 1
            });
            requests[slot].1.push(hash);
        }
        RuleSetSnapshot {
            hash_keys: self.throttle_hash_keys,
            throttles,
            requests,
            deliveries: self.deliveries.entries(),
        }
    }

    /// Takes over `snap` (from a snapshot of this or an earlier rule set): the hash key, the
    /// throttle windows of every rule whose id and `throttle` are unchanged, the requests of
    /// every rule still here, and the recent deliveries.
    pub fn with_state(mut self, snap: RuleSetSnapshot) -> RuleSet {
        self.throttle_hash_keys = snap.hash_keys;
        self.throttle.clear();
        self.throttle_keys.store(0, Ordering::Relaxed);
        let index: std::collections::HashMap<&str, usize> = self
            .c
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.meta.id.as_str(), i))
            .collect();
        let mut keys = 0;
        for t in snap.throttles {
            let Some(&i) = index.get(t.rule.as_str()) else {
                continue;
            };
            let Some(spec) = &self.c.rules[i].throttle else {
                continue;
            };
            if throttle_digest(spec) != t.spec {
                continue;
            }
            for (key, window_start, expires, suppressed) in t.windows {
                if keys >= self.throttle_max_keys {
                    break;
                }
                keys += 1;
                self.throttle.insert(
                    (i as u32, key),
                    ThrottleEntry {
                        window_start,
                        expires,
                        suppressed,
                    },
                );
            }
        }
        self.throttle_keys
            .store(self.throttle.len(), Ordering::Relaxed);
        for (rule, hashes) in snap.requests {
            if let Some(&i) = index.get(rule.as_str()) {
                for h in hashes {
                    self.requests_seen.insert((i as u32, h));
                }
            }
        }
        for d in snap.deliveries {
            self.deliveries.insert(d);
        }
        self
    }

    #[doc(hidden)]
    pub fn candidate_count(&self, ev: &Event<'_>) -> usize {
        let verb = ev.verb().map(lower);
        let resource = ev.resource().map(lower);
        self.c
            .index
            .candidates(verb.as_deref(), resource.as_deref())
            .count()
            + self.c.gated.iter().map(|g| g.rules.len()).sum::<usize>()
    }

    /// The rules the index selects for `ev` (before gates), for the benchmark's statistics.
    #[doc(hidden)]
    pub fn candidates_into(&self, ev: &Event<'_>, out: &mut Vec<usize>) {
        let verb = ev.verb().map(lower);
        let resource = ev.resource().map(lower);
        out.extend(
            self.c
                .index
                .candidates(verb.as_deref(), resource.as_deref())
                .map(|i| i as usize),
        );
    }

    /// The groups of rules that name no verb, each with its gate (the conditions, one of which
    /// must hold for the group to be tested), for the benchmark's statistics.
    #[doc(hidden)]
    pub fn gate_groups(&self) -> Vec<(String, Vec<usize>)> {
        self.c
            .gated
            .iter()
            .map(|Gate { clause, rules, .. }| {
                let conds: Vec<String> = clause
                    .iter()
                    .map(|&c| format!("{:?}", self.c.shared.conds[c as usize].fields))
                    .collect();
                (
                    conds.join(" | "),
                    rules.iter().map(|&i| i as usize).collect(),
                )
            })
            .collect()
    }

    /// True if rule `i` is tested on every event (its condition requires no particular verb).
    pub fn is_any_verb(&self, i: usize) -> bool {
        let i = i as u32;
        self.c.index.any_verb.any_resource.contains(&i)
            || self.c.gated.iter().any(|g| g.rules.contains(&i))
            || self
                .c
                .index
                .any_verb
                .by_resource
                .values()
                .any(|ids| ids.contains(&i))
    }

    /// Matches of rule `i` suppressed by throttling so far.
    pub fn suppressed(&self, i: usize) -> u64 {
        self.suppressed_by_rule
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.c.rules
    }

    /// The number of alert sources: rules, then correlations. An alert's index
    /// (the detect stage's `Alert::rule`) is below it.
    pub fn alert_sources(&self) -> usize {
        self.c.rules.len() + self.c.correlations.len()
    }

    /// The metadata of alert source `i`: rule `i`, or correlation `i - len()`.
    pub fn meta(&self, i: usize) -> &super::model::RuleMeta {
        match self.c.rules.get(i) {
            Some(r) => &r.meta,
            None => &self.c.correlations[i - self.c.rules.len()].meta,
        }
    }

    pub fn len(&self) -> usize {
        self.c.rules.len()
    }

    /// The number of inactive rules (a placeholder of `requires_placeholders` is empty).
    pub fn inactive_len(&self) -> usize {
        self.c.rules.iter().filter(|r| !r.is_active()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.c.rules.is_empty()
    }

    /// Pushes the index of every rule matching `ev`, testing only the candidates the index
    /// selects. Allocates nothing when no rule matches (beyond lazily parsed event parts).
    pub fn matching_into(&self, ev: &Event<'_>, out: &mut impl Extend<usize>) {
        let verb = ev.verb().map(lower);
        let resource = ev.resource().map(lower);
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            self.begin(&mut memo);
            for i in self
                .c
                .index
                .candidates(verb.as_deref(), resource.as_deref())
            {
                let i = i as usize;
                if self.eval(i, ev, &mut memo) {
                    out.extend([i]);
                }
            }
            for g in &self.c.gated {
                if g.impersonation && ev.impersonated_user.is_none() {
                    continue;
                }
                if g.clause.iter().any(|&c| self.cond(c, ev, &mut memo)) {
                    for &i in &g.rules {
                        let i = i as usize;
                        if self.eval(i, ev, &mut memo) {
                            out.extend([i]);
                        }
                    }
                }
            }
        });
    }

    fn begin(&self, memo: &mut Memo) {
        memo.generation += 1;
        if memo.slots.len() < self.c.shared.conds.len() {
            memo.slots.resize(self.c.shared.conds.len(), (0, false));
        }
    }

    /// Shared condition `c` on `ev`, memoised for the event.
    #[inline(always)]
    fn cond(&self, c: u32, ev: &Event<'_>, memo: &mut Memo) -> bool {
        let slot = memo.slots[c as usize];
        if slot.0 == memo.generation {
            return slot.1;
        }
        self.cond_first(c, ev, memo)
    }

    /// [`RuleSet::cond`] when `c` is not yet known for the event.
    #[inline(never)]
    fn cond_first(&self, c: u32, ev: &Event<'_>, memo: &mut Memo) -> bool {
        let r = match &self.c.shared.preds[c as usize] {
            Pred::Str {
                field,
                needles,
                or_absent,
                list: true,
                ..
            } => match ev.string_list(field) {
                Some(items) if items.iter().all(|h| h.is_ascii()) => {
                    (items.is_empty() && *or_absent)
                        || items
                            .iter()
                            .any(|h| needles.iter().any(|(op, n)| ascii_op(*op, h, n)))
                }
                _ => self.c.shared.conds[c as usize].matches(ev),
            },
            Pred::Str {
                field,
                needles,
                or_absent,
                or_present,
                list: false,
            } => match ev.scalar(field) {
                Some(Some(FieldValue::Str(hay))) => {
                    *or_present
                        || needles.iter().any(|(op, n)| ascii_op(*op, hay, n))
                        || (!hay.is_ascii() && self.c.shared.conds[c as usize].matches(ev))
                }
                Some(None) => *or_absent,
                _ => self.c.shared.conds[c as usize].matches(ev),
            },
            Pred::Code {
                tests,
                or_absent,
                or_present,
            } => match ev.response_status.as_ref().and_then(|st| st.code) {
                Some(code) => {
                    *or_present || {
                        let x = code as f64;
                        tests
                            .iter()
                            .any(|&(op, n)| op.map_or(x == n, |op| op.holds(x, n)))
                    }
                }
                None => *or_absent,
            },
            Pred::General => self.c.shared.conds[c as usize].matches(ev),
        };
        memo.slots[c as usize] = (memo.generation, r);
        r
    }

    /// Rule `i` on `ev`, with shared conditions memoised: the same result as
    /// [`Rule::matches`].
    fn eval(&self, i: usize, ev: &Event<'_>, memo: &mut Memo) -> bool {
        let (guards, eager) = (&self.c.shared.guards[i], self.c.shared.eager_guards[i]);
        let holds =
            |clause: &Vec<u32>, memo: &mut Memo| clause.iter().any(|&c| self.cond(c, ev, memo));
        if !guards[..eager].iter().all(|c| holds(c, memo)) {
            return false;
        }
        for map in &self.c.shared.vetoes[i] {
            if map.iter().all(|&c| self.cond(c, ev, memo)) {
                return false;
            }
        }
        if !guards[eager..].iter().all(|c| holds(c, memo)) {
            return false;
        }
        if let Some(plan) = &self.c.shared.exact[i] {
            return plan.clauses.iter().all(|c| holds(c, memo))
                && !plan
                    .vetoes
                    .iter()
                    .any(|m| m.iter().all(|&c| self.cond(c, ev, memo)))
                && plan.alternatives.iter().all(|alt| {
                    alt.iter()
                        .any(|(not, m)| m.iter().all(|&c| self.cond(c, ev, memo)) != *not)
                })
                && !self.c.shared.exceptions[i]
                    .iter()
                    .any(|m| m.iter().all(|&c| self.cond(c, ev, memo)));
        }
        let rule = &self.c.rules[i];
        let sels = &self.c.shared.rules[i];
        let detection = rule.condition.eval(&mut |s| match &sels[s] {
            SharedSel::Map(ids) => ids.iter().all(|&c| self.cond(c, ev, memo)),
            SharedSel::AnyOf(maps) => maps
                .iter()
                .any(|m| m.iter().all(|&c| self.cond(c, ev, memo))),
            SharedSel::Keywords => rule.selections[s].matches(ev),
        });
        detection
            && !self.c.shared.exceptions[i]
                .iter()
                .any(|m| m.iter().all(|&c| self.cond(c, ev, memo)))
    }

    /// Every regular expression of the rules' conditions ([`LazyRegex`] handles sharing the
    /// rules' compiled state).
    pub fn regexes(&self) -> Vec<LazyRegex> {
        let keywords = self
            .c
            .rules
            .iter()
            .flat_map(|r| &r.selections)
            .flat_map(|s| match s {
                Selection::Keywords(ps) => ps.as_slice(),
                _ => &[],
            });
        self.c
            .shared
            .conds
            .iter()
            .flat_map(|c| &c.patterns)
            .chain(keywords)
            .filter_map(|p| match p {
                Pattern::Str(StrMatcher::Regex(r)) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Compiles every regular expression of the rules on a thread of its own, so that the
    /// first events to reach them do not wait (the daemon; `scan` compiles on first use).
    pub fn compile_regexes_in_background(&self) {
        let regexes = self.regexes();
        if regexes.is_empty() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("regex-compile".into())
            .spawn(move || regexes.iter().for_each(LazyRegex::compile));
        if let Err(e) = spawned {
            tracing::warn!("regular expressions will compile on first use: {e}");
        }
    }

    /// Like [`RuleSet::matching_into`], but tests every rule (the reference for the index).
    pub fn matching_unindexed_into(&self, ev: &Event<'_>, out: &mut Vec<usize>) {
        out.extend(
            (0..self.c.rules.len())
                .filter(|&i| self.c.rules[i].is_active() && self.c.rules[i].matches(ev)),
        );
    }

    /// The rules that fire on `ev` after throttling, in rule order. Rules that only feed
    /// correlations ([`Rule::alerts`] false) do not fire.
    pub fn matches_into<'r>(&'r self, ev: &Event<'_>, out: &mut Vec<Match<'r>>) {
        self.fire_into(ev, out, None, &std::cell::OnceCell::new());
    }

    /// [`RuleSet::matches_into`], and in the same pass the index of every rule whose
    /// detection matches `ev` and that an active correlation counts
    /// ([`RuleSet::correlation_inputs`] not empty), in rule order: whether or not it alerts,
    /// before throttling and once-per-request (correlations count matches, not alerts).
    ///
    /// `fresh` is [`RuleSet::first_delivery`] of `ev`, worked out here if a throttled rule
    /// matches; the caller decides with it whether correlations count the event.
    pub fn matches_into_with_inputs<'r>(
        &'r self,
        ev: &Event<'_>,
        out: &mut Vec<Match<'r>>,
        inputs: &mut Vec<usize>,
        fresh: &std::cell::OnceCell<bool>,
    ) {
        self.fire_into(ev, out, Some(inputs), fresh);
    }

    fn fire_into<'r>(
        &'r self,
        ev: &Event<'_>,
        out: &mut Vec<Match<'r>>,
        inputs: Option<&mut Vec<usize>>,
        fresh: &std::cell::OnceCell<bool>,
    ) {
        let mut hits = Hits::new();
        self.hits(ev, &mut hits);
        self.fire_hits_into(ev, &hits, out, inputs, fresh);
    }

    /// The rules whose detection matches `ev`, in rule order (`out` is cleared first): the
    /// pure first step of [`RuleSet::matches_into`], before anything that keeps state
    /// (Falco's first match, once-per-request, first-seen baselines, throttling, correlation
    /// inputs). It changes nothing in the rule set, so several threads may run it at once on
    /// one rule set; [`RuleSet::matches_from_hits_into`] takes its result on to the alerts.
    pub fn hits(&self, ev: &Event<'_>, out: &mut Hits) {
        out.clear();
        self.matching_into(ev, out);
        out.sort_unstable();
    }

    /// [`RuleSet::matches_into_with_inputs`] from the event's [`RuleSet::hits`], worked out
    /// before (on another thread, for example): the stateful step, to be run on the events
    /// in their order.
    pub fn matches_from_hits_into<'r>(
        &'r self,
        ev: &Event<'_>,
        hits: &[usize],
        out: &mut Vec<Match<'r>>,
        inputs: Option<&mut Vec<usize>>,
        fresh: &std::cell::OnceCell<bool>,
    ) {
        self.fire_hits_into(ev, hits, out, inputs, fresh);
    }

    fn fire_hits_into<'r>(
        &'r self,
        ev: &Event<'_>,
        hits: &[usize],
        out: &mut Vec<Match<'r>>,
        mut inputs: Option<&mut Vec<usize>>,
        fresh: &std::cell::OnceCell<bool>,
    ) {
        // The event time, read once for all throttled rules that matched.
        let now = std::cell::OnceCell::new();
        // The same for first-seen rules, which skip an event without one.
        let time = std::cell::OnceCell::new();
        let mut falco_fired = false;
        for &i in hits {
            if let Some(inputs) = inputs.as_deref_mut() {
                if !self.correlation_inputs(i).is_empty() {
                    inputs.push(i);
                }
            }
            let rule = &self.c.rules[i];
            if self.falco_skips(rule, &mut falco_fired)
                || !rule.alerts
                || !self.first_of_request(i as u32, rule, ev)
            {
                continue;
            }
            if let Some(Some(baseline)) = self.baselines.get(i) {
                if !first_seen(rule, baseline, ev, &time, &now) {
                    continue;
                }
            }
            self.push_unless_throttled(
                i,
                out,
                &|| *fresh.get_or_init(|| self.first_delivery(ev)),
                &|spec| self.throttle_check(i as u32, spec, ev, &now),
            );
        }
    }

    /// Falco's `rule_matching: first`: true for a Falco rule after the first matching one in
    /// load order (`falco_fired` records that one matched).
    fn falco_skips(&self, rule: &Rule, falco_fired: &mut bool) -> bool {
        if rule.falco.is_none() {
            return false;
        }
        let skips = *falco_fired && self.c.falco_first;
        *falco_fired = true;
        skips
    }

    /// The end of the stateful step for rule `i`, which matched and passed its request and
    /// first-seen tests: it alerts unless its throttle holds it. An event delivered again
    /// (`fresh` false) was counted in the throttle when it first came; its alert, if it had
    /// one, is in the saved state's alerts in flight.
    fn push_unless_throttled<'r>(
        &'r self,
        i: usize,
        out: &mut Vec<Match<'r>>,
        fresh: &dyn Fn() -> bool,
        throttle: &dyn Fn(&super::model::ThrottleSpec) -> Option<u64>,
    ) {
        let rule = &self.c.rules[i];
        let suppressed = match &rule.throttle {
            None => 0,
            Some(spec) => match fresh().then(|| throttle(spec)).flatten() {
                Some(suppressed) => suppressed,
                None => return,
            },
        };
        out.push(Match {
            index: i,
            rule,
            suppressed,
        });
    }

    /// What the stateful step ([`RuleSet::matches_from_prepared_into`]) reads of `ev`, an
    /// event whose [`RuleSet::hits`] are `hits`: its time, content hash, request key, and each
    /// hit rule's first-seen and throttle keys. It changes nothing in the rule set: decoding
    /// threads work it out, and the thread that keeps the order needs the event again only for
    /// the alerts.
    pub fn prepare(&self, ev: &Event<'_>, hits: Hits) -> Prepared {
        let mut keys = smallvec::SmallVec::new();
        let mut hash_needed = false;
        let mut request = None;
        let mut falco_fired = false;
        for &i in &hits {
            let rule = &self.c.rules[i];
            let mut k = HitKeys::default();
            hash_needed |= !self.correlation_inputs(i).is_empty();
            // Falco's first match is decided whether or not the rule alerts.
            if !self.falco_skips(rule, &mut falco_fired) && rule.alerts {
                // The test of `first_of_request`.
                if rule.once_per_request
                    && (ev.stage.is_none() || rule.several_stages)
                    && ev.audit_id.is_some()
                {
                    k.request = true;
                    request.get_or_insert_with(|| {
                        throttle_key(self.throttle_hash_keys, ev, REQUEST_FIELDS)
                    });
                }
                if let Some(spec) = &rule.first_seen {
                    k.first_seen = super::baseline::key_of(spec, ev);
                }
                if let Some(spec) = &rule.throttle {
                    hash_needed |= self.deliveries.max != 0;
                    k.throttle = throttle_key(self.throttle_hash_keys, ev, &spec.key);
                }
            }
            keys.push(k);
        }
        Prepared {
            time: ev.time(),
            hash: hash_needed.then(|| ev.content_hash()),
            request,
            keys,
            hits,
        }
    }

    /// [`RuleSet::matches_from_hits_into`] from what [`RuleSet::prepare`] read of the event:
    /// the same matches, and the same state left behind, without the event. `fresh` is
    /// [`RuleSet::first_delivery_prepared`] of the event, worked out here if a throttled rule
    /// matches.
    pub fn matches_from_prepared_into<'r>(
        &'r self,
        p: &Prepared,
        out: &mut Vec<Match<'r>>,
        fresh: &std::cell::OnceCell<bool>,
    ) {
        let now = std::cell::OnceCell::new();
        let mut falco_fired = false;
        for (&i, k) in p.hits.iter().zip(&p.keys) {
            let rule = &self.c.rules[i];
            if self.falco_skips(rule, &mut falco_fired) || !rule.alerts {
                continue;
            }
            if k.request {
                if let Some(key) = p.request {
                    if !self.first_of_request_key(i as u32, key) {
                        continue;
                    }
                }
            }
            if let Some(Some(baseline)) = self.baselines.get(i) {
                if let Some(spec) = &rule.first_seen {
                    let (Some(key), Some(time)) = (k.first_seen, p.time) else {
                        continue;
                    };
                    if !observe_first_seen(baseline, spec, key, time) {
                        continue;
                    }
                }
            }
            self.push_unless_throttled(
                i,
                out,
                &|| *fresh.get_or_init(|| self.first_delivery_prepared(p)),
                &|spec| {
                    let now = *now.get_or_init(|| p.time.unwrap_or_else(Utc::now));
                    self.throttle_check_key(i as u32, spec, k.throttle, now)
                },
            );
        }
    }

    /// [`RuleSet::first_delivery`] of the event `p` was prepared from.
    pub fn first_delivery_prepared(&self, p: &Prepared) -> bool {
        match (&p.hash, self.deliveries.max) {
            (_, 0) | (None, _) => true,
            (Some(hash), _) => self.first_delivery_of(hash),
        }
    }

    /// False if and only if `ev` has an `auditID`, the rule can match several events of one
    /// request, and the same request already alerted for it. An export that dropped `stage`
    /// keeps every stage of a request (ResponseStarted and ResponseComplete of an exec,
    /// RequestReceived and ResponseComplete), and a rule that accepts a missing stage would
    /// fire on each; a rule that names several stages would fire on each stage. Events with a
    /// stage are not affected for a rule that names one stage (and `null`): its `stage` value
    /// picks one.
    fn first_of_request(&self, i: u32, rule: &Rule, ev: &Event<'_>) -> bool {
        if !rule.once_per_request
            || (ev.stage.is_some() && !rule.several_stages)
            || ev.audit_id.is_none()
        {
            return true;
        }
        self.first_of_request_key(i, throttle_key(self.throttle_hash_keys, ev, REQUEST_FIELDS))
    }

    /// [`RuleSet::first_of_request`] of an event whose request key is `key`.
    fn first_of_request_key(&self, i: u32, key: u64) -> bool {
        let key = (i, key);
        let first = self.requests_seen.insert(key);
        if !first {
            self.repeats_suppressed_total
                .fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    /// Returns `Some(suppressed count)` when the match should alert, `None` when suppressed.
    fn throttle_check(
        &self,
        rule: u32,
        spec: &super::model::ThrottleSpec,
        ev: &Event<'_>,
        now: &std::cell::OnceCell<DateTime<Utc>>,
    ) -> Option<u64> {
        let key = throttle_key(self.throttle_hash_keys, ev, &spec.key);
        let now = *now.get_or_init(|| ev.time().unwrap_or_else(Utc::now));
        self.throttle_check_key(rule, spec, key, now)
    }

    /// [`RuleSet::throttle_check`] of an event whose throttle key is `key` and time `now`.
    fn throttle_check_key(
        &self,
        rule: u32,
        spec: &super::model::ThrottleSpec,
        key: u64,
        now: DateTime<Utc>,
    ) -> Option<u64> {
        let key = (rule, key);
        let window = chrono::Duration::from_std(spec.window).unwrap_or(chrono::Duration::MAX);
        let full = || self.throttle_keys.load(Ordering::Relaxed) >= self.throttle_max_keys;
        if full() && !self.throttle.contains_key(&key) {
            self.sweep(now);
            if full() {
                // Full of live keys: alert rather than lose the match.
                self.throttle_overflow_total.fetch_add(1, Ordering::Relaxed);
                return Some(0);
            }
        }
        // `entry` locks the key's shard: two workers cannot both open a window for one key.
        match self.throttle.entry(key) {
            dashmap::mapref::entry::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                let age = now.signed_duration_since(e.window_start);
                if age.abs() < window {
                    // Inside the window, including events a little out of order.
                    e.suppressed += 1;
                    self.suppressed_total.fetch_add(1, Ordering::Relaxed);
                    if let Some(c) = self.suppressed_by_rule.get(rule as usize) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    None
                } else {
                    // Outside the window, later or (old data, files read out of order) much
                    // earlier: a new window starts at this event.
                    let suppressed = std::mem::take(&mut e.suppressed);
                    e.window_start = now;
                    e.expires = now + window;
                    Some(suppressed)
                }
            }
            dashmap::mapref::entry::Entry::Vacant(v) => {
                self.throttle_keys.fetch_add(1, Ordering::Relaxed);
                v.insert(ThrottleEntry {
                    window_start: now,
                    expires: now + window,
                    suppressed: 0,
                });
                Some(0)
            }
        }
    }

    /// Drops keys whose window ended before `now` (event time). Runs at most once per second
    /// of wall time, so a flood of new keys costs one sweep a second, not one per match.
    fn sweep(&self, now: DateTime<Utc>) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_sweep.swap(wall, Ordering::Relaxed) == wall {
            return;
        }
        let mut removed = 0;
        self.throttle.retain(|_, e| {
            let keep = e.expires > now;
            removed += usize::from(!keep);
            keep
        });
        self.throttle_keys.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode_value_into;
    use crate::rules::sigma::{builtin_field_mappings, load_str, CompileOptions};

    fn rules(yaml_detections: &[(&str, &str)]) -> RuleSet {
        let mut text = String::new();
        for (i, (det, extra)) in yaml_detections.iter().enumerate() {
            text.push_str(&format!(
                "title: R{i}\nid: 00000000-0000-4000-8000-{i:012}\nlogsource: {{product: kubernetes, service: audit}}\nlevel: medium\n{extra}\ndetection:\n{det}\n---\n"
            ));
        }
        let opts = CompileOptions {
            field_mappings: builtin_field_mappings(),
            ..CompileOptions::default()
        };
        let (r, e) = load_str("t.yml", &text, &opts);
        assert!(e.is_empty(), "{e:?}");
        RuleSet::new(r)
    }

    fn hits(set: &RuleSet, json: &str) -> Vec<usize> {
        let mut out = Vec::new();
        decode_value_into(json, &mut |ev| set.matching_into(ev.unwrap(), &mut out));
        out
    }

    fn rules_with(opts: &CompileOptions, yaml_detections: &[(&str, &str)]) -> RuleSet {
        let mut text = String::new();
        for (i, (det, extra)) in yaml_detections.iter().enumerate() {
            text.push_str(&format!(
                "title: R{i}\nid: 00000000-0000-4000-8000-{i:012}\nlogsource: {{product: kubernetes, service: audit}}\nlevel: medium\n{extra}\ndetection:\n{det}\n---\n"
            ));
        }
        let (r, e) = load_str("t.yml", &text, opts);
        assert!(e.is_empty(), "{e:?}");
        RuleSet::new(r)
    }

    fn placeholder_opts(entries: &[(&str, &[&str])]) -> CompileOptions {
        CompileOptions {
            placeholders: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..CompileOptions::default()
        }
    }

    /// Alerts (after throttling and once-per-request) for each event.
    fn alerts(set: &RuleSet, events: &[String]) -> Vec<usize> {
        let mut fired = Vec::new();
        for json in events {
            decode_value_into(json, &mut |ev| {
                let mut m = Vec::new();
                set.matches_into(ev.unwrap(), &mut m);
                fired.extend(m.iter().map(|m| m.index));
            });
        }
        fired
    }

    #[test]
    fn alternatives_of_maps_and_negated_maps_decide_like_the_condition() {
        let set = rules(&[
            (
                "  sel:\n    responseStatus.code: 403\n  sa:\n    user.username|startswith: 'system:serviceaccount:'\n  cli:\n    userAgent|startswith: kubectl/\n  filter:\n    user.username: system:kube-scheduler\n  condition: sel and (not sa or cli) and not filter",
                "",
            ),
            (
                "  sel:\n    verb: get\n  admin_group:\n    user.groups: system:masters\n    userAgent|contains: kube\n  admin_name:\n    user.username|endswith: -admin\n  condition: sel and 1 of admin_*",
                "",
            ),
            (
                "  sel:\n    verb: get\n  pair:\n    - user.username: alice\n      userAgent: curl/8\n    - user.username: bob\n  condition: sel and pair",
                "",
            ),
        ]);
        // Each rule's condition has the shape the direct check covers.
        for i in 0..3 {
            let plan = set.c.shared.exact[i].as_ref().expect("an exact plan");
            assert_eq!(plan.alternatives.len(), 1, "rule {i}");
        }
        let event = |code: u32, user: &str, agent: &str, groups: &str| {
            format!(
                r#"{{"verb":"get","user":{{"username":"{user}","groups":[{groups}]}},"userAgent":"{agent}","responseStatus":{{"code":{code}}},"objectRef":{{"resource":"pods"}}}}"#
            )
        };
        let cases = [
            event(403, "alice", "curl/8", ""),
            event(403, "system:serviceaccount:a:b", "client-go/1", ""),
            event(403, "system:serviceaccount:a:b", "kubectl/v1.30", ""),
            event(403, "system:kube-scheduler", "kubectl/v1.30", ""),
            event(200, "ops-admin", "kubectl/v1.30", "\"system:masters\""),
            event(200, "carol", "kubectl/v1.30", "\"system:masters\""),
            event(200, "carol", "curl/8", "\"system:masters\""),
            event(200, "bob", "curl/8", ""),
        ];
        let want: [&[usize]; 8] = [&[0, 2], &[], &[0], &[], &[1], &[1], &[], &[2]];
        for (json, want) in cases.iter().zip(want) {
            let mut got = hits(&set, json);
            got.sort_unstable();
            assert_eq!(got, want, "{json}");
            // The same as each rule's own condition.
            decode_value_into(json, &mut |ev| {
                let ev = ev.unwrap();
                for (i, r) in set.rules().iter().enumerate() {
                    assert_eq!(r.matches(ev), want.contains(&i), "rule {i} on {json}");
                }
            });
        }
    }

    #[test]
    fn the_rules_regexes_compile_in_the_background() {
        let set = rules(&[
            ("  s:\n    userAgent|re: '^curl/'\n  condition: s", ""),
            (
                "  s:\n    verb: get\n    requestURI: '/api/*/secrets*'\n  condition: s",
                "",
            ),
            ("  s:\n    verb: get\n  condition: s", ""),
        ]);
        let regexes = set.regexes();
        assert_eq!(regexes.len(), 2, "{regexes:?}");
        assert!(!regexes.iter().any(LazyRegex::is_compiled));
        // The thread compiles copies of the handles: the rules' own see the result.
        set.compile_regexes_in_background();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !set.regexes().iter().all(LazyRegex::is_compiled) {
            assert!(std::time::Instant::now() < deadline, "never compiled");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut matched = hits(
            &set,
            r#"{"verb":"get","userAgent":"curl/8.5","requestURI":"/api/v1/secrets"}"#,
        );
        matched.sort_unstable();
        assert_eq!(matched, vec![0, 1, 2]);
    }

    #[test]
    fn words_are_lowercased_like_ascii_bytes() {
        for b in 0..=255u8 {
            for fill in [0u8, b'A', b'z', b'@', b'[', 0x80, 0xc3, 0xff] {
                let mut bytes = [fill; 8];
                for (i, x) in bytes.iter_mut().enumerate() {
                    if i % 3 == usize::from(b % 3) {
                        *x = b;
                    }
                }
                let want = bytes.map(|x| x.to_ascii_lowercase());
                assert_eq!(
                    lower8(u64::from_le_bytes(bytes)).to_le_bytes(),
                    want,
                    "{bytes:?}"
                );
            }
        }
        let hay = "System:ServiceAccount:Kube-System:Ä-Controller";
        for end in 0..=hay.len() {
            let h = &hay.as_bytes()[..end];
            let lower: Vec<u8> = h.iter().map(u8::to_ascii_lowercase).collect();
            assert!(lower_eq(h, &lower), "{end}");
            for i in 0..end {
                let mut other = lower.clone();
                other[i] = other[i].wrapping_add(1);
                assert!(!lower_eq(h, &other), "{end} {i}");
            }
        }
    }

    #[test]
    fn an_empty_placeholder_matches_nothing_and_never_filters() {
        let opts = placeholder_opts(&[("empty", &[]), ("users", &["alice"])]);
        let set = rules_with(
            &opts,
            &[
                // 0: an empty list in a filter: the filter never holds.
                (
                    "  s:\n    verb: get\n  filter:\n    user.username|expand: '%empty%'\n  condition: s and not filter",
                    "",
                ),
                // 1: an empty list in a selection: never matches, `all` neither.
                ("  s:\n    verb|expand: '%empty%'\n  condition: s", ""),
                ("  s:\n    verb|expand|all: '%empty%'\n  condition: s", ""),
                ("  s:\n    verb|expand|contains: ['%empty%', 'ge']\n  condition: s", ""),
                // 4: empty and non-empty lists together in a filter.
                (
                    "  s:\n    verb: get\n  filter:\n    user.username|expand: ['%empty%', '%users%']\n  condition: s and not filter",
                    "",
                ),
            ],
        );
        let ev = |user: &str| {
            format!(r#"{{"kind":"Event","verb":"get","user":{{"username":"{user}"}}}}"#)
        };
        let sorted = |mut v: Vec<usize>| {
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(hits(&set, &ev("bob"))), vec![0, 3, 4]);
        assert_eq!(sorted(hits(&set, &ev("alice"))), vec![0, 3]);
        let mut unindexed = Vec::new();
        decode_value_into(&ev("bob"), &mut |e| {
            set.matching_unindexed_into(e.unwrap(), &mut unindexed)
        });
        assert_eq!(unindexed, vec![0, 3, 4]);
        // An undefined placeholder stays a load error.
        let (r, e) = load_str(
            "t.yml",
            "title: T\nid: 00000000-0000-4000-8000-000000000000\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  s:\n    verb|expand: '%undefined%'\n  condition: s\n",
            &opts,
        );
        assert!(r.is_empty());
        assert!(e[0].message.contains("`%undefined%` has no value"), "{e:?}");
    }

    #[test]
    fn a_rule_whose_required_placeholders_are_empty_is_loaded_but_never_evaluated() {
        let opts = placeholder_opts(&[("allowed", &[]), ("other", &["x"])]);
        let det = "  s:\n    verb: get\n  filter:\n    user.username|expand: '%allowed%'\n  condition: s and not filter";
        let set = rules_with(
            &opts,
            &[
                (det, "requires_placeholders: [allowed]"),
                (det, "requires_placeholders: [other]"),
                (det, ""),
            ],
        );
        assert_eq!(set.len(), 3);
        assert_eq!(set.inactive_len(), 1);
        assert!(!set.rules()[0].is_active());
        assert_eq!(set.rules()[0].empty_placeholders, vec!["allowed"]);
        let ev = r#"{"kind":"Event","verb":"get","user":{"username":"bob"}}"#;
        assert_eq!(hits(&set, ev), vec![1, 2]);
        let mut unindexed = Vec::new();
        decode_value_into(ev, &mut |e| {
            set.matching_unindexed_into(e.unwrap(), &mut unindexed)
        });
        assert_eq!(unindexed, vec![1, 2]);

        // With values, the same rule runs.
        let filled = placeholder_opts(&[("allowed", &["alice"]), ("other", &["x"])]);
        let set = rules_with(&filled, &[(det, "requires_placeholders: [allowed]")]);
        assert_eq!(set.inactive_len(), 0);
        assert_eq!(hits(&set, ev), vec![0]);
    }

    fn exec_event(audit_id: &str, stage: Option<&str>) -> String {
        let stage = stage.map_or(String::new(), |s| format!(r#""stage":"{s}","#));
        format!(
            r#"{{"kind":"Event","auditID":"{audit_id}",{stage}"verb":"create","requestURI":"/api/v1/namespaces/p/pods/w/exec?command=sh","user":{{"username":"bob"}},"objectRef":{{"resource":"pods","subresource":"exec"}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z"}}"#
        )
    }

    #[test]
    fn stage_less_events_of_one_request_alert_once_per_rule() {
        let set = rules_with(
            &CompileOptions::default(),
            &[
                // 0: accepts a missing stage.
                (
                    "  s:\n    verb: create\n    objectRef.subresource: exec\n    stage: [ResponseStarted, null]\n  condition: s",
                    "",
                ),
                // 1: the same, written with `exists: false` in a second selection.
                (
                    "  s:\n    verb: create\n    objectRef.subresource: exec\n  nostage:\n    - stage: ResponseStarted\n    - stage|exists: false\n  condition: s and nostage",
                    "",
                ),
                // 2: names no stage (Falco/SigmaHQ style): every event alerts, as before.
                ("  s:\n    verb: create\n    objectRef.subresource: exec\n  condition: s", ""),
            ],
        );
        assert!(set.rules()[0].once_per_request && set.rules()[1].once_per_request);
        assert!(!set.rules()[2].once_per_request);
        let a = "5e3b2c1a-0000-4000-8000-000000000001";
        let b = "5e3b2c1a-0000-4000-8000-000000000002";
        // Two stage-less events of one request: one alert per rule that accepts no stage.
        assert_eq!(
            alerts(&set, &[exec_event(a, None), exec_event(a, None)]),
            vec![0, 1, 2, 2]
        );
        assert_eq!(set.repeats_suppressed_total.load(Ordering::Relaxed), 2);
        // Another request alerts again.
        assert_eq!(alerts(&set, &[exec_event(b, None)]), vec![0, 1, 2]);
        // A client reusing an auditID for another request does not hide it.
        let other = exec_event(a, None).replace("bob", "mallory");
        assert_eq!(alerts(&set, &[other]), vec![0, 1, 2]);
        // Events with a stage are not affected (the stage value picks one).
        assert_eq!(
            alerts(
                &set,
                &[
                    exec_event(a, Some("ResponseStarted")),
                    exec_event(a, Some("ResponseStarted"))
                ]
            ),
            vec![0, 1, 2, 0, 1, 2]
        );
        // Without an auditID nothing identifies the request: every event alerts.
        let no_id = exec_event(a, None).replace(&format!(r#""auditID":"{a}","#), "");
        assert_eq!(
            alerts(&set, &[no_id.clone(), no_id]),
            vec![0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn a_rule_naming_several_stages_alerts_once_per_request() {
        let set = rules_with(
            &CompileOptions::default(),
            &[
                // 0: both stages of an exec (a policy may omit ResponseStarted), and none.
                (
                    "  s:\n    verb: create\n    stage: [ResponseStarted, ResponseComplete, null]\n  condition: s",
                    "",
                ),
                // 1: one stage and null: events with a stage are not deduplicated.
                (
                    "  s:\n    verb: create\n    stage: [ResponseStarted, null]\n  condition: s",
                    "",
                ),
            ],
        );
        assert!(set.rules()[0].several_stages && set.rules()[0].once_per_request);
        assert!(!set.rules()[1].several_stages && set.rules()[1].once_per_request);
        let a = "5e3b2c1a-0000-4000-8000-00000000000a";
        let b = "5e3b2c1a-0000-4000-8000-00000000000b";
        // The exec's two events: one alert from rule 0, rule 1 takes only ResponseStarted.
        assert_eq!(
            alerts(
                &set,
                &[
                    exec_event(a, Some("ResponseStarted")),
                    exec_event(a, Some("ResponseComplete"))
                ]
            ),
            vec![0, 1]
        );
        // A log with only ResponseComplete (ResponseStarted omitted by the policy) alerts.
        assert_eq!(
            alerts(&set, &[exec_event(b, Some("ResponseComplete"))]),
            vec![0]
        );
    }

    #[test]
    fn the_set_of_requests_that_alerted_is_bounded_and_forgets_the_oldest() {
        let set = rules_with(
            &CompileOptions::default(),
            &[(
                "  s:\n    verb: create\n    stage: [ResponseStarted, null]\n  condition: s",
                "",
            )],
        )
        .with_request_max_keys(REQUEST_SHARDS);
        let events: Vec<String> = (0..200)
            .map(|i| exec_event(&format!("id-{i}"), None))
            .collect();
        assert_eq!(alerts(&set, &events).len(), 200);
        assert!(
            set.requests_seen.len() <= REQUEST_SHARDS,
            "{}",
            set.requests_seen.len()
        );
        // The newest request of its shard is still remembered.
        assert_eq!(alerts(&set, &events[199..]).len(), 0);
        // The oldest were forgotten: alerting again is the safe side.
        assert_eq!(alerts(&set, &events[..1]).len(), 1);
    }

    #[test]
    fn selections_follow_sigma_semantics() {
        let set = rules(&[
            // 0: map = AND, list = OR
            ("  s:\n    verb: [get, list]\n    objectRef.resource: secrets\n  condition: s", ""),
            // 1: list of maps = OR of maps
            ("  s:\n    - verb: delete\n    - user.username: mallory\n  condition: s", ""),
            // 2: all: every value must match some element
            ("  s:\n    user.groups|all: [dev, 'system:authenticated']\n  condition: s", ""),
            // 3: null: field missing
            ("  s:\n    verb: get\n    objectRef.namespace: null\n  condition: s", ""),
            // 4: exists false
            ("  s:\n    verb: get\n    impersonatedUser|exists: true\n  condition: s", ""),
            // 5: numbers, gt, cidr
            ("  s:\n    responseStatus.code|gte: 400\n    sourceIPs|cidr: 10.0.0.0/8\n  condition: s", ""),
            // 6: bracketed annotation key + keywords
            ("  s:\n    annotations['authorization.k8s.io/decision']: allow\n  k:\n    - 'evil-tool'\n  condition: s and k", ""),
            // 7: re is case-sensitive unless i
            ("  s:\n    userAgent|re: '^kubectl/'\n  condition: s", ""),
        ]);
        let cases: &[(&str, &[usize])] = &[
            (
                r#"{"verb":"get","objectRef":{"resource":"secrets","namespace":"a"}}"#,
                &[0],
            ),
            (
                r#"{"verb":"LIST","objectRef":{"resource":"Secrets"}}"#,
                &[0],
            ),
            (
                r#"{"verb":"watch","objectRef":{"resource":"secrets"}}"#,
                &[],
            ),
            (r#"{"verb":"delete"}"#, &[1]),
            (r#"{"verb":"patch","user":{"username":"Mallory"}}"#, &[1]),
            (
                r#"{"verb":"patch","user":{"groups":["dev","system:authenticated"]}}"#,
                &[2],
            ),
            (r#"{"verb":"patch","user":{"groups":["dev"]}}"#, &[]),
            (r#"{"verb":"get","objectRef":{"resource":"pods"}}"#, &[3]),
            (
                r#"{"verb":"get","objectRef":{"resource":"pods","namespace":null}}"#,
                &[3],
            ),
            (
                r#"{"verb":"get","objectRef":{"resource":"pods","namespace":"x"},"impersonatedUser":{"username":"bob"}}"#,
                &[4],
            ),
            (
                r#"{"verb":"get","objectRef":{"resource":"pods","namespace":"x"},"responseStatus":{"code":403},"sourceIPs":["1.2.3.4","10.0.0.9"]}"#,
                &[5],
            ),
            (
                r#"{"verb":"get","objectRef":{"resource":"pods","namespace":"x"},"responseStatus":{"code":200},"sourceIPs":["10.0.0.9"]}"#,
                &[],
            ),
            (
                r#"{"verb":"create","userAgent":"evil-tool/1.0","annotations":{"authorization.k8s.io/decision":"allow"}}"#,
                &[6],
            ),
            (r#"{"verb":"create","userAgent":"kubectl/v1.29"}"#, &[7]),
            (r#"{"verb":"create","userAgent":"KUBECTL/v1.29"}"#, &[]),
        ];
        for (json, want) in cases {
            assert_eq!(hits(&set, json), *want, "{json}");
        }
    }

    #[test]
    fn the_index_selects_only_candidate_rules() {
        let set = rules(&[
            (
                "  s:\n    verb: get\n    objectRef.resource: secrets\n  condition: s",
                "",
            ),
            (
                "  a:\n    verb: create\n  b:\n    verb: [patch, update]\n  condition: a or b",
                "",
            ),
            (
                "  a:\n    verb: create\n  f:\n    verb: delete\n  condition: not f",
                "",
            ),
            ("  a:\n    verb|startswith: cre\n  condition: a", ""),
        ]);
        let c = |verb, res| set.c.index.candidates(verb, res).collect::<Vec<_>>();
        assert_eq!(c(Some("get"), Some("secrets")), [0, 2]);
        assert_eq!(c(Some("get"), Some("pods")), [2]);
        assert_eq!(c(Some("create"), Some("pods")), [1, 2]);
        assert_eq!(c(Some("patch"), None), [1, 2]);
        assert_eq!(c(None, None), [2]);
        // Rule 2 names no verb and has no guard: tested on every event. Rule 3 names none
        // either, but is tested only when its guard (`verb|startswith: cre`) holds.
        assert_eq!(set.c.index.any_verb.any_resource, vec![2]);
        assert_eq!(set.c.gated.len(), 1);
        assert_eq!(set.c.gated[0].rules, vec![3]);
        assert!(set.is_any_verb(3));
        assert_eq!(hits(&set, r#"{"verb":"create"}"#), [1, 2, 3]);
        assert_eq!(hits(&set, r#"{"verb":"get"}"#), [2]);
    }

    #[test]
    fn rules_that_name_no_verb_share_a_gate_and_match_as_before() {
        // Three rules whose first guard clause is the same anonymous-user test, and one with
        // another: one group each; results as when every rule is tested.
        let anon = "  u:\n    user.username: system:anonymous\n  g:\n    user.groups: system:unauthenticated\n";
        let set = rules(&[
            (
                &format!("{anon}  s:\n    stage: ResponseComplete\n  condition: (u or g) and s")[..],
                "",
            ),
            (
                &format!("{anon}  c:\n    responseStatus.code: 403\n  condition: (u or g) and c")[..],
                "",
            ),
            (&format!("{anon}  condition: u or g")[..], ""),
            ("  s:\n    responseStatus.code: 401\n  condition: s", ""),
            ("  s:\n    impersonatedUser.username|exists: true\n  condition: s", ""),
            ("  s:\n    impersonatedUser.groups: system:masters\n  n:\n    impersonatedUser.username|startswith: 'system:node:'\n  condition: s or n", ""),
            // Holds without impersonation: never skipped for its absence.
            ("  s:\n    impersonatedUser.username: null\n    user.username: bob\n  condition: s", ""),
        ]);
        let skipped: Vec<bool> = set.c.gated.iter().map(|g| g.impersonation).collect();
        assert_eq!(
            skipped,
            [false, false, true, true, false],
            "{:?}",
            set.c.gated
        );
        for (json, want) in [
            (r#"{"verb":"get","user":{"username":"bob"}}"#, &[6][..]),
            (
                r#"{"verb":"get","user":{"username":"bob"},"impersonatedUser":null}"#,
                &[6],
            ),
            (
                r#"{"verb":"get","user":{"username":"bob"},"impersonatedUser":{"username":"x"}}"#,
                &[4],
            ),
            (
                r#"{"verb":"get","impersonatedUser":{"username":"system:node:a","groups":["system:masters"]}}"#,
                &[4, 5],
            ),
            (
                r#"{"verb":"get","impersonatedUser":{"groups":["System:Masters"]}}"#,
                &[5],
            ),
        ] {
            let mut got = hits(&set, json);
            got.sort_unstable();
            assert_eq!(got, want, "{json}");
            let ev = Event::parse(json).unwrap();
            let mut all = Vec::new();
            set.matching_unindexed_into(&ev, &mut all);
            assert_eq!(all, want, "{json}");
        }
        assert_eq!(set.c.gated[0].rules, vec![0, 1, 2]);
        assert_eq!(set.c.gated[0].clause.len(), 2);
        assert_eq!(set.c.gated[1].rules, vec![3]);
        for (json, want) in [
            (
                r#"{"verb":"get","user":{"username":"system:anonymous"},"stage":"ResponseComplete"}"#,
                &[0, 2][..],
            ),
            (
                r#"{"verb":"get","user":{"username":"x","groups":["system:unauthenticated"]},"responseStatus":{"code":403}}"#,
                &[1, 2],
            ),
            (
                r#"{"verb":"get","user":{"username":"x"},"responseStatus":{"code":401}}"#,
                &[3],
            ),
            (
                r#"{"verb":"get","user":{"username":"x"},"stage":"ResponseComplete"}"#,
                &[],
            ),
        ] {
            assert_eq!(hits(&set, json), want, "{json}");
            let ev = Event::parse(json).unwrap();
            let mut all = Vec::new();
            set.matching_unindexed_into(&ev, &mut all);
            assert_eq!(all, want, "{json}");
        }
    }

    /// The first-seen check runs before throttling: a new key that throttling suppresses is
    /// still learned, and a known key never reaches the throttle.
    #[test]
    fn first_seen_learns_before_throttling_and_alerts_only_new_keys() {
        let set = rules(&[
            (
                "  s:\n    verb: get\n  condition: s",
                "first_seen:\n  fields: [user.username]\n  history: 14d\n  learning: 1d\nthrottle:\n  key: [verb]\n  window: 1h",
            ),
            ("  s:\n    verb: get\n  condition: s", ""),
        ]);
        let mut fired = Vec::new();
        for (u, t) in [
            ("a", "2026-01-01T00:00:00Z"), // learning
            ("b", "2026-01-02T00:00:00Z"), // new: alerts
            ("c", "2026-01-02T00:10:00Z"), // new, throttled (same verb), but learned
            ("c", "2026-01-02T02:00:00Z"), // known: no alert
            ("a", "2026-01-02T03:00:00Z"), // known
            ("d", "2026-01-02T04:00:00Z"), // new
        ] {
            let json =
                format!(r#"{{"verb":"get","user":{{"username":"{u}"}},"stageTimestamp":"{t}"}}"#);
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                fired.extend(m.iter().map(|m| (m.index, u)));
            });
        }
        let first_seen: Vec<_> = fired.iter().filter(|(i, _)| *i == 0).collect();
        assert_eq!(first_seen, vec![&(0, "b"), &(0, "d")]);
        // The rule without `first_seen` is untouched.
        assert_eq!(fired.iter().filter(|(i, _)| *i == 1).count(), 6);
        // Without a time or without the key's field: no alert, nothing learned.
        for json in [
            r#"{"verb":"get","user":{"username":"e"}}"#,
            r#"{"verb":"get","stageTimestamp":"2026-01-03T00:00:00Z"}"#,
        ] {
            decode_value_into(json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                assert!(m.iter().all(|m| m.index != 0), "{json}");
            });
        }
    }

    /// Alerts of `set` on the events, as (user, time) pairs.
    fn fire_all<'a>(set: &RuleSet, events: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut fired = Vec::new();
        for &(u, t) in events {
            let json =
                format!(r#"{{"verb":"get","user":{{"username":"{u}"}},"stageTimestamp":"{t}"}}"#);
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                fired.extend(m.iter().map(|_| (u, t)));
            });
        }
        fired
    }

    #[test]
    fn throttle_windows_survive_a_snapshot_written_as_json_and_a_changed_spec_drops_them() {
        let throttled = (
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 10m",
        );
        let set = rules(&[throttled]);
        assert_eq!(fire_all(&set, &[("a", "2026-01-01T00:00:00Z")]).len(), 1);
        let text = serde_json::to_string(&set.snapshot()).unwrap();
        let snap: RuleSetSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(snap.throttle_windows(), 1);

        // The same rule in a new set (a restart, a reload): the window holds.
        let again = rules(&[throttled]).with_state(snap.clone());
        assert!(fire_all(&again, &[("a", "2026-01-01T00:05:00Z")]).is_empty());
        assert_eq!(fire_all(&again, &[("a", "2026-01-01T00:10:00Z")]).len(), 1);

        // Another window length: a new definition, a new window.
        let changed = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 20m",
        )])
        .with_state(snap);
        assert_eq!(
            fire_all(&changed, &[("a", "2026-01-01T00:05:00Z")]).len(),
            1
        );
    }

    #[test]
    fn an_event_delivered_again_is_not_counted_twice_by_a_throttle() {
        let set = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 10m",
        )])
        .with_redelivery_window(4);
        let events = [
            ("a", "2026-01-01T00:00:00Z"), // alerts
            ("a", "2026-01-01T00:12:00Z"), // a new window: alerts
        ];
        assert_eq!(fire_all(&set, &events).len(), 2);
        // Read again from the start (a restart before the checkpoint): without the window,
        // the first event, 12 minutes before the current window, would open a window of its
        // own and alert, and so would the second after it.
        let snap = set.snapshot();
        let restarted = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 10m",
        )])
        .with_redelivery_window(4)
        .with_state(snap);
        assert!(fire_all(&restarted, &events).is_empty());
        assert_eq!(
            fire_all(&restarted, &[("a", "2026-01-01T00:23:00Z")]).len(),
            1,
            "a new event still alerts"
        );
        // Without the redelivery window the replay alerts again.
        let plain = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 10m",
        )])
        .with_state(set.snapshot());
        assert_eq!(fire_all(&plain, &events).len(), 2);
    }

    #[test]
    fn the_redelivery_window_forgets_the_oldest_beyond_its_size() {
        let d = Deliveries::new(2);
        assert!(d.insert(1) && d.insert(2) && !d.insert(1));
        assert!(d.insert(3)); // forgets 1
        assert!(d.insert(1));
        assert_eq!(d.entries(), vec![3, 1]);
        assert!(Deliveries::new(0).insert(5) && Deliveries::new(0).insert(5));
    }

    #[test]
    fn throttle_suppresses_repeats_on_event_time_and_reports_the_count() {
        let set = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 10m",
        )]);
        let ev = |user: &str, t: &str| {
            format!(r#"{{"verb":"get","user":{{"username":"{user}"}},"stageTimestamp":"{t}"}}"#)
        };
        let mut fired = Vec::new();
        for (u, t) in [
            ("a", "2026-01-01T00:00:00Z"),
            ("a", "2026-01-01T00:01:00Z"),
            ("b", "2026-01-01T00:02:00Z"),
            ("a", "2026-01-01T00:09:59Z"),
            ("a", "2026-01-01T00:10:00Z"),
            ("a", "2026-01-01T00:11:00Z"),
        ] {
            let json = ev(u, t);
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                fired.extend(m.iter().map(|m| (u, t, m.suppressed)));
            });
        }
        assert_eq!(
            fired,
            vec![
                ("a", "2026-01-01T00:00:00Z", 0),
                ("b", "2026-01-01T00:02:00Z", 0),
                ("a", "2026-01-01T00:10:00Z", 2),
            ]
        );
        assert_eq!(set.suppressed_total.load(Ordering::Relaxed), 3);

        // A little out of order (concurrent requests, several API servers): still suppressed,
        // and the window does not move back.
        let mut fired = 0;
        for t in [
            "2026-01-01T01:00:00Z",
            "2026-01-01T00:59:59.999Z",
            "2026-01-01T01:09:59Z",
        ] {
            let json = ev("c", t);
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                fired += m.len();
            });
        }
        assert_eq!(fired, 1);
    }

    #[test]
    fn throttle_keys_compare_values_as_text() {
        let set = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [requestObject.a, requestObject.b]\n  window: 1h",
        )]);
        let mut alerts = Vec::new();
        for body in [
            r#"{"a":1,"b":"x"}"#,
            r#"{"a":"1","b":"x"}"#,
            r#"{"a":["ab"],"b":"x"}"#,
            r#"{"a":["a","b"],"b":"x"}"#,
            r#"{"a":"a","b":"bx"}"#,
        ] {
            let json = format!(
                r#"{{"verb":"get","requestObject":{body},"stageTimestamp":"2026-01-01T00:00:00Z"}}"#
            );
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                alerts.push(m.len());
            });
        }
        // `1` and `"1"` share a window; lists and split values do not run together.
        assert_eq!(alerts, [1, 0, 1, 1, 1]);
    }

    #[test]
    fn throttle_key_table_is_bounded() {
        let set = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "throttle:\n  key: [user.username]\n  window: 1h",
        )])
        .with_throttle_max_keys(2);
        let mut alerts = 0;
        for i in 0..5 {
            let json = format!(
                r#"{{"verb":"get","user":{{"username":"u{i}"}},"stageTimestamp":"2026-01-01T00:00:0{i}Z"}}"#
            );
            decode_value_into(&json, &mut |e| {
                let mut m = Vec::new();
                set.matches_into(e.unwrap(), &mut m);
                alerts += m.len();
            });
        }
        assert_eq!(alerts, 5, "a full table alerts rather than drops");
        assert!(set.throttle.len() <= 2);
        assert_eq!(
            set.throttle_keys.load(Ordering::Relaxed),
            set.throttle.len()
        );
        // Expired windows are swept, and the count follows.
        set.last_sweep.store(0, Ordering::Relaxed);
        let later: DateTime<Utc> = "2026-01-01T03:00:00Z".parse().unwrap();
        set.sweep(later);
        assert_eq!(set.throttle.len(), 0);
        assert_eq!(set.throttle_keys.load(Ordering::Relaxed), 0);
        assert_eq!(set.throttle_overflow_total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn output_renders_fields_and_missing_ones() {
        let set = rules(&[(
            "  s:\n    verb: get\n  condition: s",
            "output: '{user.username} read {objectRef.namespace}/{objectRef.name} from {sourceIPs}'",
        )]);
        let json = r#"{"verb":"get","user":{"username":"eve"},"objectRef":{"name":"db"},"sourceIPs":["1.1.1.1","2.2.2.2"]}"#;
        decode_value_into(json, &mut |e| {
            assert_eq!(
                set.rules()[0].render_output(e.unwrap()),
                "eve read <none>/db from 1.1.1.1, 2.2.2.2"
            );
        });
    }
}
