//! The model flags of the model-running subcommands (`generate`, `chat`, `bench`, `serve`),
//! turned into the pipeline crate's [`LoadSpec`]. Loading and generating live in `chatlm`.

use std::path::PathBuf;

use chatlm::{LoadSpec, Numerics, Quantization};

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

/// What to load for `generate`, `chat` and `serve`: the model flags plus its tokenizer.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadRequest {
    #[command(flatten)]
    pub weights: ModelArgs,
    /// Tokenizer files to use instead of the model's own (a directory, tokenizer.json or .gguf).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    /// The pipeline crate's load spec for these flags.
    pub fn spec(&self) -> LoadSpec {
        LoadSpec { model: self.model.clone(), quantize: self.quantize, numerics: self.numerics, ..LoadSpec::default() }
    }
}

impl LoadRequest {
    /// The pipeline crate's load spec for these flags.
    pub fn spec(&self) -> LoadSpec {
        LoadSpec { tokenizer: self.tokenizer.clone(), ..self.weights.spec() }
    }
}
