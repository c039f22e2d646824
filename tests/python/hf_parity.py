"""Round-trip checks between candor model directories and Python transformers.

Called by tests/hf_parity.rs; the Rust side computes candor's logits.

  check-candor DIR CASE.json   load a candor-written DIR with transformers, compare logits
  make-hf DIR CASE.json        write a random transformers BertForSequenceClassification
                               into DIR (vocab from DIR/tokenizer.json) and its logits into CASE.json

CASE.json: {"input_ids": [[...]], "attention_mask": [[...]], "logits": [[...]]}.
"""
import json
import sys

import torch
from transformers import BertConfig, BertForSequenceClassification

TOLERANCE = 1e-4


def logits_of(model, case):
    ids = torch.tensor(case["input_ids"], dtype=torch.long)
    mask = torch.tensor(case["attention_mask"], dtype=torch.long)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def check_candor(model_dir, case_path):
    case = json.load(open(case_path))
    model, info = BertForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"loading {model_dir} reported {problems}")
    ours = torch.tensor(case["logits"])
    theirs = logits_of(model, case)
    diff = (ours - theirs).abs().max().item()
    print(f"max abs difference {diff:.3g} over {tuple(theirs.shape)} logits")
    if diff > TOLERANCE:
        sys.exit(f"logits differ by {diff} > {TOLERANCE}")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    print("labels", labels)


def make_hf(model_dir, case_path):
    case = json.load(open(case_path))
    vocab = json.load(open(f"{model_dir}/tokenizer.json"))["model"]["vocab"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        id2label={0: "ABBR", 1: "DESC", 2: "HUM"},
        label2id={"ABBR": 0, "DESC": 1, "HUM": 2},
    )
    model = BertForSequenceClassification(config)
    # Random, not-too-small weights everywhere, so that every tensor matters to the logits.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)
    case["logits"] = logits_of(model, case).tolist()
    json.dump(case, open(case_path, "w"))
    print(f"wrote {model_dir}")


if __name__ == "__main__":
    command, model_dir, case_path = sys.argv[1:4]
    {"check-candor": check_candor, "make-hf": make_hf}[command](model_dir, case_path)
