//! A Falco condition compiled for tripline's decoded events: what [`super::eval`] computes,
//! reading the fields that tripline's decoder already typed (verb, resource, user, ...) from the
//! [`Event`] instead of walking the JSON text again. Every other field, and every case where
//! the typed value cannot tell what the plugin would extract (a `null`), is read as the
//! interpreter reads it, from the event's text parsed once per event.
//!
//! The property test `compiled_equals_the_interpreter` checks both agree on every rule of
//! Falco's files and every event of the test data.

use std::cell::OnceCell;
use std::collections::HashSet;

use super::condition::{Check, Expr, Op, Operand};
use super::eval::{compare_values, Doc};
use super::fields::Field;
use crate::event::{Event, FieldRef, FieldValue};

/// An expanded Falco condition ready to run on decoded events.
#[derive(Debug, Clone)]
pub struct FalcoCond {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// A macro reference left unexpanded: false, as in the interpreter.
    False,
    Check(Box<CCheck>),
}

#[derive(Debug, Clone)]
struct CCheck {
    field: Field,
    /// Where tripline's decoder holds the same value, with the last key of its JSON path (to
    /// tell a `null` from a missing member).
    typed: Option<(FieldRef, &'static str)>,
    /// The k8saudit plugin reads the field only from an event with an `auditID`.
    needs_audit_id: bool,
    /// `jevt.rawtime` / `json.rawtime`: `stageTimestamp` in nanoseconds, read from the typed
    /// field.
    rawtime: bool,
    op: Op,
    rhs: Vec<String>,
    /// `rhs` as a set, for long `in` lists.
    set: Option<rustc_hash::FxHashSet<String>>,
    /// For `=`, `!=`, `in` and `intersects`: the values of `rhs` that are integers written
    /// the way an integer prints (`403`, not `0403` or `+403`), so that a number (a response
    /// code, a time in nanoseconds) compares without being printed.
    ints: Vec<i64>,
}

/// The typed field of a plain JSON path, if tripline's decoder keeps one.
fn typed_field(path: &[&str]) -> Option<(FieldRef, &'static str)> {
    Some(match path {
        ["auditID"] => (FieldRef::AuditId, "auditID"),
        ["stage"] => (FieldRef::Stage, "stage"),
        ["verb"] => (FieldRef::Verb, "verb"),
        ["requestURI"] => (FieldRef::RequestUri, "requestURI"),
        ["userAgent"] => (FieldRef::UserAgent, "userAgent"),
        ["kind"] => (FieldRef::Kind, "kind"),
        ["level"] => (FieldRef::Level, "level"),
        ["apiVersion"] => (FieldRef::ApiVersion, "apiVersion"),
        ["user", "username"] => (FieldRef::UserName, "username"),
        ["user", "uid"] => (FieldRef::UserUid, "uid"),
        ["impersonatedUser", "username"] => (FieldRef::ImpersonatedName, "username"),
        ["objectRef", "resource"] => (FieldRef::ObjResource, "resource"),
        ["objectRef", "subresource"] => (FieldRef::ObjSubresource, "subresource"),
        ["objectRef", "namespace"] => (FieldRef::ObjNamespace, "namespace"),
        ["objectRef", "name"] => (FieldRef::ObjName, "name"),
        ["objectRef", "apiGroup"] => (FieldRef::ObjApiGroup, "apiGroup"),
        ["objectRef", "apiVersion"] => (FieldRef::ObjApiVersion, "apiVersion"),
        ["responseStatus", "code"] => (FieldRef::StatusCode, "code"),
        ["responseStatus", "reason"] => (FieldRef::StatusReason, "reason"),
        ["responseStatus", "status"] => (FieldRef::StatusStatus, "status"),
        _ => return None,
    })
}

impl FalcoCond {
    /// Compiles an expanded condition (macros and lists already substituted).
    pub fn new(expr: &Expr) -> FalcoCond {
        FalcoCond {
            root: compile(expr),
        }
    }

    /// True if the condition holds for `ev`, exactly as [`super::eval`] on its text.
    pub fn matches(&self, ev: &Event<'_>) -> bool {
        let doc = OnceCell::new();
        eval(&self.root, ev, &doc)
    }

    /// True if Falco evaluates rules on `ev` at all: the k8saudit plugin drops an event whose
    /// `stageTimestamp` is not an RFC 3339 time (`source.go`, `parseSingleAuditEventJSON`).
    pub fn applies(ev: &Event<'_>) -> bool {
        ev.has_rfc3339_stage_time()
    }

    /// The lowercased values the condition requires of `field` (a typed field), or `None` if
    /// it can hold with any value or none: sound for the rule index.
    pub fn required_values(&self, field: &FieldRef) -> Option<HashSet<String>> {
        required(&self.root, field)
    }
}

fn compile(expr: &Expr) -> Node {
    match expr {
        Expr::And(c) => Node::And(cheapest_first(c.iter().map(compile).collect(), false)),
        Expr::Or(c) => Node::Or(cheapest_first(c.iter().map(compile).collect(), true)),
        Expr::Not(c) => Node::Not(Box::new(compile(c))),
        Expr::Macro { .. } => Node::False,
        Expr::Check(check) => Node::Check(Box::new(compile_check(check))),
    }
}

/// The operands of an `and` (`stops_at` false) or an `or` (`stops_at` true) in the order that
/// decides it soonest: cheap checks (typed fields, `jevt.rawtime`) before those that read the
/// event's text, and among equals those likely to give `stops_at` first. Falco's `kevt` (the
/// stage), `exists` and negations hold on most audit events; other comparisons rarely do.
/// Conditions have no side effects and a missing field only makes its own comparison false,
/// so the order changes nothing but the time (the property test
/// `compiled_equals_the_interpreter` holds it to the interpreter, which keeps the written
/// order). The sort is stable: ties keep the written order.
fn cheapest_first(mut nodes: Vec<Node>, stops_at: bool) -> Vec<Node> {
    nodes.sort_by_key(|n| (cost(n), u8::from(mostly_true(n) != stops_at)));
    nodes
}

/// A rough price of evaluating `node` on an event: 1 for `jevt.rawtime`, 2 for a field the
/// decoder typed, 16 for one read from the event's text.
fn cost(node: &Node) -> u32 {
    match node {
        Node::And(c) | Node::Or(c) => c.iter().map(cost).sum(),
        Node::Not(c) => cost(c),
        Node::False => 0,
        Node::Check(c) if c.rawtime => 1,
        Node::Check(c) if c.typed.is_some() => 2,
        Node::Check(_) => 16,
    }
}

/// True for what holds on most audit events: the stage test of Falco's `kevt`, `exists`, a
/// negation.
fn mostly_true(node: &Node) -> bool {
    match node {
        Node::Not(_) => true,
        Node::Check(c) => c.op == Op::Exists || matches!(c.typed, Some((FieldRef::Stage, _))),
        _ => false,
    }
}

fn compile_check(check: &Check) -> CCheck {
    let typed = check
        .field
        .plain_path()
        .and_then(|(path, _)| typed_field(&path));
    let needs_audit_id = check.field.def.name.starts_with("ka.");
    let rawtime = matches!(check.field.def.name, "jevt.rawtime" | "json.rawtime");
    let rhs: Vec<String> = match &check.operand {
        Operand::None => Vec::new(),
        Operand::Value(v) | Operand::ListName(v) => vec![v.clone()],
        Operand::List(items) => items.iter().map(|i| i.text.clone()).collect(),
    };
    let set = (matches!(check.op, Op::In | Op::Intersects) && rhs.len() > 4)
        .then(|| rhs.iter().cloned().collect());
    let ints = rhs
        .iter()
        .filter_map(|r| r.parse::<i64>().ok().filter(|n| n.to_string() == *r))
        .collect();
    CCheck {
        field: check.field.clone(),
        typed,
        needs_audit_id,
        rawtime,
        op: check.op,
        rhs,
        set,
        ints,
    }
}

fn eval<'e>(node: &Node, ev: &'e Event<'_>, doc: &OnceCell<Doc<'e>>) -> bool {
    match node {
        Node::And(c) => c.iter().all(|n| eval(n, ev, doc)),
        Node::Or(c) => c.iter().any(|n| eval(n, ev, doc)),
        Node::Not(c) => !eval(c, ev, doc),
        Node::False => false,
        Node::Check(c) => eval_check(c, ev, doc),
    }
}

fn eval_check<'e>(c: &CCheck, ev: &'e Event<'_>, doc: &OnceCell<Doc<'e>>) -> bool {
    if c.needs_audit_id && ev.audit_id.is_none() && !names_key(ev.raw(), "auditID") {
        // The k8saudit plugin extracts nothing from an event without an `auditID`.
        return false;
    }
    if c.rawtime {
        // The plugin's `stageTimestamp` parsed as RFC 3339, in nanoseconds since the epoch.
        return ev
            .stage_time_nanos()
            .is_some_and(|n| c.op == Op::Exists || c.holds_int(n));
    }
    if let (Some((field, key)), Some(_)) = (&c.typed, &ev.audit_id) {
        match ev.scalar(field) {
            Some(Some(FieldValue::Str(v))) => return c.holds(v),
            Some(Some(FieldValue::Int(n))) => return c.holds_int(n),
            // Not there at all, unless the member is written `null` (the plugin then reads
            // the text `null`): only an event with a `null` there, naming the key, needs the
            // text.
            Some(None) if !ev.null_near(field) || !names_key(ev.raw(), key) => return false,
            _ => {}
        }
    }
    let doc = doc.get_or_init(|| Doc::from_event(ev));
    let Some(values) = doc.extract(&c.field) else {
        return false;
    };
    c.holds_values(&values)
}

/// True if `raw` holds `"key"` anywhere (a member of that name may be there).
fn names_key(raw: &str, key: &str) -> bool {
    let mut quoted = [0u8; 64];
    let n = key.len() + 2;
    if n > quoted.len() {
        return true;
    }
    quoted[0] = b'"';
    quoted[1..n - 1].copy_from_slice(key.as_bytes());
    quoted[n - 1] = b'"';
    memchr::memmem::find(raw.as_bytes(), &quoted[..n]).is_some()
}

impl CCheck {
    /// The check on a single-valued field whose value is the integer `n` printed (the plugin
    /// gives it as text): equality and membership without printing it.
    fn holds_int(&self, n: i64) -> bool {
        match self.op {
            Op::Eq => self.ints.first().is_some_and(|&r| r == n) && self.rhs.len() == 1,
            Op::Ne => !(self.ints.first().is_some_and(|&r| r == n) && self.rhs.len() == 1),
            Op::In | Op::Intersects if !self.field.def.list => self.ints.contains(&n),
            _ => self.holds(&n.to_string()),
        }
    }

    /// The check on the one value of a single-valued field.
    fn holds(&self, v: &str) -> bool {
        if self.field.def.list {
            return self.holds_values(&[v.to_string()]);
        }
        match (&self.set, self.op) {
            (Some(set), Op::In | Op::Intersects) => set.contains(v),
            _ => compare_values(self.op, v, &self.rhs),
        }
    }

    /// The check on the values the plugin extracted.
    fn holds_values(&self, values: &[String]) -> bool {
        let contains = |v: &str| match &self.set {
            Some(set) => set.contains(v),
            None => self.rhs.iter().any(|r| r == v),
        };
        match self.op {
            Op::Exists => true,
            Op::In if self.field.def.list => values.iter().all(|v| contains(v)),
            Op::Intersects if self.field.def.list => values.iter().any(|v| contains(v)),
            _ if self.field.def.list => false,
            _ => values.first().is_some_and(|v| self.holds(v)),
        }
    }
}

fn required(node: &Node, field: &FieldRef) -> Option<HashSet<String>> {
    match node {
        Node::And(c) => c
            .iter()
            .filter_map(|n| required(n, field))
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
        Node::Or(c) => c
            .iter()
            .map(|n| required(n, field))
            .collect::<Option<Vec<_>>>()
            .map(|sets| sets.into_iter().flatten().collect()),
        // Never true: requires nothing that any event has.
        Node::False => Some(HashSet::new()),
        Node::Not(_) => None,
        Node::Check(c) => match (&c.typed, c.op) {
            // The k8saudit plugin reads a JSON `null` as the text `null`, which the event's
            // typed field (absent) does not index: such a check requires nothing.
            (Some((f, _)), Op::Eq | Op::In | Op::Intersects)
                if f == field && !c.field.def.list && !c.rhs.iter().any(|v| v == "null") =>
            {
                Some(c.rhs.iter().map(|v| v.to_lowercase()).collect())
            }
            _ => None,
        },
    }
}
