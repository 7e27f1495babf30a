"""Reference vectors for chatlm-generate's logits processors.

Applies transformers' own processors (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, and the full chain in `generate`'s order)
to fixed logits (several vocab sizes, ties, negative values, -inf) and writes the expected
scores to crates/chatlm-generate/tests/data/processors.json (-inf written as null).

Rerun: python3 scripts/reference/generate_processors.py   (needs torch + transformers)
"""
import json
import math
import pathlib

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/chatlm-generate/tests/data/processors.json"


def logit_sets():
    g = torch.Generator().manual_seed(1234)
    sets = {
        "small_ties": [1.0, 3.0, 3.0, -2.0, 0.5, 3.0, -0.25, 1.0],
        "negatives": [-1.5, -0.5, -3.0, -0.5, -7.0, -2.25],
        "with_neg_inf": [2.0, float("-inf"), 0.1, 1.9, float("-inf"), -1.0, 0.7],
        "one_hot_like": [12.0, 0.0, 0.0, 0.0, 0.0],
    }
    for n in (17, 64, 257):
        sets[f"randn_{n}"] = (torch.randn(n, generator=g) * 3).tolist()
    return sets


def enc(t):
    return [None if math.isinf(x) and x < 0 else x for x in t.tolist()]


def run(proc, logits, ids):
    scores = torch.tensor([logits], dtype=torch.float32)
    input_ids = torch.tensor([ids], dtype=torch.long)
    return enc(proc(input_ids, scores.clone())[0])


def main():
    cases = []
    for name, logits in logit_sets().items():
        n = len(logits)
        ids = [0, 1, 1, n - 1, n // 2]
        configs = [
            ("repetition_penalty", {"penalty": 1.3}, RepetitionPenaltyLogitsProcessor(1.3)),
            ("repetition_penalty", {"penalty": 0.7}, RepetitionPenaltyLogitsProcessor(0.7)),
            ("temperature", {"temperature": 0.7}, TemperatureLogitsWarper(0.7)),
            ("temperature", {"temperature": 1.8}, TemperatureLogitsWarper(1.8)),
        ]
        for k in (1, 2, 3, 5, 50):
            configs.append(("top_k", {"top_k": k}, TopKLogitsWarper(k)))
        for p in (0.1, 0.5, 0.8, 0.95, 1.0):
            configs.append(("top_p", {"top_p": p}, TopPLogitsWarper(p)))
        configs.append(("top_p", {"top_p": 0.3, "min_tokens_to_keep": 3}, TopPLogitsWarper(0.3, min_tokens_to_keep=3)))
        for p in (0.05, 0.2, 0.6):
            configs.append(("min_p", {"min_p": p}, MinPLogitsWarper(p)))
        # torch.topk picks among exactly tied probabilities in an unspecified order, so the
        # min_tokens_to_keep rescue is only compared where the 2nd/3rd largest are not tied.
        top = sorted(logits, reverse=True)
        if top[1] != top[2]:
            configs.append(("min_p", {"min_p": 0.9, "min_tokens_to_keep": 2}, MinPLogitsWarper(0.9, min_tokens_to_keep=2)))
        chain = {"repetition_penalty": 1.2, "temperature": 0.8, "top_k": 4, "top_p": 0.9, "min_p": 0.05}
        configs.append((
            "chain", chain,
            LogitsProcessorList([
                RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.8), TopKLogitsWarper(4),
                TopPLogitsWarper(0.9), MinPLogitsWarper(0.05),
            ]),
        ))
        for kind, params, proc in configs:
            cases.append({
                "name": name, "kind": kind, "params": params, "input_ids": ids,
                "logits": enc(torch.tensor(logits)), "expected": run(proc, logits, ids),
            })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases}, indent=0))
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
