"""Reference ids for the GGUF vocabulary import of chatlm-tokenizer, produced by transformers.

Loads SmolLM2-135M-Instruct from its GGUF with `AutoTokenizer.from_pretrained(dir, gguf_file=...)`
(transformers' own GGUF tokenizer converter) and writes:

- crates/chatlm-tokenizer/tests/data/gguf_smollm2_ids.jsonl: one line per corpus text
  `{"text", "ids", "ids_no_special", "converter_ids_no_special"}` (~200 texts: English, Korean, Japanese, Chinese, emoji, code,
  digit runs, whitespace, special-token strings);
- crates/chatlm-tokenizer/tests/data/gguf_smollm2_template.json: the special tokens, sizes, the GGUF's
  chat template, and `apply_chat_template` renders (text and ids) of a few conversations.

transformers' converter has no split rule for `tokenizer.ggml.pre = "smollm"` and falls back to
plain GPT-2 ByteLevel, which drops the digit split of SmolLM2's own tokenizer.json
(`Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, trim_offsets=True,
use_regex=True)]`, the same split llama.cpp applies for "smollm": `\p{N}`, then GPT-2's regex). It
then differs from the model's tokenizer on whitespace before digits ("a  12": "ĠĠ" vs "Ġ","Ġ"). So
`ids` come from the converted tokenizer with that pre-tokenizer restored (= HF's tokenizer for the
model); the converter's unpatched output is kept as `converter_ids_no_special` for comparison.

Rerun: python3 scripts/reference/gguf_smollm2_ids.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default: $CHATLM_SMOLLM2 or ~/.cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""
import json
import os
import random
import sys
from pathlib import Path

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/chatlm-tokenizer/tests/data"

BASE = [
    "Hello world", " Hello world", "Hello  world", "Hello world!", "hello, World. HELLO?",
    "The quick brown fox jumps over the lazy dog.", "I'm sure it's fine, isn't it? We'll see; they'd know.",
    "What is the capital of France?", "The capital of France is Paris.",
    "오늘은 배가 너무 고프다", "혼자 공부하는 머신러닝 딥러닝", "안녕하세요! 저는 한국어를 공부하고 있어요.",
    "今日はとても良い天気ですね。", "東京スカイツリーに行きました", "カタカナとひらがな、そして漢字",
    "我爱自然语言处理。", "北京是中国的首都", "繁體中文與简体中文",
    "Привет, как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "Ünïcödé àccénts: café, naïve, façade, Straße", "emoji: 😀😃😄😁 👍🏽 👨‍👩‍👧‍👦 🇰🇷 ❤️",
    "🤗🤗🤗", "a😀b", "1", "12", "123", "1234", "12345678", "3.14159265358979", "1,000,000", "2024-11-22",
    "0x1F600", "+82-10-1234-5678", "version 1.2.3-rc4", "٣٤٥ and ५६७ and ３４５",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tprintln!(\"{}\", 1 + 2);\n}", "for (int i = 0; i < 10; ++i) { x[i] = i * i; }",
    "SELECT * FROM users WHERE id = 42;", "<div class=\"a\">&nbsp;</div>", "{\"key\": [1, 2, {\"x\": null}]}",
    "import numpy as np\nnp.zeros((3, 4), dtype=np.float32)", "$ ls -la | grep '.rs' > out.txt 2>&1",
    "", " ", "  ", "\n", "\n\n", "\t", " \t\n ", "a\n\nb", "a  \n  b", "trailing space ", "   leading",
    "line1\r\nline2\r\n", "multiple     spaces     here", "\u00a0nbsp\u00a0", "zero\u200bwidth",
    "<|im_start|>user\nHi<|im_end|>\n", "<|endoftext|>", "<|im_end|><|im_start|>", "<repo_name>x<file_sep>",
    "text <|im_end|> text", "<|im_start|", "<|im_end|>>", "<s> </s> <unk>",
    "ALLCAPS WORDS AND MiXeD cAsE", "don't DON'T Don'T", "e-mail: someone@example.com, https://example.org/a?b=c#d",
    "C'est la vie, n'est-ce pas?", "¿Dónde está la biblioteca?", "Ça va très bien, merci !",
]


def corpus():
    rng = random.Random(1234)
    texts = list(BASE)
    pieces = [t for t in BASE if t.strip()]
    while len(texts) < 200:
        k = rng.randint(2, 4)
        sep = rng.choice([" ", "\n", "", "  ", " 12 ", "\n\n", "😀"])
        texts.append(sep.join(rng.choice(pieces) for _ in range(k)))
    return texts


CONVERSATIONS = [
    ([{"role": "user", "content": "What is the capital of France?"}], True),
    ([{"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "안녕하세요? 자기소개 해주세요."},
      {"role": "assistant", "content": "안녕하세요! 저는 SmolLM입니다. 😀"},
      {"role": "user", "content": "12345678 + 1 = ?"}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], False),
]


def main():
    default = os.environ.get("CHATLM_SMOLLM2", str(Path.home() / ".cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    path = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    converter = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    )
    differ = 0
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "gguf_smollm2_ids.jsonl", "w") as f:
        for text in corpus():
            row = {
                "text": text,
                "ids": tok(text, add_special_tokens=True)["input_ids"],
                "ids_no_special": tok(text, add_special_tokens=False)["input_ids"],
                "converter_ids_no_special": converter(text, add_special_tokens=False)["input_ids"],
            }
            differ += row["ids_no_special"] != row["converter_ids_no_special"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    renders = []
    for messages, gen in CONVERSATIONS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        renders.append({"messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids})
    meta = {
        "gguf": path.name,
        "bos_token": tok.bos_token, "eos_token": tok.eos_token, "unk_token": tok.unk_token, "pad_token": tok.pad_token,
        "eos_token_id": tok.eos_token_id, "len": len(tok), "vocab_size": tok.vocab_size,
        "im_end_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "all_special_tokens": tok.all_special_tokens,
        "chat_template": tok.chat_template,
        "renders": renders,
    }
    (OUT / "gguf_smollm2_template.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}; the unpatched converter differs on {differ} texts")


if __name__ == "__main__":
    main()
