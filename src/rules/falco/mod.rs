//! Falco rule conditions over Kubernetes audit events, as Falco evaluates them with its
//! k8saudit and json plugins: the condition language ([`parse`]), the expansion of a rules
//! file's macros and lists ([`Definitions`]) and the plugins' fields ([`fields`]).

mod condition;
mod expand;
pub mod fields;
mod json;

pub use condition::{parse, Check, Expr, ListItem, Op, Operand, ParseError};
pub use expand::{Definitions, ExpandError};
pub use fields::{ArgKind, Field, FieldArg, FieldDef};
