//! Model hyper-parameters, parsed from a transformers `config.json` (or built from GGUF metadata).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ModelError, Result};

/// The decoder families the one config-driven decoder implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2 / 3 / 3.1+, SmolLM2 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`): Llama with a sliding attention window.
    Mistral,
    /// Qwen2 (`Qwen2ForCausalLM`): biases on the q/k/v projections.
    Qwen2,
    /// Phi-3 (`Phi3ForCausalLM`): fused `qkv_proj` and `gate_up_proj`.
    Phi3,
}

/// The names accepted in `architectures` / `model_type`, for error messages.
pub const SUPPORTED_ARCHITECTURES: &str =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM";

impl Architecture {
    fn from_class(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Self::Llama),
            "MistralForCausalLM" => Some(Self::Mistral),
            "Qwen2ForCausalLM" => Some(Self::Qwen2),
            "Phi3ForCausalLM" => Some(Self::Phi3),
            _ => None,
        }
    }

    /// Maps a transformers `model_type` or a GGUF `general.architecture`.
    pub fn from_model_type(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "mistral" => Some(Self::Mistral),
            "qwen2" => Some(Self::Qwen2),
            "phi3" => Some(Self::Phi3),
            _ => None,
        }
    }
}

/// How rotary position frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`rope_type: linear`).
    Linear {
        /// Divisor of the positions.
        factor: f32,
    },
    /// NTK-aware base growth once the sequence passes `max_position_embeddings`
    /// (`rope_type: dynamic`).
    Dynamic {
        /// Context stretch the base growth aims at.
        factor: f32,
    },
    /// Llama 3.1 frequency-band rescaling (`rope_type: llama3`).
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f32,
        /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
        low_freq_factor: f32,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The context length the model was first trained at.
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors, as llama.cpp stores Llama 3.1 scaling (`rope_freqs.weight`).
    FrequencyFactors(Vec<f32>),
}

/// Hyper-parameters of a decoder, normalised across architectures and file formats.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which decoder family (decides tensor names and fused projections).
    pub architecture: Architecture,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's gate/up projections.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (fewer than query heads: grouped-query attention).
    pub num_key_value_heads: usize,
    /// Features per head.
    pub head_dim: usize,
    /// Rows of the embedding and output matrices.
    pub vocab_size: usize,
    /// Trained context length (see [`ModelConfig::context_length`]).
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base wavelength.
    pub rope_theta: f32,
    /// RoPE frequency rescaling for long contexts.
    pub rope_scaling: RopeScaling,
    /// Leading fraction of each head rotated by RoPE (Phi-3 style partial rotary).
    pub partial_rotary_factor: f32,
    /// The output projection reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2, or Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Keys further back than this many slots are not attended to (Mistral, Phi-3).
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token, from the config (the tokenizer has the final word).
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s) from the config; `generation_config.json` may add more.
    pub eos_token_ids: Vec<u32>,
}

/// `rope_scaling` (legacy) or `rope_parameters` (transformers 5) object.
#[derive(Debug, Deserialize, Default)]
struct RawRope {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
    rope_theta: Option<f32>,
    partial_rotary_factor: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    hidden_act: Option<String>,
    rope_theta: Option<f32>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    partial_rotary_factor: Option<f32>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

impl ModelConfig {
    /// Reads and validates a transformers `config.json`.
    ///
    /// ```no_run
    /// let config = chatlm_model::ModelConfig::from_file("model/config.json".as_ref())?;
    /// println!("{:?} with {} layers", config.architecture, config.num_hidden_layers);
    /// # Ok::<(), chatlm_model::ModelError>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json` text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let invalid = |message: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let architecture = architecture_of(&raw, path)?;
        let unsupported = |what: &'static str, value: String| ModelError::Unsupported {
            what,
            value,
            path: path.to_path_buf(),
        };
        if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(unsupported("hidden_act", act.to_string()));
        }
        if raw.mlp_bias {
            return Err(unsupported("mlp_bias", "true".into()));
        }
        if raw.num_attention_heads == 0 {
            return Err(invalid("num_attention_heads is 0".into()));
        }
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let rope = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
        let rope_theta = raw
            .rope_theta
            .or(rope.and_then(|r| r.rope_theta))
            .unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None => RopeScaling::None,
            Some(r) => parse_rope_scaling(r, &unsupported, &invalid)?,
        };
        let partial_rotary_factor = raw
            .partial_rotary_factor
            .or(rope.and_then(|r| r.partial_rotary_factor))
            .unwrap_or(1.0);
        let sliding_window = match architecture {
            Architecture::Mistral | Architecture::Phi3 => raw.sliding_window,
            Architecture::Qwen2 if raw.use_sliding_window == Some(true) => {
                return Err(unsupported("use_sliding_window", "true".into()));
            }
            _ => None,
        };
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads);
        let config = Self {
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: raw.vocab_size,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            partial_rotary_factor,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: architecture == Architecture::Qwen2 || raw.attention_bias,
            o_bias: architecture != Architecture::Qwen2 && raw.attention_bias,
            sliding_window,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the relations between sizes the decoder relies on; `path` names the source.
    pub(crate) fn validate(&self, path: &Path) -> Result<()> {
        let problem = if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            Some("attention and key/value head counts must be positive".to_string())
        } else if self.num_attention_heads % self.num_key_value_heads != 0 {
            Some(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ))
        } else if self.head_dim == 0 || self.head_dim % 2 != 0 {
            Some(format!("head_dim {} must be even and positive", self.head_dim))
        } else if self.rotary_dim() == 0 {
            Some(format!("partial_rotary_factor {} leaves nothing to rotate", self.partial_rotary_factor))
        } else if self.rotary_dim() > self.head_dim {
            Some(format!(
                "the rotary dimension {} (partial_rotary_factor {}) exceeds head_dim {}",
                self.rotary_dim(),
                self.partial_rotary_factor,
                self.head_dim
            ))
        } else if self.hidden_size == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            Some("hidden_size, intermediate_size and vocab_size must be positive".to_string())
        } else if self.max_position_embeddings == 0 {
            Some("max_position_embeddings must be positive".to_string())
        } else {
            None
        };
        match problem {
            Some(message) => Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Longest sequence the model is meant to handle: `max_position_embeddings`, stretched by
    /// `factor` for `dynamic` rope scaling (whose point is to run past the trained length).
    pub fn context_length(&self) -> usize {
        match self.rope_scaling {
            RopeScaling::Dynamic { factor } => (self.max_position_embeddings as f32 * factor) as usize,
            _ => self.max_position_embeddings,
        }
    }

    /// Number of leading dimensions of each head that RoPE rotates (always even).
    pub fn rotary_dim(&self) -> usize {
        let dim = (self.head_dim as f32 * self.partial_rotary_factor) as usize;
        dim - dim % 2
    }
}

fn architecture_of(raw: &RawConfig, path: &Path) -> Result<Architecture> {
    let unsupported = |name: &str| ModelError::UnsupportedArchitecture {
        name: name.to_string(),
        path: path.to_path_buf(),
        supported: SUPPORTED_ARCHITECTURES,
    };
    if let Some(class) = raw.architectures.as_ref().and_then(|a| a.first()) {
        return Architecture::from_class(class).ok_or_else(|| unsupported(class));
    }
    match raw.model_type.as_deref() {
        Some(t) => Architecture::from_model_type(t).ok_or_else(|| unsupported(t)),
        None => Err(ModelError::InvalidConfig {
            path: PathBuf::from(path),
            message: "neither `architectures` nor `model_type` is set".into(),
        }),
    }
}

fn parse_rope_scaling(
    r: &RawRope,
    unsupported: &dyn Fn(&'static str, String) -> ModelError,
    invalid: &dyn Fn(String) -> ModelError,
) -> Result<RopeScaling> {
    let kind = r.rope_type.as_deref().or(r.legacy_type.as_deref()).unwrap_or("default");
    let factor = || r.factor.ok_or_else(|| invalid(format!("rope type `{kind}` needs `factor`")));
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "dynamic" => RopeScaling::Dynamic { factor: factor()? },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: r.low_freq_factor.unwrap_or(1.0),
            high_freq_factor: r.high_freq_factor.unwrap_or(4.0),
            original_max_position_embeddings: r
                .original_max_position_embeddings
                .ok_or_else(|| invalid("llama3 rope scaling needs `original_max_position_embeddings`".into()))?,
        },
        other => return Err(unsupported("rope scaling type", other.to_string())),
    })
}
