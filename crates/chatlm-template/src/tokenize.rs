//! `apply_chat_template(tokenize=True, return_assistant_tokens_mask=True)`: the rendered prompt
//! encoded without special tokens (the template already wrote BOS; adding it again is the classic
//! double-BOS bug), and `{% generation %}` spans turned into a per-token mask.

use chatlm_tokenizer::Tokenizer;
use serde_json::{Map, Value as Json};

use crate::{select_template, ChatRequest, ChatTemplate, ContinueFinal, TemplateError};

/// The template variables a tokenizer provides: its named special tokens (`bos_token`, `eos_token`,
/// `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token`: those that are set), like
/// transformers' `special_tokens_map`.
pub fn special_token_variables(tok: &Tokenizer) -> Map<String, Json> {
    tok.special_tokens().named().into_iter().map(|(role, token)| (role.to_string(), Json::String(token.to_string()))).collect()
}

impl ChatTemplate {
    /// Compiles the tokenizer's own template, chosen like transformers' `get_chat_template`
    /// (`name`, else `tool_use` when `has_tools`, else `default`).
    pub fn for_tokenizer(tok: &Tokenizer, name: Option<&str>, has_tools: bool) -> Result<ChatTemplate, TemplateError> {
        let source = tok.chat_template().ok_or_else(|| {
            TemplateError::InvalidRequest(
                "Cannot use chat template functions because tokenizer.chat_template is not set and no template argument was passed!"
                    .into(),
            )
        })?;
        ChatTemplate::new(select_template(source, name, has_tools)?)
    }
}

/// What [`apply_chat_template`] should return besides the text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Encode the prompt (`tokenize=True`).
    pub tokenize: bool,
    /// Also return the assistant mask (`return_assistant_tokens_mask=True`; implies `tokenize`).
    pub return_assistant_tokens_mask: bool,
}

/// The result of [`apply_chat_template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The rendered prompt.
    pub text: String,
    /// Its token ids (encoded with `add_special_tokens=false`), when asked for.
    pub ids: Option<Vec<u32>>,
    /// 1 for every token inside a `{% generation %}` block, else 0, when asked for.
    pub assistant_masks: Option<Vec<u8>>,
}

/// Renders `req` with `template` for `tok`, like transformers' `tokenizer.apply_chat_template`.
///
/// The tokenizer's special tokens become template variables unless the request already sets them.
/// With `opts.tokenize` the prompt is encoded with `add_special_tokens=false`, as transformers does.
/// With `opts.return_assistant_tokens_mask`, each generation span marks every token it overlaps.
pub fn apply_chat_template(
    tok: &Tokenizer,
    template: &ChatTemplate,
    req: &ChatRequest,
    opts: ApplyOptions,
) -> Result<Applied, TemplateError> {
    if opts.return_assistant_tokens_mask && req.continue_final_message != ContinueFinal::No {
        return Err(TemplateError::InvalidRequest(
            "continue_final_message is not compatible with return_assistant_tokens_mask.".into(),
        ));
    }
    let rendered = if req.special_tokens.is_empty() {
        let mut with_tokens = req.clone();
        with_tokens.special_tokens = special_token_variables(tok);
        template.render(&with_tokens)?
    } else {
        template.render(req)?
    };
    if !(opts.tokenize || opts.return_assistant_tokens_mask) {
        return Ok(Applied { text: rendered.text, ids: None, assistant_masks: None });
    }
    let encoding = tok.encode_with_offsets(&rendered.text, false)?;
    let masks = opts.return_assistant_tokens_mask.then(|| assistant_mask(&encoding.offsets, &rendered.generation_spans));
    Ok(Applied { text: rendered.text, ids: Some(encoding.ids), assistant_masks: masks })
}

/// transformers' rule (since 5.24): every token whose range overlaps a span is marked, so a
/// character split over several byte-level tokens (an emoji) marks all of them. Spans and token
/// offsets are both in order, so one pass suffices; tokens the tokenizer added have empty ranges
/// and are never marked.
pub(crate) fn assistant_mask(offsets: &[(usize, usize)], spans: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut mask = vec![0u8; offsets.len()];
    let mut spans = spans.iter().peekable();
    for (m, &(start, end)) in mask.iter_mut().zip(offsets) {
        while spans.next_if(|span| start >= span.end).is_some() {}
        let Some(span) = spans.peek() else { break };
        if end > span.start {
            *m = 1;
        }
    }
    mask
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one-span masks are the point of these cases
mod tests {
    use super::assistant_mask;

    #[test]
    fn mask_follows_transformers_rule() {
        // tokens: [0,3) [3,5) [5,9) [9,10)
        let offsets = [(0, 3), (3, 5), (5, 9), (9, 10)];
        assert_eq!(assistant_mask(&offsets, &[4..9]), vec![0, 1, 1, 0]);
        assert_eq!(assistant_mask(&offsets, &[3..4, 9..10]), vec![0, 1, 0, 1]);
        // A span that ends inside a token marks that token, and so does one that starts inside it.
        assert_eq!(assistant_mask(&offsets, &[0..4]), vec![1, 1, 0, 0]);
        assert_eq!(assistant_mask(&offsets, &[6..7]), vec![0, 0, 1, 0]);
        // Spans past the last token mark nothing.
        assert_eq!(assistant_mask(&offsets, &[20..21]), vec![0, 0, 0, 0]);
        // Several tokens over one character (an emoji split in bytes): all of them.
        let split = [(0, 1), (1, 5), (1, 5), (1, 5), (5, 6)];
        assert_eq!(assistant_mask(&split, &[1..5]), vec![0, 1, 1, 1, 0]);
        // Tokens added by the tokenizer carry (0, 0) and are never marked.
        assert_eq!(assistant_mask(&[(0, 0), (0, 3), (3, 5)], &[0..3]), vec![0, 1, 0]);
    }
}
