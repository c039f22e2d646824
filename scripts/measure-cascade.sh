#!/usr/bin/env bash
# A cascade against its models alone, in one run: accuracy and the share of
# texts passed on over a test split, then throughput (wrk on loopback, one
# text per request, texts in turn, --no-database) of the cascade and of the
# last model alone.
#   scripts/measure-cascade.sh SMALL_DIR BIG_DIR TEST_JSONL [SECONDS] [CONCURRENCY]
# e.g. scripts/measure-cascade.sh models/sentiment-tiny models/sentiment work/sentiment/split/test.jsonl
# SMALL_DIR's calibration.json needs a fit for BIG_DIR (candor calibrate
# --model SMALL_DIR --data <calibration split> --cascade-to BIG_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
small="$1"; big="$2"; test="$3"; seconds="${4:-10}"; concurrency="${5:-8}"
command -v wrk > /dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
port=8185; url="http://127.0.0.1:$port"
cargo build --release --quiet
target/release/candor serve --model "small=$small" --model "big=$big" --cascade "auto=small,big" \
  --addr "127.0.0.1:$port" --no-database > /tmp/candor-cascade.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
bodies=$(mktemp -d)
python3 - "$url" "$test" "$bodies" <<'PY'
import json, sys, urllib.request
url, test, out = sys.argv[1:]
rows = [json.loads(l) for l in open(test) if l.strip()]
def classify(model, texts):
    body = json.dumps({"inputs": texts, "model": model}).encode()
    request = urllib.request.Request(url + "/v1/classify", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))["predictions"]
print(f"{len(rows)} texts of {test}")
print("| answered by | accuracy | passed on to big |")
print("|---|---|---|")
for model in ["small", "big", "auto"]:
    answers = []
    for i in range(0, len(rows), 32):
        answers += classify(model, [r["text"] for r in rows[i:i + 32]])
    right = sum(a["label"] == str(r["label"]) for a, r in zip(answers, rows))
    passed = sum(a.get("answered_by") == "big" for a in answers)
    share = f"{100 * passed / len(rows):.1f}%" if model == "auto" else "–"
    print(f"| {model} | {100 * right / len(rows):.2f}% | {share} |")
for model in ["big", "auto"]:
    with open(f"{out}/{model}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"inputs": r["text"], "model": model}) + "\n")
PY
echo "| model | req/s at c=$concurrency | p50 |"
echo "|---|---|---|"
for model in big auto; do
  out=$(WRK_BODIES="$bodies/$model.jsonl" wrk -t2 -c"$concurrency" -d"${seconds}s" --latency \
    -s scripts/wrk-bodies.lua "$url/v1/classify")
  printf "| %s | %s | %s |\n" "$model" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" "$(echo "$out" | awk '$1=="50%" {print $2}')"
done
rm -r "$bodies"
