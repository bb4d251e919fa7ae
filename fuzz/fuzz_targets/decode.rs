//! The decoder: one JSON value (`decode_value_into`), and the same bytes as a whole input
//! file (`InputReader`: lines, gzip, line limit).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tripline_fuzz::checks;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("tripline-fuzz-decode-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    checks::decode_value(data);
    checks::input_file(data, path());
});
