//! Text ⇄ ids exactly like Hugging Face transformers.
//!
//! A [`Tokenizer`] is the `tokenizers` pipeline of a model (normalize → pre-tokenize → model →
//! post-process → decode) plus what transformers keeps beside it: the special-token map, added
//! tokens, `add_bos_token`, padding side, `model_max_length`, the chat template and the
//! end-of-generation ids. It loads from a model directory, a `tokenizer.json` or a GGUF file.
//!
//! - [`Tokenizer`] — load, encode/decode, vocabulary, special tokens, stop ids
//! - [`TokenizerConfig`], [`SpecialTokens`], [`ChatTemplateSource`] — the config files
//! - [`PadOptions`] / [`PaddedBatch`] — batch padding and truncation
//! - `fast` — the hand-written encode path for byte-level BPE (same ids, several times faster)
//! - [`DecodeStream`] — UTF-8-safe incremental decoding for streaming
//! - [`Tokenizer::token_bytes`] / [`TokenBytes`] — each id as bytes (for constrained decoding)
//! - [`gguf_vocab`] — rebuilding a tokenizer from GGUF `tokenizer.ggml.*` metadata
//! - [`TokenizerError`] — every failure, with the file, token or id involved
//!
//! ```no_run
//! use chatlm_tokenizer::Tokenizer;
//! let tok = Tokenizer::from_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let ids = tok.encode("What is the capital of France?", false)?;
//! println!("{} tokens, stop on {:?}", ids.len(), tok.stop_token_ids());
//! # Ok::<(), chatlm_tokenizer::TokenizerError>(())
//! ```

mod classes;
mod config;
mod error;
mod fast;
pub mod gguf_vocab;
mod padding;
mod save;
mod stream;
mod token_bytes;
mod tokenizer;

pub use config::{ChatTemplateSource, DeclaredToken, PaddingSide, SpecialTokens, TokenizerConfig, SPECIAL_ROLES};
pub use error::TokenizerError;
pub use padding::{PadOptions, PaddedBatch};
pub use stream::DecodeStream;
pub use token_bytes::TokenBytes;
pub use tokenizer::{clean_up_tokenization, Encoding, LoadOptions, Tokenizer, END_OF_TURN_TOKENS};
