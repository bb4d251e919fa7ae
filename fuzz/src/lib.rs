//! The checks the fuzz targets run, shared with `tests/fuzz_corpus.rs`.
pub mod checks;
