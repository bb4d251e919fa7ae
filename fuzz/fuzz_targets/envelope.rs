//! Cloud envelopes (EKS CloudWatch, AKS, GKE) around fuzzed content.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tripline_fuzz::checks;

fuzz_target!(|data: &[u8]| checks::envelope(data));
