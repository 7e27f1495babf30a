"""Reference batches from TRL's DataCollatorForCompletionOnlyLM, which was removed from TRL after 0.19:
run it with the last release that has it, in its own venv:

    python3 -m venv --system-site-packages /tmp/trl-old
    /tmp/trl-old/bin/pip install --no-deps 'trl==0.19.1'
    /tmp/trl-old/bin/python scripts/reference/data_completion_only.py

Covers the tutorial examples: '### Question/### Answer' single turn, the multi-turn <|user|>/<|assistant|>
dummy chat with instruction + response templates, the Llama 2 "### Assistant:" context-tokenization trap
and its fix by ids, a row without the template (warning, fully masked), PAD == EOS, padding_free.
Writes crates/chatlm-data/tests/data/completion_only.json.
"""
import copy
import warnings

import trl
from transformers import AutoTokenizer
from trl import DataCollatorForCompletionOnlyLM

from data_common import to_py, tok_path, tokenizer_info, versions, write

assert trl.__version__.startswith("0.19"), f"needs trl 0.19.x (has {trl.__version__})"

QA = [
    "### Question: What is the capital of France?\n ### Answer: Paris.",
    "### Question: 한국의 수도는 어디인가요?\n ### Answer: 서울입니다.",
    "### Question: No answer marker here, just text.",
]
CHAT = [
    "<|user|>\nHi there!\n<|assistant|>\nHello, how can I help?\n<|user|>\nTell me a joke.\n<|assistant|>\nWhy did the chicken cross the road?",
    "<|assistant|>\nI start the conversation.\n<|user|>\nOk.\n<|assistant|>\nGood.",
    "<|user|>\nOnly a question, no reply",
]
LLAMA2 = [
    "### User: Hello\n\n### Assistant: Hi, how can I help you?",
    "### User: What is 2+2?\n\n### Assistant: It is 4.\n\n### User: Thanks\n\n### Assistant: You're welcome.",
]


def main():
    cases = []

    def add(name, tok_name, options, texts, add_eos=True):
        tok = AutoTokenizer.from_pretrained(tok_path(tok_name))
        info = tokenizer_info(tok)
        if "pad_token_id" in options:
            tok.pad_token = tok.convert_ids_to_tokens(options["pad_token_id"])
        if "padding_side" in options:
            tok.padding_side = options["padding_side"]
        kw = {k: v for k, v in options.items() if k not in ("pad_token_id", "padding_side")}
        rows = []
        for t in texts:
            ids = tok(t)["input_ids"]
            if add_eos:
                ids = ids + [tok.eos_token_id]
            rows.append({"input_ids": ids})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coll = DataCollatorForCompletionOnlyLM(tokenizer=tok, mlm=False, **kw)
            out = coll(copy.deepcopy(rows))
        msgs = [str(w.message) for w in caught if "Could not find" in str(w.message)]
        kinds = ["instruction" if "instruction key" in m else "response" for m in msgs]
        cases.append({
            "name": name, "tokenizer": tok_name, "tokenizer_info": info, "collator": "completion-only",
            "options": options, "texts": texts, "rows": rows, "expected": to_py(dict(out)),
            "response_token_ids": coll.response_token_ids,
            "instruction_token_ids": getattr(coll, "instruction_token_ids", None),
            "warnings": kinds,
        })

    for name in ("llama3", "phi3"):
        add(f"{name}/qa-response-string", name, {"response_template": " ### Answer:", "padding_side": "right"}, QA)
        add(f"{name}/qa-left-mult8", name, {"response_template": " ### Answer:", "padding_side": "left", "pad_to_multiple_of": 8}, QA)
        add(f"{name}/chat-instruction-response", name,
            {"response_template": "<|assistant|>", "instruction_template": "<|user|>", "padding_side": "right"}, CHAT)
        add(f"{name}/qa-padding-free", name, {"response_template": " ### Answer:", "padding_free": True, "padding_side": "right"}, QA[:2])
        add(f"{name}/chat-padding-free", name,
            {"response_template": "<|assistant|>", "instruction_template": "<|user|>", "padding_free": True, "padding_side": "right"}, CHAT)
        add(f"{name}/qa-ignore-index", name, {"response_template": " ### Answer:", "ignore_index": -1, "padding_side": "right"}, QA)
    # distinct PAD: EOS stays trained
    add("llama3/qa-distinct-pad", "llama3", {"response_template": " ### Answer:", "padding_side": "right",
                                             "pad_token_id": 128002}, QA)
    add("phi3/qa-unk-pad", "phi3", {"response_template": " ### Answer:", "padding_side": "right", "pad_token_id": 0}, QA)

    # The Llama 2 trap: "### Assistant:" alone tokenizes differently than after "\n" in context...
    l2 = AutoTokenizer.from_pretrained(tok_path("llama2"))
    eos = l2.eos_token_id
    add("llama2/trap-string", "llama2", {"response_template": "### Assistant:", "pad_token_id": eos, "padding_side": "right"}, LLAMA2)
    # ...fixed by encoding it with context and dropping the context tokens, then passing ids.
    ids = l2.encode("\n### Assistant:", add_special_tokens=False)[2:]
    add("llama2/fix-ids", "llama2", {"response_template": ids, "pad_token_id": eos, "padding_side": "right"}, LLAMA2)
    user_ids = l2.encode("\n### User:", add_special_tokens=False)[2:]
    add("llama2/fix-ids-multiturn", "llama2",
        {"response_template": ids, "instruction_template": user_ids, "pad_token_id": 0, "padding_side": "right"}, LLAMA2)
    write("completion_only.json", {"versions": versions(), "cases": cases})


if __name__ == "__main__":
    main()
