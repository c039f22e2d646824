#!/usr/bin/env bash
# The size / speed / accuracy frontier of compressing a fine-tuned model:
#   scripts/frontier.sh trec6            # after scripts/build-models.sh trec6
# Measures, one row each, what exists of: the fine-tuned model
# (work/NAME/full); its vocabulary pruned to the training split
# (work/NAME/pruned); pruned as the recipe does and stored as f16
# (work/NAME/prune-6); and every smaller model scripts/build-models.sh
# made (work/NAME/distil-K/final, work/NAME/direct-K/final; MODE and LAYERS
# build another).
# Columns: weights + tokenizer on disk, texts/s at batch 1 and 32 (tokenize +
# forward, one thread, the test split's texts; batch 32 sorted by length as the server batches: `cargo bench
# --bench inference`), test accuracy, NLL, ECE (deterministic,
# temperature-scaled, MC dropout T=30), and seconds to build.
# The table is printed as Markdown and written to work/NAME/frontier.md.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/frontier.sh sentiment|trec6}"
work="work/$name"
split="$work/split"
test -d "$work/split" || { echo "run scripts/build-models.sh $name first" >&2; exit 2; }
cargo build --release --quiet
candor=target/release/candor

# Pruning to the training split alone, for comparison with the recipe's pruning.
if [ -d "$work/full" ] && [ ! -d "$work/pruned" ]; then
  started=$(date +%s.%N)
  $candor compress --model "$work/full" --data "$split/train.jsonl" --held-out "$split/val.jsonl" \
    --out "$work/pruned"
  echo "$(date +%s.%N) - $started" | bc > "$work/pruned/build-seconds"
fi

megabytes() { echo "scale=1; $(stat -c %s "$1") / 1000000" | bc; }
row() {
  local label="$1" dir="$2" seconds="$3" eval bench b1 b32
  eval=$($candor eval --model "$dir" --data "$split/test.jsonl" --mc-samples 30 --json)
  bench=$(CANDOR_MODEL="$dir" CANDOR_BENCH_DATA="$split/test.jsonl" cargo bench --quiet --bench inference 2>/dev/null)
  b1=$(echo "$bench" | awk '/^batch  1:/ { print $3 }')
  b32=$(echo "$bench" | awk '/^batch 32:.*sorted/ { print $3 }')
  printf '| %s | %s + %s MB | %s / %s | %s | %s | %s | %s |\n' "$label" \
    "$(megabytes "$dir/model.safetensors")" "$(megabytes "$dir/tokenizer.json")" "$b1" "$b32" \
    "$(echo "$eval" | jq -r '.predictors[] | select(.name == "deterministic") | "\(.metrics.accuracy * 1000 | round / 10)%"')" \
    "$(echo "$eval" | jq -r '.predictors[] | select(.name == "deterministic") | .metrics.nll * 1000 | round / 1000')" \
    "$(echo "$eval" | jq -r '[.predictors[] | select(.name != "mc_head") | .metrics.ece * 1000 | round / 1000 | tostring] | join(" / ")')" \
    "$seconds"
}
seconds() { [ -f "$1/build-seconds" ] && printf '%.0f' "$(cat "$1/build-seconds")" || echo –; }

{
  echo "| model | weights + tokenizer | texts/s, batch 1 / 32 sorted | test accuracy | NLL | ECE det. / temp. / MC | seconds to build |"
  echo "|---|---|---|---|---|---|---|"
  [ -d "$work/full" ] && row "fine-tuned MiniLM-L6, 6 layers" "$work/full" "$(seconds "$work/full")" || true
  [ -d "$work/pruned" ] && row "vocabulary pruned to the training split" "$work/pruned" "$(seconds "$work/pruned")" || true
  [ -d "$work/prune-6/pruned" ] && row "vocabulary pruned as scripts/build-models.sh does" "$work/prune-6/pruned" – || true
  [ -d "$work/prune-6/final" ] && row "+ f16" "$work/prune-6/final" – || true
  for final in $(ls -d "$work"/distil-*/final "$work"/direct-*/final 2>/dev/null | sort -t- -k2 -r); do
    stage=$(dirname "$final")
    k=${stage#*/distil-}; k=${k#*/direct-}; width=""
    case "$k" in *-w*) width=" × ${k#*-w} neurons"; k=${k%-w*} ;; esac
    case "$stage" in
      */distil-*) row "$k layers$width, distilled, f16" "$final" "$(seconds "$stage/distilled")" ;;
      */direct-*) row "MiniLM's first $k layers fine-tuned, pruned, f16" "$final" "$(seconds "$stage/trained")" ;;
    esac
  done
} | tee "$work/frontier.md"
