//! The Sigma rule loader: never panics on any YAML.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tripline_fuzz::checks;

fuzz_target!(|data: &[u8]| checks::sigma(data));
