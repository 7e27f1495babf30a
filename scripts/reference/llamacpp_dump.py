"""Dump llama.cpp's intermediate tensors (every graph node) for SmolLM2 runs, to compare chatlm op by op.

llama.cpp is driven through llama-cpp-python exactly as generate_llamacpp.py does (same Llama
settings, prompt rendered by transformers' chat template, prompt evaluated as one batch, then greedy
single-token steps). A ggml scheduler eval callback (`cb_eval` in llama_context_params) sees every
graph node; for each one we record its metadata and copy its data out of host memory.

Fusion: the CPU backend fuses RMS_NORM + MUL (see ggml_cpu_try_fuse_ops) only when both nodes are
computed in the same graph view. Asking for every node makes the scheduler compute nodes one by one,
which silently switches to the unfused kernel, so by default the callback declines RMS_NORM nodes
(their data is then not captured: `captured: false`) to keep llama.cpp's real numerics. `--no-fuse`
observes every node (the brief's "ask=True for all"), at the cost of the unfused rms_norm path.
Either way the script reruns the same tokens without a callback and reports whether the logits are
bit-identical, so a dump is known to match an ordinary llama.cpp run.

Output (DIR, default /tmp/llamacpp_dump):
  ubatch_{k}/index.json      nodes in graph order: name, op, type, ne, nb, op_params, srcs, file
  ubatch_{k}/NNNN_name.npy   node data: float32 (F32), float16 (F16), int32/int64 (I32/I64), uint8 raw bytes
                             (quantized/other types); logical shape (ne3, ne2, ne1, ne0), strides
                             resolved; leaf inputs (inp_*, masks, KV cache) are saved as `leaf_*.npy`
  graph_ubatch{0,1}.txt      compact graph listing (also printed)
  run.json                   prompt ids, greedy tokens, checks
  final_logits.npy           logits after the last step (float32)
ubatch 0 is the prompt, 1..N the decode steps.

    python3 scripts/reference/llamacpp_dump.py [--model PATH] [--chat N] [--steps N] [--out DIR] [--no-fuse]
Needs: llama-cpp-python, transformers, gguf, numpy.
"""

import argparse
import ctypes
import json
import os
import re
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate_llamacpp import CHATS, DEFAULT, THREADS  # noqa: E402

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor from ggml/include/ggml.h (llama-cpp-python 0.3.36's vendored ggml)."""
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


class Ggml:
    """The few ggml-base functions we need for names and sizes."""

    def __init__(self):
        libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        self.lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
        for fn, res in [("ggml_op_desc", ctypes.c_char_p), ("ggml_op_name", ctypes.c_char_p),
                        ("ggml_type_name", ctypes.c_char_p), ("ggml_nbytes", ctypes.c_size_t),
                        ("ggml_tensor_overhead", ctypes.c_size_t)]:
            getattr(self.lib, fn).restype = res
        self.lib.ggml_op_desc.argtypes = [ctypes.c_void_p]
        self.lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        self.lib.ggml_op_name.argtypes = [ctypes.c_int]
        self.lib.ggml_type_name.argtypes = [ctypes.c_int]
        # ggml_tensor_overhead() = sizeof(ggml_object) (32) + sizeof(ggml_tensor): a layout check.
        overhead = self.lib.ggml_tensor_overhead()
        assert overhead == 32 + ctypes.sizeof(GgmlTensor), \
            f"struct ggml_tensor layout mismatch: overhead {overhead}, ctypes size {ctypes.sizeof(GgmlTensor)}"
        self.rms_norm = next(i for i in range(200) if self.lib.ggml_op_name(i) == b"RMS_NORM")

    def op(self, ptr):
        return self.lib.ggml_op_desc(ptr).decode()

    def type_name(self, t):
        return self.lib.ggml_type_name(t).decode()


NP_TYPES = {"f32": np.float32, "f16": np.float16, "i32": np.int32, "i64": np.int64}


def read_tensor(ggml, ptr, t):
    """Copy a (possibly strided) tensor out of host memory; shape (ne3, ne2, ne1, ne0)."""
    ne = list(t.ne)
    nb = list(t.nb)
    tname = ggml.type_name(t.type)
    if not t.data or any(n == 0 for n in ne):
        return None
    if tname in NP_TYPES:
        dtype = np.dtype(NP_TYPES[tname])
        span = sum((n - 1) * s for n, s in zip(ne, nb)) + dtype.itemsize
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * span).from_address(t.data))
        flat = raw.view(dtype) if span % dtype.itemsize == 0 else \
            np.frombuffer(raw.tobytes() + b"\0" * (-span % dtype.itemsize), dtype=dtype)
        view = np.lib.stride_tricks.as_strided(flat, shape=ne[::-1], strides=nb[::-1])
        return np.array(view, copy=True)
    # Quantized (block) types: raw bytes of the tensor as laid out (ggml_nbytes covers the strides).
    size = ggml.lib.ggml_nbytes(ptr)
    return np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(t.data)).copy()


def safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "unnamed"


class Dumper:
    """State shared with the eval callback: one list of nodes per ubatch."""

    def __init__(self, ggml, out, fuse):
        self.ggml, self.out, self.fuse = ggml, out, fuse
        self.ubatch = -1
        self.nodes = []
        self.seen = {}  # tensor pointer -> name, per ubatch (nodes and saved leaves)
        self.enabled = True
        self.error = None
        # Keep the ctypes callback alive for as long as the context may call it.
        self.cfunc = llama_cpp.ggml_backend_sched_eval_callback(self._callback)

    def start(self, k):
        self.flush()
        self.ubatch, self.nodes, self.seen = k, [], {}
        os.makedirs(os.path.join(self.out, f"ubatch_{k}"), exist_ok=True)

    def _callback(self, ptr, ask, _user):
        try:
            if not self.enabled:
                return not ask  # decline every node; never stop the graph
            t = GgmlTensor.from_address(ptr)
            if ask:
                want = not (self.fuse and t.op == self.ggml.rms_norm)
                if not want:
                    self._record(ptr, t, captured=False)
                return want
            self._record(ptr, t, captured=True)
            return True
        except Exception as e:  # an exception cannot cross the C boundary: remember it, stop the graph
            self.error = e
            return False

    def _meta(self, ptr, t):
        return {
            "name": t.name.decode(errors="replace"),
            "op": self.ggml.op(ptr),
            "op_id": int(t.op),
            "type": self.ggml.type_name(t.type),
            "ne": [int(x) for x in t.ne],
            "nb": [int(x) for x in t.nb],
            "op_params_i32": [int(x) for x in t.op_params[:8]],
            "op_params_f32": [float(x) for x in np.array(t.op_params[:8], dtype=np.int32).view(np.float32)],
            "flags": int(t.flags),
            "view_src": self.seen.get(t.view_src) if t.view_src else None,
            "view_offs": int(t.view_offs),
            "src": [GgmlTensor.from_address(s).name.decode(errors="replace") for s in t.src if s],
        }

    def _record(self, ptr, t, captured):
        meta = self._meta(ptr, t)
        idx = len(self.nodes)
        meta["index"] = idx
        meta["captured"] = captured
        meta["file"] = None
        ubdir = os.path.join(self.out, f"ubatch_{self.ubatch}")
        # Leaf sources (graph inputs, KV cache buffers) never reach the callback themselves; save the
        # non-weight ones the first time a node uses them (their state at that point of the graph).
        leaves = []
        for s in t.src:
            if not s or s in self.seen:
                continue
            st = GgmlTensor.from_address(s)
            sname = st.name.decode(errors="replace")
            if st.op != 0 or sname.endswith(".weight") or sname.endswith(".bias"):
                continue  # not a leaf (op NONE), or a model parameter
            self.seen[s] = sname
            lmeta = self._meta(s, st)
            data = read_tensor(self.ggml, s, st)
            if data is not None:
                lmeta["file"] = f"leaf_{idx:04d}_{safe(sname)}.npy"
                np.save(os.path.join(ubdir, lmeta["file"]), data)
            leaves.append(lmeta)
        meta["leaves"] = leaves
        self.seen[ptr] = meta["name"]
        if captured:
            data = read_tensor(self.ggml, ptr, t)
            if data is not None:
                meta["file"] = f"{idx:04d}_{safe(meta['name'])}.npy"
                np.save(os.path.join(ubdir, meta["file"]), data)
        self.nodes.append(meta)

    def flush(self):
        if self.ubatch < 0:
            return
        with open(os.path.join(self.out, f"ubatch_{self.ubatch}", "index.json"), "w") as f:
            json.dump({"ubatch": self.ubatch, "nodes": self.nodes}, f, indent=1)


def listing(nodes):
    lines = []
    for n in nodes:
        shape = "x".join(str(x) for x in n["ne"])
        mark = "" if n["captured"] else "  (not captured: fused)"
        extra = ""
        if n["leaves"]:
            extra = "  leaves: " + ", ".join(f"{l['name']}[{l['type']} {'x'.join(map(str, l['ne']))}]"
                                             for l in n["leaves"])
        lines.append(f"{n['index']:4d} {n['name']:<28} {n['op']:<14} {n['type']:<5} {shape:<18} "
                     f"<- {', '.join(n['src'])}{mark}{extra}")
    return "\n".join(lines)


def make_llama(path, dumper):
    """Llama as in generate_llamacpp.py; with a dumper, cb_eval is set on the context params.

    Llama.__init__ builds its llama_context_params from llama_context_default_params() and creates
    the context right away without exposing cb_eval, so the defaults function is wrapped for the
    duration of the constructor to return params that carry our callback."""
    if dumper is None:
        return Llama(model_path=path, n_ctx=1024, n_threads=THREADS, n_batch=512, logits_all=True, verbose=False)
    orig = llama_cpp.llama_cpp.llama_context_default_params

    def with_callback():
        p = orig()
        p.cb_eval = dumper.cfunc
        p.cb_eval_user_data = None
        return p

    llama_cpp.llama_cpp.llama_context_default_params = with_callback
    try:
        llm = Llama(model_path=path, n_ctx=1024, n_threads=THREADS, n_batch=512, logits_all=True, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_context_default_params = orig
    llm._chatlm_dumper = dumper  # the context holds a raw pointer to dumper.cfunc
    return llm


def run(llm, prompt_ids, steps, dumper=None):
    """Prompt in one batch, then `steps` greedy steps; returns (tokens, [logits per ubatch])."""
    llm.reset()
    if dumper:
        dumper.start(0)
    llm.eval(prompt_ids)
    if dumper and dumper.error:
        raise dumper.error
    logits = [np.array(llm.scores[:llm.n_tokens], dtype=np.float32)]
    toks = []
    for k in range(1, steps + 1):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        toks.append(tok)
        if dumper:
            dumper.start(k)
        llm.eval([tok])
        if dumper and dumper.error:
            raise dumper.error
        logits.append(np.array(llm.scores[llm.n_tokens - 1:llm.n_tokens], dtype=np.float32))
    if dumper:
        dumper.flush()
    return toks, logits


def check_embd(path, nodes, ubdir, prompt_ids):
    """The token embedding lookup (GET_ROWS of token_embd.weight, named `embd` in this llama.cpp, `inp_embd`
    in others) must equal the token_embd rows of the prompt ids, dequantized by the gguf package."""
    import gguf
    reader = gguf.GGUFReader(path)
    w = next(t for t in reader.tensors if t.name == "token_embd.weight")
    rows = gguf.quants.dequantize(w.data, w.tensor_type)
    want = np.asarray(rows, dtype=np.float32)[prompt_ids]
    node = next((n for n in nodes if n["op"] == "GET_ROWS" and n["src"][:1] == ["token_embd.weight"]
                 and n["file"]), None)
    if node is None:
        return {"inp_embd": "not captured"}
    got = np.load(os.path.join(ubdir, node["file"])).reshape(len(prompt_ids), -1)
    same = np.array_equal(got.view(np.uint32), want.view(np.uint32))
    return {"token_embd_type": w.tensor_type.name, f"{node['name']}_equals_dequantized_rows": bool(same)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.environ.get("CHATLM_SMOLLM2", DEFAULT))
    ap.add_argument("--chat", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="/tmp/llamacpp_dump")
    ap.add_argument("--no-fuse", action="store_true", help="observe every node (disables rms_norm+mul fusion)")
    args = ap.parse_args()

    from transformers import AutoTokenizer
    folder, name = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    text = tok.apply_chat_template(CHATS[args.chat], add_generation_prompt=True, tokenize=False)
    prompt_ids = tok(text, add_special_tokens=False)["input_ids"]

    os.makedirs(args.out, exist_ok=True)
    dumper = Dumper(Ggml(), args.out, fuse=not args.no_fuse)
    llm = make_llama(args.model, dumper)
    cpp_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    assert cpp_ids == prompt_ids, f"llama.cpp tokenizes the prompt differently: {cpp_ids} vs {prompt_ids}"
    toks, logits = run(llm, prompt_ids, args.steps, dumper)
    dumper.enabled = False

    # Checks: result_output of each ubatch equals llama.cpp's logits; the callback changed nothing.
    checks = {}
    for k, lg in enumerate(logits):
        idx = json.load(open(os.path.join(args.out, f"ubatch_{k}", "index.json")))["nodes"]
        out = next((n for n in idx if n["name"] == "result_output" and n["file"]), None)
        if out is None:
            checks[f"result_output_{k}"] = "not captured"
            continue
        got = np.load(os.path.join(args.out, f"ubatch_{k}", out["file"])).reshape(-1, lg.shape[-1])
        checks[f"result_output_{k}_equals_scores"] = bool(np.array_equal(got, lg))
    idx0 = json.load(open(os.path.join(args.out, "ubatch_0", "index.json")))["nodes"]
    checks.update(check_embd(args.model, idx0, os.path.join(args.out, "ubatch_0"), prompt_ids))
    plain = make_llama(args.model, None)
    ptoks, plogits = run(plain, prompt_ids, args.steps)
    checks["same_tokens_without_callback"] = ptoks == toks
    checks["logits_bitexact_without_callback"] = all(np.array_equal(a, b) for a, b in zip(logits, plogits))
    if not checks["logits_bitexact_without_callback"]:
        checks["max_abs_logit_diff_without_callback"] = max(float(np.max(np.abs(a - b)))
                                                            for a, b in zip(logits, plogits))

    np.save(os.path.join(args.out, "final_logits.npy"), logits[-1][-1])
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump({"gguf": name, "llama_cpp_python": llama_cpp.__version__, "threads": THREADS,
                   "chat": args.chat, "messages": CHATS[args.chat], "prompt_ids": prompt_ids,
                   "greedy_tokens": toks, "fuse": not args.no_fuse, "checks": checks}, f, indent=1)
    for k in (0, 1):
        if k > args.steps:
            break
        idx = json.load(open(os.path.join(args.out, f"ubatch_{k}", "index.json")))["nodes"]
        text_k = listing(idx)
        with open(os.path.join(args.out, f"graph_ubatch{k}.txt"), "w") as f:
            f.write(text_k + "\n")
        print(f"=== ubatch {k}: {len(idx)} nodes ===\n{text_k}")
    print(f"prompt {len(prompt_ids)} tokens, greedy {toks}")
    print(json.dumps(checks, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
