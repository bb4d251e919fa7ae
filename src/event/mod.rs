//! Audit events: the borrowed [`Event`] view, field access for rules, decoding of inputs (with
//! the EKS, AKS and GKE log envelopes around them), and redaction of secret values before
//! anything leaves the process.

mod decode;
mod envelope;
mod field;
mod gke;
mod hash_many;
pub(crate) mod json;
mod pod;
pub mod redact;
mod view;

pub use decode::trim_ascii;
pub use decode::{
    decode_value_into, utf8, Chunk, DecodeError, DecodeFn, DecodeStats, Decoded, Input,
    InputReader, Line, LineReader, Piece, Rest, SkipReason, DEFAULT_MAX_LINE_BYTES,
};
pub use field::{FieldPath, FieldRef, FieldValue, PathError};
pub use hash_many::content_hashes;
pub use json::{needs_escape, parse_value, unique_keys, write_json_str, IntBuf};
pub use view::{
    members_of, parse_timestamp, Event, ObjectRef, RawMember, ResponseStatus, UserInfo,
};

/// A hash of `bytes` as 32 hex digits (128 bits of BLAKE3): collision-free in practice and not
/// controllable by whoever wrote the event, unlike `auditID`.
pub fn content_id(parts: &[&[u8]]) -> String {
    hex_id(&content_hash(parts))
}

/// A [`content_hash`] as [`content_id`] writes it: 32 lowercase hex digits.
pub fn hex_id(hash: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, &b) in out.chunks_exact_mut(2).zip(hash) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Hex digits are ASCII: the check cannot fail.
    std::str::from_utf8(&out)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The 16 bytes that [`content_id`] writes in hex.
pub fn content_hash(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let hash = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}
