#!/usr/bin/env python3
"""Reference string escapes for chatlm-template's `tojson` and `repr` writers, made by Python itself.

usage: scripts/reference/template_escape.py

Writes crates/chatlm-template/src/escape_cases.json: for each text, `json.dumps(text)` (non-ASCII kept,
transformers' default), `json.dumps(text, ensure_ascii=True)` and `repr(text)`. The texts cover every
escape class: all ASCII control characters, DEL, both quotes alone and together, backslash, printable
non-ASCII (two and three UTF-8 bytes), characters beyond the BMP (surrogate pairs with ensure_ascii),
and the non-printable non-ASCII classes `repr` escapes as \\x, \\u and \\U; each class at the start, in
the middle and at the end of texts shorter and longer than a machine word.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1].parent
OUT = ROOT / "crates" / "chatlm-template" / "src" / "escape_cases.json"

SPECIALS = (
    [chr(c) for c in range(0x20)]
    + ["\x7f", '"', "'", "\\", "é", "ß", "中", "€", "😀", "𝄞"]
    # repr's non-printable non-ASCII: C1 controls, NBSP, soft hyphen, separators, BOM, private use.
    + ["\x80", "\x9f", "\xa0", "\xad", "\u2028", "\u2029", "\u200b", "\ufeff", "\ue000", "\U000f0000"]
)

texts = ["", "a", "plain ascii text, longer than one word", "it's", 'say "hi"', "it's \"both\""]
for s in SPECIALS:
    for fill in ["", "ab", "abcdefghijk"]:
        texts += [s + fill, fill + s, fill + s + fill]
texts += [
    "line one\nline two\ttabbed\r\n",
    'a\\b "c" \'d\' \x00\x1f\x7f',
    "mixed é中😀 and \\u00e9 literal",
    "{\"type\": \"function\", \"name\": \"get_weather\"}",
    "".join(SPECIALS),
]
texts = list(dict.fromkeys(texts))

cases = [
    {"text": t, "json": json.dumps(t, ensure_ascii=False), "json_ascii": json.dumps(t), "repr": repr(t)} for t in texts
]
OUT.write_text("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
print(f"{len(cases)} cases -> {OUT}")
