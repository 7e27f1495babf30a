"""Greedy continuation of SmolLM2-135M-Instruct (Q4_1 GGUF) by transformers, for chatlm-model.

transformers loads the GGUF with `gguf_file=`, dequantizes every tensor to f32 and undoes
llama.cpp's q/k permutation: the same computation chatlm-model's reference GGUF path performs.

Produces crates/chatlm-model/tests/data/smollm2_gguf_expected.json:
  {"gguf": file name, "prompt_ids": chat-templated prompt, "greedy": next 12 greedy tokens,
   "top": [[id, logit], ...] top 10 of the first next-token logits, "margin": top1 - top2}

Rerun: python3 scripts/reference/model_smollm2.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default path: $CHATLM_SMOLLM2, else ~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "chatlm-model", "tests", "data",
                   "smollm2_gguf_expected.json")
DEFAULT = os.path.expanduser("~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CHATLM_SMOLLM2", DEFAULT)
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if hasattr(prompt_ids, "tolist"):
        prompt_ids = prompt_ids.tolist()
    if prompt_ids and isinstance(prompt_ids[0], list):
        prompt_ids = prompt_ids[0]
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                             eos_token_id=None, pad_token_id=0)
    top = torch.topk(logits, 10)
    result = {
        "gguf": name,
        "prompt_ids": prompt_ids,
        "greedy": out[0, ids.shape[1]:].tolist(),
        "top": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
        "margin": float(top.values[0] - top.values[1]),
        "text": tok.decode(out[0, ids.shape[1]:]),
    }
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
    print(result)


if __name__ == "__main__":
    main()
