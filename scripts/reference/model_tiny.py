"""Tiny random decoder models and their transformers outputs, for chatlm-model's tests.

Produces, under crates/chatlm-model/tests/data/<name>/:
  model.safetensors, config.json, generation_config.json  -- a RANDOM model (fixed seed)
  expected.json -- what transformers computes with it (f32, eager attention):
    prompts[i]: {"ids", "last_logits" (full vocab at the last position),
                 "sample_vocab" (vocab indices sampled), "all_logits" ([pos][k] at those indices),
                 "greedy" (20 greedy tokens from generate), "min_margin" (smallest top1-top2 gap)}
    batch: {"ids" (left-padded), "attention_mask", "pad_id", "position_ids",
            "real_logits" ([row][pos][k] at sample_vocab, real positions only, null at pads),
            "last_logits" ([row][vocab]), "greedy" ([row][20])}

Models: llama3 rope scaling, tied-embedding Llama, Qwen2 (qkv bias, tied), Mistral (sliding
window 8), Phi-3 (fused qkv / gate_up), Llama with linear and with dynamic rope scaling, and the
llama3 model stored in bf16 (expected values from transformers on the bf16 weights upcast to f32).
Some configs are rewritten in the legacy layout (`rope_theta` + `rope_scaling`) that most hub
checkpoints still use; transformers reads them back before computing the expectations.

Rerun: python3 scripts/reference/model_tiny.py   (torch + transformers 5.x; ~1 minute on CPU)
"""

import json
import os
import shutil

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "chatlm-model", "tests", "data")
VOCAB = 128
GREEDY_TOKENS = 20
COMMON = dict(
    hidden_size=64,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=VOCAB,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    # Larger than the usual 0.02 so that random logits have clear winners: greedy comparisons
    # should not hinge on float rounding.
    initializer_range=0.25,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
PROMPTS = [[1, 17, 42, 99, 7], [1, 5, 88, 23, 64, 120, 3, 77, 50], [1, 9, 9, 9, 101, 33, 60, 14, 2, 95, 11, 71, 44]]
SAMPLE_VOCAB = list(range(0, VOCAB, 9))


def llama3(**kw):
    return LlamaConfig(**COMMON, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, **kw)


MODELS = {
    "llama3": (llama3, dict(), False),
    "llama_tied": (lambda: LlamaConfig(**COMMON, tie_word_embeddings=True, rope_theta=500000.0), dict(), True),
    "qwen2": (lambda: Qwen2Config(**COMMON, tie_word_embeddings=True, rope_theta=1000000.0), dict(), True),
    "mistral": (lambda: MistralConfig(**COMMON, sliding_window=8), dict(), False),
    "phi3": (lambda: Phi3Config(**COMMON, original_max_position_embeddings=256), dict(), False),
    "llama_linear": (lambda: LlamaConfig(**COMMON, rope_scaling={"rope_type": "linear", "factor": 2.0}), dict(), True),
    "llama_dynamic": (lambda: LlamaConfig(**{**COMMON, "max_position_embeddings": 16},
                                          rope_scaling={"rope_type": "dynamic", "factor": 2.0}), dict(), True),
}


def to_legacy_rope(config_path):
    """Rewrites `rope_parameters` as top-level `rope_theta` + `rope_scaling` (hub layout)."""
    with open(config_path) as f:
        cfg = json.load(f)
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    if params.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = params
    with open(config_path, "w") as f:
        json.dump(cfg, f, indent=2)


def rounded(t):
    return [float(f"{x:.7g}") for x in t.tolist()]


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def greedy(model, ids, mask=None):
    # No eos: a full run of GREEDY_TOKENS compares more tokens (stopping is chatlm-generate's job).
    model.generation_config = GenerationConfig(do_sample=False, pad_token_id=0)
    gen = GenerationConfig(do_sample=False, max_new_tokens=GREEDY_TOKENS, pad_token_id=0)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen, output_scores=True,
                         return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    assert new.shape[1] == GREEDY_TOKENS, new.shape
    scores = torch.stack(out.scores, 1)
    top2 = scores.topk(2, dim=-1).values
    return new.tolist(), float((top2[..., 0] - top2[..., 1]).min())


@torch.no_grad()
def expectations(path):
    result = {"sample_vocab": SAMPLE_VOCAB, "prompts": []}
    margins = []
    for prompt in PROMPTS:
        model = load(path)  # fresh: dynamic rope scaling keeps state between calls
        ids = torch.tensor([prompt])
        logits = model(ids).logits[0]
        model = load(path)
        tokens, margin = greedy(model, ids)
        margins.append(margin)
        result["prompts"].append({
            "ids": prompt,
            "last_logits": rounded(logits[-1]),
            "all_logits": [rounded(row[SAMPLE_VOCAB]) for row in logits],
            "greedy": tokens[0],
            "min_margin": margin,
        })
    width = max(len(p) for p in PROMPTS)
    padded = [[0] * (width - len(p)) + p for p in PROMPTS]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS]
    ids, mask_t = torch.tensor(padded), torch.tensor(mask)
    # What generate() does for left padding: positions count real tokens only.
    position_ids = (mask_t.cumsum(-1) - 1).masked_fill(mask_t == 0, 1)
    model = load(path)
    logits = model(ids, attention_mask=mask_t, position_ids=position_ids).logits
    model = load(path)
    tokens, margin = greedy(model, ids, mask_t)
    margins.append(margin)
    result["batch"] = {
        "ids": padded,
        "attention_mask": mask,
        "pad_id": 0,
        "position_ids": position_ids.tolist(),
        "real_logits": [[rounded(logits[r, p][SAMPLE_VOCAB]) if mask[r][p] else None for p in range(width)]
                        for r in range(len(PROMPTS))],
        "last_logits": [rounded(logits[r, -1]) for r in range(len(PROMPTS))],
        "greedy": tokens,
        "min_margin": margin,
    }
    return result, min(margins)


def main():
    os.makedirs(ROOT, exist_ok=True)
    for seed, (name, (make, _, legacy)) in enumerate(MODELS.items()):
        torch.manual_seed(1234 + seed)
        config = make()
        config.architectures = None
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                                   do_sample=True, temperature=0.7, top_p=0.9)
        out = os.path.join(ROOT, name)
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out, safe_serialization=True)
        if legacy:
            to_legacy_rope(os.path.join(out, "config.json"))
        exp, margin = expectations(out)
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(exp, f, separators=(",", ":"))
        print(f"{name}: min greedy margin {margin:.4f}")
        if name == "llama3":
            bf16 = os.path.join(ROOT, "llama3_bf16")
            shutil.rmtree(bf16, ignore_errors=True)
            model.to(torch.bfloat16).save_pretrained(bf16, safe_serialization=True)
            exp, margin = expectations(bf16)
            with open(os.path.join(bf16, "expected.json"), "w") as f:
                json.dump(exp, f, separators=(",", ":"))
            print(f"llama3_bf16: min greedy margin {margin:.4f}")


if __name__ == "__main__":
    main()
