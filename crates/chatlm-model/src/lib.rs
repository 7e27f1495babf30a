//! Ids → logits for Llama-family chat models on the CPU.
//!
//! One config-driven decoder ([`Model`]) covers Llama 2/3/3.1, Mistral, Qwen2, Phi-3 and
//! SmolLM2, loaded from a transformers directory (safetensors, memory-mapped), the Hugging Face
//! hub cache (offline) or a GGUF file ([`ModelSource`]). The KV cache ([`KvCache`]) is its own
//! value, preallocated per batch of sequences; batches may be left-padded ([`BatchInput`]).
//!
//! Precision ([`LoadOptions`]): f32 by default (matches transformers within 1e-4), bf16/f16
//! compute, GGUF matrices multiplied as their quantized blocks (or expanded to f32 with
//! `dequantize`), and in-situ quantization of full-precision weights to Q8_0/Q4_K while
//! loading ([`Quantization`]).
//!
//! Kernels ([`kernels`]): GGUF matrices in Q4_0, Q4_1, Q8_0, f16 and f32 (and in-situ
//! quantized Q8_0) are multiplied by our own CPU kernels — q8 activations, int8 dot products,
//! AVX2 chosen at run time, a persistent thread pool. The K formats (Q4_K, Q5_K, Q6_K) have
//! scalar kernels of ours but run on candle's SIMD kernels on AVX2 machines until ours exist.
//! The kernel threads follow `CHATLM_THREADS`, else `RAYON_NUM_THREADS`.
//!
//! Numerics ([`Numerics`], [`Model::set_numerics`]): the kernels are as accurate as llama.cpp's
//! but sum in their own orders; `Numerics::LlamaCpp` instead reproduces llama.cpp's CPU
//! arithmetic bit for bit (same logits, same greedy tokens, several times slower) for
//! Llama-family GGUF files in Q4_1/Q8_0/f16.
//!
//! Threads: candle sizes its CPU work from `RAYON_NUM_THREADS` and, when that is unset,
//! re-reads `/proc/cpuinfo` on every matrix product (candle 0.11), which costs more than the
//! product on small models. Binaries should set `RAYON_NUM_THREADS` (e.g. from `--threads`)
//! at the start of `main`, before any thread exists.
//!
//! Cargo feature `hub-download` (off by default): [`ModelSource::resolve`] downloads a hub id
//! missing from the cache with hf-hub, whose HTTP/TLS stack the offline build leaves out.
//!
//! ```no_run
//! use chatlm_model::{LoadOptions, Model, ModelSource};
//! let model = Model::from_source(&ModelSource::resolve("model-dir")?, &LoadOptions::default())?;
//! let mut cache = model.new_cache(1, 128)?;
//! let logits = model.forward_last(&[1, 2, 3], &mut cache)?; // next-token logits
//! assert_eq!(logits.len(), model.config().vocab_size);
//! # Ok::<(), chatlm_model::ModelError>(())
//! ```

#![warn(missing_docs)]


mod cache;
mod config;
mod decode;
mod decode_many;
#[cfg(feature = "hub-download")]
mod download;
mod error;
mod gguf;
mod ggml;
pub mod kernels;
mod layers;
mod linear;
mod load;
mod memory;
mod model;
mod prefill;
mod rope;
mod source;
mod weights;

/// The tensor types of the API (logits, devices, compute dtypes), so callers need not depend
/// on candle themselves.
pub use candle_core::{DType, Device, Tensor};

pub use cache::KvCache;
pub use config::{Architecture, ModelConfig, RopeScaling, SUPPORTED_ARCHITECTURES};
pub use error::{ModelError, Result};
pub use ggml::Numerics;
pub use linear::Quantization;
pub use load::LoadOptions;
pub use memory::ProcessMemory;
pub use model::{BatchInput, Model};
pub use source::{hub_cache_dir, ModelSource};
