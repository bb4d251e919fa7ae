//! The fuzz targets' checks (`fuzz/src/checks.rs`) as ordinary tests: over the seed corpus in
//! `fuzz/corpus/`, and over inputs generated here (random generator choices for redaction,
//! byte mutations of the seeds for the decoder, envelopes and rule loader). CI runs these;
//! `scripts/fuzz.sh` runs the coverage-guided targets for as long as asked.

#[path = "../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .iter()
        .map(|f| std::fs::read(f).expect("a corpus file"))
        .collect()
}

/// xorshift64*: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A few byte-level mutations of `seed`: flips, insertions of JSON/YAML punctuation, cuts.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"{", b"}", b"[", b"]", b"\"", b"\\", b",", b":", b"\\u00", b"\\ud800", b"null", b"-",
        b"1e999", b"\n", b"---\n", b"- ", b"*", b"|", b"\xff", b"H4sI",
    ];
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.iter().copied());
            }
            2 => out.truncate(at),
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

fn run_mutated(target: &str, cases: usize, check: impl Fn(&[u8])) {
    let seeds = corpus(target);
    for seed in &seeds {
        check(seed);
    }
    let mut rng = Rng(0x7269_706c_696e_6521 ^ target.len() as u64);
    for _ in 0..cases {
        let seed = &seeds[rng.below(seeds.len())];
        check(&mutate(&mut rng, seed));
    }
}

#[test]
fn fuzz_decode_corpus_and_mutations() {
    let path = tempfile::NamedTempFile::new().expect("a temp file");
    run_mutated("decode", 10_000, |data| {
        checks::decode_value(data);
        checks::input_file(data, path.path());
    });
}

#[test]
fn fuzz_envelope_corpus_and_mutations() {
    run_mutated("envelope", 10_000, checks::envelope);
}

#[test]
fn fuzz_sigma_corpus_and_mutations() {
    run_mutated("sigma", 5_000, checks::sigma);
}

#[test]
fn fuzz_redact_corpus_and_generated() {
    for seed in corpus("redact") {
        checks::redact(&seed, false);
    }
    let mut rng = Rng(0x5345_4352_4554_5321);
    for _ in 0..20_000 {
        let len = rng.below(256);
        checks::redact(&rng.bytes(len), false);
    }
}

/// The same with members repeated inside Secrets (`"kind":"Secret","kind":"ConfigMap"`, a
/// `data` key twice): redaction fails closed on repeated member names (issue 13), so a body
/// that repeats a key never keeps a secret.
#[test]
fn fuzz_redact_duplicate_keys() {
    for seed in corpus("redact") {
        checks::redact(&seed, true);
    }
    let mut rng = Rng(0x4455_5045_4b45_5953);
    for _ in 0..20_000 {
        let len = rng.below(256);
        checks::redact(&rng.bytes(len), true);
    }
}
