"""Gives the all-MiniLM-L6-v2 encoder a fresh classification head, so that
`candor compress` can cut it down before fine-tuning (scripts/build-models.sh):
    python3 scripts/minilm-head.py models/minilm OUT_DIR LABEL [LABEL ...]
Writes OUT_DIR with the encoder's tensors under `bert.` and a classifier of
weights drawn from N(0, 0.02²) with torch's generator seeded 0 (the same
files every time), zero biases, and the labels in config.json."""
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

source, out, labels = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
if len(labels) < 2:
    sys.exit("usage: minilm-head.py MINILM_DIR OUT_DIR LABEL LABEL [LABEL ...]")
weights = load_file(source / "model.safetensors")
weights = {(k if k.startswith("bert.") else "bert." + k): v for k, v in weights.items()}
hidden = weights["bert.embeddings.word_embeddings.weight"].shape[1]
torch.manual_seed(0)
weights["classifier.weight"] = torch.randn(len(labels), hidden) * 0.02
weights["classifier.bias"] = torch.zeros(len(labels))
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in weights.items()}, out / "model.safetensors")
config = json.loads((source / "config.json").read_text())
config["id2label"] = {str(i): label for i, label in enumerate(labels)}
config["label2id"] = {label: i for i, label in enumerate(labels)}
(out / "config.json").write_text(json.dumps(config, indent=2))
shutil.copy(source / "tokenizer.json", out / "tokenizer.json")
