//! `chatlm`: pipelines over the chatlm crates — what transformers' `pipeline("text-generation")`
//! is to a Python user, and the one place the faces (the `chatlm` CLI, `chatlm serve`, the
//! Python package) load models and generate.
//!
//! - [`LoadSpec`] → [`Engine`]: a model by path, hub id or the default model, with its
//!   tokenizer, chat template, generation defaults and [stop ids](stop_ids) ([`source`]
//!   finds and fetches models);
//! - [`Pipeline`]: `generate`, `generate_stream`, `chat` on one KV cache, with prompt
//!   caching ([`ModelLm`]: only what follows the cached prefix is prefilled);
//! - [`Batcher`]: continuous batching of many requests for a server ([`batch`]);
//! - [`logprobs`]: OpenAI-style log-probabilities of a step; [`bench`]: prefill/decode speed;
//! - [`constraint`]: structured output — JSON mode, JSON schemas, forced tool calls
//!   ([`Pipeline::generate_constrained`], [`Request::constraint`]).
//!
//! ```
//! use chatlm::{GenerationConfig, LoadSpec, Pipeline, Prompt};
//! // A tiny random Llama (128-token vocabulary, no chat template) from the model crate's tests.
//! let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf/model.gguf");
//! let mut pipe = Pipeline::load(&LoadSpec { model: Some(model.into()), ..Default::default() })?;
//! let config = GenerationConfig { max_new_tokens: Some(5), ..pipe.default_config() };
//! let out = pipe.generate(Prompt::Ids(vec![1, 5, 9]), &config)?;
//! assert_eq!(out.completion_tokens, 5);
//! // Streaming: text pieces as they become final.
//! let mut pieces = String::new();
//! let again = pipe.generate_stream(Prompt::Ids(vec![1, 5, 9]), &config, |p| pieces.push_str(p))?;
//! assert_eq!((again.ids, pieces), (out.ids, out.text));
//! # Ok::<(), chatlm::Error>(())
//! ```

pub mod batch;
pub mod bench;
pub mod constraint;
mod engine;
mod error;
mod lm;
pub mod logprobs;
mod pipeline;
pub mod source;
mod stops;
mod text;

pub use batch::{BatchOptions, Batcher, Event, Request, Stats, SubmitError};
pub use constraint::{json_constraint, lark_constraint, tool_call_constraint};
pub use engine::{load_model, Engine, LoadSpec};
pub use error::{Error, Result};
pub use lm::ModelLm;
pub use pipeline::{Pipeline, Prompt, DEFAULT_MAX_NEW_TOKENS};
pub use source::{default_model, default_model_path, init_threads, resolve};
pub use stops::stop_ids;
pub use text::{TemplateRenderer, TokenizerDecoder};

/// Settings and results of generation, re-exported so callers need only this crate.
pub use chatlm_generate::{Constraint, FinishReason, GenerationConfig, GenerationOutput, Timings};
/// Model loading options callers set.
pub use chatlm_model::{Numerics, Quantization};
