#!/usr/bin/env python3
"""Serving speed, `chatlm serve` vs llama.cpp's `llama-server`, side by side in one run.

    python3 scripts/bench/server.py [--model PATH] [--chatlm-bin PATH]
        [--llama-server-bin PATH] [--clients 1,4,16] [--requests-per-client 4]
        [--threads 2] [--parallel 16] [--ctx-size 2048] [--max-tokens 64] [--json]

Each server runs in turn on the same GGUF with the same worker threads and the same slots:

    chatlm serve --model M --port P --threads T --parallel S --ctx-size C
    llama-server -m M --port P -t T -tb T -np S -c S*C --cont-batching

(llama-server splits `-c` over its slots, so both get C tokens per slot.) After a warm-up,
for each client count N, N client threads each send `--requests-per-client` streaming
`/v1/chat/completions` requests one after the other (`stream: true`,
`stream_options.include_usage`, `temperature: 0`, `max_tokens`). Every request of a run has
its own prompt (a short user question; the same sequence for both servers), so no whole
prompt is ever served from a prompt cache; the chat template's shared prefix may be.

chatlm's API has no `ignore_eos`, so neither server gets it: the questions ask for long
answers so that most run to `max_tokens`, and throughput counts the tokens each server
actually generated (its `usage.completion_tokens`). Per run:

  * TTFT: time from sending the request to the first non-empty content delta (p50, p95);
  * aggregate tok/s: all generated tokens / wall time from the first send to the last end;
  * stream tok/s: per request (tokens - 1) / (last token - first token), p50.

The client (Python threads, stdlib only) shares the CPUs with the server; it does little
work per token, and the same for both servers.
"""
import argparse
import http.client
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TASKS = [
    "Write a short story about {}.",
    "Explain in detail how {} works.",
    "Describe {} to a ten-year-old, in several paragraphs.",
    "List ten interesting facts about {}, with one sentence on each.",
]
TOPICS = [
    "a lighthouse keeper", "volcanoes", "the moon", "a lost cat", "bread baking", "rainbows",
    "the ocean", "a robot gardener", "bicycles", "honey bees", "thunderstorms", "a library",
    "mountains", "coffee", "an old clock", "trains", "snow", "a dragon", "the internet",
    "forests", "a music box", "the desert", "penguins", "a paper boat", "electricity",
    "a small village", "stars", "chess", "a tea party", "rivers",
]
PROMPTS = [task.format(topic) for topic in TOPICS for task in TASKS]  # 120 distinct
WARMUP = ["Hello!", "What is your name?", "Say something nice.", "Count to five."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_chatlm_bin() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
    return str(Path(target) / "release" / "chatlm")


def default_llama_bin() -> str:
    return os.environ.get("LLAMA_SERVER") or shutil.which("llama-server") or "/work/llama-build/bin/llama-server"


def default_model() -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-smollm2.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Server:
    """One server process, started, waited for (`/health` 200), stopped."""

    def __init__(self, name, argv, port, log_path, nice):
        self.name, self.argv, self.port, self.log_path, self.nice = name, argv, port, log_path, nice
        self.proc = None

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        pre = (lambda: os.nice(self.nice)) if self.nice else None
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=pre)
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_healthy(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after 120 s; log: {self.log_path}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def stream_request(port: int, prompt: str, max_tokens: int, timeout: float) -> dict:
    """One streaming chat completion; times and counts of what came back."""
    body = json.dumps({
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    rec = {"prompt": prompt, "error": None, "ttft": None, "t_first": None, "text": "",
           "content_chunks": 0, "completion_tokens": None, "prompt_tokens": None, "finish": None}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    rec["t_send"] = time.perf_counter()
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            rec["error"] = f"HTTP {resp.status}: {resp.read()[:300]!r}"
            return rec
        parts = []
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                rec["error"] = f"stream error: {chunk['error']}"
                break
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    if rec["t_first"] is None:
                        rec["t_first"] = now
                    rec["t_last"] = now
                    rec["content_chunks"] += 1
                    parts.append(content)
                if choice.get("finish_reason"):
                    rec["finish"] = choice["finish_reason"]
            usage = chunk.get("usage")
            if usage:
                rec["completion_tokens"] = usage.get("completion_tokens")
                rec["prompt_tokens"] = usage.get("prompt_tokens")
        rec["text"] = "".join(parts)
    except (OSError, http.client.HTTPException, ValueError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        rec["t_end"] = time.perf_counter()
        conn.close()
    if rec["t_first"] is not None:
        rec["ttft"] = rec["t_first"] - rec["t_send"]
    if rec["completion_tokens"] is None and rec["error"] is None:
        rec["error"] = "no usage chunk"
    return rec


def run_level(port, clients, per_client, prompts, max_tokens, timeout):
    """`clients` threads, each sending `per_client` requests in turn; all records."""
    records = [None] * (clients * per_client)
    barrier = threading.Barrier(clients)

    def client(c):
        barrier.wait()
        for j in range(per_client):
            k = c * per_client + j
            records[k] = stream_request(port, prompts[k], max_tokens, timeout)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)]  # nearest rank


def summarize(records):
    ok = [r for r in records if r["error"] is None]
    tokens = sum(r["completion_tokens"] for r in ok)
    wall = max(r["t_end"] for r in records) - min(r["t_send"] for r in records)
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    streams = [(r["completion_tokens"] - 1) / (r["t_last"] - r["t_first"])
               for r in ok if r["t_first"] is not None and r["completion_tokens"] > 1 and r["t_last"] > r["t_first"]]
    finishes = {}
    for r in ok:
        finishes[r["finish"]] = finishes.get(r["finish"], 0) + 1
    return {
        "requests": len(records),
        "errors": [r["error"] for r in records if r["error"] is not None],
        "completion_tokens": tokens,
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in ok),
        "content_chunks": sum(r["content_chunks"] for r in ok),
        "finish_reasons": finishes,
        "wall_s": wall,
        "tok_s": tokens / wall if wall > 0 else float("nan"),
        "ttft_p50_ms": pct(ttfts, 50) * 1e3,
        "ttft_p95_ms": pct(ttfts, 95) * 1e3,
        "stream_tok_s_p50": pct(streams, 50),
    }


def bench_server(name, server, args, levels, prompts_per_level, log):
    with server:
        log(f"{name}: up on port {server.port}; warming up")
        for p in WARMUP[:2]:
            r = stream_request(server.port, p, 16, args.timeout)
            if r["error"]:
                raise RuntimeError(f"{name} warm-up failed: {r['error']}")
        warm = run_level(server.port, max(levels), 1, [WARMUP[i % len(WARMUP)] for i in range(max(levels))], 16, args.timeout)
        bad = [r["error"] for r in warm if r["error"]]
        if bad:
            raise RuntimeError(f"{name} concurrent warm-up failed: {bad[0]}")
        results = {}
        for n in levels:
            cpu0, client0 = proc_cpu_s(server.proc.pid), self_cpu_s()
            recs = run_level(server.port, n, args.requests_per_client, prompts_per_level[n], args.max_tokens, args.timeout)
            s = summarize(recs)
            s["server_cpu_s"] = proc_cpu_s(server.proc.pid) - cpu0
            s["client_cpu_s"] = self_cpu_s() - client0
            log(f"{name}: {n:>2} clients: {s['completion_tokens']} tokens in {s['wall_s']:.2f} s = {s['tok_s']:.1f} tok/s, "
                f"TTFT p50 {s['ttft_p50_ms']:.0f} ms, p95 {s['ttft_p95_ms']:.0f} ms, finish {s['finish_reasons']}, "
                f"CPU s: server {s['server_cpu_s']:.1f}, client {s['client_cpu_s']:.1f}"
                + (f", {len(s['errors'])} errors: {s['errors'][0]}" if s["errors"] else ""))
            results[n] = {"summary": s, "records": recs}
        if server.proc.poll() is not None:
            log(f"{name}: exited during the run with {server.proc.returncode}")
        return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file (default: the SmolLM2-135M-Instruct Q4_1 of scripts/fetch-smollm2.sh)")
    ap.add_argument("--chatlm-bin", default=default_chatlm_bin())
    ap.add_argument("--llama-server-bin", default=default_llama_bin())
    ap.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16, help="slots of each server")
    ap.add_argument("--ctx-size", type=int, default=2048, help="context tokens per slot")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--servers", default="chatlm,llama.cpp", help="which servers, in this order")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the server processes (negative needs root)")
    ap.add_argument("--timeout", type=float, default=600, help="per-request socket timeout, seconds")
    ap.add_argument("--log-dir", default="/tmp", help="where the servers' logs go")
    ap.add_argument("--json", action="store_true", help="print the results as JSON (no table)")
    args = ap.parse_args()

    levels = [int(x) for x in args.clients.split(",") if x]
    model = args.model or default_model()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    need = args.requests_per_client * sum(levels)
    if need > len(PROMPTS):
        sys.exit(f"{need} requests per server but only {len(PROMPTS)} distinct prompts; lower --requests-per-client")
    # Every request of a run gets its own prompt; both servers get the same ones.
    prompts_per_level, at = {}, 0
    for n in levels:
        count = n * args.requests_per_client
        prompts_per_level[n] = PROMPTS[at:at + count]
        at += count

    log = (lambda m: print(m, file=sys.stderr, flush=True))
    load_start = os.getloadavg()
    results = {}
    for name in servers:
        port = free_port()
        logfile = os.path.join(args.log_dir, f"bench-server-{name}.log")
        if name == "chatlm":
            argv = [args.chatlm_bin, "serve", "--model", model, "--port", str(port), "--threads", str(args.threads),
                    "--parallel", str(args.parallel), "--ctx-size", str(args.ctx_size)]
        elif name == "llama.cpp":
            argv = [args.llama_server_bin, "-m", model, "--port", str(port), "-t", str(args.threads), "-tb", str(args.threads),
                    "-np", str(args.parallel), "-c", str(args.parallel * args.ctx_size), "--cont-batching", "--no-webui"]
        else:
            sys.exit(f"unknown server {name!r} (chatlm, llama.cpp)")
        log(f"{name}: {' '.join(argv)}  (log: {logfile})")
        results[name] = bench_server(name, Server(name, argv, port, logfile, args.nice), args, levels, prompts_per_level, log)
    load_end = os.getloadavg()

    # Same greedy answers? (A check on the work being comparable, not a benchmark figure.)
    same = None
    if "chatlm" in results and "llama.cpp" in results:
        pairs = [(a, b) for n in levels for a, b in zip(results["chatlm"][n]["records"], results["llama.cpp"][n]["records"])
                 if a["error"] is None and b["error"] is None]
        same = {"identical_text": sum(a["text"] == b["text"] for a, b in pairs),
                "same_prompt_tokens": sum(a["prompt_tokens"] == b["prompt_tokens"] for a, b in pairs),
                "pairs": len(pairs)}

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    out = {
        "cpu": cpu, "cpus": os.cpu_count(), "model": model, "threads": args.threads, "parallel": args.parallel, "ctx_size": args.ctx_size,
        "max_tokens": args.max_tokens, "requests_per_client": args.requests_per_client,
        "loadavg_start": load_start, "loadavg_end": load_end, "comparison": same,
        "results": {name: {str(n): r[n]["summary"] for n in levels} for name, r in results.items()},
        "requests": {name: {str(n): [{k: rec[k] for k in ("prompt", "prompt_tokens", "completion_tokens", "finish", "ttft", "error", "text")}
                                     for rec in r[n]["records"]] for n in levels} for name, r in results.items()},
    }
    if args.json:
        print(json.dumps(out, indent=2))
    # With --json the table goes to stderr, so stdout stays one JSON document.
    table(out, levels, servers, args, sys.stderr if args.json else sys.stdout)


def table(out, levels, servers, args, f):
    res = out["results"]
    p = lambda *a: print(*a, file=f)
    p(f"model {Path(out['model']).name}, {args.threads} threads, {args.parallel} slots x {args.ctx_size} ctx, "
      f"max_tokens {args.max_tokens}, {args.requests_per_client} requests per client, "
      f"load average {out['loadavg_start'][0]:.2f} -> {out['loadavg_end'][0]:.2f}")
    p()
    p("| clients | server | requests | tokens | TTFT p50 ms | TTFT p95 ms | aggregate tok/s | stream tok/s p50 |")
    p("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in levels:
        for name in servers:
            s = res[name][str(n)]
            err = f" ({len(s['errors'])} errors)" if s["errors"] else ""
            p(f"| {n} | {name} | {s['requests']}{err} | {s['completion_tokens']} | {s['ttft_p50_ms']:.0f} | "
              f"{s['ttft_p95_ms']:.0f} | {s['tok_s']:.1f} | {s['stream_tok_s_p50']:.1f} |")
        if "chatlm" in res and "llama.cpp" in res:
            a, b = res["chatlm"][str(n)], res["llama.cpp"][str(n)]
            r = lambda k: a[k] / b[k] if b[k] else float("nan")
            p(f"| {n} | ratio chatlm/llama.cpp | | {r('completion_tokens'):.2f}× | {r('ttft_p50_ms'):.2f}× | "
              f"{r('ttft_p95_ms'):.2f}× | **{r('tok_s'):.2f}×** | {r('stream_tok_s_p50'):.2f}× |")
    same = out["comparison"]
    if same:
        p()
        p("(ratios: tok/s above 1 and TTFT below 1 favour chatlm)")
        p(f"greedy answers identical in {same['identical_text']}/{same['pairs']} requests; "
          f"same prompt token count in {same['same_prompt_tokens']}/{same['pairs']}")

if __name__ == "__main__":
    main()
