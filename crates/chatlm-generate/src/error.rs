//! Typed errors of the generation engine.
//!
//! Wrapped errors are reported through `source()`, not repeated in the message, so a
//! chain printer (anyhow's `{:#}`) shows each cause once.

use thiserror::Error;

/// Everything that can go wrong between logits and ids.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// A sampling or stopping parameter is outside its valid range (`--top-p 1.5`).
    #[error("invalid generation parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as transformers spells it (`top_p`, `temperature`, ...).
        name: &'static str,
        /// The rejected value, as given.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
    /// The prompt does not leave room for a single new token in the context window.
    #[error("prompt {index} has {prompt_tokens} tokens, context window is {context_window}")]
    PromptTooLong {
        /// Position of the prompt in the batch.
        index: usize,
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Maximum sequence length of the model.
        context_window: usize,
    },
    /// A prompt has no tokens: there is nothing to condition the first logits on.
    #[error("prompt {index} is empty")]
    EmptyPrompt {
        /// Position of the prompt in the batch.
        index: usize,
    },
    /// The model returned logits of the wrong shape.
    #[error("model returned {got} logits for sequence {index}, expected vocabulary size {expected}")]
    LogitsShape {
        /// Sequence in the batch.
        index: usize,
        /// Length of the returned row.
        got: usize,
        /// The model's vocabulary size.
        expected: usize,
    },
    /// A token id handed to a processor is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// Every logit was masked to -inf: there is nothing to sample.
    #[error("all logits are -inf or NaN after processing; nothing to sample")]
    NoCandidates,
    /// `generation_config.json` could not be read or parsed.
    #[error("generation config {path} could not be read")]
    Config {
        /// File that failed.
        path: String,
        /// Underlying I/O or JSON error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model's forward pass failed.
    #[error("model forward failed")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Rendering the chat template or encoding the prompt failed.
    #[error("rendering the chat prompt failed")]
    Render(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Decoding generated ids to text failed.
    #[error("decoding ids to text failed")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An output [`Constraint`](crate::Constraint) failed: its mask could not be computed, or
    /// an id it does not allow was pushed (the message comes from the constraint).
    #[error("output constraint: {0}")]
    Constraint(String),
}
