//! Audit events: the borrowed [`Event`] view, field access for rules, decoding of inputs (with
//! the EKS, AKS and GKE log envelopes around them), and redaction of secret values before
//! anything leaves the process.

mod decode;
mod envelope;
mod field;
mod gke;
pub(crate) mod json;
mod pod;
pub mod redact;
mod view;

pub use decode::trim_ascii;
pub use decode::{
    decode_value_into, utf8, DecodeError, DecodeFn, DecodeStats, Decoded, Input, InputReader, Line,
    LineReader, SkipReason, DEFAULT_MAX_LINE_BYTES,
};
pub use field::{FieldPath, FieldRef, FieldValue, PathError};
pub use json::{parse_value, unique_keys, write_json_str};
pub use view::{parse_timestamp, Event, ObjectRef, ResponseStatus, UserInfo};
