//! chatlm-tokenizer (work in progress)
pub mod gguf_vocab;
