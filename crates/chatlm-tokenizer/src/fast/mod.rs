//! A faster `encode` for byte-level BPE tokenizers, with exactly the ids of the `tokenizers`
//! pipeline it stands in for.
//!
//! Why not just `tokenizers`: its generic pipeline wraps every piece of text in a
//! `NormalizedString` with per-byte alignments, runs the split pattern through a backtracking
//! regex engine, and returns each token as an owned `String`. For the pipelines nearly every
//! byte-level model uses (GPT-2, Llama 3, Qwen2, SmolLM splits) this module does the same steps
//! directly: added tokens are cut out with the same leftmost-longest automata, the split pattern
//! is a hand-written state machine ([`split`]), and each piece's ids come from a per-thread cache
//! of pieces, filled by calling the very BPE model of the tokenizer on a miss. Anything it does
//! not reproduce (other normalizers, token flags, a text whose normalization would change it)
//! makes [`FastEncoder::build`] return `None` or [`FastEncoder::encode`] return `None`, and the
//! caller takes the `tokenizers` path.

mod cache;
mod classes;
mod split;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::{json, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::{Model, ModelWrapper, Normalizer};

use split::SplitPattern;

/// GPT-2's byte → symbol table, shared with [`crate::token_bytes`] (which reads it backwards).
pub(crate) use cache::byte_char;

/// The fast path of one tokenizer (derived data only: the BPE model stays in the tokenizer).
#[derive(Debug, Clone)]
pub(crate) struct FastEncoder {
    pattern: SplitPattern,
    /// Added tokens matched on the raw text (`normalized: false`), then on the rest.
    raw_tokens: Option<TokenMatcher>,
    normalized_tokens: Option<TokenMatcher>,
    /// The normalizer is NFC (Qwen2): texts it would change are left to `tokenizers`.
    nfc: bool,
    /// Ids the post-processor puts around a single sequence (BOS, EOS, …).
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    cache: cache::PieceCache,
}

#[derive(Debug, Clone)]
struct TokenMatcher {
    automaton: AhoCorasick,
    ids: Vec<u32>,
}

impl TokenMatcher {
    fn new(tokens: Vec<(String, u32)>) -> Option<Self> {
        if tokens.is_empty() {
            return None;
        }
        // `tokenizers` matches added tokens leftmost-longest (daachorse); aho-corasick's
        // LeftmostLongest is the same rule.
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|(content, _)| content.as_str()))
            .ok()?;
        Some(Self { automaton, ids: tokens.into_iter().map(|(_, id)| id).collect() })
    }
}

const PROBE_ID: u32 = u32::MAX - 7;

impl FastEncoder {
    /// The fast path for `tokenizer`, when its pipeline is one this module reproduces.
    pub(crate) fn build(tokenizer: &tokenizers::Tokenizer) -> Option<Self> {
        if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
            return None;
        }
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else { return None };
        if !plain_byte_level_bpe(bpe) {
            return None;
        }
        let nfc = match tokenizer.get_normalizer().map(serde_json::to_value) {
            None => false,
            Some(Ok(v)) if v == json!({"type": "NFC"}) => true,
            Some(_) => return None,
        };
        let pattern = split_pattern(&serde_json::to_value(tokenizer.get_pre_tokenizer()?).ok()?)?;

        let added = tokenizer.get_added_vocabulary();
        if added.get_encode_special_tokens() {
            return None;
        }
        let (mut raw, mut normalized) = (Vec::new(), Vec::new());
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.lstrip || token.rstrip || token.single_word || token.content.is_empty() {
                return None;
            }
            if token.normalized {
                // Matched against the normalized text by its normalized form: the same string
                // as long as NFC leaves it alone, which holds for ASCII.
                if nfc && !token.content.is_ascii() {
                    return None;
                }
                normalized.push((token.content, id));
            } else {
                raw.push((token.content, id));
            }
        }
        let (prefix, suffix) = special_ids_around(tokenizer)?;
        Some(Self {
            pattern,
            raw_tokens: TokenMatcher::new(raw),
            normalized_tokens: TokenMatcher::new(normalized),
            nfc,
            prefix,
            suffix,
            cache: cache::PieceCache::new(),
        })
    }

    /// The ids of `text`, or `None` where this text needs the `tokenizers` path.
    pub(crate) fn encode(&self, tokenizer: &tokenizers::Tokenizer, text: &str, add_special_tokens: bool) -> Option<Vec<u32>> {
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else { return None };
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        if add_special_tokens {
            ids.extend_from_slice(&self.prefix);
        }
        let mut ok = true;
        each_segment(self.raw_tokens.as_ref(), text, &mut |segment| match segment {
            Segment::Token(id) => ids.push(id),
            Segment::Text(part) => {
                if ok && self.nfc && !part.is_ascii() && !nfc_unchanged(tokenizer, part) {
                    ok = false;
                }
                each_segment(self.normalized_tokens.as_ref(), part, &mut |segment| match segment {
                    Segment::Token(id) => ids.push(id),
                    Segment::Text(part) => ok &= self.encode_plain(bpe, part, &mut ids),
                });
            }
        });
        if add_special_tokens {
            ids.extend_from_slice(&self.suffix);
        }
        ok.then_some(ids)
    }

    /// Split, then each piece through the cache (BPE on a miss).
    fn encode_plain(&self, bpe: &BPE, text: &str, ids: &mut Vec<u32>) -> bool {
        self.cache.with(|pieces| {
            let mut ok = true;
            let split = self.pattern.split(text, &mut |piece| {
                ok = ok
                    && pieces.ids_of(piece, ids, |piece, out| match bpe.tokenize(&cache::byte_level(piece)) {
                        Ok(tokens) => {
                            out.extend(tokens.iter().map(|t| t.id));
                            true
                        }
                        Err(_) => false,
                    });
            });
            ok && split.is_ok()
        })
    }
}

enum Segment<'a> {
    Token(u32),
    Text(&'a str),
}

/// `AddedVocabulary::find_matches` for tokens without strip/single-word flags.
fn each_segment<'a>(matcher: Option<&TokenMatcher>, text: &'a str, f: &mut impl FnMut(Segment<'a>)) {
    let Some(matcher) = matcher else {
        f(Segment::Text(text));
        return;
    };
    let mut last = 0;
    for m in matcher.automaton.find_iter(text) {
        if m.start() > last {
            f(Segment::Text(&text[last..m.start()]));
        }
        f(Segment::Token(matcher.ids[m.pattern().as_usize()]));
        last = m.end();
    }
    if last < text.len() {
        f(Segment::Text(&text[last..]));
    }
}

fn nfc_unchanged(tokenizer: &tokenizers::Tokenizer, text: &str) -> bool {
    let Some(normalizer) = tokenizer.get_normalizer() else { return true };
    let mut normalized = tokenizers::NormalizedString::from(text);
    normalizer.normalize(&mut normalized).is_ok() && normalized.get() == text
}

/// BPE over byte-level symbols with nothing that changes pieces (dropout, prefixes, suffixes).
fn plain_byte_level_bpe(bpe: &BPE) -> bool {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    bpe.dropout.is_none_or(|p| p == 0.0)
        && empty(&bpe.continuing_subword_prefix)
        && empty(&bpe.end_of_word_suffix)
        && !bpe.byte_fallback
}

/// Which hand-written split reproduces this pre-tokenizer (its JSON form).
fn split_pattern(pre: &Value) -> Option<SplitPattern> {
    let byte_level = |v: &Value, use_regex: bool| {
        v["type"] == "ByteLevel" && v["add_prefix_space"] == false && v["use_regex"] == use_regex
    };
    if byte_level(pre, true) {
        return Some(SplitPattern::Gpt2);
    }
    if pre["type"] != "Sequence" {
        return None;
    }
    match pre["pretokenizers"].as_array()?.as_slice() {
        [digits, level] if digits["type"] == "Digits" && digits["individual_digits"] == true && byte_level(level, true) => {
            Some(SplitPattern::DigitsThenGpt2)
        }
        [split, level]
            if split["type"] == "Split"
                && split["behavior"] == "Isolated"
                && split["invert"] == false
                && byte_level(level, false) =>
        {
            match split["pattern"]["Regex"].as_str()? {
                split::LLAMA3 => Some(SplitPattern::Llama3 { max_digits: 3 }),
                split::QWEN2 => Some(SplitPattern::Llama3 { max_digits: 1 }),
                split::GPT2 => Some(SplitPattern::Gpt2),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The ids the post-processor adds before and after a single sequence, found by running it on
/// a one-token probe (so any processor — template, BOS/EOS flags, Roberta — is covered).
fn special_ids_around(tokenizer: &tokenizers::Tokenizer) -> Option<(Vec<u32>, Vec<u32>)> {
    let probe = tokenizers::Encoding::new(
        vec![PROBE_ID],
        vec![0],
        vec![String::new()],
        vec![None],
        vec![(0, 0)],
        vec![0],
        vec![1],
        Vec::new(),
        Default::default(),
    );
    // Without special tokens the processor must leave the ids alone.
    if tokenizer.post_process(probe.clone(), None, false).ok()?.get_ids() != [PROBE_ID] {
        return None;
    }
    let processed = tokenizer.post_process(probe, None, true).ok()?;
    let ids = processed.get_ids();
    let at = ids.iter().position(|&id| id == PROBE_ID)?;
    if ids.iter().filter(|&&id| id == PROBE_ID).count() != 1 {
        return None;
    }
    Some((ids[..at].to_vec(), ids[at + 1..].to_vec()))
}
