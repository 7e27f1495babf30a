//! [`Pipeline`]: transformers' `pipeline("text-generation")` — load once, then generate,
//! stream or chat.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chatlm_generate::{generate_cancellable, generate_constrained, ChatSession, Constraint, GenerationConfig, GenerationOutput};
use serde_json::{json, Value};

use crate::engine::{Engine, LoadSpec};
use crate::error::{Error, Result};
use crate::lm::ModelLm;
use crate::text::{TemplateRenderer, TokenizerDecoder};

/// New tokens of an answer when neither the caller nor the model's generation config say
/// (transformers' `max_length=20` default is too short for a chat answer).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// One user message, rendered with the chat template and its generation prompt.
    User(String),
    /// Plain text, encoded as is (with the tokenizer's BOS when it adds one).
    Raw(String),
    /// A conversation (`[{"role": ..., "content": ...}, ...]`, any keys the template reads),
    /// rendered with the generation prompt.
    Messages(Vec<Value>),
    /// Token ids, used as they are.
    Ids(Vec<u32>),
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Prompt::User(text.to_string())
    }
}

impl From<String> for Prompt {
    fn from(text: String) -> Self {
        Prompt::User(text)
    }
}

impl From<Vec<Value>> for Prompt {
    fn from(messages: Vec<Value>) -> Self {
        Prompt::Messages(messages)
    }
}

impl From<Vec<u32>> for Prompt {
    fn from(ids: Vec<u32>) -> Self {
        Prompt::Ids(ids)
    }
}

/// A model with one KV cache: generate, stream, chat.
pub struct Pipeline {
    engine: Arc<Engine>,
    lm: ModelLm,
    ignore_eos: bool,
}

impl Pipeline {
    /// Loads the model `spec` names; prompt caching is on.
    pub fn load(spec: &LoadSpec) -> Result<Pipeline> {
        Ok(Self::new(Arc::new(Engine::load(spec)?), true))
    }

    /// A pipeline over a loaded engine (shared with others: each has its own cache).
    pub fn new(engine: Arc<Engine>, prompt_cache: bool) -> Pipeline {
        let lm = engine.lm(prompt_cache);
        Pipeline { engine, lm, ignore_eos: false }
    }

    /// The loaded model, tokenizer and template.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Keep generating past the model's stop ids (until the token budget).
    pub fn set_ignore_eos(&mut self, ignore: bool) {
        self.ignore_eos = ignore;
    }

    /// Turns prompt caching on or off (off forgets what the cache holds).
    pub fn set_prompt_cache(&mut self, on: bool) {
        if on != self.lm.prompt_cache() {
            self.lm = self.engine.lm(on);
        }
    }

    /// Prompt tokens the last generation took from the prompt cache.
    pub fn reused_tokens(&self) -> usize {
        self.lm.reused_tokens()
    }

    /// The engine's [`Engine::default_config`]: the base a caller's settings override.
    pub fn default_config(&self) -> GenerationConfig {
        self.engine.default_config()
    }

    /// Generates an answer to `prompt`.
    pub fn generate(&mut self, prompt: impl Into<Prompt>, config: &GenerationConfig) -> Result<GenerationOutput> {
        self.generate_stream(prompt, config, |_| {})
    }

    /// [`Self::generate`], handing the answer's text to `on_piece` as it becomes final
    /// (never a split character, never a piece of a stop string).
    pub fn generate_stream(&mut self, prompt: impl Into<Prompt>, config: &GenerationConfig, on_piece: impl FnMut(&str)) -> Result<GenerationOutput> {
        self.generate_cancellable(prompt, config, &AtomicBool::new(false), on_piece)
    }

    /// [`Self::generate_stream`] that ends early once `cancel` is set (checked before every
    /// step; the text so far is returned with finish reason `cancelled`).
    pub fn generate_cancellable(
        &mut self,
        prompt: impl Into<Prompt>,
        config: &GenerationConfig,
        cancel: &AtomicBool,
        on_piece: impl FnMut(&str),
    ) -> Result<GenerationOutput> {
        self.run(prompt.into(), config, None, cancel, on_piece)
    }

    /// [`Self::generate_cancellable`] with the answer restricted by `constraint` (from
    /// [`json_constraint`](crate::json_constraint), [`tool_call_constraint`](crate::tool_call_constraint), ...):
    /// every step allows only what may follow, and the answer ends (finish reason `stop`)
    /// once the constrained text is complete. Give `max_new_tokens` room for all of it: an
    /// answer cut by the budget ends with `length` and is incomplete.
    pub fn generate_constrained(
        &mut self,
        prompt: impl Into<Prompt>,
        config: &GenerationConfig,
        constraint: Box<dyn Constraint>,
        cancel: &AtomicBool,
        on_piece: impl FnMut(&str),
    ) -> Result<GenerationOutput> {
        self.run(prompt.into(), config, Some(constraint), cancel, on_piece)
    }

    fn run(
        &mut self,
        prompt: Prompt,
        config: &GenerationConfig,
        constraint: Option<Box<dyn Constraint>>,
        cancel: &AtomicBool,
        on_piece: impl FnMut(&str),
    ) -> Result<GenerationOutput> {
        let ids = self.engine.prompt_ids(&prompt)?;
        let stop_ids: &[u32] = if self.ignore_eos { &[] } else { self.engine.stop_ids() };
        let decoder = TokenizerDecoder(self.engine.tokenizer());
        let out = match constraint {
            Some(c) => generate_constrained(&mut self.lm, &decoder, &ids, config, stop_ids, c, cancel, on_piece),
            None => generate_cancellable(&mut self.lm, &decoder, &ids, config, stop_ids, cancel, on_piece),
        };
        let mut out = out.map_err(|e| Error::Generate { name: self.engine.name().to_string(), source: e })?;
        out.timings.load_s = self.engine.load_s();
        Ok(out)
    }

    /// The conversation with the assistant's answer appended, like transformers' chat
    /// pipeline returns it.
    pub fn chat(&mut self, mut messages: Vec<Value>, config: &GenerationConfig) -> Result<Vec<Value>> {
        let out = self.generate(Prompt::Messages(messages.clone()), config)?;
        messages.push(json!({"role": "assistant", "content": out.text}));
        Ok(messages)
    }

    /// A multi-turn session over this pipeline's model and cache (history kept, answers
    /// streamed, prompt cache reused turn after turn).
    pub fn chat_session(&mut self, config: GenerationConfig) -> Result<ChatSession<'_, ModelLm, TokenizerDecoder<'_>, TemplateRenderer<'_>>> {
        if self.engine.template().is_none() {
            return Err(Error::NoChatTemplate { name: self.engine.name().to_string() });
        }
        let stop_ids = if self.ignore_eos { Vec::new() } else { self.engine.stop_ids().to_vec() };
        Ok(ChatSession::new(&mut self.lm, TokenizerDecoder(self.engine.tokenizer()), TemplateRenderer(&self.engine), config, stop_ids))
    }
}
