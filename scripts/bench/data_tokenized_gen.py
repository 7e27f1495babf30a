"""Write N already-tokenized rows (input_ids + labels, lengths 1..MAX) to Parquet for the packing benchmark.

    python3 scripts/bench/data_tokenized_gen.py OUT.parquet [N=1000000] [MAX=64]
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
mx = int(sys.argv[3]) if len(sys.argv) > 3 else 64
rng = np.random.default_rng(0)
lengths = rng.integers(1, mx + 1, n)
offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
values = rng.integers(0, 128000, offsets[-1]).astype(np.int64)
ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
pq.write_table(pa.table({"input_ids": ids, "labels": labels}), out)
print(f"wrote {out}: {n} rows, {offsets[-1]} tokens")
