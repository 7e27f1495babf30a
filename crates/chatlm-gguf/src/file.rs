//! An opened GGUF file: parsed header, metadata and tensor table over memory-mapped bytes.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::GgufError;
use crate::ggml_type::GgmlType;
use crate::parse::Cursor;
use crate::value::MetadataValue;

/// `"GGUF"` as stored at offset 0.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions.
pub const MAX_DIMS: usize = 4;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    /// Element encoding.
    pub ggml_type: GgmlType,
    /// Offset of the first byte relative to the start of the data section.
    pub offset: u64,
    /// Number of bytes the tensor takes.
    pub size_bytes: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn element_count(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF (version 2 or 3, little-endian) whose tensor bytes stay in the page cache until
/// read.
///
/// ```no_run
/// let gguf = chatlm_gguf::GgufFile::open("model.gguf")?;
/// println!("{} tensors, arch {:?}", gguf.tensors().len(), gguf.get_str("general.architecture"));
/// for info in gguf.tensors() {
///     let bytes: &[u8] = gguf.tensor_data(info)?;
///     assert_eq!(bytes.len() as u64, info.size_bytes);
/// }
/// # Ok::<(), chatlm_gguf::GgufError>(())
/// ```
pub struct GgufFile {
    bytes: Bytes,
    path: Option<PathBuf>,
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, then parses and validates everything but the tensor bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap reader (candle, llama.cpp) we rely on the file
        // not being truncated by another process while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let mut parsed = GgufFile::parse(Bytes::Mapped(map))?;
        parsed.path = Some(path.to_owned());
        Ok(parsed)
    }

    /// Parses a GGUF held in memory (tests, embedded files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<GgufFile, GgufError> {
        let data = bytes.as_slice();
        let mut cur = Cursor::new(data);
        let magic: [u8; 4] = {
            let got = cur.take(4, || "magic".to_owned());
            match got {
                Ok(m) => [m[0], m[1], m[2], m[3]],
                Err(_) => {
                    let mut found = [0u8; 4];
                    found[..data.len()].copy_from_slice(data);
                    return Err(GgufError::BadMagic { found });
                }
            }
        };
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = cur.u32(|| "version".to_owned())?;
        if !(2..=3).contains(&version) {
            let swapped = version.swap_bytes();
            if (1..=3).contains(&swapped) {
                return Err(GgufError::BigEndian { version: swapped });
            }
            return Err(GgufError::UnsupportedVersion { version });
        }
        // A tensor entry takes at least name length (8) + n_dims (4) + type (4) + offset (8).
        let tensor_count = cur.count("tensor count", 24)?;
        // A key-value pair takes at least key length (8) + type (4) + a one-byte value.
        let kv_count = cur.count("metadata key-value count", 13)?;

        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut metadata_index = HashMap::with_capacity(kv_count as usize);
        for index in 0..kv_count {
            let entry_offset = cur.position();
            let key = cur.string(&|| format!("metadata key #{index}"))?;
            let ty = cur.value_type(&key)?;
            let value = cur.value(&key, ty, 0)?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey { key, offset: entry_offset });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(MetadataValue::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(MetadataValue::U32(a)) => {
                return Err(GgufError::BadAlignment { reason: format!("{a} is not a non-zero power of two") })
            }
            Some(other) => {
                return Err(GgufError::BadAlignment { reason: format!("stored as {}, expected u32", other.type_name()) })
            }
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
        for index in 0..tensor_count {
            let entry_offset = cur.position();
            let info = read_tensor_info(&mut cur, index, alignment)?;
            if tensor_index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor { name: info.name, offset: entry_offset });
            }
            tensors.push(info);
        }

        let data_offset = cur.position().next_multiple_of(alignment);
        let len = data.len() as u64;
        for info in &tensors {
            let start = data_offset.checked_add(info.offset);
            let end = start.and_then(|s| s.checked_add(info.size_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= len => {}
                _ => {
                    return Err(GgufError::TensorDataPastEnd {
                        tensor: info.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len,
                    })
                }
            }
        }

        Ok(GgufFile {
            bytes,
            path: None,
            version,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The file this was opened from (`None` for [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor in it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The string under `key`, `None` when absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetadataValue::as_str)
    }

    /// The value under `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    /// The string under `key`; missing or wrongly typed is an error naming the key.
    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        let value = self.require(key)?;
        value.as_str().ok_or_else(|| wrong_type(key, "string", value))
    }

    /// The unsigned integer under `key` (any integer type holding a value that fits), `None` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| wrong_type(key, "unsigned integer", value)),
        }
    }

    /// The bool under `key`, `None` when absent.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value.as_bool().map(Some).ok_or_else(|| wrong_type(key, "bool", value)),
        }
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The table entry for tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (still in ggml's encoding), borrowed from the map.
    ///
    /// Bounds were checked at open; `info` must come from this file.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let range = self.tensor_range(info)?;
        let data = self.bytes.as_slice();
        // Checked in `parse`, re-checked here so a modified `TensorInfo` cannot index out of bounds.
        data.get(range.clone()).ok_or_else(|| GgufError::TensorDataPastEnd {
            tensor: info.name.clone(),
            start: range.start as u64,
            end: range.end as u64,
            len: data.len() as u64,
        })
    }

    /// Absolute byte range of a tensor's data in the file.
    pub fn tensor_range(&self, info: &TensorInfo) -> Result<Range<usize>, GgufError> {
        if self.tensor(&info.name) != Some(info) {
            return Err(GgufError::ForeignTensor { tensor: info.name.clone() });
        }
        let start = (self.data_offset + info.offset) as usize;
        Ok(start..start + info.size_bytes as usize)
    }

    /// The whole file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
}

fn wrong_type(key: &str, expected: &'static str, value: &MetadataValue) -> GgufError {
    GgufError::WrongType { key: key.to_owned(), expected, found: value.type_name() }
}

fn read_tensor_info(cur: &mut Cursor<'_>, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = cur.string(&|| format!("name of tensor #{index}"))?;
    let dims_offset = cur.position();
    let n_dims = cur.u32(|| format!("dimension count of tensor {name:?}"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadTensorShape {
            tensor: name,
            reason: format!("{n_dims} dimensions at offset {dims_offset}, ggml allows at most {MAX_DIMS}"),
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(cur.u64(|| format!("dimension {d} of tensor {name:?}"))?);
    }
    let type_offset = cur.position();
    let type_id = cur.u32(|| format!("type of tensor {name:?}"))?;
    let ggml_type = GgmlType::from_id(type_id)
        .ok_or_else(|| GgufError::UnknownGgmlType { tensor: name.clone(), type_id, offset: type_offset })?;
    let offset = cur.u64(|| format!("data offset of tensor {name:?}"))?;

    let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let Some(elements) = elements else {
        return Err(GgufError::BadTensorShape { tensor: name, reason: format!("element count of {dims:?} overflows") });
    };
    let row = dims.first().copied().unwrap_or(1);
    if row % ggml_type.block_size() != 0 {
        return Err(GgufError::BadTensorShape {
            tensor: name,
            reason: format!("row length {row} is not a multiple of the {ggml_type} block size {}", ggml_type.block_size()),
        });
    }
    let Some(size_bytes) = ggml_type.row_bytes(elements) else {
        return Err(GgufError::BadTensorShape { tensor: name, reason: format!("byte size of {dims:?} {ggml_type} overflows") });
    };
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor { tensor: name, offset, alignment });
    }
    Ok(TensorInfo { name, dims, ggml_type, offset, size_bytes })
}
