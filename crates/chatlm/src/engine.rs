//! [`Engine`]: a loaded model with its tokenizer, chat template, generation defaults and
//! stop ids — immutable and shareable between threads; every generation runs on an
//! [`ModelLm`](crate::ModelLm) of its own (its KV cache).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chatlm_generate::GenerationConfig;
use chatlm_model::{LoadOptions, Model, ModelSource, Numerics, Quantization};
use chatlm_template::{apply_chat_template, ApplyOptions, ChatRequest, ChatTemplate};
use chatlm_tokenizer::Tokenizer;
use serde_json::Value;

use crate::constraint::ConstraintEnv;
use crate::error::{Error, Result};
use crate::lm::ModelLm;
use crate::source::{display_name as source_name, resolve};
use crate::stops::stop_ids;

/// What to load: a model spec and how to load it.
///
/// ```
/// let spec = chatlm::LoadSpec { model: Some("model.gguf".into()), ..Default::default() };
/// assert!(spec.tokenizer.is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct LoadSpec {
    /// A `.gguf` file, a model directory, a hub cache folder or `org/name`; `None` is the
    /// default model (SmolLM2-135M-Instruct, fetched on first use).
    pub model: Option<String>,
    /// Tokenizer files to use instead of the model's own (a directory, tokenizer.json or .gguf).
    pub tokenizer: Option<PathBuf>,
    /// Quantize full-precision weights while loading.
    pub quantize: Option<Quantization>,
    /// Expand GGUF blocks to f32 (transformers' exact computation; slow).
    pub dequantize: bool,
    /// Whose arithmetic the forward pass follows.
    pub numerics: Numerics,
}

/// A loaded model ready to generate.
pub struct Engine {
    model: Arc<Model>,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    generation: GenerationConfig,
    stop_ids: Vec<u32>,
    source: ModelSource,
    name: String,
    load_s: f64,
    /// llguidance's token trie for structured output, built on first use (it takes a
    /// moment on a large vocabulary; most engines never need it). A failure is kept too.
    constraints: OnceLock<std::result::Result<ConstraintEnv, String>>,
}

impl Engine {
    /// Loads everything `spec` names: weights (with `quantize`/`numerics` applied; a numerics
    /// the model does not support is an error here), tokenizer, chat template, the model's
    /// `generation_config.json` defaults (transformers' defaults for a GGUF file).
    pub fn load(spec: &LoadSpec) -> Result<Engine> {
        let source = resolve(spec.model.as_deref())?;
        let start = Instant::now();
        let model = load_model(&source, spec)?;
        let name = source_name(&source);
        let tokenizer = load_tokenizer(&source, spec.tokenizer.as_deref())?;
        let generation = match source.directory().map(|d| d.join("generation_config.json")) {
            Some(path) if path.is_file() => {
                GenerationConfig::from_file(&path).map_err(|e| Error::GenerationConfig { name: name.clone(), source: e })?
            }
            _ => GenerationConfig::default(),
        };
        let template = match tokenizer.chat_template() {
            Some(_) => Some(
                ChatTemplate::for_tokenizer(&tokenizer, None, false)
                    .map_err(|e| Error::CompileTemplate { name: name.clone(), source: e })?,
            ),
            None => None,
        };
        let stop_ids = stop_ids(&tokenizer, &generation, Some(model.config().vocab_size));
        let load_s = start.elapsed().as_secs_f64();
        Ok(Engine {
            model: Arc::new(model),
            tokenizer,
            template,
            generation,
            stop_ids,
            source,
            name,
            load_s,
            constraints: OnceLock::new(),
        })
    }

    /// The decoder.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Its tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Its chat template, when it has one.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// `generation_config.json` defaults (transformers' defaults without one).
    pub fn generation_defaults(&self) -> &GenerationConfig {
        &self.generation
    }

    /// The generation defaults with [`DEFAULT_MAX_NEW_TOKENS`](crate::DEFAULT_MAX_NEW_TOKENS)
    /// when they set no `max_new_tokens`: the base a caller's settings override.
    pub fn default_config(&self) -> GenerationConfig {
        let mut config = self.generation.clone();
        config.max_new_tokens = config.max_new_tokens.or(Some(crate::DEFAULT_MAX_NEW_TOKENS));
        config
    }

    /// Ids that end an answer (the one policy of [`crate::stop_ids`]).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Where the model came from.
    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    /// The resolved model path, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds spent loading weights and tokenizer.
    pub fn load_s(&self) -> f64 {
        self.load_s
    }

    /// Longest sequence (prompt + answer) the model attends over.
    pub fn context_window(&self) -> usize {
        self.model.config().context_length()
    }

    /// A generation-loop view of the model with a KV cache of its own; `prompt_cache` keeps
    /// the cache between calls and prefills only what follows the longest common prefix.
    pub fn lm(&self, prompt_cache: bool) -> ModelLm {
        ModelLm::new(Arc::clone(&self.model), prompt_cache)
    }

    /// Prompt ids for `prompt`: messages and a plain user text go through the chat template
    /// with the generation prompt; raw text is encoded as is (with the tokenizer's BOS when it
    /// adds one); ids are checked against the vocabulary.
    pub fn prompt_ids(&self, prompt: &crate::Prompt) -> Result<Vec<u32>> {
        let ids = match prompt {
            crate::Prompt::User(text) => self.render(&[serde_json::json!({"role": "user", "content": text})], true)?,
            crate::Prompt::Raw(text) => self.tokenizer.encode(text, true).map_err(Error::Tokenize)?,
            crate::Prompt::Messages(messages) => self.render(messages, true)?,
            crate::Prompt::Ids(ids) => ids.clone(),
        };
        let vocab_size = self.model.config().vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::TokenOutOfVocab { id, vocab_size });
        }
        if ids.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        Ok(ids)
    }

    /// Renders JSON messages (any keys the template reads) with the chat template and encodes
    /// the prompt like `apply_chat_template(tokenize=True)` (no special tokens added again).
    pub fn render(&self, messages: &[Value], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.render_request(ChatRequest::new(messages.to_vec()), add_generation_prompt)
    }

    /// [`Self::render`] of a full request (tools, documents, template variables).
    pub fn render_request(&self, mut request: ChatRequest, add_generation_prompt: bool) -> Result<Vec<u32>> {
        let template = self.template.as_ref().ok_or_else(|| Error::NoChatTemplate { name: self.name.clone() })?;
        if request.messages.is_empty() {
            return Err(Error::InvalidInput("the conversation has no messages".into()));
        }
        for (i, m) in request.messages.iter().enumerate() {
            if !m.get("role").is_some_and(Value::is_string) {
                return Err(Error::InvalidInput(format!("message {i} has no string \"role\"")));
            }
        }
        request.add_generation_prompt = add_generation_prompt;
        let applied = apply_chat_template(&self.tokenizer, template, &request, ApplyOptions { tokenize: true, ..Default::default() })
            .map_err(Error::Render)?;
        // `tokenize: true` always fills `ids`.
        Ok(applied.ids.unwrap_or_default())
    }

    /// The structured-output environment of this engine (built on the first call).
    pub(crate) fn constraint_env(&self) -> Result<&ConstraintEnv> {
        let env = self
            .constraints
            .get_or_init(|| ConstraintEnv::build(&self.tokenizer, self.model.config().vocab_size, &self.stop_ids));
        env.as_ref().map_err(|reason| Error::ConstraintSetup { name: self.name.clone(), reason: reason.clone() })
    }

    /// Ids → text (special tokens dropped when `skip_special_tokens`).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer.decode(ids, skip_special_tokens).map_err(Error::Tokenize)
    }
}

/// Loads the weights `source` names with `spec`'s options and numerics.
pub fn load_model(source: &ModelSource, spec: &LoadSpec) -> Result<Model> {
    let name = source_name(source);
    let options = LoadOptions { quantize: spec.quantize, dequantize: spec.dequantize, ..LoadOptions::default() };
    let mut model = Model::from_source(source, &options).map_err(|e| Error::LoadModel { name: name.clone(), source: e })?;
    model.set_numerics(spec.numerics).map_err(|e| Error::Numerics { name, source: e })?;
    Ok(model)
}

fn load_tokenizer(source: &ModelSource, explicit: Option<&Path>) -> Result<Tokenizer> {
    let (path, tokenizer) = match (explicit, source) {
        (Some(path), _) if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) => {
            (path.to_path_buf(), Tokenizer::from_gguf(path))
        }
        (Some(path), _) => (path.to_path_buf(), Tokenizer::from_pretrained(path)),
        (None, ModelSource::Gguf(path)) => (path.clone(), Tokenizer::from_gguf(path)),
        (None, ModelSource::Directory(dir)) => (dir.clone(), Tokenizer::from_pretrained(dir)),
    };
    tokenizer.map_err(|source| Error::LoadTokenizer { path, source })
}
