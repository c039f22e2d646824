#!/usr/bin/env bash
# The active-learning loop end to end, as the README shows it: serve the
# shipped sentiment model with a SQLite log, ask for uncertainty, take the
# review queue, give feedback as a reviewer would, read the stats, export the
# corrections and retrain with them. Prints every command and its real output.
# Usage: scripts/feedback-loop.sh [--no-retrain]
set -euo pipefail
cd "$(dirname "$0")/.."
port=8184
url="http://127.0.0.1:$port"
work=$(mktemp -d)
db="sqlite://$work/loop.db"
cargo build --release --quiet
target/release/candor serve --model models/sentiment-tiny --addr "127.0.0.1:$port" --database-url "$db" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
until curl -sf "$url/readyz" > /dev/null; do sleep 0.2; done
show() { echo "\$ $*" | sed "s#$work#/tmp/loop#g; s#127.0.0.1:$port#localhost:8080#g"; }
compact() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=1, ensure_ascii=False))' | sed -E ':a;N;$!ba;s/\n  +/ /g;s/\n +([]}])/ \1/g'; }

texts='["not as bad as i feared, but not good either", "the performances are fine; the script is not", "a strange, slow film that somehow stays with you", "i laughed, i cried, i checked my watch", "a joyous, generous piece of filmmaking", "tedious"]'
body="{\"inputs\": $texts, \"samples\": 30, \"seed\": 1}"
echo "# 1. predictions with MC-dropout uncertainty (logged)"
show curl -s "$url/v1/classify/uncertainty" --json "'$body'" "| jq -c '.predictions[] | {label, score, mutual_information}'"
curl -s "$url/v1/classify/uncertainty" --json "$body" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["predictions"]:
    print(json.dumps({k: p[k] for k in ("label", "score", "mutual_information")}))'
echo
echo "# 2. the review queue: most uncertain first"
show curl -s "$url/v1/review-queue?limit=3" "| jq -c '.items[] | {id, text, label, mutual_information}'"
queue=$(curl -s "$url/v1/review-queue?limit=3")
echo "$queue" | python3 -c '
import json, sys
for i in json.load(sys.stdin)["items"]:
    print(json.dumps({k: i[k] for k in ("id", "text", "label", "mutual_information")}))'
echo
echo "# 3. a reviewer labels the top two"
# What the reviewer would answer for each text.
verdicts='{"not as bad as i feared, but not good either": "negative", "the performances are fine; the script is not": "negative", "a strange, slow film that somehow stays with you": "positive", "i laughed, i cried, i checked my watch": "negative", "a joyous, generous piece of filmmaking": "positive", "tedious": "negative"}'
for n in 0 1; do
  item=$(echo "$queue" | python3 -c "import json,sys; v=json.loads(sys.argv[1]); i=json.load(sys.stdin)['items'][$n]; print(json.dumps({'prediction_id': i['id'], 'label': v[i['text']], 'source': 'alice'}))" "$verdicts")
  show curl -s "$url/v1/feedback" --json "'$item'"
  curl -s "$url/v1/feedback" --json "$item"; echo
done
echo
echo "# 4. how the model does on what people checked"
show curl -s "$url/v1/stats"
curl -s "$url/v1/stats" | compact
kill -TERM $pid; wait $pid
echo
echo "# 5. export the corrections"
show target/release/candor feedback export --database-url "$db" "> corrections.jsonl"
target/release/candor feedback export --database-url "$db" > "$work/corrections.jsonl" 2> "$work/export.log"
cat "$work/export.log"
show cat corrections.jsonl
cat "$work/corrections.jsonl"
if [ "${1:-}" != "--no-retrain" ]; then
  echo
  echo "# 6. retrain with them (the shipped model's command plus --extra)"
  show target/release/candor --threads 1 train --data data/rotten_tomatoes.jsonl --extra corrections.jsonl --out models/sentiment-tiny-v2 --quiet
  target/release/candor --threads 1 train --data data/rotten_tomatoes.jsonl --extra "$work/corrections.jsonl" --out "$work/sentiment-v2" --quiet 2>&1 | sed "s#$work/corrections.jsonl#corrections.jsonl#g; s#$work/sentiment-v2#models/sentiment-tiny-v2#g"
fi
