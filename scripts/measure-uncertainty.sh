#!/usr/bin/env bash
# Measures how good the shipped models' uncertainty is on their own test
# splits and writes the report and pictures into docs/uncertainty/NAME/:
#   scripts/get-ood-texts.sh                    # once: quotations, from Debian's packages
#   scripts/measure-uncertainty.sh [NAME…]      # default: sentiment trec6 sentiment-tiny trec6-tiny
# Predictors: deterministic, temperature, MC dropout (T = 30) full, head,
# top 1 and top 2 layers; OOD sets: the other data files and the quotations
# (1,000 evenly spaced texts each); distances fitted on the training split.
set -euo pipefail
cd "$(dirname "$0")/.."
test -f work/ood/quotes.jsonl || { echo "run scripts/get-ood-texts.sh first" >&2; exit 2; }
cargo build --release --quiet
candor=target/release/candor
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(sentiment trec6 sentiment-tiny trec6-tiny)
for name in "${names[@]}"; do
  task="${name%-tiny}"
  case "$task" in
    sentiment) data=data/rotten_tomatoes.jsonl
               ood=(--ood data/trec6.jsonl --ood data/sms_spam.jsonl --ood work/ood/quotes.jsonl) ;;
    trec6) data=data/trec6.jsonl
           ood=(--ood data/rotten_tomatoes.jsonl --ood data/sms_spam.jsonl --ood work/ood/quotes.jsonl) ;;
    *) echo "unknown model '$name'" >&2; exit 2 ;;
  esac
  split="work/$task/split"
  [ -d "$split" ] || $candor split --data "$data" --seed 42 --out "$split"
  out="docs/uncertainty/$name"
  mkdir -p "$out"
  echo "== $name ($(date +%H:%M:%S))"
  $candor eval --model "models/$name" --data "$split/test.jsonl" --reference "$split/train.jsonl" \
    "${ood[@]}" --max-ood 1000 --mc-samples 30 --sweep 1,5,10,30 --plots "$out" > "$out/report.txt"
done
