"""KServe's v2 protocol through tritonclient, a client no one here wrote.

Usage: triton_client.py HOST:PORT MODEL
Checks health, readiness and metadata, then classifies two texts three ways
(binary tensors, the client's default; JSON tensors; and with MC-dropout
samples) and prints what came back, one line per check.
"""
import sys

import numpy as np
import tritonclient.http as http

url, model = sys.argv[1], sys.argv[2]
client = http.InferenceServerClient(url=url)
assert client.is_server_live()
assert client.is_server_ready()
assert client.is_model_ready(model)
metadata = client.get_model_metadata(model)
assert metadata["name"] == model, metadata
assert metadata["inputs"][0]["name"] == "text", metadata
print("metadata outputs=" + ",".join(o["name"] for o in metadata["outputs"]))

texts = np.array(["Who wrote Hamlet?", "How far is the moon?"], dtype=object)


def text_input(binary):
    tensor = http.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=binary)
    return tensor


# The client's defaults: binary input, every output as binary.
result = client.infer(model, [text_input(True)])
labels = [label.decode() for label in result.as_numpy("label")]
probabilities = result.as_numpy("probabilities")
assert probabilities.shape == (2, 6), probabilities.shape
assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
print("binary labels=" + ",".join(labels))
print("binary probabilities=" + " ".join(f"{p:.6f}" for p in probabilities.ravel()))

# JSON tensors both ways, asking for the outputs by name.
outputs = [http.InferRequestedOutput(name, binary_data=False) for name in ["label", "probabilities"]]
result = client.infer(model, [text_input(False)], outputs=outputs)
json_labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
assert json_labels == labels, (json_labels, labels)
assert np.allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
print("json labels=" + ",".join(json_labels))

# MC dropout through the request's parameters.
result = client.infer(model, [text_input(True)], parameters={"samples": 8, "seed": 7})
information = result.as_numpy("mutual_information")
std = result.as_numpy("std")
assert information.shape == (2,) and std.shape == (2, 6), (information.shape, std.shape)
assert (information >= 0).all() and (std >= 0).all()
print("sampled mutual_information=" + " ".join(f"{m:.6f}" for m in information))
print("ids=" + result.get_response()["parameters"]["prediction_ids"])

# An error the protocol's way.
try:
    bad = http.InferInput("text", [2], "FP32")
    bad.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    client.infer(model, [bad])
    print("error: none")
except http.InferenceServerException as e:
    print("error: " + str(e))
