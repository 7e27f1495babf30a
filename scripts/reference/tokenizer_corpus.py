#!/usr/bin/env python3
"""Expected ids for every fixture tokenizer on a multilingual corpus, from transformers.

Writes crates/chatlm-tokenizer/tests/data/corpus.json: the corpus texts once, then per tokenizer
the ids with and without special tokens, `tokenize()` strings, both decodes, and the tokenizer's
metadata (len, vocab_size, special map, ...). Run: python3 scripts/reference/tokenizer_corpus.py
(needs transformers; reads $CHATLM_FIXTURES, default ../shared/fixtures).
"""
import json, os, pathlib, random

import tokenizers
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("CHATLM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
OUT = ROOT / "crates/chatlm-tokenizer/tests/data/corpus.json"

SEEDS = [
    "오늘은 배가 너무 고프다",
    "혼자 공부하는 머신러닝 딥러닝",
    "Let's tokenize this sentence!",
    "### Assistant:",
    "### Assistant: Paris is the capital.",
    "\n### Assistant:",
]
FIXED = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t\n ", "Hello", " Hello", "Hello world", "  leading spaces",
    "trailing spaces   ", "Hello, world! How are you today?", "I'm fine, aren't you? We'll see; they've gone.",
    "The year 2024 has 366 days; 3.14159 ≈ π; 1,000,000 and 12345678901234567890.",
    "def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))",
    "if (a != b && c >= d) { return -1; } // C-style",
    "URL: https://example.com/path?q=1&r=ä#frag email: a.b@c.de",
    "大家好，我是一个语言模型。今天天气很好！",
    "日本語のテキストです。カタカナとひらがな、漢字。",
    "Привет, как дела? Всё хорошо.",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "Ελληνικά: Γειά σου Κόσμε",
    "Tiếng Việt có dấu: Xin chào thế giới",
    "Emoji: 😀😃😄 👩‍👩‍👧‍👦 🇰🇷 ❤️ 🤖",
    "Mixed 한국어 and English 섞어서 써요 123 😀",
    "안녕하세요! 저는 인공지능 비서입니다. 무엇을 도와드릴까요?",
    "세종대왕은 훈민정음을 창제하였다.",
    "Ünïcödé àccénts: café, naïve, Zürich, São Paulo, Ångström",
    "NFKC: ﬁ ﬂ ① ｆｕｌｌｗｉｄｔｈ ㎏ ™ Å",
    "Zero\u200bwidth\u200djoiner\ufeffBOM",
    "Control \x01\x02 chars and \u00a0 nbsp",
    "<|begin_of_text|>raw special in text<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>",
    "<s>[INST] hello [/INST]</s>",
    "<|user|>\nHi<|end|>\n<|assistant|>",
    "<|endoftext|> after",
    "Repeated!!!!!!!!!! ??????? ....... -------",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "    indented\n        more\n\ttab",
    "Line one.\r\nLine two.\rLine three.",
    "'quoted' \"double\" `back` «guillemets» „low“",
    "$100 + €50 = £? ¥ ₩1000",
    "CamelCaseWords and snake_case_words and kebab-case-words",
    "The quick brown fox jumps over the lazy dog. " * 3,
]


def random_texts(n, seed=1234):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz     ,.!?'\n0123456789",
        "가나다라마바사아자차카타파하 은는이가을를 에서 고프다 배가 너무 ",
        "的一是不了人我在有他这为之大来以个中上们 。，",
        "😀🎉👍🏽🔥✨ ",
        "àéîõüçñß ",
    ]
    out = []
    for _ in range(n):
        length = rng.randint(1, 120)
        pool = "".join(rng.sample(pools, rng.randint(1, len(pools))))
        out.append("".join(rng.choice(pool) for _ in range(length)))
    return out


def load(name):
    d = FIXTURES / "tokenizers" / name
    if (d / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(d))
    return PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))


def main():
    texts = SEEDS + FIXED + random_texts(60)
    result = {"transformers": transformers.__version__, "texts": texts, "tokenizers": {}}
    for name in ["llama3", "llama2", "phi3", "opt", "gpt2", "qwen2", "kobart"]:
        tok = load(name)
        # the `tokenizers` library on tokenizer.json as is (what transformers 4 and llama.cpp's
        # test vectors follow; transformers 5 rebuilds some classes' pipelines)
        raw = tokenizers.Tokenizer.from_file(str(FIXTURES / "tokenizers" / name / "tokenizer.json"))
        rows = []
        for text in texts:
            with_special = tok.encode(text, add_special_tokens=True)
            rows.append({
                "ids": with_special,
                "ids_no_special": tok.encode(text, add_special_tokens=False),
                "raw_ids_no_special": raw.encode(text, add_special_tokens=False).ids,
                "tokens": tok.tokenize(text),
                "decoded": tok.decode(with_special, skip_special_tokens=False),
                "decoded_skip": tok.decode(with_special, skip_special_tokens=True),
            })
        special = {k: str(v) for k, v in tok.special_tokens_map.items() if k != "additional_special_tokens"}
        result["tokenizers"][name] = {
            "len": len(tok),
            "vocab_size": tok.vocab_size,
            "special_tokens": special,
            "all_special_ids": sorted(tok.all_special_ids),
            "padding_side": tok.padding_side,
            "model_max_length": tok.model_max_length if tok.model_max_length < 1e18 else None,
            "rows": rows,
        }
        print(name, len(tok), tok.vocab_size)
    OUT.write_text(json.dumps(result, ensure_ascii=False) + "\n")
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
