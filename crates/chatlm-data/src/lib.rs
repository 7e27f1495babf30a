//! Fine-tuning data preparation with the exact semantics of transformers and TRL: dataset format
//! detection, chat-template formatting, label masking, collators and packing, streaming JSONL / JSON /
//! CSV / Parquet input and atomic Parquet / JSONL output.
//!
//! Every piece names the Python function it reproduces; the parity tests hold the outputs against
//! files produced by `scripts/reference/data_*.py` with the real libraries.

pub mod collate;
pub mod completion;
pub mod error;
pub mod features;
pub mod format;
pub mod options;
pub mod hygiene;
pub mod io;
pub mod pack;
pub mod prepare;
pub mod sink;

pub use collate::{
    FlatteningCollator, LmCollator, PadConfig, PaddingCollator, PaddingSide, TrlLmCollator, IGNORE_INDEX,
};
pub use completion::{CollatorWarning, CompletionOnlyCollator};
pub use error::{DataError, Result};
pub use features::{Batch, Example, Tensor};
pub use options::{build_collator, AnyCollator, TokenizerInfo};
pub use pack::{pack, PackScope, Strategy};
pub use format::DataFormat;
pub use io::{InputKind, RecordReader};
pub use prepare::{LabelMode, LossMode, PrepareConfig, Preparer, Summary, Truncation};
pub use sink::{check_not_input, ExampleSink, OutputKind};
pub use hygiene::{fix_tokenizer, HygieneOptions, HygieneReport};
