"""Generate the synthetic conversational benchmark dataset: N rows of `messages` (1-4 turns, optional system
prompt), mixed English and Korean, deterministic for a seed.

    python3 scripts/bench/data_gen.py OUT.jsonl [--rows 50000] [--seed 0]
"""
import argparse
import json
import random

EN = ("the model learns to answer questions about data preparation tokenizers packing and masks while "
      "keeping conversations short and helpful for every user who asks something new today").split()
KO = ("모델은 데이터 준비 토크나이저 패킹 마스크에 대한 질문에 답하는 법을 배웁니다 대화는 짧고 "
      "도움이 되어야 하며 오늘 새로운 것을 묻는 모든 사용자에게 친절하게 설명합니다").split()
SYSTEM = ["You are a helpful assistant.", "당신은 친절한 도우미입니다.", "Answer briefly."]


def sentence(rng, lo, hi):
    words = KO if rng.random() < 0.4 else EN
    n = rng.randint(lo, hi)
    s = " ".join(rng.choice(words) for _ in range(n))
    return s[0].upper() + s[1:] + rng.choice([".", "?", "!", "."])


def text(rng, lo, hi):
    return " ".join(sentence(rng, 4, 14) for _ in range(rng.randint(lo, hi)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with open(a.out, "w") as f:
        for _ in range(a.rows):
            msgs = []
            if rng.random() < 0.3:
                msgs.append({"role": "system", "content": rng.choice(SYSTEM)})
            for _ in range(rng.randint(1, 4)):
                msgs.append({"role": "user", "content": text(rng, 1, 3)})
                msgs.append({"role": "assistant", "content": text(rng, 1, 8)})
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
