"""Greedy answers of llama.cpp (llama-cpp-python) on SmolLM2-135M-Instruct, for chatlm-cli's tests.

For each chat below, the prompt is rendered and tokenized by transformers from the same GGUF file
(`apply_chat_template(add_generation_prompt=True)`; llama.cpp's own tokenization of that text is
checked to agree), then llama.cpp decodes greedily (argmax of its logits, temperature 0) with stop
tokens ignored, up to `LONG` tokens past the first stop token (or `MAX_ANSWER` tokens):

- `answer_ids`: the answer, through the first stop token (<|im_end|> / <|endoftext|>);
- `long_ids`, `long_top`: the whole run and, at every step, llama.cpp's top `TOP` (id, logit)
  pairs, so a divergence can be shown to be a near-tie in llama.cpp's own logits;
- `answer_ids_f32_kv`: the answer of llama.cpp itself with an f32 instead of f16 KV cache, to show
  how far precision alone moves greedy answers of this model.

Produces crates/chatlm-cli/tests/data/generate_llamacpp_<quant>.json (quant from the file name). Rerun:
    python3 scripts/reference/generate_llamacpp.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default: $CHATLM_SMOLLM2, else ~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf)
llama.cpp's sums depend on the SIMD it was built for; for another build of llama-cpp-python, put it
first on PYTHONPATH and name the output with `--suffix` (generate_llamacpp_<quant>.<suffix>.json):
    PYTHONPATH=/path/to/llama_avx2 python3 scripts/reference/generate_llamacpp.py --suffix avx2
Needs: llama-cpp-python, transformers, gguf, numpy.
"""

import argparse
import json
import os

import llama_cpp
import numpy as np
from llama_cpp import Llama
from transformers import AutoTokenizer

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "chatlm-cli", "tests", "data")
DEFAULT = os.path.expanduser("~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
MAX_ANSWER = 200
LONG = 48
TOP = 4
THREADS = 2

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Give me three tips for staying healthy."}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "What is 12 times 7?"}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "Explain what a neural network is in one sentence."}],
    [{"role": "system", "content": "You are a pirate. Answer in one short sentence."},
     {"role": "user", "content": "Where is the treasure?"}],
    [{"role": "user", "content": "Hi! My name is Ana."},
     {"role": "assistant", "content": "Hello Ana! How can I help you today?"},
     {"role": "user", "content": "What is my name?"}],
]


def greedy(llm, prompt_ids, stop_ids, extra):
    """Argmax decoding on llama.cpp's logits, stop ids ignored until `extra` tokens after the
    first one (or MAX_ANSWER tokens); returns (ids, per-step top TOP (id, logit))."""
    llm.reset()
    llm.eval(prompt_ids)
    ids, tops, first_stop = [], [], None
    while len(ids) < MAX_ANSWER and (first_stop is None or len(ids) < first_stop + 1 + extra):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        order = np.argsort(-logits, kind="stable")[:TOP]
        tok = int(order[0])
        ids.append(tok)
        tops.append([[int(i), float(logits[i])] for i in order])
        if tok in stop_ids and first_stop is None:
            first_stop = len(ids) - 1
        llm.eval([tok])
    return ids, tops


def through_stop(ids, stop_ids):
    for i, tok in enumerate(ids):
        if tok in stop_ids:
            return ids[:i + 1]
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=os.environ.get("CHATLM_SMOLLM2", DEFAULT))
    ap.add_argument("--suffix", default="", help="output generate_llamacpp_<quant>.<suffix>.json")
    args = ap.parse_args()
    path = args.model
    print(f"llama_cpp from {llama_cpp.__file__}")
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    llm = Llama(model_path=path, n_ctx=1024, n_threads=THREADS, n_batch=512, logits_all=True, verbose=False)
    # GGML_TYPE_F32 = 0 for the KV cache (llama.cpp's default is f16).
    llm32 = Llama(model_path=path, n_ctx=1024, n_threads=THREADS, n_batch=512, logits_all=True, verbose=False,
                  type_k=0, type_v=0)
    stop_ids = sorted({llm.token_eos(), tok.convert_tokens_to_ids("<|im_end|>"),
                       tok.convert_tokens_to_ids("<|endoftext|>")})
    cases = []
    for messages in CHATS:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
        cpp_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert cpp_ids == prompt_ids, f"llama.cpp tokenizes the prompt differently: {cpp_ids} vs {prompt_ids}"
        long_ids, long_tops = greedy(llm, prompt_ids, stop_ids, LONG)
        answer = through_stop(long_ids, stop_ids)
        answer_tops = long_tops
        answer32 = through_stop(greedy(llm32, prompt_ids, stop_ids, 0)[0], stop_ids)
        same32 = next((i for i, (a, b) in enumerate(zip(answer, answer32)) if a != b), None)
        finish = "stop" if answer and answer[-1] in stop_ids else "length"
        text_out = tok.decode(answer, skip_special_tokens=True)
        margin = answer_tops[0][0][1] - answer_tops[0][1][1]
        print(f"{messages[-1]['content']!r} -> {text_out!r} ({len(answer)} tokens, {finish}, first margin "
              f"{margin:.3f}; f32 KV cache diverges at {same32})")
        cases.append({
            "messages": messages,
            "prompt_ids": prompt_ids,
            "answer_ids": answer,
            "answer_text": text_out,
            "finish_reason": finish,
            "answer_ids_f32_kv": answer32,
            "long_ids": long_ids,
            "long_top": long_tops,
        })
    result = {
        "gguf": name,
        "llama_cpp_python": llama_cpp.__version__,
        # The build's SIMD decides llama.cpp's summation orders (see chatlm-model's ggml module).
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "threads": THREADS,
        "stop_ids": stop_ids,
        "max_answer": MAX_ANSWER,
        "cases": cases,
    }
    quant = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else "model"
    suffix = f".{args.suffix}" if args.suffix else ""
    out = os.path.join(DATA, f"generate_llamacpp_{quant}{suffix}.json")
    with open(out, "w") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
