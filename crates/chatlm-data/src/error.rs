//! The crate's error type: every variant names the file, row or option that was wrong.

use std::path::PathBuf;

/// Errors from reading, preparing, collating, packing and writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A row could not be used; `row` is 1-based (the line number for JSONL).
    #[error("{path}: row {row}: {message}")]
    Row {
        /// The input file (or `<stdin>`).
        path: PathBuf,
        /// 1-based row number.
        row: usize,
        /// What was wrong.
        message: String,
    },
    /// A whole input file is unusable (wrong extension, wrong Parquet column type, ...).
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Parquet / Arrow failure.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A collator or packer was given features it cannot handle (ragged columns, missing `input_ids`, ...).
    #[error("{0}")]
    Features(String),
    /// An option value is invalid.
    #[error("option {name}: {message}")]
    Option {
        /// The option (Python keyword name where there is one).
        name: String,
        /// What was wrong.
        message: String,
    },
    /// Tokenizer failure (the tokenizer's own message, which names the file/token/id).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Template rendering failure for a row.
    #[error("row {row}: template: {message}")]
    Template {
        /// 1-based row number.
        row: usize,
        /// The renderer's message.
        message: String,
    },
}

impl DataError {
    /// Shorthand for [`DataError::Features`].
    pub(crate) fn features(msg: impl Into<String>) -> Self {
        DataError::Features(msg.into())
    }
    /// Shorthand for [`DataError::Option`].
    pub(crate) fn option(name: &str, msg: impl Into<String>) -> Self {
        DataError::Option { name: name.to_string(), message: msg.into() }
    }
}

/// Result alias for this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
