#!/usr/bin/env bash
# POST /v1/classify at concurrency 1 and 32 (wrk on loopback, one review per
# request, --no-database) with the engine waiting WAIT_MS for a batch to fill:
#   scripts/bench-batch-wait.sh [MODEL_DIR] [WAIT_MS] [SECONDS]
# e.g. for w in 2 0; do scripts/bench-batch-wait.sh models/sentiment-tiny $w 8; done
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/sentiment}"; wait="${2:-0}"; seconds="${3:-8}"
port=8183; url="http://127.0.0.1:$port"
cargo build --release --quiet
target/release/candor serve --model "$model" --addr "127.0.0.1:$port" --no-database \
  --max-batch-wait-ms "$wait" > /tmp/candor-batch-wait.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
one='{"inputs": "a warm, funny, sharply written film that never forgets its audience"}'
for c in 1 32; do
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(WRK_BODY="$one" wrk -t"$threads" -c"$c" -d"${seconds}s" --latency -s scripts/wrk-post.lua "$url/v1/classify")
  printf "%s wait=%s ms c=%-3s %8s req/s  p50 %8s  p99 %8s\n" "$model" "$wait" "$c" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" \
    "$(echo "$out" | awk '$1=="99%" {print $2}')"
done
