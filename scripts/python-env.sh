#!/usr/bin/env bash
# Creates (once per machine) the Python environment the cross-checks need:
# torch and transformers for the Hugging Face parity test, huggingface_hub for
# the client tests, tritonclient for KServe's v2 protocol, and schemathesis
# for the OpenAPI contract test. torch is about 6 GB installed, so it lives in a cache
# outside the checkout and is reused by every clone. Prints the interpreter path.
set -euo pipefail
venv="${CANDOR_VENV:-$HOME/.cache/candor/venv}"
if ! "$venv/bin/python" -c "import torch, transformers, huggingface_hub, safetensors" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet torch transformers safetensors huggingface_hub numpy >&2
fi
if ! "$venv/bin/python" -c "import tritonclient.http" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "tritonclient[http]" >&2
fi
if ! "$venv/bin/python" -c "import schemathesis" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "schemathesis>=4,<5" >&2
fi
echo "$venv/bin/python"
