//! Where tensors come from: memory-mapped safetensors (single or sharded) or a GGUF file.
//!
//! Every source answers in transformers' tensor names (`model.layers.0.self_attn.q_proj.weight`);
//! a GGUF source translates them to llama.cpp's names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::QMatMul;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::linear::{quantize_matrix, Quantization};

/// What every tensor load needs to know.
pub(crate) struct LoadContext {
    pub(crate) device: Device,
    /// In-situ quantization of full-precision matrices.
    pub(crate) quantize: Option<Quantization>,
    /// Expand block-quantized (GGUF) matrices to f32: the slow reference path.
    pub(crate) dequantize: bool,
    /// Dtype of dense weights and activations.
    pub(crate) dtype: DType,
}

/// A store of named tensors, in transformers naming.
pub(crate) trait TensorSource {
    /// Where the tensors come from, for error messages.
    fn describe(&self) -> String;
    /// The shape of `name`, or `None` when absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Loads `name` as an f32 tensor (dequantized or upcast as needed).
    fn load_f32(&self, name: &str, device: &Device) -> Result<Tensor>;

    /// Checks `name` exists with the shape the config implies.
    fn check_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let found = self.shape(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        })?;
        if found != expected {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                source_desc: self.describe(),
                expected: expected.to_vec(),
                found,
            });
        }
        Ok(())
    }

    /// Loads a vector (norm scale, bias) in the compute dtype after the shape check.
    fn get_vector(&self, name: &str, size: usize, ctx: &LoadContext) -> Result<Tensor> {
        Ok(self.get(name, &[size], &ctx.device)?.to_dtype(ctx.dtype)?)
    }

    /// Loads `name` as f32 after checking it has the shape the config implies.
    fn get(&self, name: &str, expected: &[usize], device: &Device) -> Result<Tensor> {
        self.check_shape(name, expected)?;
        self.load_f32(name, device)
    }

    /// Loads a weight matrix as a dense or quantized matmul operand, after the shape check.
    /// Full-precision sources load one f32 matrix at a time and quantize it right away, so
    /// the full-precision weights are never all resident.
    fn load_matrix(&self, name: &str, expected: &[usize], ctx: &LoadContext) -> Result<QMatMul> {
        quantize_matrix(self.get(name, expected, &ctx.device)?, ctx.quantize, ctx.dtype)
    }
}

/// Safetensors files, memory-mapped; tensors are copied out (and upcast) one at a time so the
/// full-precision file is never read into memory as a whole.
pub(crate) struct SafetensorsSource {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// Tensor name -> index into `files`.
    routing: HashMap<String, usize>,
    description: String,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl SafetensorsSource {
    /// Opens `model.safetensors`, or the shards listed by `model.safetensors.index.json`, in `dir`.
    pub(crate) fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.is_file() {
            return Err(ModelError::NotFound {
                path: dir.to_path_buf(),
                message: "neither model.safetensors nor model.safetensors.index.json".into(),
            });
        }
        let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
            path: index_path.clone(),
            source,
        })?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
            path: index_path.clone(),
            message: e.to_string(),
        })?;
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let paths: Vec<PathBuf> = shards.into_iter().map(|s| dir.join(s)).collect();
        Self::open_files(&paths)
    }

    /// Memory-maps each file and reads its header.
    pub(crate) fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut routing = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            if !path.is_file() {
                return Err(ModelError::NotFound {
                    path: path.clone(),
                    message: "safetensors file missing".into(),
                });
            }
            // SAFETY: the mapping is read-only; like every mmap-based loader we rely on the
            // model files not being modified while the model is loading.
            let mapped = unsafe { MmapedSafetensors::new(path) }.map_err(|e| ModelError::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for (name, _) in mapped.tensors() {
                routing.insert(name, index);
            }
            files.push((path.clone(), mapped));
        }
        let description = match paths {
            [one] => one.display().to_string(),
            _ => format!("{} safetensors shards in {}", paths.len(), parent_of(paths)),
        };
        Ok(Self {
            files,
            routing,
            description,
        })
    }
}

fn parent_of(paths: &[PathBuf]) -> String {
    paths
        .first()
        .and_then(|p| p.parent())
        .map_or_else(String::new, |p| p.display().to_string())
}

impl TensorSource for SafetensorsSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (_, file) = &self.files[*self.routing.get(name)?];
        file.get(name).ok().map(|view| view.shape().to_vec())
    }

    fn load_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let missing = || ModelError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        };
        let (path, file) = &self.files[*self.routing.get(name).ok_or_else(missing)?];
        let tensor = file.load(name, device).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            message: format!("tensor `{name}`: {e}"),
        })?;
        Ok(tensor.to_dtype(DType::F32)?)
    }
}
