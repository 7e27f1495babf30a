//! `chatlm-generate`: logits → ids, with the semantics of transformers' `generate`.
//!
//! - [`processors`]: repetition penalty, temperature, top-k, top-p, min-p;
//! - [`GenerationConfig`]: settings and `generation_config.json` defaults;
//! - [`Sampler`]: greedy or seeded multinomial choice;
//! - [`StopStringMatcher`], [`StreamDecoder`]: stop strings and UTF-8-safe streaming;
//! - [`Sequence`]: one sequence's rules (processors, choice, stops, streaming), step by step;
//! - [`Constraint`]: restricts the ids a sequence may produce (structured output);
//! - [`LogitsModel`]: what a model implements; [`generate`] / [`generate_batch`] run the loop;
//! - [`ChatSession`]: multi-turn chat on top of a chat template.

pub mod chat;
pub mod config;
pub mod constraint;
pub mod error;
pub mod generation;
pub mod model;
pub mod processors;
pub mod sampler;
pub mod sequence;
pub mod stop;
pub mod stream;

pub use chat::{ChatSession, ChatWarning, Message, PromptRenderer};
pub use config::GenerationConfig;
pub use constraint::Constraint;
pub use error::GenerateError;
pub use generation::{
    generate, generate_batch, generate_batch_cancellable, generate_cancellable, generate_constrained, FinishReason, GenerationOutput, Timings,
};
pub use model::LogitsModel;
pub use sampler::Sampler;
pub use sequence::Sequence;
pub use stop::{Released, StopStringMatcher};
pub use stream::{StreamDecoder, TextDecoder};
