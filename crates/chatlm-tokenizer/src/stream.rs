//! Incremental decoding for streaming output.
//!
//! Decoding tokens one at a time breaks text in two ways: a byte-level or byte-fallback token
//! can be a fragment of a UTF-8 character (Korean syllables and emoji often span 2–4 tokens),
//! and SentencePiece decoders drop the leading space of whatever they decode first. The
//! prefix/read-offset method (the one of transformers' `TextStreamer` and
//! `tokenizers::DecodeStream`) avoids both: decode a short window that starts a few tokens back,
//! and only release what lies beyond the window's own prefix once it no longer ends in U+FFFD.
//! We keep our own copy (rather than `tokenizers::DecodeStream`) because that one borrows the
//! tokenizer for its whole life, which a chat session holding both cannot express.

use crate::{Tokenizer, TokenizerError};

/// Turns ids into text pieces without ever splitting a character or losing a space.
///
/// ```no_run
/// # let tok = chatlm_tokenizer::Tokenizer::from_pretrained("llama2")?;
/// let mut stream = tok.decode_stream(true);
/// let mut text = String::new();
/// for id in tok.encode("오늘은 😀", false)? {
///     if let Some(piece) = stream.step(&tok, id)? {
///         text.push_str(&piece);
///     }
/// }
/// assert_eq!(text, "오늘은 😀");
/// # Ok::<(), chatlm_tokenizer::TokenizerError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DecodeStream {
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl DecodeStream {
    /// A stream that drops special tokens when `skip_special_tokens`.
    pub fn new(skip_special_tokens: bool) -> Self {
        Self { skip_special_tokens, ..Default::default() }
    }

    /// Feeds one id; returns the text it completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let window = &self.ids[self.prefix_offset..];
        let prefix = tokenizer.decode(&window[..self.read_offset - self.prefix_offset], self.skip_special_tokens)?;
        let text = tokenizer.decode(window, self.skip_special_tokens)?;
        if text.len() > prefix.len() && !text.ends_with('\u{FFFD}') && text.is_char_boundary(prefix.len()) {
            let piece = text[prefix.len()..].to_owned();
            // Keep the window short: the new prefix starts where this read ended.
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever is still held back (an incomplete character at the end of generation), decoded
    /// with replacement characters as transformers' streamer would print it.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>, TokenizerError> {
        let window = &self.ids[self.prefix_offset..];
        let prefix = tokenizer.decode(&window[..self.read_offset - self.prefix_offset], self.skip_special_tokens)?;
        let text = tokenizer.decode(window, self.skip_special_tokens)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(text.get(prefix.len()..).filter(|rest| !rest.is_empty()).map(str::to_owned))
    }

    /// Every id fed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl Tokenizer {
    /// A fresh [`DecodeStream`].
    pub fn decode_stream(&self, skip_special_tokens: bool) -> DecodeStream {
        DecodeStream::new(skip_special_tokens)
    }
}
