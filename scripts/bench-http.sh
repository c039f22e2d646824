#!/usr/bin/env bash
# HTTP benchmark of `candor serve` with wrk on loopback: requests/s and latency
# percentiles at concurrency 1, 32 and 128, the cost of uncertainty requests,
# and resident memory idle, under load and after maximal requests.
# Runs without the prediction log (--no-database); scripts/bench-logging.sh
# measures what logging costs.
# Usage: scripts/bench-http.sh [MODEL_DIR] [SECONDS]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/sentiment}"
seconds="${2:-10}"
port=8181
url="http://127.0.0.1:$port"
cargo build --release --quiet
target/release/candor serve --model "$model" --addr "127.0.0.1:$port" --max-inputs 64 --max-samples 100 --no-database > /tmp/candor-bench.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status"; }
peak() { awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status"; }
echo "model: $model; resident memory idle: $(rss)"
load() { # name concurrency body path
  local out
  local threads=$(( $2 < 2 ? 1 : 2 ))
  out=$(WRK_BODY="$3" wrk -t"$threads" -c"$2" -d"${seconds}s" --latency -s scripts/wrk-post.lua "$url$4")
  printf "%-34s c=%-4s %8s req/s  p50 %8s  p99 %8s  non-2xx %s\n" "$1" "$2" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" \
    "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(echo "$out" | awk '/Non-2xx/ {print $4}' | grep . || echo 0)"
}
one='{"inputs": "a warm, funny, sharply written film that never forgets its audience"}'
mc='{"inputs": "a warm, funny, sharply written film that never forgets its audience", "samples": 30, "seed": 1}'
for c in 1 32 128; do load "POST /v1/classify (1 text)" "$c" "$one" /v1/classify; done
for c in 1 32; do load "POST /v1/classify/uncertainty (T=30)" "$c" "$mc" /v1/classify/uncertainty; done
echo "resident memory after load: $(rss) (peak $(peak))"
big=$(python3 -c 'import json; print(json.dumps({"inputs": ["an utterly, relentlessly, magnificently overlong and overwrought film about nothing at all " * 6] * 64, "samples": 100, "seed": 1}))')
start=$(date +%s.%N)
curl -s -o /dev/null -w "maximal request (64 long inputs x 100 samples): HTTP %{http_code}" --json "$big" "$url/v1/classify/uncertainty"
echo " in $(awk -v a="$start" -v b="$(date +%s.%N)" "BEGIN {printf \"%.1f\", b - a}") s; resident memory $(rss) (peak $(peak))"
kill -TERM $pid; wait $pid && echo "stopped cleanly on SIGTERM"
