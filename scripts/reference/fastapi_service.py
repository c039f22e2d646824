"""The FastAPI + PyTorch service a team would write, serving a candor model directory.

Usage: PYTHON fastapi_service.py MODEL_DIR PORT [THREADS]   (THREADS: torch threads, default 2)
Routes, shaped as candor's:
  POST /predict                  {"inputs": "text"} -> [{"label", "score"}] (eval mode)
  POST /v1/classify/uncertainty  {"inputs": "text", "samples": T} -> mean probabilities and
                                 their spread over T forward passes with dropout on (a loop)
  GET  /readyz
One uvicorn worker; each request is one forward pass (no batching across requests).
"""
import json
import os
import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

model_dir, port = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
config = json.load(open(os.path.join(model_dir, "config.json")))
tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tokenizer.no_padding()
tokenizer.enable_truncation(config.get("candor", {}).get("max_length", 128))
model = BertForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
app = FastAPI()


class Request(BaseModel):
    inputs: str
    samples: int = 30


def logits(text):
    ids = torch.tensor([tokenizer.encode(text).ids])
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]


@app.get("/readyz")
def ready():
    return {"status": "ready"}


@app.post("/predict")
def predict(request: Request):
    with torch.inference_mode():
        probs = torch.softmax(logits(request.inputs), -1)
    return sorted(({"label": l, "score": float(p)} for l, p in zip(labels, probs)), key=lambda r: -r["score"])


@app.post("/v1/classify/uncertainty")
def uncertainty(request: Request):
    model.train()  # dropout on
    try:
        with torch.inference_mode():
            probs = torch.stack([torch.softmax(logits(request.inputs), -1) for _ in range(request.samples)])
    finally:
        model.eval()
    mean, std = probs.mean(0), probs.std(0)
    return {"label": labels[int(mean.argmax())], "scores": dict(zip(labels, mean.tolist())),
            "std": dict(zip(labels, std.tolist()))}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
