#!/usr/bin/env bash
# candor against the references, in one run, on the same model directory and texts.
#   scripts/side-by-side.sh forward MODEL_DIR [DATA]   tokenize + forward at batch 1 and 32, on
#       1 and 2 threads: candor at f32, bf16 and int8 (cargo bench --bench inference) against PyTorch eager f32,
#       PyTorch dynamic int8 and ONNX Runtime f32 (scripts/reference/forward_bench.py)
#   scripts/side-by-side.sh http MODEL_DIR [SECONDS]   wrk on loopback: candor serve (its
#       defaults) against a FastAPI + PyTorch service on 2 torch threads
#       (scripts/reference/fastapi_service.py): POST /predict at c=1 and c=32, and an
#       uncertainty request with 30 samples at c=1 (PyTorch: a loop of 30 passes)
#   scripts/side-by-side.sh train [EPOCHS]   training examples/s of the tiny sentiment
#       configuration, then of fine-tuning all-MiniLM-L6-v2 on trec6 (after
#       scripts/get-minilm.sh): candor train against PyTorch (scripts/reference/torch_reference.py),
#       on 1 and 2 threads, on the splits of data/rotten_tomatoes.jsonl and data/trec6.jsonl
# DATA defaults to data/rotten_tomatoes.jsonl (the first 640 texts). Prints markdown tables
# with candor's ratio to each reference (above 1: candor is faster). Needs wrk (apt-get
# install wrk) and the Python environment of scripts/python-env.sh, to which this script
# adds onnxruntime, onnx, fastapi and uvicorn.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?usage: scripts/side-by-side.sh forward|http|train ...}"
python="${CANDOR_PYTHON:-$(scripts/python-env.sh)}"
command -v wrk > /dev/null || [ "$what" != http ] || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
"$python" -c "import onnxruntime, onnx, fastapi, uvicorn" 2>/dev/null ||
  "$python" -m pip install --quiet onnxruntime onnx fastapi uvicorn >&2
cargo build --release --quiet
candor=target/release/candor
echo "machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores; $(date -u +%F)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }'; }

forward() {
  local model="${1:?model directory}" data="${2:-data/rotten_tomatoes.jsonl}" threads
  echo "forward pass, $model, $data (texts/s, tokenize + forward)"
  echo
  echo "| threads | batch | candor f32 | candor bf16 | candor int8 | PyTorch f32 | PyTorch int8 | ONNX Runtime f32 | candor f32 ÷ ONNX, ÷ PyTorch f32 | candor int8 ÷ PyTorch int8 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for threads in 1 2; do
    local f32 bf16 int8 refs
    f32=$(candor_forward "$model" "$data" $threads f32)
    bf16=$(candor_forward "$model" "$data" $threads bf16)
    int8=$(candor_forward "$model" "$data" $threads int8)
    refs=$("$python" scripts/reference/forward_bench.py "$model" "$data" $threads 2>/dev/null)
    local i=1
    for case in "1 file" "32 file" "32 sorted"; do
      local ours ours_bf16 ours_int8 t i8 ox
      ours=$(echo "$f32" | cut -d' ' -f$i)
      ours_bf16=$(echo "$bf16" | cut -d' ' -f$i)
      ours_int8=$(echo "$int8" | cut -d' ' -f$i)
      t=$(echo "$refs" | awk -v c="$case" '$1=="torch" && $2" "$3==c {print $4}')
      i8=$(echo "$refs" | awk -v c="$case" '$1=="torch-int8" && $2" "$3==c {print $4}')
      ox=$(echo "$refs" | awk -v c="$case" '$1=="onnx" && $2" "$3==c {print $4}')
      echo "| $threads | ${case/ file/ (file order)} | $ours | $ours_bf16 | $ours_int8 | $t | $i8 | $ox | $(ratio "$ours" "$ox"), $(ratio "$ours" "$t") | $(ratio "$ours_int8" "$i8") |"
      i=$((i + 1))
    done
  done
}

# candor_forward MODEL DATA THREADS PRECISION: prints texts/s at batch 1, 32 in file order, 32 sorted
# ("–" when this CPU lacks the precision).
candor_forward() {
  local out
  out=$(CANDOR_MODEL="$1" CANDOR_BENCH_DATA="$2" CANDOR_THREADS=$3 CANDOR_PRECISION=$4 CANDOR_BENCH_FORWARD_ONLY=1 \
    cargo bench --quiet --bench inference 2>/dev/null) || { echo "– – –"; return; }
  echo "$(echo "$out" | awk '$1=="batch" && $2=="1:" {print $3}')" \
    "$(echo "$out" | awk '$1=="batch" && $2=="32:" && /file order/ {print $3}')" \
    "$(echo "$out" | awk '$1=="batch" && $2=="32:" && /sorted/ {print $3}')"
}

# load URL PATH BODY CONCURRENCY SECONDS: prints "REQUESTS_PER_S P50".
load() {
  local threads=$(( $4 < 2 ? 1 : 2 ))
  WRK_BODY="$3" wrk -t"$threads" -c"$4" -d"${5}s" --latency -s scripts/wrk-post.lua "$1$2" |
    awk '/Requests\/sec/ {rate=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print rate, p50, p99}'
}

http() {
  local model="${1:?model directory}" seconds="${2:-10}" port=8191 url="http://127.0.0.1:8191" pid
  local one='{"inputs": "a warm, funny, sharply written film that never forgets its audience"}'
  local mc='{"inputs": "a warm, funny, sharply written film that never forgets its audience", "samples": 30, "seed": 1}'
  local cases=("/predict|$one|1" "/predict|$one|32" "/v1/classify/uncertainty|$mc|1")
  declare -A result
  for server in candor pytorch; do
    if [ $server = candor ]; then
      $candor serve --model "$model" --addr "127.0.0.1:$port" --no-database --max-samples 100 > /tmp/side-by-side-candor.log 2>&1 &
    else
      "$python" scripts/reference/fastapi_service.py "$model" $port 2 > /tmp/side-by-side-pytorch.log 2>&1 &
    fi
    pid=$!
    trap 'kill ${pid:-} 2>/dev/null || true' EXIT
    until curl -sf "$url/readyz" > /dev/null; do sleep 0.3; done
    for c in "${cases[@]}"; do
      IFS='|' read -r path body concurrency <<< "$c"
      load "$url" "$path" "$body" 1 2 > /dev/null # warm-up
      result[$server$path$concurrency]=$(load "$url" "$path" "$body" "$concurrency" "$seconds")
    done
    kill $pid; wait $pid 2>/dev/null || true
  done
  echo "HTTP, $model, wrk on loopback, ${seconds} s per row (requests/s; p50, p99)"
  echo
  echo "| route | concurrency | candor | FastAPI + PyTorch | throughput ratio |"
  echo "|---|---|---|---|---|"
  for c in "${cases[@]}"; do
    IFS='|' read -r path body concurrency <<< "$c"
    read -r ours p50 p99 <<< "${result[candor$path$concurrency]}"
    read -r theirs tp50 tp99 <<< "${result[pytorch$path$concurrency]}"
    echo "| $path | $concurrency | $ours ($p50, $p99) | $theirs ($tp50, $tp99) | $(ratio "$ours" "$theirs") |"
  done
}

train() {
  local epochs="${1:-1}" split=work/sentiment/split dir
  [ -d $split ] || $candor split --data data/rotten_tomatoes.jsonl --seed 42 --out $split
  dir=$(mktemp -d)
  echo "training the tiny sentiment configuration (models/sentiment-tiny's), $epochs epoch(s), examples/s"
  echo
  echo "| threads | candor | PyTorch | ratio |"
  echo "|---|---|---|---|"
  for threads in 1 2; do
    local ours theirs
    ours=$($candor --threads $threads train --data data/rotten_tomatoes.jsonl --out "$dir/m$threads" \
      --epochs "$epochs" --mc-samples 0 --quiet 2>&1 | sed -n 's/.*, \([0-9.]*\) examples\/s).*/\1/p')
    theirs=$(CANDOR_TORCH_THREADS=$threads "$python" scripts/reference/torch_reference.py $split models/sentiment-tiny 5e-4 "$epochs" |
      sed -n 's/.*examples\/s \([0-9.]*\).*/\1/p' | tail -1)
    echo "| $threads | $ours | $theirs | $(ratio "$ours" "$theirs") |"
  done
  fine_tune "$epochs" "$dir"
  rm -rf "$dir"
}

# Fine-tuning all-MiniLM-L6-v2 (6 layers, hidden 384) on the trec6 split as
# scripts/build-models.sh does (batch 16, 64 word pieces, learning rate 5e-5).
fine_tune() {
  local epochs="$1" dir="$2" split=work/trec6/split
  [ -f models/minilm/model.safetensors ] || { echo "(fine-tuning skipped: run scripts/get-minilm.sh models/minilm)"; return; }
  [ -d $split ] || $candor split --data data/trec6.jsonl --seed 42 --out $split
  echo
  echo "fine-tuning all-MiniLM-L6-v2 on the trec6 split, batch 16, $epochs epoch(s), examples/s"
  echo
  echo "| threads | candor | PyTorch | ratio |"
  echo "|---|---|---|---|"
  for threads in 1 2; do
    local ours theirs
    ours=$($candor --threads $threads train --data data/trec6.jsonl --init-from models/minilm --out "$dir/f$threads" \
      --epochs "$epochs" --batch-size 16 --max-length 64 --token-mask 0 --learning-rate 5e-5 --mc-samples 0 --quiet 2>&1 |
      sed -n 's/.*, \([0-9.]*\) examples\/s).*/\1/p')
    theirs=$(CANDOR_TORCH_THREADS=$threads CANDOR_TORCH_BATCH=16 CANDOR_TORCH_MAX_LENGTH=64 \
      "$python" scripts/reference/torch_reference.py $split models/minilm 5e-5 "$epochs" |
      sed -n 's/.*examples\/s \([0-9.]*\).*/\1/p' | tail -1)
    echo "| $threads | $ours | $theirs | $(ratio "$ours" "$theirs") |"
  done
}

shift
case "$what" in
  forward) forward "$@" ;;
  http) http "$@" ;;
  train) train "$@" ;;
  *) echo "unknown comparison '$what': forward, http or train" >&2; exit 2 ;;
esac
