//! Tokenizer hygiene from the fine-tuning tutorials: a PAD that is not EOS, extra special tokens
//! (e.g. a response-template token), the embedding size padded to a multiple, and a chat template built
//! from bos/eos when the tokenizer has none — saved so transformers loads it.

use chatlm_tokenizer::{ChatTemplateSource, Tokenizer};

use crate::error::{DataError, Result};

/// The token added as PAD when the tokenizer has neither a distinct PAD nor an UNK.
pub const DEFAULT_PAD: &str = "<|pad|>";

/// What to change.
#[derive(Clone, Debug, Default)]
pub struct HygieneOptions {
    /// PAD to use: `Some("unk")` for the UNK token, another string for that token (added as special when
    /// missing); `None` fixes PAD only when it is missing or equal to EOS (UNK if any, else [`DEFAULT_PAD`]).
    pub pad_token: Option<String>,
    /// Special tokens to add.
    pub add_special_tokens: Vec<String>,
    /// Replace the chat template with ChatML built from bos/eos (also done when there is no template).
    pub chatml: bool,
    /// Round the embedding size up to a multiple of this (64 when 0).
    pub pad_to_multiple_of: usize,
}

/// What was done and the numbers to give the model.
#[derive(Clone, Debug, Default)]
pub struct HygieneReport {
    /// PAD before.
    pub pad_before: Option<String>,
    /// PAD after.
    pub pad_after: Option<String>,
    /// Whether PAD was equal to EOS before.
    pub pad_was_eos: bool,
    /// Tokens newly added to the vocabulary.
    pub added: usize,
    /// `len(tokenizer)` after the changes: the model needs at least this many embedding rows.
    pub len: usize,
    /// `len` rounded up to the requested multiple (`resize_token_embeddings(..., pad_to_multiple_of=...)`).
    pub embedding_rows: usize,
    /// Whether a chat template was written.
    pub template_written: bool,
    /// Notes for the user.
    pub notes: Vec<String>,
}

/// Apply the fixes to `tok` in place.
pub fn fix_tokenizer(tok: &mut Tokenizer, opts: &HygieneOptions) -> Result<HygieneReport> {
    let terr = |e: chatlm_tokenizer::TokenizerError| DataError::Tokenizer(e.to_string());
    let mut rep = HygieneReport {
        pad_before: tok.special_tokens().pad.clone(),
        pad_was_eos: tok.pad_token_id().is_some() && tok.pad_token_id() == tok.eos_token_id(),
        ..Default::default()
    };
    if !opts.add_special_tokens.is_empty() {
        let toks: Vec<&str> = opts.add_special_tokens.iter().map(String::as_str).collect();
        rep.added += tok.add_special_tokens(&toks).map_err(terr)?;
    }
    let unk = tok.special_tokens().unk.clone();
    let choice = match opts.pad_token.as_deref() {
        Some("unk") => Some(unk.clone().ok_or_else(|| DataError::option("pad-token", "the tokenizer has no UNK token"))?),
        Some(t) => Some(t.to_string()),
        None if tok.pad_token_id().is_none() || rep.pad_was_eos => Some(unk.clone().unwrap_or_else(|| DEFAULT_PAD.to_string())),
        None => None,
    };
    if let Some(p) = choice {
        if tok.special_tokens().eos.as_deref() == Some(p.as_str()) {
            return Err(DataError::option("pad-token", format!("{p:?} is the EOS token; PAD must differ from EOS")));
        }
        rep.added += tok.set_pad_token(&p).map_err(terr)?;
        rep.notes.push(format!("pad_token set to {p:?} (id {:?})", tok.pad_token_id()));
    }
    rep.pad_after = tok.special_tokens().pad.clone();
    if opts.chatml || tok.chat_template().is_none() {
        let (bos, eos) = (tok.special_tokens().bos.clone(), tok.special_tokens().eos.clone());
        match (bos, eos) {
            (Some(b), Some(e)) => {
                tok.set_chat_template(Some(ChatTemplateSource::Single(chatlm_template::chatml_with_tokens(&b, &e))));
                rep.template_written = true;
                rep.notes.push(format!("chat template: ChatML from bos {b:?} / eos {e:?}"));
            }
            _ => rep.notes.push("no chat template written: the tokenizer lacks bos or eos".into()),
        }
    }
    let m = if opts.pad_to_multiple_of == 0 { 64 } else { opts.pad_to_multiple_of };
    rep.len = tok.len();
    rep.embedding_rows = rep.len.div_ceil(m) * m;
    if rep.added > 0 {
        rep.notes.push(format!(
            "{} new tokens: resize the model's embeddings to at least {} rows ({} padded to a multiple of {m})",
            rep.added, rep.len, rep.embedding_rows
        ));
    }
    Ok(rep)
}
