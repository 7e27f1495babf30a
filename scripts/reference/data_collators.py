"""Reference batches from transformers' DataCollatorWithPadding / DataCollatorForLanguageModeling /
DataCollatorWithFlattening and TRL 1.x's DataCollatorForLanguageModeling, on the llama3 and phi3
fixture tokenizers. Writes crates/chatlm-data/tests/data/collators.json.

Run: python3 scripts/reference/data_collators.py
"""
import copy

from transformers import AutoTokenizer, DataCollatorForLanguageModeling, DataCollatorWithFlattening, DataCollatorWithPadding
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TrlLm

from data_common import to_py, tok_path, tokenizer_info, versions, write

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "def add(a, b):\n    return a + b",
]


def rows_for(tok):
    rows = []
    for t in TEXTS:
        ids = tok(t)["input_ids"] + [tok.eos_token_id]  # a real EOS at the end: the PAD == EOS trap
        rows.append({"input_ids": ids})
    return rows


def tok_with(name, options):
    tok = AutoTokenizer.from_pretrained(tok_path(name))
    if "padding_side" in options:
        tok.padding_side = options["padding_side"]
    if "pad_token_id" in options:
        tok.pad_token = tok.convert_ids_to_tokens(options["pad_token_id"])
    return tok


def hf_kwargs(options):
    return {k: v for k, v in options.items() if k not in ("padding_side", "pad_token_id")}


def main():
    cases = []

    def add(name, tok_name, collator, options, rows):
        tok = tok_with(tok_name, options)
        rows_in = copy.deepcopy(rows)
        if collator == "padding":
            out = DataCollatorWithPadding(tok, **hf_kwargs(options))(copy.deepcopy(rows))
        elif collator == "lm":
            out = DataCollatorForLanguageModeling(tok, mlm=False, **hf_kwargs(options))(copy.deepcopy(rows))
        elif collator == "flatten":
            out = DataCollatorWithFlattening(**options)(copy.deepcopy(rows))
        elif collator == "trl-lm":
            kw = dict(options)
            kw.setdefault("pad_token_id", tok.pad_token_id)
            out = TrlLm(**kw)(copy.deepcopy(rows))
        else:
            raise ValueError(collator)
        cases.append({
            "name": name, "tokenizer": tok_name, "tokenizer_info": tokenizer_info(AutoTokenizer.from_pretrained(tok_path(tok_name))),
            "collator": collator, "options": options, "rows": rows_in, "expected": to_py(dict(out)),
        })

    for name in ("llama3", "phi3"):
        base = AutoTokenizer.from_pretrained(tok_path(name))
        rows = rows_for(base)
        unk_or_other = base.unk_token_id if base.unk_token_id is not None else base.convert_tokens_to_ids("<|reserved_special_token_0|>")
        add(f"{name}/padding", name, "padding", {}, rows)
        add(f"{name}/padding-left-mult8", name, "padding", {"padding_side": "left", "pad_to_multiple_of": 8}, rows)
        add(f"{name}/padding-right", name, "padding", {"padding_side": "right"}, rows)
        add(f"{name}/lm-pad-eq-eos", name, "lm", {"padding_side": "right"}, rows)
        add(f"{name}/lm-mult8-left", name, "lm", {"padding_side": "left", "pad_to_multiple_of": 8}, rows)
        add(f"{name}/lm-distinct-pad", name, "lm", {"padding_side": "right", "pad_token_id": unk_or_other}, rows)
        add(f"{name}/trl-lm", name, "trl-lm", {}, rows)
        labelled = [dict(r, labels=[-100] * 3 + r["input_ids"][3:]) for r in rows]
        add(f"{name}/trl-lm-labels-mult8", name, "trl-lm", {"pad_to_multiple_of": 8}, labelled)
        add(f"{name}/trl-lm-padding-free", name, "trl-lm", {"padding_free": True}, labelled)
        add(f"{name}/trl-lm-position-ids", name, "trl-lm", {"return_position_ids": True}, rows)
        packed = [
            {"input_ids": rows[0]["input_ids"] + rows[1]["input_ids"], "seq_lengths": [len(rows[0]["input_ids"]), len(rows[1]["input_ids"])]},
            {"input_ids": rows[2]["input_ids"], "seq_lengths": [len(rows[2]["input_ids"])]},
        ]
        add(f"{name}/trl-lm-packed-padding-free", name, "trl-lm", {"padding_free": True}, packed)
        add(f"{name}/trl-lm-packed-position-ids", name, "trl-lm", {"return_position_ids": True, "pad_to_multiple_of": 4}, packed)
        add(f"{name}/flatten", name, "flatten", {}, rows)
        add(f"{name}/flatten-labels-kwargs", name, "flatten",
            {"return_flash_attn_kwargs": True, "return_seq_idx": True, "separator_id": -100}, labelled)
        add(f"{name}/flatten-no-pos-sep", name, "flatten", {"return_position_ids": False, "separator_id": 0, "position_ids_start": 2}, rows)
    write("collators.json", {"versions": versions(), "cases": cases})


if __name__ == "__main__":
    main()
