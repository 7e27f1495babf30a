//! `Model::from_source`: one entry point for every model format.

use std::path::Path;

use candle_core::Device;

use crate::config::ModelConfig;
use crate::error::Result;
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
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            quantize: None,
            dequantize: false,
        }
    }
}

impl LoadOptions {
    pub(crate) fn context(&self) -> LoadContext {
        LoadContext {
            device: self.device.clone(),
            quantize: self.quantize,
            dequantize: self.dequantize,
        }
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
        Self::from_tensors(config, &weights, &options.context())
    }
}
