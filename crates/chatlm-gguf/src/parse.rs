//! Bounds-checked little-endian cursor over the header, metadata and tensor table.
//!
//! Every read says what it is reading, so a truncation error can name the key or tensor; every
//! count is checked against the bytes left before anything is allocated for it.

use crate::error::GgufError;
use crate::value::{MetadataValue, ValueType};

/// Arrays of arrays are legal GGUF; nothing real nests more than twice, and a limit keeps a
/// hostile file from recursing the stack away.
pub(crate) const MAX_ARRAY_NESTING: usize = 4;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos as u64
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    pub(crate) fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated { what: what(), offset: self.position(), needed: n, len: self.len() });
        }
        // n <= remaining <= usize::MAX, so the cast is lossless.
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items each at least `min_item_len` bytes long, rejected when the rest of the file
    /// could not hold that many.
    pub(crate) fn count(&mut self, what: &str, min_item_len: u64) -> Result<u64, GgufError> {
        let offset = self.position();
        let count = self.u64(|| what.to_owned())?;
        let remaining = self.remaining();
        if count.checked_mul(min_item_len).is_none_or(|need| need > remaining) {
            return Err(GgufError::ImplausibleCount { what: what.to_owned(), count, offset, remaining });
        }
        Ok(count)
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes.
    pub(crate) fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.count(&format!("length of {}", what()), 1)?;
        let offset = self.position();
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what: what(), offset })
    }

    pub(crate) fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<MetadataValue, GgufError> {
        let what = || format!("value of {key:?}");
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.array(what)?)),
            // GGUF writes bools as one byte; anything but 0 reads as true, as in llama.cpp.
            ValueType::Bool => MetadataValue::Bool(self.array::<1>(what)?[0] != 0),
            ValueType::String => MetadataValue::String(self.string(&what)?),
            ValueType::Array => {
                let start = self.position();
                if depth >= MAX_ARRAY_NESTING {
                    return Err(GgufError::NestingTooDeep { key: key.to_owned(), max: MAX_ARRAY_NESTING, offset: start });
                }
                let element_type = self.value_type(key)?;
                let count = self.count(&format!("element count of {key:?}"), element_type.min_encoded_len())?;
                // count * min_len <= remaining bytes, so this allocation is bounded by the file size.
                let mut values = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    values.push(self.value(key, element_type, depth + 1)?);
                }
                MetadataValue::Array { element_type, values }
            }
        })
    }

    pub(crate) fn value_type(&mut self, key: &str) -> Result<ValueType, GgufError> {
        let offset = self.position();
        let type_id = self.u32(|| format!("value type of {key:?}"))?;
        ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType { key: key.to_owned(), type_id, offset })
    }
}
