//! The config-driven decoder: ids in, logits out.

use candle_core::{DType, Device, Tensor, D};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::decode::{NativeDecoder, StepInputs};
use crate::error::{ModelError, Result};
use crate::ggml::{self, Numerics};
use crate::layers::{attention_mask, DecoderLayer, RmsNorm, StepContext};
use crate::linear::{Linear, Weight};
use crate::rope::Rope;
use crate::weights::{LoadContext, TensorSource};

/// A batch of token rows of equal length, with the mask telling real tokens from padding.
///
/// ```
/// use chatlm_model::BatchInput;
/// let batch = BatchInput::left_padded(&[vec![1, 2, 3], vec![4]], 0);
/// assert_eq!(batch.ids, vec![vec![1, 2, 3], vec![0, 0, 4]]);
/// assert_eq!(batch.attention_mask[1], vec![false, false, true]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInput {
    /// `ids[row][i]`; every row has the same length.
    pub ids: Vec<Vec<u32>>,
    /// `attention_mask[row][i]`: false for padding.
    pub attention_mask: Vec<Vec<bool>>,
}

impl BatchInput {
    /// Left-pads `prompts` with `pad_id` to the longest one (what chat models expect for
    /// batched generation: every row's last token is at the same slot).
    pub fn left_padded(prompts: &[Vec<u32>], pad_id: u32) -> Self {
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let ids = prompts
            .iter()
            .map(|p| std::iter::repeat_n(pad_id, width - p.len()).chain(p.iter().copied()).collect())
            .collect();
        let attention_mask = prompts
            .iter()
            .map(|p| std::iter::repeat_n(false, width - p.len()).chain(std::iter::repeat_n(true, p.len())).collect())
            .collect();
        Self { ids, attention_mask }
    }

    /// Rows of ids with a tokenizer-style attention mask (`1` real, `0` padding; any integer
    /// or `bool` type).
    ///
    /// ```
    /// use chatlm_model::BatchInput;
    /// let batch = BatchInput::with_mask(vec![vec![0, 7, 8]], &[vec![0u32, 1, 1]]);
    /// assert_eq!(batch.attention_mask, vec![vec![false, true, true]]);
    /// ```
    pub fn with_mask<M: Copy + Into<u64>>(ids: Vec<Vec<u32>>, attention_mask: &[Vec<M>]) -> Self {
        let attention_mask = attention_mask
            .iter()
            .map(|row| row.iter().map(|&m| m.into() != 0).collect())
            .collect();
        Self { ids, attention_mask }
    }

    /// One new real token per row: a decoding step.
    pub fn step(tokens: &[u32]) -> Self {
        Self {
            ids: tokens.iter().map(|&t| vec![t]).collect(),
            attention_mask: vec![vec![true]; tokens.len()],
        }
    }
}

/// A loaded decoder (Llama, Mistral, Qwen2, Phi-3, SmolLM2) computing f32 logits on the CPU.
///
/// ```no_run
/// use chatlm_model::{LoadOptions, Model, ModelSource};
/// let source = ModelSource::resolve("HuggingFaceTB/SmolLM2-135M-Instruct")?;
/// let model = Model::from_source(&source, &LoadOptions::default())?;
/// let mut cache = model.new_cache(1, 256)?;
/// let logits = model.forward_last(&[1, 9690, 198], &mut cache)?;
/// let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
/// # Ok::<(), chatlm_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    /// `(vocab, hidden)`, dense or quantized; rows are looked up (and dequantized) per token.
    embed_tokens: Weight,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
    /// Dtype of dense weights, activations and the KV cache.
    dtype: DType,
    /// The candle-free decode step, when the weights allow it.
    native: Option<NativeDecoder>,
    /// Whose arithmetic the single-sequence forward pass follows.
    numerics: Numerics,
}

impl Model {
    /// Builds the model from tensors named like transformers' checkpoints.
    pub(crate) fn from_tensors(config: ModelConfig, src: &dyn TensorSource, ctx: &LoadContext) -> Result<Self> {
        let c = &config;
        let device = &ctx.device;
        let embed_tokens = src.load_matrix("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size], ctx)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(src, i, c, ctx))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(src, "model.norm.weight", c.hidden_size, c.rms_norm_eps, ctx)?;
        let lm_head = if c.tie_word_embeddings {
            Linear::new(embed_tokens.clone(), None)
        } else {
            Linear::new(src.load_matrix("lm_head.weight", &[c.vocab_size, c.hidden_size], ctx)?, None)
        };
        let native = NativeDecoder::new(&embed_tokens, &layers, &lm_head, ctx.dtype, device);
        Ok(Self {
            native,
            numerics: Numerics::Native,
            rope: Rope::new(c),
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            device: device.clone(),
            dtype: ctx.dtype,
        })
    }

    /// Switches the arithmetic of single-sequence forward passes: [`Numerics::LlamaCpp`] (or
    /// a named llama.cpp build) reproduces llama.cpp's logits bit for bit (several times
    /// slower; Llama-family GGUF models in Q4_1/Q8_0/F16), and then batches of several
    /// sequences are refused rather than computed another way. An error says why a model is not covered.
    pub fn set_numerics(&mut self, numerics: Numerics) -> Result<()> {
        if numerics.llamacpp_build().is_some() {
            ggml::check_support(&self.config, self.native.as_ref())?;
        }
        self.numerics = numerics;
        Ok(())
    }

    /// The arithmetic set by [`Self::set_numerics`].
    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    /// [`Self::forward_last`] in llama.cpp's numerics, handing every intermediate vector
    /// (`name`, layer, values; llama.cpp's tensor names) to `trace`: for comparisons with
    /// llama.cpp's own tensors (`scripts/reference/llamacpp_dump.py`).
    #[doc(hidden)]
    pub fn forward_last_traced(&self, ids: &[u32], cache: &mut KvCache, trace: &mut dyn FnMut(&str, usize, &[f32])) -> Result<Vec<f32>> {
        let input = BatchInput {
            ids: vec![ids.to_vec()],
            attention_mask: vec![vec![true; ids.len()]],
        };
        ggml::check_support(&self.config, self.native.as_ref())?;
        self.run_ggml(&input, cache, true, trace)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes held by the weights (quantized matrices at their block size; a tied output
    /// projection is counted once).
    pub fn weight_bytes(&self) -> usize {
        let head = if self.config.tie_word_embeddings { 0 } else { self.lm_head.bytes() };
        self.embed_tokens.bytes() + head + self.layers.iter().map(DecoderLayer::bytes).sum::<usize>()
    }

    /// Dtype of the computation (f32 unless [`LoadOptions::dtype`](crate::LoadOptions) says).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache for `batch` sequences of up to `capacity` tokens (at most
    /// [`ModelConfig::context_length`]).
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        if capacity > self.config.context_length() {
            return Err(ModelError::ContextOverflow {
                needed: capacity,
                capacity: self.config.context_length(),
            });
        }
        KvCache::new(&self.config, batch, capacity, self.dtype, &self.device)
    }

    /// Runs `ids` (one sequence, appended after what `cache` holds) and returns the logits of
    /// every new position, shape `(ids.len(), vocab)`.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let input = BatchInput {
            ids: vec![ids.to_vec()],
            attention_mask: vec![vec![true; ids.len()]],
        };
        Ok(self.run(&input, cache, false)?.squeeze(0)?)
    }

    /// Like [`Self::forward`] but only the last position's logits, as a vector: what a
    /// generation step needs, without the vocabulary projection of the other positions.
    pub fn forward_last(&self, ids: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let input = BatchInput {
            ids: vec![ids.to_vec()],
            attention_mask: vec![vec![true; ids.len()]],
        };
        if let Some(logits) = self.run_native(&input, cache, true) {
            return logits;
        }
        Ok(self.run(&input, cache, true)?.flatten_all()?.to_vec1()?)
    }

    /// One decode step of several independent sequences: `tokens[i]` is appended to
    /// `caches[i]` (each a cache of batch size 1, of any length and capacity) and the logits
    /// of that new position are returned, in order — what [`Self::forward_last`]`(&[tokens[i]],
    /// caches[i])` returns for each, computed together.
    ///
    /// Why: continuous batching. On block weights with f32 compute and [`Numerics::Native`],
    /// the new tokens go through every matrix as one `m`-row product, so the weights are read
    /// once per step for all sequences; only the attention runs per sequence, over its own
    /// cache. Otherwise (llama.cpp numerics, the candle path, non-f32 caches) the sequences
    /// are stepped one after another. One sequence is exactly `forward_last`.
    ///
    /// Errors: no sequences, as many tokens as caches, a token outside the vocabulary or a
    /// cache with several rows are [`ModelError::InvalidInput`], a full cache is
    /// [`ModelError::ContextOverflow`]; on any error every cache is left as it was.
    ///
    /// ```no_run
    /// # fn demo(model: &chatlm_model::Model) -> chatlm_model::Result<()> {
    /// let (mut a, mut b) = (model.new_cache(1, 64)?, model.new_cache(1, 64)?);
    /// model.forward_last(&[1, 2, 3], &mut a)?;
    /// model.forward_last(&[1, 7], &mut b)?;
    /// let logits = model.forward_step_many(&[4, 8], &mut [&mut a, &mut b])?;
    /// assert_eq!((logits.len(), a.len(), b.len()), (2, 4, 3));
    /// # Ok(()) }
    /// ```
    pub fn forward_step_many(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Vec<Vec<f32>>> {
        self.validate_step_many(tokens, caches)?;
        if let ([token], [cache]) = (tokens, &mut *caches) {
            return Ok(vec![self.forward_last(&[*token], cache)?]);
        }
        let native = self.native.as_ref().filter(|_| {
            self.numerics.llamacpp_build().is_none() && caches.iter().all(|cache| cache.dtype() == DType::F32)
        });
        let starts: Vec<usize> = caches.iter().map(|cache| cache.len()).collect();
        let Some(native) = native else {
            return self.step_each(tokens, caches, &starts);
        };
        let mut positions = Vec::with_capacity(tokens.len());
        for cache in caches.iter_mut() {
            match cache.begin_step(&[vec![true]]) {
                Ok(p) => positions.push(p[0][0]),
                Err(e) => return Err(roll_back(caches, &starts, e)),
            }
        }
        let inputs = StepInputs {
            layers: &self.layers,
            norm: &self.norm,
            rope: &self.rope,
            config: &self.config,
        };
        let views: Vec<&KvCache> = caches.iter().map(|cache| &**cache).collect();
        match native.step_many(&inputs, tokens, &positions, &views) {
            Ok(logits) => {
                caches.iter_mut().for_each(|cache| cache.end_step(1));
                Ok(logits)
            }
            Err(e) => Err(roll_back(caches, &starts, e)),
        }
    }

    /// The fallback of [`Self::forward_step_many`]: `forward_last` per sequence; a failure
    /// undoes the steps of the sequences before it.
    fn step_each(&self, tokens: &[u32], caches: &mut [&mut KvCache], starts: &[usize]) -> Result<Vec<Vec<f32>>> {
        let mut logits = Vec::with_capacity(tokens.len());
        for (&token, cache) in tokens.iter().zip(caches.iter_mut()) {
            match self.forward_last(&[token], cache) {
                Ok(row) => logits.push(row),
                Err(e) => return Err(roll_back(caches, starts, e)),
            }
        }
        Ok(logits)
    }

    /// Everything [`Self::forward_step_many`] can refuse, checked before any cache changes.
    fn validate_step_many(&self, tokens: &[u32], caches: &[&mut KvCache]) -> Result<()> {
        let invalid = |m: String| Err(ModelError::InvalidInput(m));
        if tokens.is_empty() {
            return invalid("no sequences to step".into());
        }
        if tokens.len() != caches.len() {
            return invalid(format!("{} tokens for {} caches", tokens.len(), caches.len()));
        }
        for (i, (&token, cache)) in tokens.iter().zip(caches).enumerate() {
            if token as usize >= self.config.vocab_size {
                return invalid(format!("token id {token} of sequence {i} is outside the vocabulary of {}", self.config.vocab_size));
            }
            if cache.batch_size() != 1 {
                return invalid(format!("the cache of sequence {i} holds {} rows, not one", cache.batch_size()));
            }
            if cache.len() + 1 > cache.capacity() {
                return Err(ModelError::ContextOverflow {
                    needed: cache.len() + 1,
                    capacity: cache.capacity(),
                });
            }
        }
        Ok(())
    }

    /// Runs a batch (e.g. left-padded prompts, then [`BatchInput::step`]s) and returns the
    /// logits of every new position, shape `(rows, len, vocab)`. Rows at padding slots hold
    /// meaningless values.
    pub fn forward_batch(&self, input: &BatchInput, cache: &mut KvCache) -> Result<Tensor> {
        self.run(input, cache, false)
    }

    /// Like [`Self::forward_batch`] but only the last slot of each row: `logits[row][vocab]`.
    pub fn forward_batch_last(&self, input: &BatchInput, cache: &mut KvCache) -> Result<Vec<Vec<f32>>> {
        Ok(self.run(input, cache, true)?.squeeze(1)?.to_vec2()?)
    }

    /// The native decode step for one real token of one sequence, or the native prefill for
    /// several when only the last logits are wanted; `None` when the input or the model
    /// needs the candle path.
    fn run_native(&self, input: &BatchInput, cache: &mut KvCache, last_only: bool) -> Option<Result<Vec<f32>>> {
        if self.numerics.llamacpp_build().is_some() {
            return Some(self.run_ggml(input, cache, last_only, &mut |_, _, _| {}));
        }
        let native = self.native.as_ref()?;
        let (&[ref ids], &[ref mask]) = (&input.ids[..], &input.attention_mask[..]) else {
            return None;
        };
        if ids.is_empty() || !mask.iter().all(|&real| real) {
            return None;
        }
        if ids.len() > 1 && !last_only {
            return None;
        }
        if cache.batch_size() != 1 || cache.dtype() != DType::F32 {
            return None;
        }
        Some(self.sequence_step(input, cache, |inputs, positions, cache| match &ids[..] {
            &[token] => native.step(inputs, token, positions[0], cache),
            _ => native.prefill(inputs, ids, positions, cache),
        }))
    }

    /// One sequence in llama.cpp's numerics: logits of the last position, or of all.
    fn run_ggml(&self, input: &BatchInput, cache: &mut KvCache, last_only: bool, trace: ggml::Trace) -> Result<Vec<f32>> {
        // `set_numerics` refuses llama.cpp's numerics without a native plan; checked again
        // here so a caller that skipped it gets the reason, not a panic.
        let native = self.native.as_ref().ok_or_else(|| {
            ModelError::InvalidInput("llama.cpp numerics need f32 compute on the CPU and bias-free block matrices".into())
        })?;
        let (&[ref ids], &[ref mask]) = (&input.ids[..], &input.attention_mask[..]) else {
            return Err(ModelError::InvalidInput("llama.cpp numerics run one sequence at a time".into()));
        };
        if !mask.iter().all(|&real| real) || cache.batch_size() != 1 || cache.dtype() != DType::F32 {
            return Err(ModelError::InvalidInput("llama.cpp numerics run one unpadded sequence with an f32 cache".into()));
        }
        // A traced pass runs llama.cpp's arithmetic whatever `numerics` says: this CPU's build.
        let build = self.numerics.llamacpp_build().unwrap_or_else(ggml::Build::for_this_cpu);
        self.sequence_step(input, cache, |inputs, positions, cache| {
            native.ggml_forward(build, inputs, ids, positions, cache, !last_only, trace)
        })
    }

    /// Runs `f` on the new positions of the one sequence of `input` (the cache's slots just
    /// recorded), then commits the cache step, or rolls the cache back when `f` fails.
    fn sequence_step(
        &self,
        input: &BatchInput,
        cache: &mut KvCache,
        f: impl FnOnce(&StepInputs, &[u32], &KvCache) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let new = self.validate(input)?;
        let start = cache.len();
        let positions = cache.begin_step(&input.attention_mask)?;
        let inputs = StepInputs {
            layers: &self.layers,
            norm: &self.norm,
            rope: &self.rope,
            config: &self.config,
        };
        let result = f(&inputs, &positions[0], cache);
        commit_or_roll_back(cache, start, new, result)
    }

    fn run(&self, input: &BatchInput, cache: &mut KvCache, last_only: bool) -> Result<Tensor> {
        if let Some(logits) = self.run_native(input, cache, last_only) {
            let vocab = self.config.vocab_size;
            let logits = logits?;
            let rows = logits.len() / vocab;
            return Ok(Tensor::from_vec(logits, (1, rows, vocab), &self.device)?);
        }
        let new = self.validate(input)?;
        let start = cache.len();
        let result = self.run_step(input, cache, new, last_only);
        commit_or_roll_back(cache, start, new, result)
    }

    fn run_step(&self, input: &BatchInput, cache: &mut KvCache, new: usize, last_only: bool) -> Result<Tensor> {
        let positions = cache.begin_step(&input.attention_mask)?;
        let (cos, sin) = self.rope.tables(&positions, self.dtype, &self.device)?;
        let mask = attention_mask(cache, new, self.config.sliding_window, &self.device)?;
        let step = StepContext {
            rope: &self.rope,
            cos,
            sin,
            mask,
        };
        let batch = input.ids.len();
        let flat: Vec<u32> = input.ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, batch * new, &self.device)?;
        let mut x = self
            .embed_tokens
            .embedding(&ids)?
            .to_dtype(self.dtype)?
            .reshape((batch, new, self.config.hidden_size))?;
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &step, cache, index)?;
        }
        if last_only {
            x = x.narrow(1, new - 1, 1)?;
        }
        let x = self.norm.forward(&x)?;
        let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        debug_assert_eq!(logits.dim(D::Minus1)?, self.config.vocab_size);
        Ok(logits)
    }

    /// Checks the batch is rectangular, non-empty and in the vocabulary; returns its width.
    fn validate(&self, input: &BatchInput) -> Result<usize> {
        let invalid = |m: String| Err(ModelError::InvalidInput(m));
        let Some(first) = input.ids.first() else {
            return invalid("empty batch".into());
        };
        let new = first.len();
        if new == 0 {
            return invalid("no input tokens".into());
        }
        if input.attention_mask.len() != input.ids.len() {
            return invalid(format!(
                "{} mask rows for {} id rows",
                input.attention_mask.len(),
                input.ids.len()
            ));
        }
        for (row, (ids, mask)) in input.ids.iter().zip(&input.attention_mask).enumerate() {
            if ids.len() != new || mask.len() != new {
                return invalid(format!("row {row} has {} ids and {} mask entries, expected {new}", ids.len(), mask.len()));
            }
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
                return invalid(format!("token id {bad} in row {row} is outside the vocabulary of {}", self.config.vocab_size));
            }
        }
        Ok(new)
    }
}

/// Truncates every cache back to its length in `starts` (undoing begun or finished steps)
/// and hands back `error`: a failed multi-sequence step leaves no cache half-written.
fn roll_back(caches: &mut [&mut KvCache], starts: &[usize], error: ModelError) -> ModelError {
    for (cache, &start) in caches.iter_mut().zip(starts) {
        cache.truncate(start);
    }
    error
}

/// Ends the cache step of `new` slots when `result` is a success; otherwise truncates the cache
/// back to `start`, so a failed forward pass leaves it as it was.
fn commit_or_roll_back<T>(cache: &mut KvCache, start: usize, new: usize, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            cache.end_step(new);
            Ok(value)
        }
        Err(e) => {
            cache.truncate(start);
            Err(e)
        }
    }
}
