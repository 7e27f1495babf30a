"""A tiny GGUF (Q8_0) made the way llama.cpp's converter does, and transformers' outputs on it.

Takes the tiny random `llama_tied` model of model_tiny.py (run that first), permutes q/k rows
like convert_hf_to_gguf.py's LlamaModel.permute, quantizes the matrices to Q8_0 with the `gguf`
package, and writes crates/chatlm-model/tests/data/llama_tied_q8_0/{model.gguf,expected.json}.
The expectations come from transformers loading that GGUF (`gguf_file=`: it dequantizes and
undoes the permutation), in the format of model_tiny.py's expected.json.

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

SRC = os.path.join(model_tiny.ROOT, "llama_tied")
OUT = os.path.join(model_tiny.ROOT, "llama_tied_q8_0")


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    with open(os.path.join(SRC, "config.json")) as f:
        cfg = json.load(f)
    weights = load_file(os.path.join(SRC, "model.safetensors"))
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    path = os.path.join(OUT, "model.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-llama-tied")
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
    w.add_vocab_size(cfg["vocab_size"])
    # A placeholder vocabulary: transformers takes the vocabulary size from the tokenizer.
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(cfg["vocab_size"])])
    w.add_token_scores([0.0] * cfg["vocab_size"])
    w.add_token_types([1] * cfg["vocab_size"])
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, t in weights.items():
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            module, kind = rest.rsplit(".", 1)
            gname = f"blk.{layer}.{parts[module]}.{kind}"
        else:
            gname = names[name]
        if gname.endswith("attn_q.weight"):
            t = permute(t, cfg["num_attention_heads"])
        elif gname.endswith("attn_k.weight"):
            t = permute(t, cfg["num_key_value_heads"])
        if t.ndim == 2:
            w.add_tensor(gname, gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, t.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    def load(_path):
        return AutoModelForCausalLM.from_pretrained(OUT, gguf_file="model.gguf", dtype=torch.float32,
                                                    attn_implementation="eager").eval()

    model_tiny.load = load
    exp, margin = model_tiny.expectations(OUT)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, separators=(",", ":"))
    print(f"llama_tied_q8_0: min greedy margin {margin:.4f}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
