//! Sigma correlation rules (specification v2): the compiled form of a `correlation:` document.
//!
//! A correlation refers to base rules (and other correlations) by `id` or `name`, groups their
//! matches by `group-by` fields (through `aliases` where the field differs per rule), and
//! fires when its `condition` holds within `timespan` of event time. The stateful engine that
//! evaluates them lives in `crate::detect::correlate`.

use super::model::RuleMeta;
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
    /// Line of the document in its source.
    pub line: usize,
}
