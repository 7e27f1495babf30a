#!/usr/bin/env python3
"""Re-encode a GGUF model's matrices as Q8_0 or F16 for the model-speed benchmark.

Each quantized matrix is dequantized to f32 with gguf-py and written in the target format;
1-D tensors (norms) stay F32 and every metadata key is copied. Starting from the Q4_1 file
the weights therefore carry Q4_1's values, which is all a speed benchmark needs.

    python3 scripts/bench/model_convert.py IN.gguf OUT.gguf {q8_0,f16}
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

FILE_TYPE = {"q8_0": 7, "f16": 1}


def main() -> None:
    src, dst, target = sys.argv[1], sys.argv[2], sys.argv[3]
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == "general.file_type":
            value = FILE_TYPE[target]
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for t in reader.tensors:
        shape = [int(d) for d in reversed(t.shape)]  # numpy order (rows, cols)
        data = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if len(shape) == 1:
            writer.add_tensor(t.name, data)
        elif target == "f16":
            writer.add_tensor(t.name, data.astype(np.float16))
        else:
            q = quantize(data, GGMLQuantizationType.Q8_0)
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
