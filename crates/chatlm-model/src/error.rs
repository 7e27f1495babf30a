//! Errors of model loading and inference.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file of the model could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` (or another JSON file of the model) is not valid for this purpose.
    #[error("invalid {path}: {message}")]
    InvalidConfig { path: PathBuf, message: String },
    /// The architecture named by `architectures` / `model_type` is not one chatlm implements.
    #[error("unsupported architecture `{name}` in {path} (supported: {supported})")]
    UnsupportedArchitecture {
        name: String,
        path: PathBuf,
        supported: &'static str,
    },
    /// A configuration option chatlm does not implement (e.g. a rope scaling type).
    #[error("unsupported {what} `{value}` in {path}")]
    Unsupported {
        what: &'static str,
        value: String,
        path: PathBuf,
    },
    /// A safetensors file is damaged (truncated, bad header, bad offsets).
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A GGUF file could not be read or holds something chatlm cannot use.
    #[error("invalid GGUF file {path}: {message}")]
    Gguf { path: PathBuf, message: String },
    /// A tensor the configuration needs is not in the weights.
    #[error("tensor `{name}` missing from {source_desc}")]
    MissingTensor { name: String, source_desc: String },
    /// A tensor's shape does not match what `config.json` implies.
    #[error("tensor `{name}` in {source_desc} has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        name: String,
        source_desc: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// No model could be found at the given location.
    #[error("no model at {path}: {message}")]
    NotFound { path: PathBuf, message: String },
    /// The prompt and generated tokens do not fit in the KV cache.
    #[error("sequence of {needed} tokens exceeds the KV cache capacity of {capacity} tokens")]
    ContextOverflow { needed: usize, capacity: usize },
    /// The inputs of a forward call are inconsistent (ragged batch, wrong cache, bad token id).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
