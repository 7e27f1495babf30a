//! Adapters from the tokenizer and template crates to the traits of chatlm-generate:
//! ids → text for streaming ([`TokenizerDecoder`]), messages → prompt ids for chat
//! sessions ([`TemplateRenderer`]).

use chatlm_generate::{Message, PromptRenderer, TextDecoder};
use chatlm_tokenizer::{Tokenizer, TokenizerError};
use serde_json::json;

use crate::engine::Engine;
use crate::error::Error;

/// [`TextDecoder`] over the chatlm tokenizer.
pub struct TokenizerDecoder<'a>(pub &'a Tokenizer);

impl TextDecoder for TokenizerDecoder<'_> {
    type Error = TokenizerError;

    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.0.decode(ids, skip_special_tokens)
    }
}

/// [`PromptRenderer`] over an engine's chat template: renders like
/// `apply_chat_template(tokenize=True)`.
pub struct TemplateRenderer<'a>(pub &'a Engine);

impl PromptRenderer for TemplateRenderer<'_> {
    type Error = Error;

    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, Error> {
        let values: Vec<_> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        self.0.render(&values, add_generation_prompt)
    }
}
