"""Reference data for chatlm-gguf, read with the Python `gguf` package (llama.cpp's own reader).

Writes crates/chatlm-gguf/tests/data/smollm2_meta.json: version, tensor/kv counts, alignment,
data offset, every scalar metadata value, array lengths and first elements, and name/dims/type/
offset/size of every tensor of the SmolLM2-135M-Instruct Q4_1 GGUF; and
crates/chatlm-gguf/tests/data/ggml_type_sizes.json: gguf.GGML_QUANT_SIZES by type id.

Rerun: python3 scripts/reference/gguf_smollm2_meta.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default: $CHATLM_SMOLLM2 or ~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""
import json
import os
import sys
from pathlib import Path

import gguf
from gguf import GGUFReader, GGUFValueType

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/chatlm-gguf/tests/data"


def scalar(field):
    value = field.contents()
    return value


def main():
    default = os.environ.get("CHATLM_SMOLLM2", str(Path.home() / ".cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    path = sys.argv[1] if len(sys.argv) > 1 else default
    reader = GGUFReader(path)
    scalars, arrays = {}, {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            items = field.contents()
            arrays[name] = {"element_type": field.types[-1].name, "len": len(items), "first": items[:5], "last": items[-1] if items else None}
        else:
            scalars[name] = {"type": kind.name, "value": scalar(field)}
    tensors = [
        {
            "name": t.name,
            "dims": [int(d) for d in t.shape],
            "type": t.tensor_type.name,
            "offset": int(t.data_offset) - int(reader.data_offset),
            "size": int(t.n_bytes),
        }
        for t in reader.tensors
    ]
    meta = {
        "file": os.path.basename(path),
        "file_size": os.path.getsize(path),
        "version": int(reader.fields["GGUF.version"].contents()),
        "tensor_count": len(reader.tensors),
        "kv_count": len(scalars) + len(arrays),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "scalars": scalars,
        "arrays": arrays,
        "tensors": tensors,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "smollm2_meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    sizes = {t.name: {"id": int(t.value), "block_size": s[0], "type_size": s[1]} for t, s in gguf.GGML_QUANT_SIZES.items()}
    (OUT / "ggml_type_sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    print(f"{len(tensors)} tensors, {meta['kv_count']} keys -> {OUT}")


if __name__ == "__main__":
    main()
