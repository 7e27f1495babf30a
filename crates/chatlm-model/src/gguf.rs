//! GGUF models: llama.cpp tensor names and hyper-parameters mapped onto the same decoder.
//!
//! The container is read with candle's GGUF reader. Quantized matrices (Q4_0, Q4_1, Q8_0,
//! Q4_K, Q5_K, Q6_K, ...) are kept as blocks and multiplied as such; `LoadOptions::dequantize`
//! expands them to f32 instead (the exact reference path).
//!
//! The file is read, not memory-mapped: every tensor is copied into its own buffer anyway,
//! and pages of a mapping would count in the process's peak resident memory on top of the
//! copies (about twice the model size at the end of loading).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::config::{Architecture, ModelConfig, RopeScaling, SUPPORTED_ARCHITECTURES};
use crate::error::{ModelError, Result};
use crate::linear::{quantize_matrix, Weight};
use crate::load::LoadOptions;
use crate::model::Model;
use crate::weights::{LoadContext, TensorSource};

/// A memory-mapped GGUF file answering in transformers' tensor names.
pub(crate) struct GgufSource {
    path: PathBuf,
    file: std::fs::File,
    file_len: u64,
    content: Content,
    /// llama.cpp stores Llama's q/k rows interleaved for its rope; these are undone on load.
    permuted_qk: Option<(usize, usize)>,
}

impl GgufSource {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file_len = file
            .metadata()
            .map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        // Small reads of the header through a buffer; tensor reads are large and positioned.
        let content = Content::read(&mut std::io::BufReader::new(&file)).map_err(|e| ModelError::Gguf {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let source = Self {
            path: path.to_path_buf(),
            file,
            file_len,
            content,
            permuted_qk: None,
        };
        source.check_extents()?;
        Ok(source)
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            message,
        }
    }

    /// Rejects a truncated file up front, naming the first tensor that runs past its end.
    fn check_extents(&self) -> Result<()> {
        let file_len = self.file_len;
        for (name, info) in &self.content.tensor_infos {
            // Offsets and dimensions are the file's own numbers: checked arithmetic, so an
            // absurd one is reported rather than overflowing.
            let end = info
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .map(|elements| elements / info.ggml_dtype.block_size() as u64)
                .and_then(|blocks| blocks.checked_mul(info.ggml_dtype.type_size() as u64))
                .and_then(|bytes| self.content.tensor_data_offset.checked_add(info.offset)?.checked_add(bytes));
            match end {
                None => {
                    return Err(self.error(format!(
                        "tensor `{name}`: offset {} and shape {:?} run past any file size",
                        info.offset,
                        info.shape.dims()
                    )))
                }
                Some(end) if end > file_len => {
                    return Err(self.error(format!(
                        "tensor `{name}` ends at byte {end} but the file has {file_len} bytes (truncated?)"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn meta_u32(&self, key: &str) -> Result<u32> {
        self.meta_u32_opt(key)?.ok_or_else(|| self.error(format!("metadata `{key}` missing")))
    }

    /// An optional count: `None` when absent, an error when present but not a `u32` (a
    /// negative or oversized value would otherwise wrap into a plausible-looking size).
    fn meta_u32_opt(&self, key: &str) -> Result<Option<u32>> {
        let Some(value) = self.meta(key) else { return Ok(None) };
        let number: Option<i128> = value
            .to_u32()
            .map(i128::from)
            .or_else(|_| value.to_u64().map(i128::from))
            .or_else(|_| value.to_i32().map(i128::from))
            .ok();
        match number {
            None => Err(self.error(format!("metadata `{key}`: expected an integer, found {value:?}"))),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.error(format!("metadata `{key}`: {n} is out of range"))),
        }
    }

    fn meta_f32(&self, key: &str) -> Option<f32> {
        self.meta(key).and_then(|v| v.to_f32().ok())
    }

    /// Builds the decoder's hyper-parameters from `general.architecture` and `<arch>.*` keys.
    pub(crate) fn config(&mut self, device: &Device) -> Result<ModelConfig> {
        let arch_name = self
            .meta("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| self.error("metadata `general.architecture` missing".into()))?;
        let architecture =
            Architecture::from_model_type(&arch_name).ok_or_else(|| ModelError::UnsupportedArchitecture {
                name: arch_name.clone(),
                path: self.path.clone(),
                supported: SUPPORTED_ARCHITECTURES,
            })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let hidden_size = self.meta_u32(&key("embedding_length"))? as usize;
        let heads = self.meta_u32(&key("attention.head_count"))? as usize;
        let kv_heads = self.meta_u32_opt(&key("attention.head_count_kv"))?.map_or(heads, |v| v as usize);
        let head_dim = self.meta_u32_opt(&key("attention.key_length"))?.map_or(hidden_size / heads.max(1), |v| v as usize);
        let vocab_size = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|info| info.shape.dims().first().copied())
            .ok_or_else(|| self.error("tensor `token_embd.weight` missing".into()))?;
        let rotary_dim = self.meta_u32_opt(&key("rope.dimension_count"))?.map_or(head_dim, |v| v as usize);
        let rope_scaling = self.rope_scaling(&key, device)?;
        if let RopeScaling::FrequencyFactors(factors) = &rope_scaling {
            if factors.len() != rotary_dim / 2 {
                return Err(self.error(format!(
                    "rope_freqs.weight has {} factors for a rotary dimension of {rotary_dim}",
                    factors.len()
                )));
            }
        }
        let eos = self.meta_u32_opt("tokenizer.ggml.eos_token_id").ok().flatten();
        if architecture == Architecture::Llama || architecture == Architecture::Mistral {
            self.permuted_qk = Some((heads, kv_heads));
        }
        let config = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: self.meta_u32(&key("feed_forward_length"))? as usize,
            num_hidden_layers: self.meta_u32(&key("block_count"))? as usize,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size,
            max_position_embeddings: self.meta_u32(&key("context_length"))? as usize,
            rms_norm_eps: self.meta_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f64,
            rope_theta: self.meta_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_scaling,
            partial_rotary_factor: rotary_dim as f32 / head_dim as f32,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            qkv_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias")
                || self.content.tensor_infos.contains_key("blk.0.attn_qkv.bias"),
            o_bias: self.content.tensor_infos.contains_key("blk.0.attn_output.bias"),
            sliding_window: self.meta_u32_opt(&key("attention.sliding_window"))?.map(|v| v as usize),
            bos_token_id: self.meta_u32_opt("tokenizer.ggml.bos_token_id").ok().flatten(),
            eos_token_ids: eos.into_iter().collect(),
        };
        config.validate(&self.path)?;
        Ok(config)
    }

    /// llama.cpp keeps Llama 3.1's rescaled frequencies as a `rope_freqs.weight` tensor of
    /// divisors rather than as metadata; linear scaling is metadata.
    fn rope_scaling(&self, key: &dyn Fn(&str) -> String, device: &Device) -> Result<RopeScaling> {
        if self.content.tensor_infos.contains_key("rope_factors_long.weight") {
            // Phi-3 128k's "longrope" switches factor sets with the sequence length.
            return Err(ModelError::Unsupported {
                what: "GGUF rope scaling",
                value: "longrope (rope_factors_long)".into(),
                path: self.path.clone(),
            });
        }
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            let factors = self.load_f32_raw("rope_freqs.weight", device)?.to_vec1::<f32>()?;
            return Ok(RopeScaling::FrequencyFactors(factors));
        }
        let kind = self.meta(&key("rope.scaling.type")).and_then(|v| v.to_string().ok()).cloned();
        let factor = self.meta_f32(&key("rope.scaling.factor"));
        match (kind.as_deref(), factor) {
            (None | Some("none"), _) => Ok(RopeScaling::None),
            (Some("linear"), Some(factor)) => Ok(RopeScaling::Linear { factor }),
            (Some(other), _) => Err(ModelError::Unsupported {
                what: "GGUF rope scaling type",
                value: other.to_string(),
                path: self.path.clone(),
            }),
        }
    }

    fn load_raw(&self, gguf_name: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut &self.file, gguf_name, device)
            .map_err(|e| self.error(format!("tensor `{gguf_name}`: {e}")))
    }

    fn load_f32_raw(&self, gguf_name: &str, device: &Device) -> Result<Tensor> {
        Ok(self.load_raw(gguf_name, device)?.dequantize(device)?)
    }

    /// Head count whose q/k row permutation `gguf_name` carries, if any.
    fn permuted_heads(&self, gguf_name: &str) -> Option<usize> {
        let (heads, kv_heads) = self.permuted_qk?;
        match gguf_name.rsplit_once('.')?.0.rsplit('.').next()? {
            "attn_q" => Some(heads),
            "attn_k" => Some(kv_heads),
            _ => None,
        }
    }
}

/// transformers name -> llama.cpp name (`model.layers.3.self_attn.q_proj.weight` ->
/// `blk.3.attn_q.weight`).
fn gguf_name(hf_name: &str) -> Option<String> {
    let fixed = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let mapped = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.gate_up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}.{kind}"))
}

/// Undoes llama.cpp's `permute` of q/k rows (rotate-half layout -> interleaved pairs), the
/// way transformers' GGUF integration does: rows `(head, pair, 2)` become `(head, 2, pair)`.
fn unpermute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let pair = rows / heads / 2;
    let mut shape = vec![heads, pair, 2];
    shape.extend_from_slice(&dims[1..]);
    Ok(w.reshape(shape)?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

/// [`unpermute_rows`] on a block-quantized matrix: GGML rows are independent runs of blocks,
/// so rows move as byte ranges without requantizing.
fn unpermute_quantized_rows(w: &QTensor, heads: usize, device: &Device) -> Result<QTensor> {
    let dims = w.shape().dims().to_vec();
    let data = w.data()?;
    let rows = dims[0];
    let row_bytes = data.len() / rows;
    let pair = rows / heads / 2;
    let mut out = Vec::with_capacity(data.len());
    for head in 0..heads {
        for half in 0..2 {
            for p in 0..pair {
                let src = head * 2 * pair + p * 2 + half;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(qtensor_from_ggml(w.dtype(), &out, dims, device)?)
}

impl TensorSource for GgufSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let info = self.content.tensor_infos.get(&gguf_name(name)?)?;
        Some(info.shape.dims().to_vec())
    }

    fn load_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let gguf = gguf_name(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        })?;
        let tensor = self.load_f32_raw(&gguf, device)?;
        match self.permuted_heads(&gguf) {
            Some(heads) => unpermute_rows(&tensor, heads),
            None => Ok(tensor),
        }
    }

    /// Quantized matrices stay in their blocks (rows moved as raw bytes where llama.cpp
    /// permuted them), and so do f16 ones unless a quantization was asked for; f32/bf16 ones
    /// take the in-situ quantization path like safetensors.
    fn load_matrix(&self, name: &str, expected: &[usize], ctx: &LoadContext) -> Result<Weight> {
        self.check_shape(name, expected)?;
        let gguf = gguf_name(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        })?;
        let raw = self.load_raw(&gguf, &ctx.device)?;
        // f16 blocks go to the f16 kernel as they are (half the memory of an f32 expansion);
        // only with f32 compute, the precision that kernel produces.
        let keep_f16 = raw.dtype() == GgmlDType::F16 && ctx.quantize.is_none() && ctx.dtype == candle_core::DType::F32;
        let is_float = !keep_f16 && matches!(raw.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if ctx.dequantize || is_float {
            let quantize = if ctx.dequantize { None } else { ctx.quantize };
            return quantize_matrix(self.load_f32(name, &ctx.device)?, quantize, ctx.dtype);
        }
        let raw = match self.permuted_heads(&gguf) {
            Some(heads) => unpermute_quantized_rows(&raw, heads, &ctx.device)?,
            None => raw,
        };
        Weight::from_qtensor(raw)
    }
}

/// Loads a GGUF model onto `options.device`.
pub(crate) fn load(path: &Path, options: &LoadOptions) -> Result<Model> {
    let mut source = GgufSource::open(path)?;
    let config = source.config(&options.device)?;
    Model::from_tensors(config, &source, &options.context()?)
}
