#!/usr/bin/env bash
# Builds a set of unrelated texts for out-of-distribution measurements from
# Debian's packages (offline apart from the package mirror):
#   scripts/get-ood-texts.sh [DIR]        # default work/ood
# DIR/quotes.jsonl: quotations and sayings from the literature, wisdom,
# people, humorists, politics and work files of the `fortunes` and
# `fortunes-min` packages, one text per fortune, whitespace collapsed, the
# closing attribution ("-- Mark Twain") cut, 20 to 300 characters, as
# {"text": …} lines.
set -euo pipefail
dest="${1:-work/ood}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq fortunes fortunes-min 2>/dev/null >/dev/null)
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
mkdir -p "$dest"
python3 - "$tmp/x/usr/share/games/fortunes" "$dest/quotes.jsonl" <<'PY'
import json, os, re, sys
source, out = sys.argv[1], sys.argv[2]
texts = []
for name in ["literature", "wisdom", "people", "humorists", "politics", "work"]:
    with open(os.path.join(source, name), encoding="latin-1") as f:
        for fortune in f.read().split("\n%\n"):
            text = re.sub(r"\s+", " ", fortune).strip()
            text = re.sub(r"\s+--\s+[^-]{1,80}$", "", text)
            if 20 <= len(text) <= 300:
                texts.append(text)
with open(out, "w") as f:
    for text in texts:
        f.write(json.dumps({"text": text}) + "\n")
print(f"{len(texts)} quotations in {out}")
PY
