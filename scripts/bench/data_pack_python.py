"""Time trl.pack_dataset alone on a tokenized Parquet dataset (the 1M-row packing benchmark).

    python3 scripts/bench/data_pack_python.py IN.parquet SEQ_LENGTH [STRATEGY] [OUT.parquet]
"""
import sys
import time

import datasets
from datasets import load_dataset
from trl import pack_dataset

datasets.disable_caching()
datasets.disable_progress_bars()
path, seq = sys.argv[1], int(sys.argv[2])
strategy = sys.argv[3] if len(sys.argv) > 3 else "bfd"
ds = load_dataset("parquet", data_files=path, split="train")
t0 = time.perf_counter()
out = pack_dataset(ds, seq, strategy)
dt = time.perf_counter() - t0
if len(sys.argv) > 4:
    out.to_parquet(sys.argv[4])
print(f"rows={len(ds)} packed={len(out)} seconds={dt:.2f}")
