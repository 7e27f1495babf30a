//! Where tensors come from: memory-mapped safetensors (single or sharded) or a GGUF file.
//!
//! Every source answers in transformers' tensor names (`model.layers.0.self_attn.q_proj.weight`);
//! a GGUF source translates them to llama.cpp's names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::linear::{quantize_matrix, Quantization, Weight};

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
    fn load_matrix(&self, name: &str, expected: &[usize], ctx: &LoadContext) -> Result<Weight> {
        quantize_matrix(self.get(name, expected, &ctx.device)?, ctx.quantize, ctx.dtype)
    }
}

/// One memory-mapped safetensors file and its parsed header.
struct MappedFile {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Where the data section starts (after the 8-byte length and the JSON header).
    data_start: usize,
    header: safetensors::tensor::Metadata,
}

/// Safetensors files, memory-mapped; tensors are copied out (converted, maybe quantized) one
/// at a time, and each one's pages are released right after, so the full-precision file is
/// never resident as a whole.
pub(crate) struct SafetensorsSource {
    files: Vec<MappedFile>,
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
            let io_error = |source| ModelError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io_error)?;
            // SAFETY: the mapping is read-only; like every mmap-based loader we rely on the
            // model files not being modified while the model is loading.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
            // Checks the header and that the data section covers every tensor (truncation).
            let (header_len, header) =
                safetensors::SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            for name in header.tensors().into_keys() {
                routing.insert(name, index);
            }
            files.push(MappedFile {
                path: path.clone(),
                map,
                data_start: 8 + header_len,
                header,
            });
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
        let file = &self.files[*self.routing.get(name)?];
        file.header.info(name).map(|info| info.shape.clone())
    }

    fn load_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let missing = || ModelError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        };
        let file = &self.files[*self.routing.get(name).ok_or_else(missing)?];
        let info = file.header.info(name).ok_or_else(missing)?;
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            other => {
                return Err(ModelError::Safetensors {
                    path: file.path.clone(),
                    message: format!("tensor `{name}` has dtype {other:?}; expected F32, F16 or BF16"),
                })
            }
        };
        let (start, end) = info.data_offsets;
        let (start, end) = (file.data_start + start, file.data_start + end);
        let bytes = file.map.get(start..end).ok_or_else(|| ModelError::Safetensors {
            path: file.path.clone(),
            message: format!("tensor `{name}` lies outside the file"),
        })?;
        let tensor = Tensor::from_raw_buffer(bytes, dtype, &info.shape, device)?.to_dtype(DType::F32)?;
        release_pages(&file.map, start, end - start);
        Ok(tensor)
    }
}

/// Drops the mapped pages of a tensor already copied out, so that they stop counting in the
/// process's resident memory while the rest of the model loads.
fn release_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    #[cfg(unix)]
    // SAFETY: the mapping is a read-only shared file mapping and nothing borrows this range any
    // more; MADV_DONTNEED only drops the pages, which a later access would read from the file
    // again. Failure only means the pages stay resident, so it is ignored.
    unsafe {
        let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len);
    }
    #[cfg(not(unix))]
    let _ = (map, offset, len);
}
