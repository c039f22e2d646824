#!/usr/bin/env bash
# What logging predictions costs the prediction path: HTTP throughput of
# POST /v1/classify at concurrency 32 with logging off (--no-database), to a
# SQLite file and, when a URL is given, to PostgreSQL. The configurations
# alternate for several rounds in one run, so drift in the machine's speed
# hits them all alike. Each line also says how many predictions were logged
# and how many were not (the backlog overflowed).
# Usage: scripts/bench-logging.sh [SECONDS] [ROUNDS] [POSTGRES_URL]   (needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
rounds="${2:-3}"
postgres="${3:-}"
port=8182
url="http://127.0.0.1:$port"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
body='{"inputs": "a warm, funny, sharply written film that never forgets its audience"}'

run() { # name, then serve options
  local name="$1"; shift
  target/release/candor serve --model models/sentiment --addr "127.0.0.1:$port" "$@" > "$work/server.log" 2>&1 &
  local pid=$!
  until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
  local out
  out=$(WRK_BODY="$body" wrk -t2 -c32 -d"${seconds}s" --latency -s scripts/wrk-post.lua "$url/v1/classify")
  local rps p50 p99 logged unlogged
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  unlogged=$(curl -s "$url/metrics" | awk '/^candor_predictions_unlogged_total/ {print $2}')
  logged=$(curl -s "$url/metrics" | awk '/^candor_predictions_logged_total/ {print $2}')
  kill -TERM "$pid"; wait "$pid"
  printf "%-12s c=32 %9s req/s  p50 %8s  p99 %8s  logged %s, not logged %s\n" "$name" "$rps" "$p50" "$p99" "${logged:--}" "${unlogged:--}"
  echo "$name $rps" >> "$work/results"
}

for round in $(seq "$rounds"); do
  echo "round $round"
  run "off" --no-database
  rm -f "$work"/bench.db*
  run "sqlite" --database-url "sqlite://$work/bench.db"
  [ -n "$postgres" ] && run "postgres" --database-url "$postgres"
done
echo "mean over $rounds rounds:"
awk '{ s[$1] += $2; n[$1]++ } END { base = s["off"] / n["off"];
  for (k in s) printf "  %-10s %8.0f req/s  (%.1f%% of off)\n", k, s[k] / n[k], 100 * s[k] / n[k] / base }' "$work/results"
