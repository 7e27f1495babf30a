"""The Python pipeline chatlm's `data prepare` is measured against:
load_dataset -> map(apply_chat_template, tokenize) -> trl.pack_dataset(bfd) -> to_parquet.

    python3 scripts/bench/data_python.py IN.jsonl TOKENIZER OUT.parquet [--num-proc 2] [--seq-length 2048]
Prints `rows=<n> seconds=<s> rows_per_s=<r>`.
"""
import argparse
import time

import datasets
from datasets import load_dataset
from transformers import AutoTokenizer
from trl import pack_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--strategy", default="bfd")
    a = ap.parse_args()
    datasets.disable_caching()
    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    ds = load_dataset("json", data_files=a.input, split="train")
    n = len(ds)

    def fmt(ex):
        return {"input_ids": tok.apply_chat_template(ex["messages"], tokenize=True, return_dict=True)["input_ids"]}

    ds = ds.map(fmt, remove_columns=ds.column_names, num_proc=a.num_proc if a.num_proc > 1 else None)
    ds = pack_dataset(ds, a.seq_length, a.strategy)
    ds.to_parquet(a.out)
    dt = time.perf_counter() - t0
    print(f"rows={n} seconds={dt:.2f} rows_per_s={n / dt:.0f}")


if __name__ == "__main__":
    main()
