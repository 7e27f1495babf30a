//! `Model::from_source`: one entry point for every model format.

use std::path::Path;

use candle_core::{DType, Device};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::linear::Quantization;
use crate::model::Model;
use crate::source::ModelSource;
use crate::weights::{LoadContext, SafetensorsSource};

/// How to load a model.
///
/// ```
/// use chatlm_model::{LoadOptions, Quantization};
/// let options = LoadOptions { quantize: Some("q8_0".parse().unwrap()), ..LoadOptions::default() };
/// assert_eq!(options.quantize, Some(Quantization::Q8_0));
/// ```
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights and the computation live (the CPU unless a GPU backend is built in).
    pub device: Device,
    /// Quantize full-precision matrices while loading (the `load_in_8bit` / `load_in_4bit` of
    /// transformers). GGUF matrices that are already quantized keep their format.
    pub quantize: Option<Quantization>,
    /// Expand GGUF's quantized matrices to f32 instead of computing on the blocks: the slow,
    /// memory-hungry reference path, exact against transformers' GGUF loading.
    pub dequantize: bool,
    /// Dtype of dense weights, activations and the KV cache: `F32` (default, exact against
    /// transformers), or `BF16` / `F16` to halve the memory of full-precision models. Logits
    /// are always f32; attention softmax runs in f32.
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            quantize: None,
            dequantize: false,
            dtype: DType::F32,
        }
    }
}

impl LoadOptions {
    pub(crate) fn context(&self) -> Result<LoadContext> {
        if !matches!(self.dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(ModelError::InvalidInput(format!(
                "compute dtype {:?} is not supported (f32, bf16 or f16)",
                self.dtype
            )));
        }
        Ok(LoadContext {
            device: self.device.clone(),
            quantize: self.quantize,
            dequantize: self.dequantize,
            dtype: self.dtype,
        })
    }
}

impl Model {
    /// Loads the model `source` points at.
    ///
    /// ```no_run
    /// use chatlm_model::{LoadOptions, Model, ModelSource};
    /// let model = Model::from_source(&ModelSource::resolve("path/to/model-dir")?, &LoadOptions::default())?;
    /// println!("{} layers", model.config().num_hidden_layers);
    /// # Ok::<(), chatlm_model::ModelError>(())
    /// ```
    pub fn from_source(source: &ModelSource, options: &LoadOptions) -> Result<Self> {
        match source {
            ModelSource::Directory(dir) => Self::from_dir(dir, options),
            ModelSource::Gguf(path) => crate::gguf::load(path, options),
        }
    }

    /// Loads a transformers model directory (`config.json` + safetensors).
    pub fn from_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let weights = SafetensorsSource::open_dir(dir)?;
        Self::from_tensors(config, &weights, &options.context()?)
    }
}
