//! [`Tokenizer`]: a `tokenizers` pipeline plus everything transformers keeps beside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

use crate::fast::FastEncoder;
use crate::config::{ChatTemplateSource, PaddingSide, SpecialTokens, TokenizerConfig};
use crate::gguf_vocab::GgufTokenizerParts;
use crate::TokenizerError;

/// End-of-turn markers of the chat templates in common use. A generator must stop on them as
/// well as on EOS (Llama 3 instruct ends turns with `<|eot_id|>`, not `<|end_of_text|>`).
pub const END_OF_TURN_TOKENS: [&str; 8] = [
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>",
    "<|endofturn|>",
    "</s>",
];

/// Tokenizer classes whose transformers implementation rebuilds the post-processor from
/// `add_bos_token` / `add_eos_token` (`update_post_processor`), ignoring the one in tokenizer.json.
const POST_PROCESSOR_FROM_FLAGS: [&str; 8] = [
    "LlamaTokenizer",
    "LlamaTokenizerFast",
    "CodeLlamaTokenizer",
    "CodeLlamaTokenizerFast",
    "GemmaTokenizer",
    "GemmaTokenizerFast",
    "CohereTokenizer",
    "CohereTokenizerFast",
];

/// Choices when loading that transformers versions disagree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Rebuild the pipeline of classes transformers 5 rebuilds (Llama: no legacy normalizer,
    /// Metaspace "first"), as `AutoTokenizer` does today. `false` keeps tokenizer.json exactly as
    /// the `tokenizers` library (and transformers 4, and llama.cpp's test vectors) reads it.
    pub transformers_class_pipeline: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { transformers_class_pipeline: true }
    }
}

impl LoadOptions {
    /// tokenizer.json exactly as written (`tokenizers.Tokenizer.from_file`).
    pub fn tokenizer_json_as_is() -> Self {
        Self { transformers_class_pipeline: false }
    }
}

/// Ids and byte offsets of one encoded text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Byte range of each token in the input text; `(0, 0)` for added special tokens such as BOS.
    pub offsets: Vec<(usize, usize)>,
}

/// A tokenizer that behaves like transformers' `AutoTokenizer` for the same files.
///
/// ```no_run
/// use chatlm_tokenizer::Tokenizer;
/// let tok = Tokenizer::from_pretrained("models/Llama-3-8B-Instruct")?;
/// let ids = tok.encode("Hello", true)?;           // [128000, 9906]
/// assert_eq!(tok.decode(&ids, true)?, "Hello");
/// assert!(tok.stop_token_ids().contains(&128009)); // <|eot_id|>
/// # Ok::<(), chatlm_tokenizer::TokenizerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    config: TokenizerConfig,
    /// Stop ids a GGUF names explicitly (eot/eom), beyond eos.
    extra_stop_ids: Vec<u32>,
    /// `tokenizer.ggml.pre` of a GGUF source.
    gguf_pre: Option<String>,
    source: Option<PathBuf>,
    /// The hand-written encode path, built on first use; reset whenever the vocabulary changes.
    fast: OnceLock<Option<FastEncoder>>,
}

impl Tokenizer {
    /// Loads like `AutoTokenizer.from_pretrained`: a model directory, a `tokenizer.json`
    /// (reading the config files beside it) or a `.gguf` file.
    pub fn from_pretrained(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        Self::from_pretrained_with(path, LoadOptions::default())
    }

    /// [`Tokenizer::from_pretrained`] with explicit [`LoadOptions`].
    pub fn from_pretrained_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::from_dir(path, options);
        }
        if !path.exists() {
            return Err(TokenizerError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        if is_gguf(path)? {
            return Self::from_gguf(path);
        }
        if path.extension().is_some_and(|e| e == "json") {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut config = if path.file_name().is_some_and(|n| n == "tokenizer.json") {
                TokenizerConfig::from_dir(dir)?
            } else {
                TokenizerConfig::default()
            };
            config.keep_pipeline = !options.transformers_class_pipeline;
            return Self::from_parts(load_tokenizer_json(path)?, config, Some(path.to_owned()));
        }
        Err(TokenizerError::UnknownSource { path: path.to_owned() })
    }

    fn from_dir(dir: &Path, options: LoadOptions) -> Result<Self, TokenizerError> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            let hint = if dir.join("tokenizer.model").is_file() {
                " (only a SentencePiece tokenizer.model: convert it with transformers' \
                 `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)` first)"
            } else {
                ""
            };
            return Err(TokenizerError::MissingTokenizerJson { dir: dir.to_owned(), hint: hint.to_owned() });
        }
        let mut config = TokenizerConfig::from_dir(dir)?;
        config.keep_pipeline = !options.transformers_class_pipeline;
        Self::from_parts(load_tokenizer_json(&file)?, config, Some(dir.to_owned()))
    }

    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let parts = GgufTokenizerParts::from_path(path)
            .map_err(|source| TokenizerError::Gguf { path: path.to_owned(), source })?;
        Self::from_gguf_parts(parts, Some(path.to_owned()))
    }

    /// Builds the tokenizer from an already parsed GGUF vocabulary.
    pub fn from_gguf_parts(parts: GgufTokenizerParts, source: Option<PathBuf>) -> Result<Self, TokenizerError> {
        let chat_template = if parts.named_chat_templates.is_empty() {
            parts.chat_template.clone().map(ChatTemplateSource::Single)
        } else {
            let mut named = Vec::new();
            if let Some(t) = &parts.chat_template {
                named.push(("default".to_owned(), t.clone()));
            }
            named.extend(parts.named_chat_templates.iter().cloned());
            Some(ChatTemplateSource::Named(named))
        };
        let config = TokenizerConfig {
            special_tokens: SpecialTokens {
                bos: parts.bos_token.clone(),
                eos: parts.eos_token.clone(),
                unk: parts.unk_token.clone(),
                pad: parts.pad_token.clone(),
                sep: parts.sep_token.clone(),
                ..Default::default()
            },
            chat_template,
            add_bos_token: Some(parts.add_bos_token),
            add_eos_token: Some(parts.add_eos_token),
            ..Default::default()
        };
        let mut tok = Self::from_parts(parts.tokenizer, config, source)?;
        tok.extra_stop_ids = parts.stop_token_ids;
        tok.gguf_pre = parts.pre;
        Ok(tok)
    }

    /// Combines a `tokenizers` pipeline with transformers' configuration, applying it the way
    /// `PreTrainedTokenizerFast.__init__` does: declared added tokens and special tokens missing
    /// from the added vocabulary are added, and Llama-style classes rebuild their post-processor
    /// from `add_bos_token` / `add_eos_token`.
    pub fn from_parts(
        mut inner: tokenizers::Tokenizer,
        mut config: TokenizerConfig,
        source: Option<PathBuf>,
    ) -> Result<Self, TokenizerError> {
        // Turn off padding/truncation a tokenizer.json may carry: transformers' `encode` does not
        // pad or truncate unless asked.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load { path: source.clone().unwrap_or_default(), message: e.to_string() })?;

        if !config.keep_pipeline {
            crate::classes::apply_class_pipeline(&mut inner, &mut config)
                .map_err(|message| TokenizerError::Load { path: source.clone().unwrap_or_default(), message })?;
        }

        let mut declared = config.declared_added_tokens.clone();
        declared.sort_by_key(|t| t.id.unwrap_or(u32::MAX));
        for token in &declared {
            if inner.get_added_vocabulary().token_to_id(&token.content, inner.get_model()).is_none()
                || !inner.get_added_tokens_decoder().values().any(|t| t.content == token.content)
            {
                let added = AddedToken::from(token.content.clone(), token.special)
                    .lstrip(token.lstrip)
                    .rstrip(token.rstrip)
                    .normalized(token.normalized)
                    .single_word(token.single_word);
                add(&mut inner, added)?;
            }
        }
        let already: Vec<String> = inner.get_added_tokens_decoder().into_values().map(|t| t.content).collect();
        for token in config.special_tokens.all() {
            if !already.iter().any(|t| t == token) {
                add(&mut inner, AddedToken::from(token.to_owned(), true).normalized(false))?;
            }
        }

        let class = config.raw.get("tokenizer_class").and_then(|v| v.as_str()).unwrap_or_default();
        if POST_PROCESSOR_FROM_FLAGS.contains(&class) && (config.add_bos_token.is_some() || config.add_eos_token.is_some())
        {
            let processor = post_processor_from_flags(
                &inner,
                &config.special_tokens,
                config.add_bos_token.unwrap_or(true),
                config.add_eos_token.unwrap_or(false),
            )
            .map_err(|message| TokenizerError::Load { path: source.clone().unwrap_or_default(), message })?;
            inner.with_post_processor(Some(processor));
        }
        Ok(Self { inner, config, extra_stop_ids: Vec::new(), gguf_pre: None, source, fast: OnceLock::new() })
    }

    /// Where the tokenizer was loaded from, if from a file.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Text → ids, like `tokenizer.encode(text, add_special_tokens=…)`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        if let Some(fast) = self.fast.get_or_init(|| FastEncoder::build(&self.inner)) {
            if let Some(ids) = fast.encode(&self.inner, text, add_special_tokens) {
                return Ok(ids);
            }
        }
        self.encode_reference(text, add_special_tokens)
    }

    /// Whether [`Tokenizer::encode`] takes the hand-written path for this pipeline (byte-level
    /// BPE with the GPT-2, Llama 3, Qwen2 or SmolLM split); texts it cannot reproduce still
    /// go through `tokenizers`.
    pub fn has_fast_encode(&self) -> bool {
        self.fast.get_or_init(|| FastEncoder::build(&self.inner)).is_some()
    }

    /// [`Tokenizer::encode`] through the `tokenizers` pipeline only, never the hand-written
    /// fast path (which must give the same ids: this is what tests hold it against).
    pub fn encode_reference(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode_fast(text, add_special_tokens).map_err(|e| TokenizerError::encode(text, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text → ids with each token's byte range in `text` (what assistant masks need).
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> Result<Encoding, TokenizerError> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| TokenizerError::encode(text, e))?;
        Ok(Encoding { ids: encoding.get_ids().to_vec(), offsets: encoding.get_offsets().to_vec() })
    }

    /// Encodes many texts in parallel (rayon's pool; output order = input order).
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.par_iter().map(|t| self.encode(t.as_ref(), add_special_tokens)).collect()
    }

    /// Ids → text, like `tokenizer.decode(ids, skip_special_tokens=…)`, including
    /// `clean_up_tokenization_spaces` when the config asks for it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let len = self.len();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= len) {
            return Err(TokenizerError::UnknownId { id, len });
        }
        let text = self.inner.decode(ids, skip_special_tokens).map_err(TokenizerError::decode)?;
        // transformers 5 ignores the flag for BPE models: the clean-up strips real spaces there.
        let is_bpe = matches!(self.inner.get_model(), tokenizers::ModelWrapper::BPE(_));
        Ok(if self.config.clean_up_tokenization_spaces && !is_bpe { clean_up_tokenization(&text) } else { text })
    }

    /// Decodes many id lists in parallel.
    pub fn batch_decode(&self, batch: &[Vec<u32>], skip_special_tokens: bool) -> Result<Vec<String>, TokenizerError> {
        batch.par_iter().map(|ids| self.decode(ids, skip_special_tokens)).collect()
    }

    /// Text → token strings, like `tokenizer.tokenize(text)` (no special tokens added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        // `encode_fast` leaves token strings empty; this needs the full encoding.
        let encoding = self.inner.encode(text, false).map_err(|e| TokenizerError::encode(text, e))?;
        Ok(encoding.get_tokens().to_vec())
    }

    /// A token's id (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// An id's token string.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// `convert_tokens_to_ids` (`None` where transformers would give the unk id or `None`).
    pub fn convert_tokens_to_ids(&self, tokens: &[&str]) -> Vec<Option<u32>> {
        tokens.iter().map(|t| self.token_to_id(t).or_else(|| self.unk_token_id())).collect()
    }

    /// `convert_ids_to_tokens`.
    pub fn convert_ids_to_tokens(&self, ids: &[u32]) -> Vec<Option<String>> {
        ids.iter().map(|&id| self.id_to_token(id)).collect()
    }

    /// Token → id for every token, added ones included (`get_vocab()`).
    pub fn vocab(&self) -> HashMap<String, u32> {
        self.inner.get_vocab(true)
    }

    /// The base vocabulary size without added tokens (`tokenizer.vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(false)
    }

    /// Base vocabulary plus added tokens (`len(tokenizer)`): the embedding rows a model needs.
    pub fn len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Always false for a loaded tokenizer; here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The special-token map.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.config.special_tokens
    }

    fn role_id(&self, role: &str) -> Option<u32> {
        self.config.special_tokens.get(role).and_then(|t| self.token_to_id(t))
    }

    /// Id of the BOS token.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.role_id("bos_token")
    }

    /// Id of the EOS token.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.role_id("eos_token")
    }

    /// Id of the PAD token.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.role_id("pad_token")
    }

    /// Id of the UNK token.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.role_id("unk_token")
    }

    /// Ids of all special tokens in the map (`all_special_ids`).
    pub fn all_special_ids(&self) -> Vec<u32> {
        self.config.special_tokens.all().into_iter().filter_map(|t| self.token_to_id(t)).collect()
    }

    /// Ids that `skip_special_tokens` removes: every added token marked special.
    pub fn special_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> =
            self.inner.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }

    /// Adds normal tokens (`add_tokens`); returns how many were new.
    pub fn add_tokens(&mut self, tokens: &[&str]) -> Result<usize, TokenizerError> {
        let mut added = 0;
        for token in tokens {
            if self.token_to_id(token).is_none() {
                added += add(&mut self.inner, AddedToken::from((*token).to_owned(), false))?;
                self.fast = OnceLock::new();
            }
        }
        Ok(added)
    }

    /// Adds tokens as `additional_special_tokens` (`add_special_tokens({"additional_special_tokens": …})`);
    /// returns how many were new to the vocabulary.
    pub fn add_special_tokens(&mut self, tokens: &[&str]) -> Result<usize, TokenizerError> {
        let mut added = 0;
        for token in tokens {
            added += self.register_special(token)?;
            if !self.config.special_tokens.additional.iter().any(|t| t == token) {
                self.config.special_tokens.additional.push((*token).to_owned());
            }
        }
        Ok(added)
    }

    fn register_special(&mut self, token: &str) -> Result<usize, TokenizerError> {
        let is_added = self.inner.get_added_tokens_decoder().values().any(|t| t.content == token);
        if is_added {
            return Ok(0);
        }
        let new = usize::from(self.token_to_id(token).is_none());
        add(&mut self.inner, AddedToken::from(token.to_owned(), true).normalized(false))?;
        self.fast = OnceLock::new();
        Ok(new)
    }

    /// Sets a named special token (`tokenizer.eos_token = …`), adding it when it is new.
    pub fn set_special_token(&mut self, role: &str, token: &str) -> Result<usize, TokenizerError> {
        if self.config.special_tokens.slot_mut(role).is_none() {
            return Err(TokenizerError::UnknownRole { role: role.to_owned() });
        }
        let added = self.register_special(token)?;
        if let Some(slot) = self.config.special_tokens.slot_mut(role) {
            *slot = Some(token.to_owned());
        }
        self.config.raw.insert(role.to_owned(), serde_json::Value::String(token.to_owned()));
        Ok(added)
    }

    /// Sets the PAD token, adding it as a special token when it is new.
    pub fn set_pad_token(&mut self, token: &str) -> Result<usize, TokenizerError> {
        self.set_special_token("pad_token", token)
    }

    /// Whether `encode(…, add_special_tokens=true)` prepends BOS.
    pub fn add_bos_token(&self) -> bool {
        match (self.bos_token_id(), self.inner.encode_fast("a", true), self.inner.encode_fast("a", false)) {
            (Some(bos), Ok(with), Ok(without)) => {
                with.get_ids().first() == Some(&bos) && without.get_ids().first() != Some(&bos)
            }
            _ => false,
        }
    }

    /// Whether `encode(…, add_special_tokens=true)` appends EOS.
    pub fn add_eos_token(&self) -> bool {
        match (self.eos_token_id(), self.inner.encode_fast("a", true), self.inner.encode_fast("a", false)) {
            (Some(eos), Ok(with), Ok(without)) => {
                with.get_ids().last() == Some(&eos) && without.get_ids().last() != Some(&eos)
            }
            _ => false,
        }
    }

    /// The ids a generator stops on: EOS ∪ `generation_config.json`'s `eos_token_id` ∪ the
    /// end-of-turn tokens ([`END_OF_TURN_TOKENS`]) that the chat template uses and the vocabulary
    /// has (all of those in the vocabulary when there is no template). Sorted, no repeats.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_token_id().into_iter().collect();
        ids.extend(&self.config.generation_eos_token_ids);
        ids.extend(&self.extra_stop_ids);
        let templates: Vec<&str> = match &self.config.chat_template {
            Some(ChatTemplateSource::Single(t)) => vec![t.as_str()],
            Some(ChatTemplateSource::Named(list)) => list.iter().map(|(_, t)| t.as_str()).collect(),
            None => Vec::new(),
        };
        for token in END_OF_TURN_TOKENS {
            let used = templates.is_empty() || templates.iter().any(|t| t.contains(token));
            // `</s>` is only an end of turn where it is not already EOS of another family
            if used && (token != "</s>" || !templates.is_empty()) {
                if let Some(id) = self.token_to_id(token) {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The chat template(s) the model ships.
    pub fn chat_template(&self) -> Option<&ChatTemplateSource> {
        self.config.chat_template.as_ref()
    }

    /// Replaces the chat template (`tokenizer.chat_template = …`).
    pub fn set_chat_template(&mut self, template: Option<ChatTemplateSource>) {
        self.config.chat_template = template;
    }

    /// Default padding side (`tokenizer.padding_side`).
    pub fn padding_side(&self) -> PaddingSide {
        self.config.padding_side
    }

    /// Sets the default padding side.
    pub fn set_padding_side(&mut self, side: PaddingSide) {
        self.config.padding_side = side;
    }

    /// `model_max_length`, `None` when unlimited.
    pub fn model_max_length(&self) -> Option<usize> {
        self.config.model_max_length
    }

    /// The parsed configuration files.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// The pre-tokenizer in words: GGUF's `tokenizer.ggml.pre`, or the tokenizer.json type.
    pub fn pre_tokenizer_name(&self) -> String {
        if let Some(pre) = &self.gguf_pre {
            return format!("{pre} (GGUF tokenizer.ggml.pre)");
        }
        match self.inner.get_pre_tokenizer() {
            None => "none".to_owned(),
            Some(pre) => serde_json::to_value(pre)
                .ok()
                .and_then(|v| describe_component(&v))
                .unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

fn add(inner: &mut tokenizers::Tokenizer, token: AddedToken) -> Result<usize, TokenizerError> {
    let content = token.content.clone();
    let result = if token.special { inner.add_special_tokens([token]) } else { inner.add_tokens([token]) };
    result.map_err(|e| TokenizerError::AddToken { token: content, message: e.to_string() })
}

fn is_gguf(path: &Path) -> Result<bool, TokenizerError> {
    use std::io::Read;
    if path.extension().is_some_and(|e| e == "gguf") {
        return Ok(true);
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| TokenizerError::io(path, e))?;
    Ok(file.read(&mut magic).map_err(|e| TokenizerError::io(path, e))? == 4 && &magic == b"GGUF")
}

fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    // Parse as plain JSON first: serde's error names line and column, the library's does not.
    if let Err(source) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(TokenizerError::Json { path: path.to_owned(), source });
    }
    tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| TokenizerError::Load { path: path.to_owned(), message: e.to_string() })
}

/// transformers' `LlamaTokenizerFast.update_post_processor`.
fn post_processor_from_flags(
    inner: &tokenizers::Tokenizer,
    special: &SpecialTokens,
    add_bos: bool,
    add_eos: bool,
) -> Result<TemplateProcessing, String> {
    let mut single: Vec<String> = Vec::new();
    let mut pair: Vec<String> = Vec::new();
    let mut tokens: Vec<(String, u32)> = Vec::new();
    let mut push_special = |role: &str, seq: u8, list: &mut Vec<String>| -> Result<(), String> {
        let token = special.get(role).ok_or_else(|| format!("add_{role} is set but there is no {role}"))?;
        let id = inner.token_to_id(token).ok_or_else(|| format!("{role} {token:?} is not in the vocabulary"))?;
        list.push(format!("{token}:{seq}"));
        if !tokens.iter().any(|(t, _)| t == token) {
            tokens.push((token.to_owned(), id));
        }
        Ok(())
    };
    if add_bos {
        push_special("bos_token", 0, &mut single)?;
        push_special("bos_token", 0, &mut pair)?;
    }
    single.push("$A:0".into());
    pair.push("$A:0".into());
    if add_eos {
        push_special("eos_token", 0, &mut single)?;
        push_special("eos_token", 0, &mut pair)?;
    }
    if add_bos {
        push_special("bos_token", 1, &mut pair)?;
    }
    pair.push("$B:1".into());
    if add_eos {
        push_special("eos_token", 1, &mut pair)?;
    }
    TemplateProcessing::builder()
        .try_single(single.join(" "))
        .and_then(|b| b.try_pair(pair.join(" ")))
        .map_err(|e| e.to_string())?
        .special_tokens(tokens)
        .build()
        .map_err(|e| e.to_string())
}

/// transformers' `clean_up_tokenization`: undo the spaces a word-level tokenizer puts before
/// punctuation and English contractions.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// "Sequence[Split, ByteLevel]" style summary of a serialized pipeline component.
fn describe_component(value: &serde_json::Value) -> Option<String> {
    let kind = value.get("type")?.as_str()?;
    if let Some(items) = value.get("pretokenizers").and_then(|v| v.as_array()) {
        let inner: Vec<String> = items.iter().filter_map(describe_component).collect();
        return Some(format!("{kind}[{}]", inner.join(", ")));
    }
    Some(kind.to_owned())
}

