"""Shared helpers for the chatlm-data reference scripts (scripts/reference/data_*.py).

Each script writes small JSON files under crates/chatlm-data/tests/data/ holding inputs, the options
passed to the real Python object (transformers / TRL / datasets, versions recorded) and its output.
"""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "chatlm-data" / "tests" / "data"
FIXTURES = Path(os.environ.get("CHATLM_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def tok_path(name: str) -> str:
    return str(FIXTURES / "tokenizers" / name)


def to_py(v):
    """Tensors / numpy to nested lists; python ints stay ints."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, dict):
        return {k: to_py(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_py(x) for x in v]
    return v


def versions():
    out = {"python": sys.version.split()[0]}
    for mod in ("transformers", "trl", "datasets", "tokenizers", "torch", "pyarrow"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing library is recorded, not fatal
            pass
    return out


def tokenizer_info(tok):
    return {
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "padding_side": tok.padding_side,
    }


def write(name: str, obj):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
