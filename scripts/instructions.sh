#!/usr/bin/env bash
# Instructions per event of engine-bench modes, counted by valgrind's callgrind inside the
# mode's pass only (corpus building and rule loading left out), over two passes of the
# metadata corpus (CORPUS=0: request_response). Unlike a clock, the count is the same from run
# to run, so it shows a change of a few percent on a machine whose speed moves more than that;
# it is not a time (it ignores cache misses and mispredicted branches): confirm with
# `cargo bench --bench engine` or scripts/engine-modes.sh.
# Usage: scripts/instructions.sh [MODE...] (default: detect stateful, and their ratio).
# Modes: ignored decode match detect hits hits-stateful hits-plus (TITLE=...) stateful correlations detect-first-seen
# eventdoc (the events flow's document alone, decoding left out).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench --bench engine --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["bench"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(detect stateful)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A per
for m in "${modes[@]}"; do
    case $m in
        ignored) f='engine::ignored_any' ;;
        decode) f='engine::decode_only' ;;
        match) f='engine::decode_match' ;;
        detect) f='engine::decode_detect' ;;
        hits | hits-stateful | hits-plus) f='engine::decode_hits' ;;
        stateful | correlations | detect-first-seen) f='engine::decode_detect_stateful' ;;
        eventdoc) f='tripline::alert::writer::write_event_document' ;;
        *) echo "unknown mode $m" >&2; exit 1 ;;
    esac
    TRIPLINE_BENCH_PROFILE=$m PASSES=2 valgrind --tool=callgrind --toggle-collect="$f" \
        --callgrind-out-file="$tmp/out" "$bin" --bench > "$tmp/log" 2>&1
    total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log")
    events=$(sed -n 's/.*passes of \([0-9]*\) events.*/\1/p' "$tmp/log")
    per[$m]=$((total / 2 / events))
    echo "$m: ${per[$m]} instructions per event ($events events per pass)"
done
if [ -n "${per[detect]:-}" ] && [ -n "${per[stateful]:-}" ]; then
    awk -v a="${per[detect]}" -v b="${per[stateful]}" \
        'BEGIN { printf "stateful pack / stateless pack: %.3f in instructions\n", a / b }'
fi
