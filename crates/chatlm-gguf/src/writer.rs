//! A minimal GGUF writer, for building test files and vocab-only GGUFs.

use std::path::Path;

use crate::error::GgufError;
use crate::file::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::ggml_type::GgmlType;
use crate::value::MetadataValue;

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF in memory. The output is what llama.cpp's `gguf_write_to_file` produces for the
/// same content: header, metadata, tensor table, padding to the alignment, tensor data each padded.
///
/// ```
/// use chatlm_gguf::{GgmlType, GgufFile, GgufWriter};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", "llama");
/// w.add_tensor("t", &[2], GgmlType::F32, [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect());
/// let file = GgufFile::from_bytes(w.to_bytes())?;
/// assert_eq!(file.get_str("general.architecture"), Some("llama"));
/// assert_eq!(file.tensor_data(&file.tensors()[0])?.len(), 8);
/// # Ok::<(), chatlm_gguf::GgufError>(())
/// ```
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> Self {
        GgufWriter { version: 3, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Writes `version` in the header instead of 3 (2 has the same layout).
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Appends a key-value pair (in order; duplicates are written as given, for error tests).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) -> &mut Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Appends a tensor; `data` is written as given (its length is the caller's responsibility).
    pub fn add_tensor(&mut self, name: impl Into<String>, dims: &[u64], ggml_type: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push(PendingTensor { name: name.into(), dims: dims.to_vec(), ggml_type, data });
        self
    }

    fn alignment(&self) -> u64 {
        let declared = self.metadata.iter().find(|(k, _)| k == "general.alignment").and_then(|(_, v)| v.as_u64());
        match declared {
            Some(a) if a.is_power_of_two() => a,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// The encoded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment() as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_str(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += t.data.len().next_multiple_of(alignment);
        }
        out.resize(out.len().next_multiple_of(alignment), 0);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().next_multiple_of(alignment), 0);
        }
        out
    }

    /// Writes the encoded file to `path`.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|source| GgufError::Io { path: path.to_owned(), source })
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(s) => write_str(out, s),
        MetadataValue::Array { element_type, values } => {
            out.extend_from_slice(&element_type.id().to_le_bytes());
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            for v in values {
                write_value(out, v);
            }
        }
    }
}
