//! UTF-8-safe incremental decoding on top of a whole-sequence `decode`, the
//! prefix/read-offset scheme of transformers' `TextStreamer` and tokenizers'
//! `DecodeStream`: a piece is released only once it no longer ends in an
//! incomplete character (U+FFFD).

/// Anything that turns ids into text (the chatlm tokenizer, `tokenizers::Tokenizer`, ...).
pub trait TextDecoder {
    /// Error of the underlying tokenizer.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Decodes `ids` to text.
    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Self::Error>;
}

impl<T: TextDecoder> TextDecoder for &T {
    type Error = T::Error;
    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Self::Error> {
        (**self).decode_ids(ids, skip_special_tokens)
    }
}

/// Incremental decoder: feed ids one at a time, get text pieces that never split a character.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl StreamDecoder {
    /// A decoder for a fresh answer (the prompt is not part of the stream).
    pub fn new(skip_special_tokens: bool) -> Self {
        Self { ids: Vec::new(), prefix_offset: 0, read_offset: 0, skip_special_tokens }
    }

    /// Adds `id`; returns the newly complete text, if any.
    pub fn step<D: TextDecoder>(&mut self, decoder: &D, id: u32) -> Result<Option<String>, D::Error> {
        self.ids.push(id);
        let prefix = decoder.decode_ids(&self.ids[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
        let full = decoder.decode_ids(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let piece = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Ids fed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl StreamDecoder {
    /// Whether special tokens are dropped from the text.
    pub fn skip_special_tokens(&self) -> bool {
        self.skip_special_tokens
    }
}
