#!/bin/bash
# Peak memory of the webhook source under large bodies: starts `tripline run` (BIN) with a plain
# HTTP webhook, POSTs N EventLists of 600 events of 100 KB (57.6 MiB each) at once with curl
# (429s retried, as the API server does), waits until every event is in the events file, and
# prints the daemon's VmHWM before and after.
# Usage: scripts/webhook-rss.sh [BIN] [N] [max_in_flight_bytes MiB, 0: not set] [max_body MiB]
set -eu
BIN=${1:-target/release/tripline}; N=${2:-4}; BUDGET=${3:-128}; MAXB=$(( ${4:-64} << 20 ))
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
HP=$((20000 + RANDOM % 10000)); TP=$((HP + 1))
for b in $(seq 0 $((N - 1))); do
  python3 - "$b" "$D/body$b.json" <<'PY'
import json, sys
b, out = sys.argv[1], sys.argv[2]
items = [{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
          "auditID": f"b{b}-{i}", "stage": "ResponseComplete", "verb": "get",
          "requestURI": "/api/v1/namespaces/prod/configmaps/x",
          "user": {"username": "system:kube-controller-manager"},
          "objectRef": {"resource": "configmaps", "namespace": "prod", "name": "x"},
          "responseStatus": {"code": 200},
          "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
          "stageTimestamp": "2026-03-01T10:00:00.050000Z",
          "requestObject": {"kind": "ConfigMap", "data": {"blob": "x" * 100000}}}
         for i in range(600)]
open(out, "w").write(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}))
PY
done
{
  echo "state_dir: $D/state"
  echo "sources:"
  echo "  - {type: webhook, name: hook, listen: 127.0.0.1:$HP, allow_insecure: true, max_body_bytes: $MAXB}"
  echo "sinks:"
  echo "  - {type: file, name: events, path: $D/events.jsonl, flows: [events]}"
  echo "telemetry: {listen: 127.0.0.1:$TP}"
} > "$D/t.yaml"
if [ "$BUDGET" -gt 0 ]; then
  sed -i "s|max_body_bytes: $MAXB}|max_body_bytes: $MAXB, max_in_flight_bytes: $(( BUDGET << 20 ))}|" "$D/t.yaml"
fi
"$BIN" run --config "$D/t.yaml" 2>"$D/log" & P=$!
sleep 1.5
echo "at rest: $(grep VmHWM /proc/$P/status)"
S=$(date +%s.%N)
pids=()
for b in $(seq 0 $((N - 1))); do
  ( while true; do
      c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary @"$D/body$b.json" "http://127.0.0.1:$HP/audit")
      [ "$c" = 200 ] && break
      [ "$c" = 429 ] || { echo "body$b: $c"; break; }
      sleep 0.1
    done ) & pids+=($!)
done
wait "${pids[@]}"
echo "$N bodies accepted in $(echo "$(date +%s.%N) - $S" | bc) s"
for _ in $(seq 1 300); do
  [ "$(wc -l < "$D/events.jsonl" 2>/dev/null || echo 0)" -ge $((N * 600)) ] && break
  sleep 0.2
done
echo "events delivered: $(wc -l < "$D/events.jsonl") of $((N * 600))"
echo "peak: $(grep VmHWM /proc/$P/status)"
kill "$P"; wait "$P" || true
