//! Multi-turn chat: messages in, assistant message out, history kept, the chat
//! template's generation prompt always applied.

use std::fmt;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::config::GenerationConfig;
use crate::error::GenerateError;
use crate::generation::{generate_cancellable, GenerationOutput};
use crate::model::LogitsModel;
use crate::stream::TextDecoder;

/// One chat message (`{"role": ..., "content": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// Messages → prompt ids through a chat template (chatlm-template's renderer plus the
/// tokenizer, encoded without adding special tokens again).
pub trait PromptRenderer {
    /// Error of rendering or encoding.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Renders `messages`, appending the assistant header when `add_generation_prompt`.
    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, Self::Error>;
}

impl<T: PromptRenderer> PromptRenderer for &T {
    type Error = T::Error;
    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, Self::Error> {
        (**self).render(messages, add_generation_prompt)
    }
}

/// Something a caller asked for that will likely produce a bad answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatWarning {
    /// The generation prompt (assistant header) was turned off.
    GenerationPromptDisabled,
}

impl fmt::Display for ChatWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatWarning::GenerationPromptDisabled => f.write_str(
                "add_generation_prompt is off: the prompt ends after the user's turn without an \
                 assistant header, so the model has to guess who speaks next and may continue as \
                 another role (the tutorial's model answered as `system`); keep it on for chat",
            ),
        }
    }
}

/// A conversation with one model: keeps the history, renders it with the template's
/// generation prompt, generates and appends the answer.
pub struct ChatSession<'a, M, D, R> {
    model: &'a mut M,
    decoder: D,
    renderer: R,
    /// Sampling/stopping settings used for every turn.
    pub config: GenerationConfig,
    stop_ids: Vec<u32>,
    system: Option<String>,
    history: Vec<Message>,
    add_generation_prompt: bool,
}

impl<'a, M: LogitsModel, D: TextDecoder, R: PromptRenderer> ChatSession<'a, M, D, R> {
    /// A session with an empty history (decoder and renderer by value or by reference).
    pub fn new(model: &'a mut M, decoder: D, renderer: R, config: GenerationConfig, stop_ids: Vec<u32>) -> Self {
        Self { model, decoder, renderer, config, stop_ids, system: None, history: Vec::new(), add_generation_prompt: true }
    }

    /// Sets (or clears) the system message; it stays first in every prompt.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system;
    }

    /// The current system message.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// Forgets the conversation (the system message is kept).
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// The conversation so far, system message first.
    pub fn messages(&self) -> Vec<Message> {
        let system = self.system.iter().map(|s| Message::new("system", s.clone()));
        system.chain(self.history.iter().cloned()).collect()
    }

    /// Turns the generation prompt on or off; turning it off returns the warning to show.
    pub fn set_generation_prompt(&mut self, on: bool) -> Option<ChatWarning> {
        self.add_generation_prompt = on;
        (!on).then_some(ChatWarning::GenerationPromptDisabled)
    }

    /// Sends a user message, streams the answer to `on_piece`, keeps both in the history.
    pub fn send(&mut self, user: &str, on_piece: impl FnMut(&str)) -> Result<GenerationOutput, GenerateError> {
        self.send_cancellable(user, &AtomicBool::new(false), on_piece)
    }

    /// [`send`](Self::send) that stops the answer once `cancel` is set; the partial answer
    /// is kept in the history (what the user saw).
    pub fn send_cancellable(
        &mut self,
        user: &str,
        cancel: &AtomicBool,
        on_piece: impl FnMut(&str),
    ) -> Result<GenerationOutput, GenerateError> {
        let mut messages = self.messages();
        messages.push(Message::new("user", user));
        let prompt = self
            .renderer
            .render(&messages, self.add_generation_prompt)
            .map_err(|e| GenerateError::Render(Box::new(e)))?;
        let out = generate_cancellable(self.model, &self.decoder, &prompt, &self.config, &self.stop_ids, cancel, on_piece)?;
        self.history.push(Message::new("user", user));
        self.history.push(Message::new("assistant", out.text.clone()));
        Ok(out)
    }
}
