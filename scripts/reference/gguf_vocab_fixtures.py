"""Vocab-only GGUFs of the fixture tokenizers, written the way llama.cpp's convert_hf_to_gguf.py does.

Usage: python3 scripts/reference/gguf_vocab_fixtures.py OUT_DIR [FIXTURES_DIR]
Writes OUT_DIR/{llama3,qwen2,gpt2,llama2}.gguf (a few MB each, so they are generated, never
committed). chatlm-tokenizer's tests/gguf_fixtures.rs runs this (and skips when python3 or the
`gguf` package is missing), then checks ids from each GGUF against llama.cpp's HF test vectors in
fixtures/llamacpp-vocab and against the fixture's own tokenizer.json.

- BPE (llama3 pre "llama-bpe", qwen2 pre "qwen2", gpt2 pre "gpt-2"): tokens by id from the HF vocab,
  added special tokens as CONTROL and other added tokens as USER_DEFINED, gaps as UNUSED "[PAD{i}]"
  (llama.cpp's `get_vocab_base`); merges, special ids, add_bos/eos and the chat template through
  `gguf.SpecialVocab`, as the converter does.
- SentencePiece (llama2, model "llama"): pieces, scores and types from tokenizer.model
  (llama.cpp's `_create_vocab_sentencepiece`); no merges, as llama.cpp writes them.
"""
import os
import sys
from pathlib import Path

import gguf
from gguf import GGUFWriter, SpecialVocab, TokenType

BPE = {"llama3": "llama-bpe", "qwen2": "qwen2", "gpt2": "gpt-2"}


def bpe_vocab(directory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    vocab = tok.get_vocab()
    reverse = {i: t for t, i in vocab.items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(max(vocab.values()) + 1):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif reverse[i] in added:
            tokens.append(reverse[i])
            types.append(TokenType.CONTROL if decoder[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(TokenType.NORMAL)
    return tokens, types


def spm_vocab(directory):
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(Path(directory) / "tokenizer.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.IdToPiece(i))
        scores.append(sp.GetScore(i))
        if sp.IsUnknown(i):
            types.append(TokenType.UNKNOWN)
        elif sp.IsControl(i):
            types.append(TokenType.CONTROL)
        elif sp.IsUnused(i):
            types.append(TokenType.UNUSED)
        elif sp.IsByte(i):
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)
    return tokens, scores, types


def write(out, name, directory):
    writer = GGUFWriter(str(out / f"{name}.gguf"), "llama")
    if name in BPE:
        tokens, types = bpe_vocab(directory)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(BPE[name])
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        SpecialVocab(directory, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)
    else:
        tokens, scores, types = spm_vocab(directory)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        SpecialVocab(directory, n_vocab=len(tokens)).add_to_gguf(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    out = Path(sys.argv[1])
    fixtures = Path(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CHATLM_FIXTURES", "../shared/fixtures"))
    out.mkdir(parents=True, exist_ok=True)
    for name in ["llama3", "qwen2", "gpt2", "llama2"]:
        write(out, name, str(fixtures / "tokenizers" / name))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
