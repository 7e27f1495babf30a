//! The one error type of this crate: every variant says where in the file things went wrong.

use std::path::PathBuf;

/// Why a GGUF file could not be read.
///
/// Offsets are absolute byte positions in the file, so a hex dump shows the faulty bytes directly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening or mapping the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:?}, expected \"GGUF\"")]
    BadMagic {
        /// The four bytes found at offset 0.
        found: [u8; 4],
    },
    /// A version this reader does not implement (only 2 and 3 are; 1 used 32-bit counts).
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// The version field as read little-endian.
        version: u32,
    },
    /// The version field only makes sense read big-endian.
    #[error("big-endian GGUF (version {version} when byte-swapped) is not supported")]
    BigEndian {
        /// The version read big-endian.
        version: u32,
    },
    /// The file ends in the middle of a field.
    #[error("truncated GGUF: {what} needs {needed} bytes at offset {offset}, but the file has {len}")]
    Truncated {
        /// Which field was being read (names the metadata key or tensor when known).
        what: String,
        /// Where the field starts.
        offset: u64,
        /// How many bytes the field needs.
        needed: u64,
        /// File length.
        len: u64,
    },
    /// A count or length that cannot fit in the rest of the file (caught before allocating).
    #[error("implausible {what} {count} at offset {offset}: the remaining {remaining} bytes cannot hold it")]
    ImplausibleCount {
        /// What was counted.
        what: String,
        /// The count as stored.
        count: u64,
        /// Where it was stored.
        offset: u64,
        /// Bytes left in the file after it.
        remaining: u64,
    },
    /// A metadata value type id outside the GGUF specification.
    #[error("unknown metadata value type {type_id} for key {key:?} at offset {offset}")]
    UnknownValueType {
        /// The key whose value it is.
        key: String,
        /// The type id.
        type_id: u32,
        /// Where the type id is stored.
        offset: u64,
    },
    /// Arrays nested deeper than this reader accepts.
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels at offset {offset}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
        /// Where the innermost array starts.
        offset: u64,
    },
    /// A string (key, value or tensor name) that is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
        /// Where its bytes start.
        offset: u64,
    },
    /// The same metadata key twice.
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?} at offset {offset}")]
    DuplicateTensor {
        /// The tensor.
        name: String,
        /// Where the second entry starts.
        offset: u64,
    },
    /// `general.alignment` is not a non-zero power of two stored as u32.
    #[error("invalid general.alignment: {reason}")]
    BadAlignment {
        /// What is wrong with it.
        reason: String,
    },
    /// A ggml tensor type id this reader does not know.
    #[error("tensor {tensor:?}: unknown ggml type id {type_id} at offset {offset}")]
    UnknownGgmlType {
        /// The tensor.
        tensor: String,
        /// The id as stored.
        type_id: u32,
        /// Where it is stored.
        offset: u64,
    },
    /// A tensor whose shape is not valid for its type.
    #[error("tensor {tensor:?}: {reason}")]
    BadTensorShape {
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor whose data offset is not a multiple of the file's alignment.
    #[error("tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset relative to the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor whose bytes extend past the end of the file.
    #[error("tensor {tensor:?}: data [{start}, {end}) runs past the end of the file ({len} bytes)")]
    TensorDataPastEnd {
        /// The tensor.
        tensor: String,
        /// Absolute start of its bytes.
        start: u64,
        /// Absolute end of its bytes.
        end: u64,
        /// File length.
        len: u64,
    },
    /// A [`TensorInfo`](crate::TensorInfo) that does not belong to this file.
    #[error("tensor {tensor:?} is not in this file")]
    ForeignTensor {
        /// The tensor.
        tensor: String,
    },
    /// A metadata key that a caller required is absent.
    #[error("missing metadata key {key:?}")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of the wrong type for what the caller asked.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller wanted.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
}
