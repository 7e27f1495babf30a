//! [`Tokenizer::token_bytes`]: every id as the bytes it stands for in the decoded text — what a
//! constrained-decoding engine (llguidance's token trie) needs to know which ids may continue
//! a grammar.
//!
//! Why not `decode([id])`: a byte-level token can be half a UTF-8 character (decode turns it
//! into U+FFFD), and SentencePiece decoders strip the space of the first token. The bytes are
//! read from the token strings instead, the way the tokenizer's decoder turns them into text:
//! - byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM): each symbol of GPT-2's byte alphabet is
//!   one byte; a token with a symbol outside it is its own UTF-8 (what the `ByteLevel`
//!   decoder does with it);
//! - SentencePiece-like (Llama 2, Phi-3, Metaspace): the space symbol (`▁`) is a space and,
//!   with a `ByteFallback` decoder, `<0xXX>` is the byte XX;
//! - added tokens: their content, marked special when they are.

use serde_json::Value;
use tokenizers::Model;

use crate::fast::byte_char;
use crate::{Tokenizer, TokenizerError};

/// One vocabulary entry as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBytes {
    /// The text the token stands for, as bytes (a special token's content, e.g. `<|im_end|>`).
    pub bytes: Vec<u8>,
    /// Added as a special token: plain text never encodes to it and `skip_special_tokens`
    /// drops it, so a grammar over text must not produce it.
    pub special: bool,
}

/// How the decoder turns token strings into text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spelling {
    /// GPT-2's byte alphabet.
    ByteLevel,
    /// `space` stands for a space; `<0xXX>` is a byte when `byte_fallback`.
    SentencePiece { space: char, byte_fallback: bool },
}

impl Tokenizer {
    /// Each id's bytes, index = id, for ids `0..` the largest id of the vocabulary (added
    /// tokens included); `None` for an id no token has. Errors for a decoder whose tokens are
    /// not spelled as bytes (WordPiece, character-level BPE without a decoder).
    ///
    /// ```no_run
    /// let tok = chatlm_tokenizer::Tokenizer::from_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    /// let bytes = tok.token_bytes()?;
    /// let id = tok.token_to_id("Ġworld").unwrap() as usize;
    /// assert_eq!(bytes[id].as_ref().unwrap().bytes, b" world");
    /// # Ok::<(), chatlm_tokenizer::TokenizerError>(())
    /// ```
    pub fn token_bytes(&self) -> Result<Vec<Option<TokenBytes>>, TokenizerError> {
        let inner = self.inner();
        let decoder = inner
            .get_decoder()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| TokenizerError::TokenBytes { reason: format!("the decoder does not serialize: {e}") })?;
        let spelling = spelling(decoder.as_ref())?;
        let added = inner.get_added_tokens_decoder();
        let len = added.keys().map(|&id| id as usize + 1).max().unwrap_or(0).max(self.len());
        let mut byte_of = [None; 0x200];
        for b in 0..=255u8 {
            byte_of[byte_char(b) as usize] = Some(b);
        }
        let mut out = Vec::with_capacity(len);
        for id in 0..len as u32 {
            if let Some(token) = added.get(&id) {
                out.push(Some(TokenBytes { bytes: token.content.as_bytes().to_vec(), special: token.special }));
                continue;
            }
            let Some(token) = inner.get_model().id_to_token(id) else {
                out.push(None);
                continue;
            };
            let bytes = match spelling {
                Spelling::ByteLevel => {
                    let mapped: Option<Vec<u8>> =
                        token.chars().map(|c| byte_of.get(c as usize).copied().flatten()).collect();
                    mapped.unwrap_or_else(|| token.as_bytes().to_vec())
                }
                Spelling::SentencePiece { space, byte_fallback } => match byte_fallback.then(|| fallback_byte(&token)).flatten() {
                    Some(b) => vec![b],
                    None => token.replace(space, " ").into_bytes(),
                },
            };
            out.push(Some(TokenBytes { bytes, special: false }));
        }
        Ok(out)
    }
}

/// `<0xXX>` → the byte XX.
fn fallback_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The spelling of a serialized decoder (`None`: the tokenizer has none).
fn spelling(decoder: Option<&Value>) -> Result<Spelling, TokenizerError> {
    let unsupported = |what: &str| TokenizerError::TokenBytes {
        reason: format!(
            "the decoder is {what}; byte-level BPE (a ByteLevel decoder) or SentencePiece-like tokens (Metaspace, ▁ replaced by a space, ByteFallback) are supported"
        ),
    };
    let Some(decoder) = decoder else { return Err(unsupported("missing")) };
    let kind = |d: &Value| d.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let steps: Vec<&Value> = match decoder.get("decoders").and_then(Value::as_array) {
        Some(list) if kind(decoder) == "Sequence" => list.iter().collect(),
        _ => vec![decoder],
    };
    let mut space = None;
    let mut byte_fallback = false;
    for step in &steps {
        match kind(step).as_str() {
            "ByteLevel" => return Ok(Spelling::ByteLevel),
            "ByteFallback" => byte_fallback = true,
            "Metaspace" => space = step.get("replacement").and_then(Value::as_str).and_then(single_char).or(Some('▁')),
            "Replace" if step.get("content").and_then(Value::as_str) == Some(" ") => {
                space = step.pointer("/pattern/String").and_then(Value::as_str).and_then(single_char).or(space);
            }
            _ => {}
        }
    }
    if space.is_none() && !byte_fallback {
        return Err(unsupported(&format!("{:?}", kind(decoder))));
    }
    Ok(Spelling::SentencePiece { space: space.unwrap_or('▁'), byte_fallback })
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decoders_map_to_spellings() {
        assert_eq!(spelling(Some(&json!({"type": "ByteLevel"}))).unwrap(), Spelling::ByteLevel);
        let llama2 = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
        assert_eq!(spelling(Some(&llama2)).unwrap(), Spelling::SentencePiece { space: '▁', byte_fallback: true });
        let metaspace = json!({"type": "Metaspace", "replacement": "▁", "add_prefix_space": true});
        assert_eq!(spelling(Some(&metaspace)).unwrap(), Spelling::SentencePiece { space: '▁', byte_fallback: false });
        let err = spelling(Some(&json!({"type": "WordPiece", "prefix": "##"}))).unwrap_err();
        assert!(err.to_string().contains("WordPiece"), "{err}");
        assert!(spelling(None).is_err());
    }

    #[test]
    fn fallback_bytes() {
        assert_eq!(fallback_byte("<0x0A>"), Some(b'\n'));
        assert_eq!(fallback_byte("<0xE2>"), Some(0xE2));
        assert_eq!(fallback_byte("<0x1>"), None);
        assert_eq!(fallback_byte("<s>"), None);
    }
}
