"""Accuracy of each model and of their averaged probabilities on a labelled JSONL file.

Usage: python3 ensemble.py CANDOR_BINARY DATA.jsonl MODEL_DIR...
Runs `candor predict` (deterministic, temperature-scaled) for each model.
"""
import json
import subprocess
import sys

binary, data, models = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(data) as f:
    rows = [json.loads(line) for line in f]
texts = "".join(r["text"].replace("\n", " ") + "\n" for r in rows)
total = None
for i, model in enumerate(models):
    out = subprocess.run(
        [binary, "--threads", "1", "predict", "--model", model, "-"],
        input=texts, capture_output=True, text=True, check=True,
    ).stdout
    probs = [dict(json.loads(line)["scores"]) for line in out.splitlines() if line.strip()]
    assert len(probs) == len(rows)
    if total is None:
        total = [{k: 0.0 for k in p} for p in probs]
    for t, p in zip(total, probs):
        for k, v in p.items():
            t[k] += v

    def accuracy(dists):
        return sum(max(d, key=d.get) == str(r["label"]) for d, r in zip(dists, rows)) / len(rows)

    print(f"{model}: {accuracy(probs):.1%}; ensemble of the first {i + 1}: {accuracy(total):.1%}")
