//! A direct interpreter of an expanded condition over one audit event, with libsinsp's
//! semantics (falcosecurity/libs `userspace/libsinsp/filterchecks.cpp`,
//! `sinsp_filter_check::compare_nocache` and `compare_rhs`, and `flt_compare` for strings):
//!
//! - A field that gives no value (not available in the event) makes its comparison false,
//!   whatever the operator, `exists` included; `not` of that comparison is true.
//! - `exists` is true whenever the field gives a value.
//! - On a list field, `in` is true if every value is in the set, `intersects` if any is. Any
//!   other operator on a list field (even with an index argument, which leaves the field a
//!   list) is false: libsinsp throws "list filter ... only supports operators 'exists', 'in'
//!   and 'intersects'" when it evaluates one, which stops Falco.
//! - On a single-valued field, `in` and `intersects` test membership in the set, and `pmatch`
//!   tests whether the value is one of the set's paths or lies under one of them (libsinsp
//!   `path_prefix_search`).
//! - Every field of the k8saudit and json plugins is a string, so the other operators compare
//!   strings as C's `strcmp` family does: `=`/`!=` byte equality, `<`/`<=`/`>`/`>=` byte-wise
//!   order (so `ka.response.code >= 400` compares text: `"1000" < "400"`), `contains`,
//!   `startswith`, `endswith` on bytes, `icontains` ignoring ASCII case only (`strcasestr`),
//!   `glob` as `fnmatch` without flags (`*` also matches `/`), `iglob` as `fnmatch` with
//!   `FNM_CASEFOLD` (`sinsp_utils::glob_match`).
//!
//! An empty list extracted by the plugin counts as no value (the plugin sets no value).

use super::condition::{Check, Expr, Op, Operand};
use super::json::Json;

/// An audit event ready for evaluation: its JSON text, parsed once.
pub struct Doc<'a> {
    raw: &'a str,
    root: Option<Json<'a>>,
}

impl<'a> Doc<'a> {
    /// The event whose JSON text is `raw` (an event that is not JSON gives no field values).
    pub fn new(raw: &'a str) -> Self {
        Doc {
            raw,
            root: Json::parse(raw),
        }
    }

    /// The event whose JSON text is `raw`, its members listed once for every field read from
    /// it (`members`, from [`super::members`]).
    pub(crate) fn with_members(
        raw: &'a str,
        members: Option<&'a [super::json::Member<'a>]>,
    ) -> Self {
        Doc {
            raw,
            root: members.map(|m| Json::with_members(raw, m)),
        }
    }

    /// The values of `field` in the event, as the plugin extracts them (`None`: not
    /// available).
    pub(crate) fn extract(&self, field: &super::fields::Field) -> Option<Vec<String>> {
        field.extract_json(self.root?, self.raw)
    }

    /// The event behind a decoded [`crate::event::Event`] (its text parsed once per event,
    /// however many rules read it).
    pub fn from_event(event: &'a crate::event::Event<'_>) -> Self {
        Doc {
            raw: event.raw(),
            root: event
                .raw_members()
                .map(|members| Json::with_members(event.raw(), members)),
        }
    }
}

/// True if the expanded condition `expr` holds for the event. A macro reference left in the
/// tree (not expanded) is false.
pub fn eval(expr: &Expr, doc: &Doc<'_>) -> bool {
    match expr {
        Expr::And(c) => c.iter().all(|e| eval(e, doc)),
        Expr::Or(c) => c.iter().any(|e| eval(e, doc)),
        Expr::Not(c) => !eval(c, doc),
        Expr::Macro { .. } => false,
        Expr::Check(check) => eval_check(check, doc),
    }
}

fn eval_check(check: &Check, doc: &Doc<'_>) -> bool {
    let Some(root) = doc.root else {
        return false;
    };
    let Some(values) = check.field.extract_json(root, doc.raw) else {
        return false;
    };
    let set = operand_values(&check.operand);
    match check.op {
        Op::Exists => true,
        Op::In if check.field.def.list => values.iter().all(|v| set.contains(&v.as_str())),
        Op::Intersects if check.field.def.list => values.iter().any(|v| set.contains(&v.as_str())),
        _ if check.field.def.list => false,
        op => values.first().is_some_and(|v| compare(op, v, &set)),
    }
}

/// The values of the right-hand side (a list name left unexpanded counts as one value, as a
/// single value does in libsinsp).
fn operand_values(operand: &Operand) -> Vec<&str> {
    match operand {
        Operand::None => Vec::new(),
        Operand::Value(v) | Operand::ListName(v) => vec![v.as_str()],
        Operand::List(items) => items.iter().map(|i| i.text.as_str()).collect(),
    }
}

/// One value against the right-hand side.
fn compare(op: Op, value: &str, rhs: &[&str]) -> bool {
    compare_values(op, value, rhs)
}

/// One value against the right-hand side (its values as any strings).
pub(crate) fn compare_values<S: AsRef<str>>(op: Op, value: &str, rhs: &[S]) -> bool {
    let rhs0 = rhs.first().map(AsRef::as_ref).unwrap_or_default();
    match op {
        Op::Exists => true,
        Op::In | Op::Intersects => rhs.iter().any(|r| r.as_ref() == value),
        Op::PMatch => rhs.iter().any(|p| path_under(value, p.as_ref())),
        Op::Eq => value == rhs0,
        Op::Ne => value != rhs0,
        Op::Lt => value.as_bytes() < rhs0.as_bytes(),
        Op::Le => value.as_bytes() <= rhs0.as_bytes(),
        Op::Gt => value.as_bytes() > rhs0.as_bytes(),
        Op::Ge => value.as_bytes() >= rhs0.as_bytes(),
        Op::Contains => value.contains(rhs0),
        Op::IContains => value
            .to_ascii_lowercase()
            .contains(&rhs0.to_ascii_lowercase()),
        Op::StartsWith => value.starts_with(rhs0),
        Op::EndsWith => value.ends_with(rhs0),
        Op::Glob => glob(rhs0, value),
        Op::IGlob => glob(&rhs0.to_ascii_lowercase(), &value.to_ascii_lowercase()),
        Op::BContains | Op::BStartsWith => false,
    }
}

/// True if `path` is `prefix` or lies under it, component by component (`/var/run` covers
/// `/var/run/docker.sock` but not `/var/running` nor `/var`; empty components are ignored, so
/// `/` covers every path). A component of `prefix` holding `?`, `*` or `[` is a [`glob`]
/// pattern for one component (libsinsp `path_prefix_map`, `split_path` and
/// `match_components_glob`).
pub fn path_under(path: &str, prefix: &str) -> bool {
    let mut path = path.split('/').filter(|c| !c.is_empty());
    prefix.split('/').filter(|c| !c.is_empty()).all(|want| {
        path.next().is_some_and(|have| {
            if want.contains(['?', '*', '[']) {
                glob(want, have)
            } else {
                have == want
            }
        })
    })
}

/// `fnmatch(pattern, text, 0)`: `*` matches any run of characters (`/` included), `?` any one
/// character, `[...]` a set (`!` or `^` first negates, `a-z` ranges, `]` first is literal), and
/// `\` makes the next character literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if let Some((next_pi, matched)) = step(p, pi, t[ti]) {
            pi = next_pi;
            ti += usize::from(matched);
            if !matched {
                star = Some((pi, ti));
            }
            continue;
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches one pattern element at `pi` against `c`: the next pattern index and whether `c` was
/// consumed (`false` for a `*`, which the caller records as a restart point), or `None`.
fn step(p: &[char], pi: usize, c: char) -> Option<(usize, bool)> {
    match *p.get(pi)? {
        '*' => Some((pi + 1, false)),
        '?' => Some((pi + 1, true)),
        '[' => match bracket(p, pi + 1, c) {
            Some((end, true)) => Some((end, true)),
            Some((_, false)) => None,
            // An unclosed `[` is a literal.
            None => (c == '[').then_some((pi + 1, true)),
        },
        '\\' => match p.get(pi + 1) {
            Some(&e) => (e == c).then_some((pi + 2, true)),
            None => (c == '\\').then_some((pi + 1, true)),
        },
        lit => (lit == c).then_some((pi + 1, true)),
    }
}

/// A bracket expression starting after its `[`: the index after its `]` and whether `c` is in
/// it; `None` if it is not closed.
fn bracket(p: &[char], start: usize, c: char) -> Option<(usize, bool)> {
    let mut i = start;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((i + 1, hit != negate));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let hi = *p.get(i + 2)?;
            hit |= ch <= c && c <= hi;
            i += 3;
        } else {
            hit |= ch == c;
            i += 1;
        }
    }
}
