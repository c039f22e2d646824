#!/usr/bin/env bash
# Starts `candor serve` on the shipped model and prints, as Markdown, a curl
# example of each endpoint with its real output (pasted into docs/api.md; the
# first two into the README).
# Usage: scripts/readme-examples.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/sentiment}"
port=8182
work=$(mktemp -d)
cargo build --release --quiet
target/release/candor serve --model "$model" --addr "127.0.0.1:$port" --database-url "sqlite://$work/examples.db" > /tmp/candor-examples.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
until curl -sf "127.0.0.1:$port/readyz" > /dev/null; do sleep 0.2; done
pretty() { python3 -c '
import json, sys
def show(v, indent=""):
    # Top-level keys on their own lines, lists of objects one object a line.
    if isinstance(v, dict) and indent == "":
        items = list(v.items())
        print("{")
        for i, (k, x) in enumerate(items):
            end = "," if i + 1 < len(items) else ""
            if isinstance(x, list) and x and isinstance(x[0], (dict, list)):
                print(f" {json.dumps(k)}: [")
                for j, e in enumerate(x):
                    print("  " + json.dumps(e, ensure_ascii=False) + ("," if j + 1 < len(x) else ""))
                print(" ]" + end)
            else:
                print(f" {json.dumps(k)}: {json.dumps(x, ensure_ascii=False)}{end}")
        print("}")
    elif isinstance(v, list) and v and isinstance(v[0], (dict, list)):
        print("[")
        for j, e in enumerate(v):
            print(" " + json.dumps(e, ensure_ascii=False) + ("," if j + 1 < len(v) else ""))
        print("]")
    else:
        print(json.dumps(v, ensure_ascii=False))
text = sys.stdin.read()
try:
    show(json.loads(text))
except ValueError:
    print(text[:700])'; }
post() { # title, path, body
  echo "**$1**"; echo '```'
  echo "\$ curl -s localhost:8080$2 --json '$3'"
  curl -s "127.0.0.1:$port$2" --json "$3" | pretty
  echo '```'
}
get() { # title, path
  echo "**$1**"; echo '```'
  echo "\$ curl -s localhost:8080$2"
  curl -s "127.0.0.1:$port$2" | pretty
  echo '```'
}
post "Classify: calibrated scores, high to low, one prediction per input" /v1/classify '{"inputs": ["a warm, funny, sharply written film", "the plot is a mess and the jokes fall flat"]}'
post "Uncertainty: 30 MC-dropout samples, seeded" /v1/classify/uncertainty '{"inputs": ["a warm, funny, sharply written film", "it is a film"], "samples": 30, "seed": 7}'
post "Uncertainty, head mode: dropout on the classifier input only" /v1/classify/uncertainty '{"inputs": "it is a film", "samples": 30, "seed": 7, "mode": "head", "top_k": 1}'
post "Uncertainty, top mode: dropout in the top layer and the classifier input, the layers below computed once" /v1/classify/uncertainty '{"inputs": "it is a film", "samples": 30, "seed": 7, "mode": "top", "top_layers": 1, "top_k": 1}'
post "Text unlike the training data: distance_percentile near 1 (farther from the training texts than 99% of the calibration texts)" /v1/classify '{"inputs": ["a warm, funny, sharply written film", "ok lor, call me when u r free 2nite"], "top_k": 1}'
post "Prediction sets (90% coverage guaranteed) and abstention on the 20% least sure, both calibrated on the model's calibration split" /v1/classify '{"inputs": ["a warm, funny, sharply written film", "i laughed, i cried, i checked my watch"], "alpha": 0.1, "abstain": {"score": "max_probability", "coverage": 0.8}, "top_k": 1}'
post "The same with MC dropout, abstaining above a fixed mutual information" /v1/classify/uncertainty '{"inputs": ["a warm, funny, sharply written film", "i laughed, i cried, i checked my watch"], "samples": 30, "seed": 7, "alpha": 0.1, "abstain": {"score": "mutual_information", "threshold": 0.01}, "top_k": 1}'
echo "**text-embeddings-inference compatible** (the prediction ids travel in a header)"; echo '```'
echo "\$ curl -si localhost:8080/predict --json '{\"inputs\": \"a warm, funny, sharply written film\"}'"
curl -si "127.0.0.1:$port/predict" --json '{"inputs": "a warm, funny, sharply written film"}' | grep -iE '^x-prediction-ids' | tr -d '\r'
echo
curl -s "127.0.0.1:$port/predict" --json '{"inputs": "a warm, funny, sharply written film"}' | pretty
echo '```'
post "Hugging Face Inference API compatible" / '{"inputs": "a warm, funny, sharply written film", "parameters": {"top_k": 1}}'
get "The model (training_metrics shortened here)" /v1/model | sed -E 's/^ "training_metrics": .*$/ "training_metrics": {"labels": [...], "history": [...], "train": {...}, "val": {...}, "test": {...}, ...}/'
id=$(curl -s "127.0.0.1:$port/v1/classify" --json '{"inputs": "it is a film"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["predictions"][0]["id"])')
post "Feedback: the correct label for a prediction (201 once committed)" /v1/feedback "{\"prediction_id\": \"$id\", \"label\": \"negative\", \"source\": \"alice\"}"
get "Review queue: unlabelled predictions, most uncertain first" "/v1/review-queue?limit=2"
get "Stats: counts, accuracy on feedback, mean uncertainty" /v1/stats
get "Readiness" /readyz
post "An error" /v1/classify '{"inputs": []}'
post "Another error" /v1/classify/uncertainty '{"inputs": "fine", "samples": 1000}'
echo "**Metrics** (excerpt)"; echo '```'; echo '$ curl -s localhost:8080/metrics'
curl -s "127.0.0.1:$port/metrics" | grep -E '^candor_(http_requests_total|batch_rows_(sum|count)|queue_depth|mc_samples_total|predictions_(un)?logged_total|prediction_log_backlog)' | head -16
echo '```'
