#!/usr/bin/env python3
"""Model speed, chatlm vs llama.cpp (llama-cpp-python), side by side in one run.

    python3 scripts/bench/model.py [--models A.gguf B.gguf ...] [--threads 2]
        [--prompt-tokens 512] [--gen-tokens 128] [--repeats 3]

For each GGUF, both engines run in their own child process (so peak RSS is per engine),
alternating, `--repeats` times; the best run of each is reported. Both get the same prompt
ids (a fixed formula, no tokenizer involved), the same thread count, a greedy decode of
`--gen-tokens` tokens after a `--prompt-tokens` prefill, logits of the last position only.

llama.cpp's times are its own internal counters (`llama_perf_context`: no Python overhead);
chatlm's are wall-clock around its forward calls, greedy argmax included.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path("/root/.cache/chatlm/models")
DEFAULT_MODELS = [MODELS / f"SmolLM2-135M-Instruct.{q}.gguf" for q in ("Q4_1", "Q8_0", "F16")]


def prompt(count: int, vocab: int) -> list:
    """Same formula as crates/chatlm-model/examples/model_bench.rs."""
    return [min(1000 + (i * 7919) % 20000, vocab - 1) for i in range(count)]


def llama_child(model: str, threads: int, prompt_tokens: int, gen_tokens: int) -> None:
    import llama_cpp
    import numpy as np

    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=model,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=prompt_tokens + gen_tokens + 16,
        n_batch=prompt_tokens,
        n_ubatch=prompt_tokens,
        logits_all=False,
        verbose=False,
    )
    load_s = time.perf_counter() - start
    ids = prompt(prompt_tokens, llm.n_vocab())
    llama_cpp.llama_perf_context_reset(llm.ctx)
    vocab = llm.n_vocab()

    def last_logits():
        # Only the last position has logits (logits_all=False); eval() does not copy them.
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))

    llm.eval(ids)
    for _ in range(gen_tokens):
        llm.eval([int(np.argmax(last_logits()))])
    perf = llama_cpp.llama_perf_context(llm.ctx)
    print(json.dumps({
        "load_s": load_s,
        "prefill_tok_s": perf.n_p_eval / (perf.t_p_eval_ms / 1000),
        "decode_tok_s": perf.n_eval / (perf.t_eval_ms / 1000),
        "n_p_eval": perf.n_p_eval,
        "n_eval": perf.n_eval,
    }))


NICE = 0


def measured(cmd: list, env: dict) -> dict:
    # wait4 on a Popen child needs the pid un-reaped: run it by hand.
    pid = os.fork()
    if pid == 0:
        if NICE:
            os.nice(NICE)
        os.environ.clear()
        os.environ.update(env)
        fd = os.open(f"/tmp/chatlm-bench-{os.getpid()}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    path = Path(f"/tmp/chatlm-bench-{pid}.json")
    text = path.read_text()
    path.unlink()
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed (status {status})")
    result = json.loads([l for l in text.splitlines() if l.startswith("{")][-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def ours_binary(build: bool) -> Path:
    if not build:
        return ROOT / "target" / "release" / "examples" / "model_bench"
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "chatlm-model", "--example", "model_bench"],
        cwd=ROOT, check=True,
    )
    return ROOT / "target" / "release" / "examples" / "model_bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of both engines' processes (negative: ahead of other load on a shared machine)")
    ap.add_argument("--no-build", action="store_true", help="use the model_bench binary already built")
    ap.add_argument("--llama-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global NICE
    NICE = args.nice
    if args.llama_child:
        llama_child(args.llama_child, args.threads, args.prompt_tokens, args.gen_tokens)
        return

    binary = ours_binary(not args.no_build)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    shape = [str(args.prompt_tokens), str(args.gen_tokens), str(args.threads)]
    print(f"threads={args.threads} prompt={args.prompt_tokens} gen={args.gen_tokens} repeats={args.repeats} "
          f"nice={args.nice} load={os.getloadavg()[0]:.2f}")
    header = f"{'model':<34} {'engine':<9} {'prefill tok/s':>13} {'decode tok/s':>12} {'peak RSS MiB':>12}"
    rows = []
    for model in args.models:
        runs = {"llama.cpp": [], "chatlm": []}
        for _ in range(args.repeats):
            runs["llama.cpp"].append(measured(
                [sys.executable, __file__, "--llama-child", str(model), "--threads", str(args.threads),
                 "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens)], env))
            runs["chatlm"].append(measured([str(binary), str(model), *shape], env))
        best = {
            engine: {
                "prefill_tok_s": max(r["prefill_tok_s"] for r in rs),
                "decode_tok_s": max(r["decode_tok_s"] for r in rs),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            }
            for engine, rs in runs.items()
        }
        rows.append((model.name, best))
    print(header)
    for name, best in rows:
        for engine, b in best.items():
            print(f"{name:<34} {engine:<9} {b['prefill_tok_s']:>13.1f} {b['decode_tok_s']:>12.1f} {b['peak_rss_mib']:>12.1f}")
        l, c = best["llama.cpp"], best["chatlm"]
        print(f"{name:<34} {'ratio':<9} {c['prefill_tok_s'] / l['prefill_tok_s']:>12.2f}x "
              f"{c['decode_tok_s'] / l['decode_tok_s']:>11.2f}x {c['peak_rss_mib'] / l['peak_rss_mib']:>11.2f}x")
    print(json.dumps({name: best for name, best in rows}))


if __name__ == "__main__":
    main()
