"""Forward-pass throughput of the references on a candor model directory.

Usage: PYTHON forward_bench.py MODEL_DIR DATA.jsonl THREADS [BACKEND...]
BACKEND: torch (PyTorch eager f32), torch-int8 (PyTorch dynamic int8 on the
linear layers, as torch.ao.quantization.quantize_dynamic), onnx (ONNX Runtime
f32, the model exported by torch.onnx); default all three.

Measures what `cargo bench --bench inference` measures for candor, on the same
texts: the first 640 texts of DATA, tokenized one by one with the model's
tokenizer.json (truncated to its max_length) and classified at batch 1 in
file order, batch 32 in file order, and batch 32 sorted by length. Prints one
line per backend and batch: `BACKEND batch ORDER TEXTS_PER_S`.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

model_dir, data, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
backends = sys.argv[4:] or ["torch", "torch-int8", "onnx"]
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)

config = json.load(open(os.path.join(model_dir, "config.json")))
max_length = config.get("candor", {}).get("max_length", 128)
tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tokenizer.no_padding()
tokenizer.enable_truncation(max_length)
pad_id = tokenizer.token_to_id("[PAD]") or 0
texts = [json.loads(line)["text"] for line in open(data)][:640]
by_length = sorted(texts, key=lambda t: len(tokenizer.encode(t).ids))
model = BertForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32).eval()


def batch_arrays(chunk):
    rows = [tokenizer.encode(t).ids for t in chunk]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def torch_runner(net):
    def run(chunk):
        ids, mask = batch_arrays(chunk)
        with torch.inference_mode():
            return net(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    return run


def onnx_runner():
    import onnxruntime as ort

    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    ids = torch.ones((2, 8), dtype=torch.long)
    with torch.inference_mode():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids)), path, input_names=["input_ids", "attention_mask"],
            output_names=["logits"], opset_version=17, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(chunk):
        ids, mask = batch_arrays(chunk)
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    return run


def runner(name):
    if name == "torch":
        return torch_runner(model)
    if name == "torch-int8":
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return torch_runner(quantized)
    if name == "onnx":
        return onnx_runner()
    sys.exit(f"unknown backend {name}: torch, torch-int8 or onnx")


for name in backends:
    run = runner(name)
    for batch, order, label in [(1, texts, "file"), (32, texts, "file"), (32, by_length, "sorted")]:
        run(order[:batch])  # warm-up
        started = time.perf_counter()
        for i in range(0, len(order), batch):
            run(order[i : i + batch])
        rate = len(order) / (time.perf_counter() - started)
        print(f"{name} {batch} {label} {rate:.0f}", flush=True)
