//! Reader (and small writer) for the GGUF container used by llama.cpp.
//!
//! GGUF = header (magic `GGUF`, version, counts) → typed metadata key-values → tensor table
//! (name, dims, ggml type, offset) → aligned tensor data. Versions 2 and 3, little-endian.
//!
//! Why hand-written: the only maintained Rust reader lives inside `candle-core`, and the light
//! crates (the tokenizer, the CLI's `inspect`) must not pull a tensor library in to read a vocabulary.
//! The format is small; what matters is strict validation, so every count is checked against the
//! file size before allocating and every error names the byte offset and the key or tensor.
//!
//! ```no_run
//! use chatlm_gguf::GgufFile;
//! let gguf = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tokens = gguf.require("tokenizer.ggml.tokens")?.as_str_array();
//! let embd = gguf.tensor("token_embd.weight").expect("present");
//! println!("{:?} {}", embd.dims, embd.ggml_type);
//! # Ok::<(), chatlm_gguf::GgufError>(())
//! ```

mod error;
mod file;
mod ggml_type;
mod parse;
mod value;
mod writer;

pub use error::GgufError;
pub use file::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
pub use ggml_type::GgmlType;
pub use value::{MetadataValue, ValueType};
pub use writer::GgufWriter;
