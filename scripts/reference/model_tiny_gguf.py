"""Tiny GGUF files made the way llama.cpp's converter does, with the outputs they must give.

From the tiny random models of model_tiny.py (run that first), permuting q/k rows like
convert_hf_to_gguf.py's LlamaModel.permute, writes under crates/chatlm-model/tests/data/:
  llama_tied_q8_0/  matrices quantized to Q8_0 with the `gguf` package; expected.json from
                    transformers loading that GGUF (`gguf_file=`: it dequantizes and unpermutes),
                    in the format of model_tiny.py's expected.json.
  phi3_q8_0/        the same for the phi3 model under the `phi3` architecture (fused attn_qkv
                    and gate/up in ffn_up, no permutation).
  llama3_gguf/      the llama3 model in f32 with llama3 rope scaling stored as llama.cpp does,
                    a `rope_freqs.weight` tensor of per-frequency divisors (the converter's
                    generate_extra_tensors); expected.json is llama3's own transformers output,
                    since the f32 GGUF must compute exactly what the safetensors model does.
  qwen2_gguf/       the qwen2 model in f32 under the `qwen2` architecture (q/k/v biases, tied
                    output, no permutation); expected.json is qwen2's transformers output.

Rerun: python3 scripts/reference/model_tiny_gguf.py
"""

import json
import os
import shutil
import sys

import gguf
import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
import model_tiny  # noqa: E402

import math  # noqa: E402


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg):
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, for rope_type llama3."""
    rope = cfg["rope_parameters"]
    dim = cfg["head_dim"]
    freqs = 1.0 / (rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_len = rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            factors.append(1.0)
        elif wavelen > old_len / low:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_gguf(src_name, out_name, quantize, arch="llama"):
    src = os.path.join(model_tiny.ROOT, src_name)
    out = os.path.join(model_tiny.ROOT, out_name)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    if "rope_theta" not in cfg:
        cfg["rope_theta"] = cfg["rope_parameters"]["rope_theta"]
    weights = load_file(os.path.join(src, "model.safetensors"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    path = os.path.join(out, "model.gguf")
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{src_name}")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_vocab_size(cfg["vocab_size"])
    # A placeholder vocabulary: transformers takes the vocabulary size from the tokenizer.
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(cfg["vocab_size"])])
    w.add_token_scores([0.0] * cfg["vocab_size"])
    w.add_token_types([1] * cfg["vocab_size"])
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up"}
    for name, t in weights.items():
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            module, kind = rest.rsplit(".", 1)
            gname = f"blk.{layer}.{parts[module]}.{kind}"
        else:
            gname = names[name]
        # Only the llama architecture is permuted (its rope runs on interleaved pairs).
        if arch == "llama" and gname.endswith("attn_q.weight"):
            t = permute(t, cfg["num_attention_heads"])
        elif arch == "llama" and gname.endswith("attn_k.weight"):
            t = permute(t, cfg["num_key_value_heads"])
        if t.ndim == 2 and quantize:
            w.add_tensor(gname, gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, t.astype(np.float32))
    if cfg.get("rope_parameters", {}).get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out_name}: {os.path.getsize(path)} bytes")
    return out


def quantized_with_transformers_expectations(src, name, arch):
    out = write_gguf(src, name, quantize=True, arch=arch)

    def load(_path):
        return AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", dtype=torch.float32,
                                                    attn_implementation="eager").eval()

    model_tiny.load = load
    exp, margin = model_tiny.expectations(out)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(exp, f, separators=(",", ":"))
    print(f"{name}: min greedy margin {margin:.4f}")


def main():
    quantized_with_transformers_expectations("llama_tied", "llama_tied_q8_0", "llama")
    quantized_with_transformers_expectations("phi3", "phi3_q8_0", "phi3")

    for src, name, arch in [("llama3", "llama3_gguf", "llama"), ("qwen2", "qwen2_gguf", "qwen2")]:
        out = write_gguf(src, name, quantize=False, arch=arch)
        shutil.copy(os.path.join(model_tiny.ROOT, src, "expected.json"), os.path.join(out, "expected.json"))


if __name__ == "__main__":
    main()
