#!/usr/bin/env python3
"""Batch-encode throughput: chatlm vs HF `tokenizers` (Python), same corpus, same threads.

    python3 scripts/bench/tokenizer.py [--threads 2] [--mb 12] [--tokenizers llama3,qwen2,llama2]

Builds a deterministic multilingual corpus of --mb megabytes (English prose, code, Korean,
Chinese, emoji, numbers; one text per line), then for each fixture tokenizer times
  * chatlm:  `chatlm tokenize --lines corpus --count --stats` (release build; encode time only)
  * Python:  tokenizers.Tokenizer.from_file(...).encode_batch(lines) and encode_batch_fast(lines)
with RAYON_NUM_THREADS / RAYON_RS_NUM_THREADS = --threads, best of --repeat runs each, and
checks both produced the same number of tokens. Prints a table with ratios.
"""
import argparse, json, os, pathlib, random, subprocess, sys, time

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("CHATLM_FIXTURES", ROOT.parent / "shared" / "fixtures"))

WORDS_EN = ("the of and to in is was for that with as on by at from his her they this which had not are but "
            "be have one all were we when there can an your more their has been would what will if about "
            "model token language training data chat assistant user system prompt answer question weather "
            "Seoul Paris capital France learning machine deep network generation template").split()
WORDS_KO = "오늘은 배가 너무 고프다 혼자 공부하는 머신러닝 딥러닝 안녕하세요 저는 인공지능 비서입니다 무엇을 도와드릴까요 날씨가 좋네요 서울의 수도는".split()
WORDS_ZH = "我们 今天 天气 很好 语言 模型 学习 机器 深度 网络 北京 上海 中国 人工智能 你好".split()
CODE = ["def f(x):", "    return x ** 2", "for i in range(10):", "if (a != b) { return -1; }", "print(json.dumps(obj))"]
EMOJI = "😀 😃 👍 🔥 ✨ 🇰🇷 ❤️".split()


def make_corpus(path, megabytes, seed=7):
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            kind = rng.random()
            n = rng.randint(5, 60)
            if kind < 0.55:
                words = [rng.choice(WORDS_EN) for _ in range(n)]
                words[0] = words[0].capitalize()
                line = " ".join(words) + rng.choice([".", "!", "?", ", 2024.", f" {rng.randint(0, 99999)}."])
            elif kind < 0.75:
                line = " ".join(rng.choice(WORDS_KO) for _ in range(n)) + "."
            elif kind < 0.85:
                line = "".join(rng.choice(WORDS_ZH) for _ in range(n)) + "。"
            elif kind < 0.95:
                line = "  ".join(rng.choice(CODE) for _ in range(n // 6 + 1))
            else:
                line = " ".join(rng.choice(WORDS_EN + EMOJI) for _ in range(n))
            f.write(line + "\n")
            size += len(line.encode()) + 1
    return size


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mb", type=float, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tokenizers", default="llama3,qwen2,llama2,gpt2")
    ap.add_argument("--chatlm", default=str(ROOT / "target/release/chatlm"))
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["RAYON_RS_NUM_THREADS"] = str(args.threads)  # the Python binding's variable
    import tokenizers

    corpus = pathlib.Path("/tmp/chatlm-bench-corpus.txt")
    size = make_corpus(corpus, args.mb)
    lines = corpus.read_text(encoding="utf-8").splitlines()
    print(f"corpus: {size / 1e6:.1f} MB, {len(lines)} lines; threads {args.threads}; "
          f"tokenizers {tokenizers.__version__}; best of {args.repeat}")
    print(f"{'tokenizer':<10} {'tokens':>10} {'chatlm MB/s':>12} {'py batch MB/s':>14} {'py fast MB/s':>13} "
          f"{'vs batch':>9} {'vs fast':>8}")
    rows = []
    for name in args.tokenizers.split(","):
        path = FIXTURES / "tokenizers" / name
        tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        py_s, enc = best(lambda: tok.encode_batch(lines, add_special_tokens=False), args.repeat)
        py_tokens = sum(len(e.ids) for e in enc)
        del enc
        fast_s, _ = best(lambda: tok.encode_batch_fast(lines, add_special_tokens=False), args.repeat)
        ours = []
        for _ in range(args.repeat):
            run = subprocess.run(
                [args.chatlm, "tokenize", "--tokenizer", str(path), "--no-special-tokens",
                 "--lines", str(corpus), "--count", "--stats"],
                capture_output=True, text=True, check=True)
            ours.append(json.loads(run.stderr.strip().splitlines()[-1]))
        stat = min(ours, key=lambda s: s["encode_s"])
        if stat["tokens"] != py_tokens:
            print(f"  WARNING {name}: token counts differ: chatlm {stat['tokens']} vs python {py_tokens}")
        mb = size / 1e6
        row = dict(tokenizer=name, tokens=py_tokens, chatlm=mb / stat["encode_s"], py_batch=mb / py_s,
                   py_fast=mb / fast_s)
        rows.append(row)
        print(f"{name:<10} {py_tokens:>10} {row['chatlm']:>12.1f} {row['py_batch']:>14.1f} {row['py_fast']:>13.1f} "
              f"{row['chatlm'] / row['py_batch']:>8.2f}x {row['chatlm'] / row['py_fast']:>7.2f}x")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
