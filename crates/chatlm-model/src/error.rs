//! Errors of model loading and inference.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file of the model could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` (or another JSON file of the model) is not valid for this purpose.
    #[error("invalid {path}: {message}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The architecture named by `architectures` / `model_type` is not one chatlm implements.
    #[error("unsupported architecture `{name}` in {path} (supported: {supported})")]
    UnsupportedArchitecture {
        /// The name found.
        name: String,
        /// The file naming it.
        path: PathBuf,
        /// The names accepted.
        supported: &'static str,
    },
    /// A configuration option chatlm does not implement (e.g. a rope scaling type).
    #[error("unsupported {what} `{value}` in {path}")]
    Unsupported {
        /// The option.
        what: &'static str,
        /// Its value.
        value: String,
        /// The file setting it.
        path: PathBuf,
    },
    /// A safetensors file is damaged (truncated, bad header, bad offsets) or holds an
    /// unsupported dtype.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A GGUF file could not be read (truncated, unknown quantization type, missing metadata).
    #[error("invalid GGUF file {path}: {message}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the configuration needs is not in the weights.
    #[error("tensor `{name}` missing from {source_desc}")]
    MissingTensor {
        /// The tensor, in transformers naming.
        name: String,
        /// The weight files searched.
        source_desc: String,
    },
    /// A tensor's shape does not match what the configuration implies.
    #[error("tensor `{name}` in {source_desc} has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        /// The tensor, in transformers naming.
        name: String,
        /// The weight files holding it.
        source_desc: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// No model could be found at the given location.
    #[error("no model at {path}: {message}")]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
        /// Why nothing there is a model.
        message: String,
    },
    /// The tokens do not fit in the KV cache or the model's context window.
    #[error("sequence of {needed} tokens exceeds the capacity of {capacity} tokens")]
    ContextOverflow {
        /// Tokens that would be needed.
        needed: usize,
        /// Tokens available.
        capacity: usize,
    },
    /// The inputs of a forward call are inconsistent (ragged batch, wrong cache, bad token id).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
