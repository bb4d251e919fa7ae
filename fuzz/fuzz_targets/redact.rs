//! Redaction: generated events with planted secrets; none may survive. Inputs whose first
//! byte is odd also repeat members inside Secrets (`"kind":"Secret","kind":"ConfigMap"`), where
//! redaction must fail closed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tripline_fuzz::checks;

fuzz_target!(|data: &[u8]| checks::redact(data, data.first().is_some_and(|b| b & 1 == 1)));
