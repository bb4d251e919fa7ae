//! Redaction: generated events with planted secrets; none may survive. Duplicate members in
//! Secrets only with TRIPLINE_FUZZ_DUPLICATE_KEYS=1 (a known gap, see tests/fuzz_corpus.rs).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tripline_fuzz::checks;

fn duplicate_keys() -> bool {
    static DUP: OnceLock<bool> = OnceLock::new();
    *DUP.get_or_init(|| std::env::var_os("TRIPLINE_FUZZ_DUPLICATE_KEYS").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| checks::redact(data, duplicate_keys()));
