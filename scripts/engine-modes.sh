#!/usr/bin/env bash
# Time per event of each engine-bench mode on the metadata corpus, the modes taking turns:
# best of R (default 5) one-second runs each. Usage: scripts/engine-modes.sh [MODE...]
# Modes: ignored decode match throttle detect (see TRIPLINE_BENCH_PROFILE in benches/engine.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cargo bench --bench engine --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["bench"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(ignored decode match throttle detect)
declare -A best
for _ in $(seq "${R:-5}"); do
    for m in "${modes[@]}"; do
        ns=$(SECS=1 TRIPLINE_BENCH_PROFILE=$m "$bin" --bench | awk '{print $2}')
        if [ -z "${best[$m]:-}" ] || [ "$ns" -lt "${best[$m]}" ]; then best[$m]=$ns; fi
    done
done
for m in "${modes[@]}"; do echo "$m ${best[$m]} ns/event"; done
