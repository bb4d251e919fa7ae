#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the decoder, the cloud envelopes, redaction
# and the Sigma rule loader: fuzz/fuzz_targets/, checks in fuzz/src/checks.rs. For long runs,
# outside CI (CI runs the same checks over the seed corpus as tests/fuzz_corpus.rs).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
# Targets: decode envelope redact sigma. The seeds in fuzz/corpus/<target> are read only; new
# inputs go to fuzz/target/corpus/<target>, crashes to fuzz/artifacts/<target>.
# The redact target repeats members inside Secrets for inputs whose first byte is odd.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode envelope redact sigma)

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi
# cargo fuzz needs -Zsanitizer; the stable toolchain accepts it with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

cargo fuzz build -O --fuzz-dir fuzz
for t in "${TARGETS[@]}"; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work"
  log="fuzz/target/$t.log"
  echo "== fuzz $t for ${SECS}s (log: $log)"
  status=0
  cargo fuzz run -O --fuzz-dir fuzz "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 -max_len=16384 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz $t failed (exit $status): see fuzz/artifacts/$t"
    exit "$status"
  fi
done
