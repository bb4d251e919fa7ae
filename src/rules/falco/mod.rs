//! Falco rule conditions over Kubernetes audit events, as Falco evaluates them with its
//! k8saudit and json plugins: the condition language ([`parse`]), the expansion of a rules
//! file's macros and lists ([`Definitions`]), the plugins' fields ([`fields`]) and a direct
//! interpreter ([`eval`]).
//!
//! Rules files load with [`load_files`] (or a [`Loader`], file by file), as Falco's rule
//! loader reads, merges and compiles them; the result, [`FalcoRules`], holds each `k8s_audit`
//! rule with its expanded condition.
//!
//! Lower level: parse each `macro:` condition and register it with its name, register each
//! `list:`, then parse a rule's condition, [`Definitions::expand`] it, and [`eval`] the result
//! on each event's [`Doc`].
//!
//! What reaches the rules in Falco is decided before them, by the k8saudit plugin's source
//! (`source.go`, `ParseAuditEventsJSON`): an `Event`, the items of an `EventList`, or the
//! elements of an array; an event without a `stageTimestamp` in RFC 3339 form is dropped with a
//! log line and never evaluated. The integration with tripline's input has to do the same.

mod compiled;
mod condition;
mod eval;
mod expand;
pub mod fields;
mod json;
mod loader;
mod rule;

pub use compiled::FalcoCond;
pub use condition::{parse, Check, Expr, ListItem, Op, Operand, ParseError};
pub use eval::{eval, glob, path_under, Doc};
pub use expand::{Definitions, ExpandError};
pub use fields::{ArgKind, Field, FieldArg, FieldDef};
pub use loader::{
    load_files, load_strs, ExceptionEntry, FalcoException, FalcoRule, FalcoRules, LoadError,
    LoadMessage, LoadOptions, Loader, PluginRequirement, Priority, K8S_AUDIT_SOURCE,
    LEGACY_LIST_NAMES,
};
pub use rule::{parse_output, to_rules, FalcoInfo, RuleMatching, ID_PREFIX};

#[cfg(test)]
mod tests;
