//! Tokenizer classes that transformers 5 rebuilds instead of loading tokenizer.json as is.
//!
//! In transformers 5 a tokenizer class with its own `__init__` (resolved from
//! `tokenizer_config.json`'s `tokenizer_class`) takes only the vocabulary, merges and
//! post-processor from tokenizer.json and sets normalizer, pre-tokenizer and decoder itself.
//! Old Llama 2 files carry the legacy "prepend ▁ then replace spaces" normalizer, which splits
//! leading spaces differently (`" "` → `▁▁` instead of `▁`), so copying the file would disagree
//! with `AutoTokenizer` on exactly the whitespace cases that break prompts.

use serde_json::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};

use crate::{PaddingSide, TokenizerConfig};

/// transformers' `LlamaTokenizer` (also `LlamaTokenizerFast`, its alias): no normalizer,
/// Metaspace pre-tokenizer, `▁`-to-space + byte-fallback decoder, padding on the left.
pub(crate) fn apply_class_pipeline(
    inner: &mut tokenizers::Tokenizer,
    config: &mut TokenizerConfig,
) -> Result<(), String> {
    let class = config.raw.get("tokenizer_class").and_then(Value::as_str).unwrap_or_default();
    if !matches!(class, "LlamaTokenizer" | "LlamaTokenizerFast") {
        return Ok(());
    }
    let add_prefix_space = config.raw.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(true);
    let legacy = config.raw.get("legacy").and_then(Value::as_bool).unwrap_or(false);
    let scheme = match (add_prefix_space, legacy) {
        (false, _) => PrependScheme::Never,
        (true, true) => PrependScheme::Always,
        (true, false) => PrependScheme::First,
    };
    inner.with_normalizer(None::<tokenizers::NormalizerWrapper>).map_err(|e| e.to_string())?;
    inner.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)));
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(|e| e.to_string())?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_prefix_space {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    if !config.raw.contains_key("padding_side") {
        config.padding_side = PaddingSide::Left;
    }
    Ok(())
}
