//! The one error type of this crate: every variant names the file, token or id involved.

use std::path::PathBuf;

use crate::gguf_vocab::GgufVocabError;

/// Why a tokenizer could not be loaded, saved or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is malformed (serde's message carries line and column).
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// `tokenizer.json` parsed as JSON but the `tokenizers` library rejected it.
    #[error("{path}: not a valid tokenizer.json: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A directory without `tokenizer.json`.
    #[error("{dir}: no tokenizer.json here{hint}")]
    MissingTokenizerJson {
        /// The directory.
        dir: PathBuf,
        /// Extra advice (e.g. only a slow `tokenizer.model` is present).
        hint: String,
    },
    /// The path is neither a directory, a `tokenizer.json` nor a GGUF file.
    #[error("{path}: not a tokenizer (expected a model directory, a tokenizer.json or a .gguf file)")]
    UnknownSource {
        /// The path given.
        path: PathBuf,
    },
    /// A GGUF file whose vocabulary could not become a tokenizer.
    #[error("{path}: {source}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: GgufVocabError,
    },
    /// A value in `tokenizer_config.json` (or a sibling file) of the wrong shape.
    #[error("{path}: key {key:?}: {message}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was expected.
        message: String,
    },
    /// Encoding failed inside the `tokenizers` pipeline.
    #[error("encoding text starting {preview:?}: {message}")]
    Encode {
        /// The first characters of the text.
        preview: String,
        /// The library's message.
        message: String,
    },
    /// Decoding failed (e.g. an id outside the vocabulary).
    #[error("decoding ids: {message}")]
    Decode {
        /// The library's message.
        message: String,
    },
    /// The tokens cannot be spelled as bytes (what constrained decoding builds its token
    /// trie from): the decoder is not byte-level BPE nor SentencePiece-like.
    #[error("cannot spell the tokens as bytes: {reason}")]
    TokenBytes {
        /// Which decoder or token was in the way.
        reason: String,
    },
    /// An id that is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary ({len} tokens)")]
    UnknownId {
        /// The id.
        id: u32,
        /// `len(tokenizer)`.
        len: usize,
    },
    /// Padding was requested but the tokenizer has no pad token (as transformers raises).
    #[error("asking to pad but the tokenizer has no pad token; set one (e.g. `set_pad_token`) first")]
    NoPadToken,
    /// A padded length no buffer can hold (a `max_length` or `pad_to_multiple_of` far beyond any
    /// real sequence): an error instead of an allocation failure that aborts the process.
    #[error("cannot pad {rows} rows to {length} tokens each: {reason}")]
    PadLength {
        /// The rows in the batch.
        rows: usize,
        /// The padded length asked for (before rounding up to the multiple).
        length: usize,
        /// Why it failed.
        reason: String,
    },
    /// A special-token role that transformers does not know.
    #[error("unknown special token role {role:?} (expected bos_token, eos_token, unk_token, pad_token, sep_token, cls_token or mask_token)")]
    UnknownRole {
        /// The role given.
        role: String,
    },
    /// Adding tokens to the vocabulary failed.
    #[error("adding token {token:?}: {message}")]
    AddToken {
        /// The token.
        token: String,
        /// The library's message.
        message: String,
    },
}

impl TokenizerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn encode(text: &str, err: impl std::fmt::Display) -> Self {
        Self::Encode { preview: text.chars().take(40).collect(), message: err.to_string() }
    }

    pub(crate) fn decode(err: impl std::fmt::Display) -> Self {
        Self::Decode { message: err.to_string() }
    }
}
