"""Calls a running candor server with the real huggingface_hub InferenceClient."""
import sys

from huggingface_hub import InferenceClient

client = InferenceClient(model=sys.argv[1])
result = client.text_classification("Who wrote Hamlet ?")
assert len(result) >= 1, result
assert all(0.0 <= r.score <= 1.0 for r in result), result
assert result == sorted(result, key=lambda r: -r.score), result
top = client.text_classification("Who wrote Hamlet ?", top_k=2)
assert len(top) == 2, top
for r in result:
    print(f"label={r.label} score={r.score:.4f}")
