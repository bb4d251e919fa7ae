//! Falco rule conditions over Kubernetes audit events, as Falco evaluates them with its
//! k8saudit and json plugins: the condition language ([`parse`]) and the plugins' fields
//! ([`fields`]).

mod condition;
pub mod fields;
mod json;

pub use condition::{parse, Check, Expr, ListItem, Op, Operand, ParseError};
pub use fields::{ArgKind, Field, FieldArg, FieldDef};
