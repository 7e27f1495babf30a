#!/usr/bin/env python3
"""Reference ids and assistant masks for chatlm-template's tokenize glue, made by transformers.

usage: scripts/reference/template_tokenize.py [FIXTURES]  (default $CHATLM_FIXTURES or ../shared/fixtures)

Writes crates/chatlm-template/tests/data/template_tokenize.json: for each case, the fixture tokenizer,
where the template comes from ("tokenizer", or a template of chat_templates/templates.json, or inline
text), the messages and flags, and transformers' `apply_chat_template` outputs: the text
(tokenize=False), the ids (tokenize=True, so no second BOS), and for {% generation %} templates the
assistant mask (return_assistant_tokens_mask=True).
"""

import json
import os
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

transformers.utils.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CHATLM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
OUT = ROOT / "crates" / "chatlm-template" / "tests" / "data" / "template_tokenize.json"

# The Korean system+user conversation of the Llama 3 tutorial (allganize/Llama-3-Alpha-Ko-8B-Instruct,
# whose tokenizer is Llama 3's): 45 ids with add_generation_prompt=False.
KOREAN = [
    {"role": "system", "content": "당신은 인공지능 비서입니다. 묻는 말에 친절하고 정확하게 답변하세요."},
    {"role": "user", "content": "은행의 기준 금리에 대해서 설명해줘"},
]
# Two published variants of that conversation, with the ids their notebooks printed from
# transformers; the script checks transformers still gives them before writing anything.
KOREAN_ASSISTANT = [
    {"role": "system", "content": "당신은 인공지능 어시스턴트입니다. 묻는 말에 친절하고 정확하게 답변하세요."},
    {"role": "user", "content": "은행의 기준 금리에 대해서 설명해줘"},
]
KOREAN_PLEASE = [
    {"role": "system", "content": "당신은 인공지능 비서입니다. 묻는 말에 친절하고 정확하게 답변하세요."},
    {"role": "user", "content": "은행의 기준 금리에 대해서 설명해주세요"},
]
PUBLISHED = {
    # github.com/jin-63/nlp, a chat-template notebook (comment under `apply_chat_template(messages)`).
    "llama3_korean_assistant_published": [
        128000, 128006, 9125, 128007, 271, 65895, 83628, 34804, 59777, 103896, 67119, 101139, 30426, 25941,
        95252, 29726, 80052, 13, 100570, 119, 16969, 101264, 19954, 108280, 104834, 101360, 127923, 102893,
        111964, 92245, 13, 128009, 128006, 882, 128007, 271, 34804, 101066, 21028, 111902, 104193, 111833,
        122115, 114942, 34983, 59269, 246, 128009,
    ],
    # github.com/lsjdg/TIL_ML, dl/notebooks/05_Large Language Models/06. LLaMA-3.ipynb, cell 10's output.
    "llama3_korean_please_published": [
        128000, 128006, 9125, 128007, 271, 65895, 83628, 34804, 59777, 103896, 67119, 75086, 27796, 80052, 13,
        100570, 119, 16969, 101264, 19954, 108280, 104834, 101360, 127923, 102893, 111964, 92245, 13, 128009,
        128006, 882, 128007, 271, 34804, 101066, 21028, 111902, 104193, 111833, 122115, 114942, 34983, 92769,
        128009,
    ],
}
TRAIN = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "오늘은 배가 너무 고프다"},
    {"role": "assistant", "content": "그럼 따뜻한 비빔밥 어떠세요? 🍚"},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]
SIMPLE_GENERATION = (
    "{% for m in messages %}{% if m.role == 'assistant' %}<|assistant|>\n{% generation %}{{ m.content }}{{ eos_token }}"
    "{% endgeneration %}\n{% else %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CASES = [
    ("llama3_korean_tutorial", "llama3", {"tokenizer": True}, KOREAN, False),
    ("llama3_korean_tutorial_gen", "llama3", {"tokenizer": True}, KOREAN, True),
    ("llama3_korean_assistant_published", "llama3", {"tokenizer": True}, KOREAN_ASSISTANT, False),
    ("llama3_korean_please_published", "llama3", {"tokenizer": True}, KOREAN_PLEASE, False),
    ("llama3_trl_training_masks", "llama3", {"fixture_template": "trl-llama3-training"}, TRAIN, False),
    ("qwen2_trl_qwen3_training_masks", "qwen2", {"fixture_template": "trl-qwen3-training"}, TRAIN, False),
    ("phi3_own_template", "phi3", {"tokenizer": True}, TRAIN, True),
    ("phi3_spm_generation_masks", "phi3", {"inline": SIMPLE_GENERATION}, TRAIN, False),
    ("gpt2_generation_masks", "gpt2", {"inline": SIMPLE_GENERATION}, TRAIN, False),
]


def main() -> int:
    templates = {t["name"]: t for t in json.loads((FIX / "chat_templates" / "templates.json").read_text("utf-8"))}
    out = []
    for name, tok_name, source, messages, agp in CASES:
        tok = AutoTokenizer.from_pretrained(str(FIX / "tokenizers" / tok_name))
        if "fixture_template" in source:
            template = templates[source["fixture_template"]]["chat_template"]
        elif "inline" in source:
            template = source["inline"]
        else:
            template = None
        kw = dict(add_generation_prompt=agp, chat_template=template)
        text = tok.apply_chat_template(messages, tokenize=False, **kw)
        enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)
        case = {
            "name": name,
            "tokenizer": tok_name,
            "template": source,
            "messages": messages,
            "add_generation_prompt": agp,
            "text": text,
            "ids": list(enc["input_ids"]),
        }
        if name in PUBLISHED:
            assert case["ids"] == PUBLISHED[name], f"{name}: transformers no longer gives the published ids"
            case["published_ids"] = PUBLISHED[name]
        if name == "llama3_korean_tutorial":
            assert len(case["ids"]) == 45, f"{name}: {len(case['ids'])} ids, the tutorial has 45"
        if template is not None and "{% generation %}" in template:
            masked = tok.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kw
            )
            assert list(masked["input_ids"]) == case["ids"]
            case["assistant_masks"] = list(masked["assistant_masks"])
        out.append(case)
        print(f"{name}: {len(case['ids'])} ids" + (f", {sum(case.get('assistant_masks', []))} masked" if "assistant_masks" in case else ""))
    doc = {"transformers": transformers.__version__, "cases": out}
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
