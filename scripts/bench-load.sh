#!/usr/bin/env bash
# Short versions of every load scenario against a fresh hub on loopback:
# what `make bench` runs after the Go benchmarks. The full-size runs and
# their figures are in docs/BENCHMARKS.md. Every run is bounded by -timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
ADDR=${BENCH_ADDR:-127.0.0.1:18181}
SECRET=bench-secret-0123456789abcdef
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
# The disk first, alone: every durable change waits for one of its flushes,
# so its stalls are part of the durable and groups figures below.
echo "== presencehub disk-check"
"$BIN/presencehub" disk-check -data "$DATA" -duration 5s
"$BIN/presencehub" serve -addr "$ADDR" -data "$DATA" -secret "$SECRET" -log-level error &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA"' EXIT
# Wait for the listener (bash's /dev/tcp: no curl needed).
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null && break
	sleep 0.1
done
run() {
	echo "== hubload $*"
	"$BIN/hubload" "$@" -url "http://$ADDR" -secret "$SECRET" -pid "$PID" -timeout 2m
}
run idle -n 2000 -reconnect
run fanout -n 1000 -burst -bursts 10 -spacing 300ms
run fanout -n 1000 -rate 20 -duration 5s
run groups -n 1000 -W 100 -rate 200 -duration 5s
run durable -c 64 -duration 5s
run churn -n 100 -rate 10 -duration 10s
