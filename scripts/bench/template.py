#!/usr/bin/env python3
"""Chat-template render rate: transformers `apply_chat_template` vs `chatlm template --jsonl`, one run.

usage: scripts/bench/template.py [--chatlm target/release/chatlm] [--render-rate target/release/examples/render_rate]
                                 [--repeat 20] [--runs 3] [--threads 1] [FIXTURES]

The workload is every successful case of chat_templates/golden.jsonl (40 real templates, ~950
conversations: short chats, multi-turn, tools, documents, Korean/emoji), repeated `--repeat` times.
transformers renders them with `tokenizer.apply_chat_template(..., tokenize=False)` on a stub
tokenizer carrying each template and its special tokens (templates compiled once and cached by
transformers itself, as in real use). chatlm renders the same requests the way a data pipeline
uses it: one `chatlm template --jsonl --template T.jinja` process per template, fed that template's
request lines (process start, JSON parsing, template compilation and output all included in the
timed wall clock). A second chatlm figure sends everything as ONE stream with the template embedded
in every line (a worst case: each line then carries up to 17 KB of template JSON to parse). All
outputs are checked equal to transformers' before the rates are printed.

A third chatlm figure is the library in process, like transformers' own call: the `render_rate`
example (`cargo build --release -p chatlm-template --example render_rate`) renders the same cases
with `ChatTemplate::render`, after checking every text against transformers' golden text. It runs
once per run, right after that run's transformers pass (one timed trial each), and the best run
counts: sampled over the same seconds as transformers' runs. (This shared host has slow spells of
seconds to minutes that slow both sides; one render_rate process alone spans a fraction of a second
and would land in one spell, while the transformers runs spread over ~10 s.)

Each side is timed `--runs` times, the runs of the two sides interleaved, and the best run of each is
reported: on a shared machine the fastest run is the least disturbed one, and both sides get the
same treatment (transformers' template cache is warm from the second run on, as in any long job).
"""

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from transformers.utils import chat_template_utils

ROOT = Path(__file__).resolve().parents[2]
transformers.utils.logging.set_verbosity_error()


class _FrozenDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime(2025, 3, 9, 14, 5, 0)


chat_template_utils.datetime = _FrozenDatetime


def stub_tokenizer(entry):
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<stub>": 0}, unk_token="<stub>")),
        **{k: entry[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if entry.get(k) is not None},
    )
    ct = entry["chat_template"]
    tok.chat_template = {t["name"]: t["template"] for t in ct} if isinstance(ct, list) else ct
    return tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chatlm", default=str(ROOT / "target" / "release" / "chatlm"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="chatlm worker threads (transformers renders on one)")
    ap.add_argument("--render-rate", default=str(ROOT / "target" / "release" / "examples" / "render_rate"))
    ap.add_argument("--runs", type=int, default=3, help="timed runs per side; the best is reported")
    ap.add_argument("fixtures", nargs="?", default=os.environ.get("CHATLM_FIXTURES", str(ROOT.parent / "shared" / "fixtures")))
    args = ap.parse_args()
    fix = Path(args.fixtures) / "chat_templates"
    entries = {e["name"]: e for e in json.loads((fix / "templates.json").read_text("utf-8"))}
    golden = [json.loads(l) for l in (fix / "golden.jsonl").read_text("utf-8").splitlines()]
    cases = [g for g in golden if "expected" in g] * args.repeat
    toks = {name: stub_tokenizer(e) for name, e in entries.items()}

    def run_transformers():
        t0 = time.perf_counter()
        out = []
        for g in cases:
            out.append(
                toks[g["template"]].apply_chat_template(
                    g["messages"], tools=g["tools"], documents=g["documents"], add_generation_prompt=g["add_generation_prompt"],
                    continue_final_message=g["continue_final_message"], tokenize=False, **g["extra_kwargs"],
                )
            )
        return time.perf_counter() - t0, out

    def request(g, with_template):
        e = entries[g["template"]]
        special = {k: e[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if e.get(k) is not None}
        r = {
            "messages": g["messages"], "tools": g["tools"], "documents": g["documents"],
            "add_generation_prompt": g["add_generation_prompt"], "continue_final_message": g["continue_final_message"],
            "special_tokens": special, "kwargs": g["extra_kwargs"], "now": g["now"],
        }
        if with_template:
            r["chat_template"] = e["chat_template"]
        return json.dumps(r, ensure_ascii=False)

    def run_chatlm(lines, extra):
        with tempfile.TemporaryFile("w+b") as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
            f.seek(0)
            t0 = time.perf_counter()
            proc = subprocess.run([args.chatlm, "template", "--jsonl", "--threads", str(args.threads), *extra], stdin=f, capture_output=True, check=True)
            took = time.perf_counter() - t0
        return took, [json.loads(l) for l in proc.stdout.decode("utf-8").splitlines()]

    def render_rate_once():
        """renders/s of one render_rate trial over the cases x `--repeat`, or None without the binary."""
        if not Path(args.render_rate).is_file():
            return None
        proc = subprocess.run(
            [args.render_rate, "--passes", str(args.repeat), "--trials", "1", str(args.fixtures)],
            capture_output=True, check=True, text=True,
        )
        found = re.search(r"([\d.]+) renders/s", proc.stdout)
        return float(found.group(1)) if found else None

    # chatlm, one process per template (the selected template of a named list, as transformers picks it)
    groups = {}
    for i, g in enumerate(cases):
        source = toks[g["template"]].get_chat_template(None, g["tools"])
        groups.setdefault(source, []).append(i)
    stream = [request(g, True) for g in cases]
    load_start = os.getloadavg()[0]
    py_s = rs_s = one_s = float("inf")
    in_process = None
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for k, (source, idx) in enumerate(groups.items()):
            path = Path(tmp) / f"t{k}.jinja"
            path.write_text(source, encoding="utf-8")
            inputs.append((path, idx, [request(cases[i], False) for i in idx]))
        for _ in range(max(1, args.runs)):
            took, py_out = run_transformers()
            py_s = min(py_s, took)
            in_process = max(in_process or 0.0, render_rate_once() or 0.0) or None
            rs_out = [None] * len(cases)
            total = 0.0
            for path, idx, lines in inputs:
                took, answers = run_chatlm(lines, ["--template", str(path)])
                total += took
                for i, a in zip(idx, answers):
                    rs_out[i] = a
            rs_s = min(rs_s, total)
            took, one_out = run_chatlm(stream, [])
            one_s = min(one_s, took)
    for outs in (rs_out, one_out):
        mismatches = sum(1 for p, r in zip(py_out, outs) if r is None or r.get("text") != p)
        if len(outs) != len(py_out) or mismatches:
            print(f"OUTPUT MISMATCH: {mismatches} of {len(py_out)} renders differ", file=sys.stderr)
            return 1

    n = len(cases)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; transformers {transformers.__version__}; chatlm threads: {args.threads}")
    print(f"workload: {n} renders ({n // args.repeat} golden cases x {args.repeat}), {len(entries)} templates; outputs identical; best of {max(1, args.runs)} runs per side")
    print(f"transformers apply_chat_template: {py_s:.3f} s  {n / py_s:,.0f} renders/s")
    print(f"chatlm template --jsonl:          {rs_s:.3f} s  {n / rs_s:,.0f} renders/s ({len(groups)} processes, one per template, startup included)")
    print(f"  one stream, template in each line: {one_s:.3f} s  {n / one_s:,.0f} renders/s")
    print(f"speedup: {py_s / rs_s:.1f}x (one stream with embedded templates: {py_s / one_s:.1f}x)")
    if in_process:
        print(f"chatlm library in process (render_rate, same cases): {in_process:,.0f} renders/s, speedup {in_process * py_s / n:.1f}x")
    else:
        print(f"(no in-process figure: build {args.render_rate} with cargo build --release -p chatlm-template --example render_rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
