#!/usr/bin/env bash
# What hostile or unlucky requests cost `candor serve` on loopback, with its
# defaults: resident memory under eight concurrent 1 MiB texts, the largest
# uncertainty request the limits allow (its answer, time and memory), and
# how long small requests sent beside it take.
# Usage: scripts/bench-limits.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/sentiment}"
port=8182
url="http://127.0.0.1:$port"
cargo build --release --quiet
target/release/candor serve --model "$model" --addr "127.0.0.1:$port" --max-body-bytes 2000000 \
    --no-database > /tmp/candor-bench-limits.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status"; }
peak() { awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status"; }
echo "model: $model; resident memory idle: $(rss); limits: $(curl -s "$url/v1/model" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["limits"])')"
python3 - "$url" <<'PY'
import json, sys, threading, time, urllib.request, urllib.error

url = sys.argv[1]

def post(path, body):
    request = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - started

def together(calls):
    results = [None] * len(calls)
    def run(i, call):
        results[i] = call()
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results

huge = "a " * (1 << 19)
results = together([lambda: post("/v1/classify", {"inputs": huge})] * 8)
print(f"eight concurrent 1 MiB texts: statuses {sorted(set(s for s, _ in results))}, "
      f"slowest {max(t for _, t in results):.2f} s")

long = "an utterly, relentlessly, magnificently overlong and overwrought film about nothing at all " * 6
maximal = {"inputs": [long] * 64, "samples": 100, "seed": 1}
status, took = post("/v1/classify/uncertainty", maximal)
print(f"maximal request (64 long inputs x 100 samples): HTTP {status} in {took:.3f} s")

# The largest request the cost budget admits at full length, with small ones beside it.
model = json.load(urllib.request.urlopen(url + "/v1/model"))
budget, length = model["limits"]["max_request_cost"], model["max_length"]
inputs = 8
samples = 1
while inputs * (samples + 2) * length <= budget and samples < 100:
    samples += 1
large = {"inputs": [long] * inputs, "samples": samples, "seed": 1}
small = []
def beside():
    time.sleep(0.2)
    for _ in range(20):
        small.append(post("/v1/classify", {"inputs": "a warm, funny film"}))
big = together([lambda: post("/v1/classify/uncertainty", large), beside])[0]
latencies = sorted(t for _, t in small)
print(f"large admitted request ({inputs} long inputs x {samples} samples): HTTP {big[0]} in {big[1]:.2f} s; "
      f"20 one-text classify requests sent beside it: statuses {sorted(set(s for s, _ in small))}, "
      f"median {latencies[len(latencies) // 2] * 1e3:.0f} ms, slowest {latencies[-1] * 1e3:.0f} ms")
PY
echo "resident memory after: $(rss) (peak $(peak))"
kill -TERM $pid; wait $pid && echo "stopped cleanly on SIGTERM"
