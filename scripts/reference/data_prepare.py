"""End-to-end SFT dataset preparation with TRL's own `SFTTrainer._prepare_dataset` (TRL 1.x) on the llama3
and phi3 fixture tokenizers: text, prompt/completion (the yoda-style dataset), conversational
prompt/completion, messages and ShareGPT conversations; with and without truncation and packing.
Writes the inputs (tests/data/prepare_inputs/*.jsonl) and the expected rows (tests/data/prepare.json).

Run: python3 scripts/reference/data_prepare.py
"""
import json
from types import SimpleNamespace

from datasets import Dataset
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

from data_common import OUT, tok_path, versions, write

INPUTS = {
    "text": [
        {"text": "The quick brown fox jumps over the lazy dog."},
        {"text": "다람쥐 헌 쳇바퀴에 타고파. 한국어 문장도 들어 있습니다."},
        {"text": "Already ends with EOS<|end_of_text|>"},
        {"text": "def f(x):\n    return x * 2  # code"},
        {"text": "Short."},
    ],
    "yoda": [
        {"prompt": "The sky is blue.", "completion": " Blue, the sky is."},
        {"prompt": "I am learning to code.", "completion": " Learning to code, I am."},
        {"prompt": "You must be patient.", "completion": " Patient, you must be."},
        {"prompt": "날씨가 좋다.", "completion": " 좋다, 날씨가."},
    ],
    "conv_pc": [
        {"prompt": [{"role": "user", "content": "What color is the sky?"}],
         "completion": [{"role": "assistant", "content": "It is blue."}]},
        {"prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"}],
         "completion": [{"role": "assistant", "content": "4"}]},
        {"prompt": [{"role": "user", "content": "한국의 수도는?"}],
         "completion": [{"role": "assistant", "content": "서울입니다."}]},
    ],
    "messages": [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]},
        {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a joke."},
                      {"role": "assistant", "content": "No."}, {"role": "user", "content": "Please?"},
                      {"role": "assistant", "content": "Fine: knock knock."}]},
        {"messages": [{"role": "user", "content": "안녕하세요"}, {"role": "assistant", "content": "안녕하세요! 무엇을 도와드릴까요?"}]},
        {"messages": [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "1 2 3 4 5"}]},
    ],
    "sharegpt": [
        {"conversations": [{"from": "user", "value": "What is Rust?"}, {"from": "assistant", "value": "A systems language."}]},
        {"conversations": [{"from": "user", "value": "And Python?"}, {"from": "assistant", "value": "A scripting language."}]},
    ],
}

CONFIGS = {
    "plain": dict(max_length=None, packing=False),
    "trunc12": dict(max_length=12, packing=False, truncation_mode="keep_start"),
    "trunc12-end": dict(max_length=12, packing=False, truncation_mode="keep_end"),
    "bfd32": dict(max_length=32, packing=True, packing_strategy="bfd"),
    "bfd-split24": dict(max_length=24, packing=True, packing_strategy="bfd_split"),
    "wrapped20": dict(max_length=20, packing=True, packing_strategy="wrapped"),
    "all-loss": dict(max_length=None, packing=False, completion_only_loss=False),
}


# The stock Llama 3 template with the assistant turns wrapped in {% generation %}: renders byte-identically, so
# the assistant mask from these spans is also what chatlm's prefix-rendering fallback must find on the stock one.
LLAMA3_GENERATION = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def prepare(tok, rows, cfg):
    cfg = dict(cfg)
    template = cfg.pop("template", None)
    args = SFTConfig(output_dir="/tmp/chatlm-ref-sft", report_to=[], use_cpu=True, bf16=False, **cfg)
    fake = SimpleNamespace(
        _tokenizer=tok,
        completion_only_loss=("prompt" in rows[0]) if args.completion_only_loss is None else args.completion_only_loss,
        chat_template=LLAMA3_GENERATION if template else None,
    )
    ds = SFTTrainer._prepare_dataset(fake, Dataset.from_list(rows), tok, args, args.packing, None, "train")
    keep = [c for c in ("input_ids", "labels", "seq_lengths") if c in ds.column_names]
    return ds.select_columns(keep).to_dict()


def main():
    (OUT / "prepare_inputs").mkdir(parents=True, exist_ok=True)
    for name, rows in INPUTS.items():
        with open(OUT / "prepare_inputs" / f"{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    cases = []
    for tname in ("llama3", "phi3"):
        tok = AutoTokenizer.from_pretrained(tok_path(tname))
        for dname, rows in INPUTS.items():
            for cname, cfg in CONFIGS.items():
                if cname == "all-loss" and "prompt" not in rows[0]:
                    continue
                out = prepare(tok, rows, cfg)
                cases.append({"name": f"{tname}/{dname}/{cname}", "tokenizer": tname, "input": f"{dname}.jsonl",
                              "config": cfg, "expected": out})
    (OUT / "prepare_inputs" / "llama3_generation.jinja").write_text(LLAMA3_GENERATION)
    tok = AutoTokenizer.from_pretrained(tok_path("llama3"))
    assert tok.apply_chat_template(INPUTS["messages"][1]["messages"], tokenize=False) == tok.apply_chat_template(
        INPUTS["messages"][1]["messages"], tokenize=False, chat_template=LLAMA3_GENERATION)
    for dname in ("messages", "sharegpt", "conv_pc"):
        for cname, cfg in (("assistant", dict(max_length=None, assistant_only_loss=True, template="llama3_generation.jinja")),
                           ("assistant-bfd64", dict(max_length=64, packing=True, packing_strategy="bfd",
                                                    assistant_only_loss=True, template="llama3_generation.jinja"))):
            out = prepare(tok, INPUTS[dname], cfg)
            cases.append({"name": f"llama3/{dname}/{cname}", "tokenizer": "llama3", "input": f"{dname}.jsonl",
                          "config": cfg, "expected": out})
    write("prepare.json", {"versions": versions(), "cases": cases})


if __name__ == "__main__":
    main()
