//! Building a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! A GGUF carries no `tokenizer.json`: only the vocabulary (tokens, scores, token types), the BPE
//! merges, special token ids and flags, and the name of the pre-tokenizer (`tokenizer.ggml.pre`).
//! We rebuild the `tokenizers` pipeline from those, the way transformers' GGUF converter
//! (`integrations/gguf/gguf_tokenizer_mapping.py`) builds the model and special tokens, and the way
//! llama.cpp (`src/llama-vocab.cpp`) maps `pre` to a split regex — a wrong split changes ids
//! silently, so a `pre` we have no regex for is an error, never a guess.
//!
//! ```no_run
//! use chatlm_tokenizer::gguf_vocab::GgufTokenizerParts;
//! let parts = GgufTokenizerParts::from_path("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let ids = parts.tokenizer.encode("Hello", false).unwrap().get_ids().to_vec();
//! assert_eq!(parts.eos_token.as_deref(), Some("<|im_end|>"));
//! # Ok::<(), chatlm_tokenizer::gguf_vocab::GgufVocabError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chatlm_gguf::{GgufError, GgufFile, MetadataValue};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// Why a GGUF vocabulary could not become a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufVocabError {
    /// The container itself is unreadable.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `tokenizer.ggml.model` names a tokenizer kind we do not build.
    #[error("unsupported GGUF tokenizer model {model:?} (supported: \"gpt2\", \"llama\")")]
    UnknownModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer we have no split rule for.
    #[error("unknown GGUF pre-tokenizer {pre:?} for tokenizer model {model:?} (known: {known})")]
    UnknownPre {
        /// The value of `tokenizer.ggml.pre` (`"<missing>"` when absent).
        pre: String,
        /// The value of `tokenizer.ggml.model`.
        model: String,
        /// The names accepted for that model.
        known: String,
    },
    /// Two per-token arrays of different lengths.
    #[error("{key} has {len} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch {
        /// The array that disagrees.
        key: String,
        /// Its length.
        len: usize,
        /// The number of tokens.
        expected: usize,
    },
    /// A metadata value of the wrong type.
    #[error("{key}: expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A special token id outside the vocabulary.
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    IdOutOfRange {
        /// The key.
        key: String,
        /// The id.
        id: u64,
        /// Number of tokens.
        vocab_size: usize,
    },
    /// A merge that is not two space-separated tokens.
    #[error("tokenizer.ggml.merges[{index}] = {merge:?} is not \"left right\"")]
    BadMerge {
        /// Position in the array.
        index: usize,
        /// The entry.
        merge: String,
    },
    /// The `tokenizers` library rejected the assembled pipeline.
    #[error("building the tokenizer from {what}: {message}")]
    Build {
        /// Which part was being built.
        what: &'static str,
        /// The library's message.
        message: String,
    },
}

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Everything a GGUF says about its tokenizer, with the `tokenizers` pipeline built.
#[derive(Debug, Clone)]
pub struct GgufTokenizerParts {
    /// Model, pre-tokenizer, decoder, post-processor and added tokens.
    pub tokenizer: tokenizers::Tokenizer,
    /// `tokenizer.ggml.model` (`"gpt2"` or `"llama"`).
    pub model: String,
    /// `tokenizer.ggml.pre`, when present.
    pub pre: Option<String>,
    /// Token text of `tokenizer.ggml.bos_token_id`.
    pub bos_token: Option<String>,
    /// Token text of `tokenizer.ggml.eos_token_id`.
    pub eos_token: Option<String>,
    /// Token text of `tokenizer.ggml.unknown_token_id`.
    pub unk_token: Option<String>,
    /// Token text of `tokenizer.ggml.padding_token_id`.
    pub pad_token: Option<String>,
    /// Token text of `tokenizer.ggml.seperator_token_id` (llama.cpp's spelling).
    pub sep_token: Option<String>,
    /// Whether encoding with special tokens prepends BOS (already in the post-processor).
    pub add_bos_token: bool,
    /// Whether encoding with special tokens appends EOS (already in the post-processor).
    pub add_eos_token: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// `tokenizer.chat_template.<name>` entries, in file order.
    pub named_chat_templates: Vec<(String, String)>,
    /// End-of-generation ids the file names: eos, eot and eom, deduplicated.
    pub stop_token_ids: Vec<u32>,
    /// Size of the file's vocabulary (`tokenizer.ggml.tokens`).
    pub vocab_size: usize,
}

impl GgufTokenizerParts {
    /// Opens `path` and builds the tokenizer from its metadata.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, GgufVocabError> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    /// Builds the tokenizer from an opened GGUF.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufVocabError> {
        let model = file.require_str("tokenizer.ggml.model")?.to_owned();
        let pre = file.get_str("tokenizer.ggml.pre").map(str::to_owned);
        let tokens = string_array(file, "tokenizer.ggml.tokens")?;
        let token_types = match file.get("tokenizer.ggml.token_type") {
            Some(v) => Some(int_array(v, "tokenizer.ggml.token_type", tokens.len())?),
            None => None,
        };
        let special_id = |key: &str| -> Result<Option<u32>, GgufVocabError> {
            match file.get_u64(key)? {
                None => Ok(None),
                Some(id) if id < tokens.len() as u64 => Ok(Some(id as u32)),
                Some(id) => Err(GgufVocabError::IdOutOfRange { key: key.to_owned(), id, vocab_size: tokens.len() }),
            }
        };
        let bos_id = special_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = special_id("tokenizer.ggml.eos_token_id")?;
        let unk_id = special_id("tokenizer.ggml.unknown_token_id")?;
        let pad_id = special_id("tokenizer.ggml.padding_token_id")?;
        let sep_id = special_id("tokenizer.ggml.seperator_token_id")?;
        let eot_id = special_id("tokenizer.ggml.eot_token_id")?;
        let eom_id = special_id("tokenizer.ggml.eom_token_id")?;
        let text = |id: Option<u32>| id.map(|i| tokens[i as usize].clone());

        let (mut tokenizer, split_kind) = match model.as_str() {
            "gpt2" => {
                let split = bpe_split(&model, pre.as_deref())?;
                let merges = merges(file)?;
                (byte_level_bpe(&tokens, merges, split)?, Some(split))
            }
            "llama" => {
                check_spm_pre(&model, pre.as_deref())?;
                let scores = match file.get("tokenizer.ggml.scores") {
                    Some(v) => float_array(v, "tokenizer.ggml.scores", tokens.len())?,
                    None => vec![0.0; tokens.len()],
                };
                let merges = match file.get("tokenizer.ggml.merges") {
                    Some(_) => merges(file)?,
                    None => merges_from_scores(&tokens, &scores),
                };
                let add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                (sentencepiece_bpe(&tokens, merges, text(unk_id), add_space_prefix)?, None)
            }
            _ => return Err(GgufVocabError::UnknownModel { model }),
        };

        add_typed_tokens(&mut tokenizer, &tokens, token_types.as_deref(), split_kind.is_some())?;
        // bos/eos/unk/pad are special in transformers whatever their token type says.
        let named: Vec<AddedToken> = [bos_id, eos_id, unk_id, pad_id, sep_id]
            .into_iter()
            .flatten()
            .map(|id| AddedToken::from(tokens[id as usize].clone(), true).normalized(false))
            .filter(|t| tokenizer.get_vocab(true).contains_key(&t.content))
            .collect();
        add(&mut tokenizer, named, true)?;

        // Older SentencePiece files have no flag and llama.cpp adds BOS to them; a Llama 3 style
        // vocabulary also defaults to BOS in llama.cpp (`llama-vocab.cpp`, LLAMA3 pre type).
        let default_bos = model == "llama" || split_kind == Some(BpeSplit::Llama3);
        let add_bos_token = file.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos) && bos_id.is_some();
        let add_eos_token = file.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false) && eos_id.is_some();
        let post = post_processor(text(bos_id).zip(bos_id).filter(|_| add_bos_token), text(eos_id).zip(eos_id).filter(|_| add_eos_token))?;
        tokenizer.with_post_processor(Some(post));

        let chat_template = file.get_str("tokenizer.chat_template").map(str::to_owned);
        let named_chat_templates = file
            .metadata()
            .iter()
            .filter_map(|(key, value)| Some((key.strip_prefix("tokenizer.chat_template.")?.to_owned(), value.as_str()?.to_owned())))
            .collect();
        let mut stop_token_ids: Vec<u32> = [eos_id, eot_id, eom_id].into_iter().flatten().collect();
        stop_token_ids.sort_unstable();
        stop_token_ids.dedup();

        Ok(GgufTokenizerParts {
            tokenizer,
            model,
            pre,
            bos_token: text(bos_id),
            eos_token: text(eos_id),
            unk_token: text(unk_id),
            pad_token: text(pad_id),
            sep_token: text(sep_id),
            add_bos_token,
            add_eos_token,
            chat_template,
            named_chat_templates,
            stop_token_ids,
            vocab_size: tokens.len(),
        })
    }
}

/// The pre-tokenizer families of byte-level BPE vocabularies, by llama.cpp's `pre` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BpeSplit {
    /// GPT-2's own regex (ByteLevel's built-in one).
    Gpt2,
    /// Each digit alone, then GPT-2's regex (StarCoder, SmolLM).
    DigitsThenGpt2,
    /// Llama 3's regex: numbers in groups of up to three, merges ignored for whole-vocab words.
    Llama3,
    /// Qwen2's regex: like Llama 3 but one digit at a time.
    Qwen2,
}

/// `pre` names per family, as `llama-vocab.cpp` groups them (only families we have tests for).
const BPE_PRE_NAMES: &[(BpeSplit, &[&str])] = &[
    (BpeSplit::Gpt2, &["gpt-2", "phi-2", "mpt", "olmo", "jais"]),
    (BpeSplit::DigitsThenGpt2, &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"]),
    (BpeSplit::Llama3, &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"]),
    (BpeSplit::Qwen2, &["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"]),
];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn bpe_split(model: &str, pre: Option<&str>) -> Result<BpeSplit, GgufVocabError> {
    BPE_PRE_NAMES
        .iter()
        .find(|(_, names)| pre.is_some_and(|p| names.contains(&p)))
        .map(|(split, _)| *split)
        .ok_or_else(|| GgufVocabError::UnknownPre {
            // A missing or "default" pre means llama.cpp's own fallback regex, which it warns
            // degrades output; no HF tokenizer splits that way, so it is refused like any other.
            pre: pre.unwrap_or("<missing>").to_owned(),
            model: model.to_owned(),
            known: BPE_PRE_NAMES.iter().flat_map(|(_, n)| n.iter()).copied().collect::<Vec<_>>().join(", "),
        })
}

fn check_spm_pre(model: &str, pre: Option<&str>) -> Result<(), GgufVocabError> {
    // llama.cpp ignores `pre` for SentencePiece vocabularies; its converter writes "default".
    match pre {
        None | Some("default") | Some("llama") => Ok(()),
        Some(other) => Err(GgufVocabError::UnknownPre {
            pre: other.to_owned(),
            model: model.to_owned(),
            known: "default, llama".to_owned(),
        }),
    }
}

fn build_err(what: &'static str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> GgufVocabError {
    move |e| GgufVocabError::Build { what, message: e.to_string() }
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>, GgufVocabError> {
    let value = file.require(key)?;
    let items = value.as_str_array().ok_or(GgufVocabError::WrongType { key: key.to_owned(), expected: "array of strings" })?;
    Ok(items.into_iter().map(str::to_owned).collect())
}

fn checked_array<'a>(value: &'a MetadataValue, key: &str, expected: usize) -> Result<&'a [MetadataValue], GgufVocabError> {
    let items = value.as_array().ok_or(GgufVocabError::WrongType { key: key.to_owned(), expected: "array" })?;
    if items.len() != expected {
        return Err(GgufVocabError::LengthMismatch { key: key.to_owned(), len: items.len(), expected });
    }
    Ok(items)
}

fn int_array(value: &MetadataValue, key: &str, expected: usize) -> Result<Vec<i64>, GgufVocabError> {
    checked_array(value, key, expected)?
        .iter()
        .map(|v| v.as_i64().ok_or(GgufVocabError::WrongType { key: key.to_owned(), expected: "array of integers" }))
        .collect()
}

fn float_array(value: &MetadataValue, key: &str, expected: usize) -> Result<Vec<f64>, GgufVocabError> {
    checked_array(value, key, expected)?
        .iter()
        .map(|v| v.as_f64().ok_or(GgufVocabError::WrongType { key: key.to_owned(), expected: "array of floats" }))
        .collect()
}

fn merges(file: &GgufFile) -> Result<Vec<(String, String)>, GgufVocabError> {
    let Some(value) = file.get("tokenizer.ggml.merges") else { return Ok(Vec::new()) };
    let items = value.as_str_array().ok_or(GgufVocabError::WrongType {
        key: "tokenizer.ggml.merges".to_owned(),
        expected: "array of strings",
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, merge)| match merge.split_once(' ') {
            Some((l, r)) if !l.is_empty() && !r.is_empty() && !r.contains(' ') => Ok((l.to_owned(), r.to_owned())),
            _ => Err(GgufVocabError::BadMerge { index, merge: merge.to_owned() }),
        })
        .collect()
}

/// GPT-2's byte → printable character table (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        table[usize::from(b)] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

/// A token spelled outside the byte alphabet is respelled byte by byte, as transformers does, so
/// the vocabulary stays consistent with what ByteLevel produces.
fn byte_level_spelling(token: &str, alphabet: &HashSet<char>, table: &[char; 256]) -> String {
    if token.chars().all(|c| alphabet.contains(&c)) {
        token.to_owned()
    } else {
        token.bytes().map(|b| table[usize::from(b)]).collect()
    }
}

fn byte_level_bpe(tokens: &[String], merges: Vec<(String, String)>, split: BpeSplit) -> Result<tokenizers::Tokenizer, GgufVocabError> {
    let table = byte_alphabet();
    let alphabet: HashSet<char> = table.iter().copied().collect();
    let respell = |t: &str| byte_level_spelling(t, &alphabet, &table);
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (respell(t), i as u32)).collect();
    let merges = merges.into_iter().map(|(l, r)| (respell(&l), respell(&r))).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(split == BpeSplit::Llama3)
        .build()
        .map_err(build_err("tokenizer.ggml.tokens/merges"))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    let regex = |pattern: &str| -> Result<PreTokenizerWrapper, GgufVocabError> {
        Split::new(SplitPattern::Regex(pattern.to_owned()), SplitDelimiterBehavior::Isolated, false)
            .map(PreTokenizerWrapper::Split)
            .map_err(build_err("the pre-tokenizer regex"))
    };
    let pre: PreTokenizerWrapper = match split {
        BpeSplit::Gpt2 => ByteLevel::new(false, true, true).into(),
        // llama.cpp splits `\p{N}` here; HF's tokenizer.json for these models (SmolLM2, StarCoder)
        // uses `Digits`, which is the same split except for 13 rare code points. Ids must equal HF's.
        BpeSplit::DigitsThenGpt2 => PreSequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        BpeSplit::Llama3 => PreSequence::new(vec![regex(LLAMA3_SPLIT)?, ByteLevel::new(false, false, false).into()]).into(),
        BpeSplit::Qwen2 => PreSequence::new(vec![regex(QWEN2_SPLIT)?, ByteLevel::new(false, false, false).into()]).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// SentencePiece files list no merges; recover them from the scores like transformers'
/// `generate_merges`: every split of a token into two vocabulary pieces, best score first.
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    // Python's dict(zip(tokens, scores)): first position, last score for a repeated token.
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        if score_of.insert(token, score).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .map(|(l, r)| (l, r, score_of[token]))
            .collect();
        local.sort_by_key(|(l, r, _)| (ids[l], ids[r]));
        merges.extend(local);
    }
    // Stable sort, descending on (score, left chars, right chars) as Python's sorted(reverse=True).
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l.to_owned(), r.to_owned())).collect()
}

fn sentencepiece_bpe(
    tokens: &[String],
    merges: Vec<(String, String)>,
    unk: Option<String>,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer, GgufVocabError> {
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(build_err("tokenizer.ggml.tokens/scores"))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    // llama.cpp prefixes each text fragment with a space and escapes every space as "▁" before
    // merging; HF's Llama 2 tokenizer.json says the same with this normalizer (and no
    // pre-tokenizer). transformers' GGUF converter uses `Metaspace(prepend_scheme="first")`
    // instead, which drops the extra "▁" of text starting with a space (" Hello" → [15043] instead
    // of HF's and llama.cpp's [29871, 15043]).
    if add_space_prefix {
        let normalizer = NormalizerSequence::new(vec![
            Prepend::new("▁".to_owned()).into(),
            Replace::new(" ", "▁").map_err(build_err("the normalizer"))?.into(),
        ]);
        tokenizer.with_normalizer(Some(normalizer)).map_err(build_err("the normalizer"))?;
    } else {
        let normalizer = Replace::new(" ", "▁").map_err(build_err("the normalizer"))?;
        tokenizer.with_normalizer(Some(normalizer)).map_err(build_err("the normalizer"))?;
    }
    let mut steps: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(build_err("the decoder"))?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(steps)));
    Ok(tokenizer)
}

fn add(tokenizer: &mut tokenizers::Tokenizer, tokens: Vec<AddedToken>, special: bool) -> Result<(), GgufVocabError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let added = if special { tokenizer.add_special_tokens(tokens) } else { tokenizer.add_tokens(tokens) };
    added.map(|_| ()).map_err(build_err("the added tokens"))
}

/// Control tokens become special added tokens and user-defined ones plain added tokens, so both
/// are matched whole in text, as llama.cpp does.
fn add_typed_tokens(
    tokenizer: &mut tokenizers::Tokenizer,
    tokens: &[String],
    types: Option<&[i64]>,
    byte_level: bool,
) -> Result<(), GgufVocabError> {
    let Some(types) = types else { return Ok(()) };
    let alphabet: HashSet<char> = byte_alphabet().into_iter().collect();
    let vocab = tokenizer.get_vocab(false);
    let of_type = |wanted: i64| tokens.iter().zip(types).filter(move |(_, &t)| t == wanted).map(|(token, _)| token);
    // A byte-level control token spelled outside the byte alphabet is a llama.cpp mislabel;
    // transformers skips it rather than grow the vocabulary.
    let control = of_type(TOKEN_TYPE_CONTROL)
        .filter(|t| !byte_level || t.chars().all(|c| alphabet.contains(&c)))
        .map(|t| AddedToken::from(t.clone(), true).normalized(false))
        .collect();
    add(tokenizer, control, true)?;
    let user = of_type(TOKEN_TYPE_USER_DEFINED)
        .filter(|t| vocab.contains_key(*t))
        .map(|t| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    add(tokenizer, user, false)
}

fn post_processor(bos: Option<(String, u32)>, eos: Option<(String, u32)>) -> Result<TemplateProcessing, GgufVocabError> {
    let bos_a = bos.as_ref().map(|(t, _)| format!("{t}:0 ")).unwrap_or_default();
    let eos_a = eos.as_ref().map(|(t, _)| format!(" {t}:0")).unwrap_or_default();
    let bos_b = bos.as_ref().map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let eos_b = eos.as_ref().map(|(t, _)| format!(" {t}:1")).unwrap_or_default();
    let single = format!("{bos_a}$A:0{eos_a}");
    let pair = format!("{single}{bos_b} $B:1{eos_b}");
    let specials: Vec<(String, u32)> = bos.into_iter().chain(eos).collect();
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|message| GgufVocabError::Build { what: "the post-processor", message })?
        .special_tokens(specials)
        .build()
        .map_err(|e| GgufVocabError::Build { what: "the post-processor", message: e.to_string() })
}
