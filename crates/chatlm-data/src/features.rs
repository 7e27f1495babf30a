//! Tokenized examples and collated batches.
//!
//! An [`Example`] is what a `datasets` row of a tokenized dataset is: named integer-list columns
//! (`input_ids`, `labels`, `attention_mask`, `completion_mask`, `seq_lengths`, ...). A [`Batch`] is what a
//! collator returns: named tensors, written with the Python key names so outputs can be compared with
//! transformers/TRL.

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// One tokenized example: ordered, named integer-list columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Example {
    /// `(column name, values)` in insertion order.
    pub columns: Vec<(String, Vec<i64>)>,
}

impl Example {
    /// An example with only `input_ids`.
    pub fn from_ids(ids: Vec<i64>) -> Self {
        Example { columns: vec![("input_ids".to_string(), ids)] }
    }

    /// Builder: add (or replace) a column.
    pub fn with(mut self, name: &str, values: Vec<i64>) -> Self {
        self.insert(name, values);
        self
    }

    /// The column `name`, if present.
    pub fn get(&self, name: &str) -> Option<&[i64]> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Whether the column exists.
    pub fn contains(&self, name: &str) -> bool {
        self.columns.iter().any(|(n, _)| n == name)
    }

    /// Insert or replace a column, keeping the position of a replaced one.
    pub fn insert(&mut self, name: &str, values: Vec<i64>) {
        match self.columns.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = values,
            None => self.columns.push((name.to_string(), values)),
        }
    }

    /// Remove a column and return it.
    pub fn remove(&mut self, name: &str) -> Option<Vec<i64>> {
        let pos = self.columns.iter().position(|(n, _)| n == name)?;
        Some(self.columns.remove(pos).1)
    }

    /// `input_ids`, or an error naming the example.
    pub fn input_ids(&self) -> Result<&[i64]> {
        self.get("input_ids").ok_or_else(|| DataError::features("example has no `input_ids` column"))
    }

    /// Parse a JSON object of integer-list columns. Non-list values are rejected: collators and packers
    /// only see list columns (as TRL's `pack_dataset` requires).
    pub fn from_json(obj: &Map<String, Value>) -> Result<Self> {
        let mut ex = Example::default();
        for (k, v) in obj {
            let arr = v
                .as_array()
                .ok_or_else(|| DataError::features(format!("column `{k}` is not a list of integers")))?;
            let mut vals = Vec::with_capacity(arr.len());
            for x in arr {
                vals.push(x.as_i64().ok_or_else(|| {
                    DataError::features(format!("column `{k}` holds a non-integer value {x}"))
                })?);
            }
            ex.columns.push((k.clone(), vals));
        }
        Ok(ex)
    }

    /// The example as a JSON object of lists.
    pub fn to_json(&self) -> Map<String, Value> {
        self.columns
            .iter()
            .map(|(k, v)| (k.clone(), Value::Array(v.iter().map(|&x| Value::from(x)).collect())))
            .collect()
    }
}

/// A collated value: a Python int, a 1-D tensor or a 2-D tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tensor {
    /// A plain integer (`max_length_q`).
    Int(i64),
    /// A 1-D tensor (`cu_seq_lens_q`).
    Vector(Vec<i64>),
    /// A 2-D tensor `[batch, seq]`.
    Matrix(Vec<Vec<i64>>),
}

impl Tensor {
    /// Rows of a 2-D tensor.
    pub fn as_matrix(&self) -> Option<&Vec<Vec<i64>>> {
        match self {
            Tensor::Matrix(m) => Some(m),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        let row = |r: &Vec<i64>| Value::Array(r.iter().map(|&x| Value::from(x)).collect());
        match self {
            Tensor::Int(x) => Value::from(*x),
            Tensor::Vector(v) => row(v),
            Tensor::Matrix(m) => Value::Array(m.iter().map(row).collect()),
        }
    }
}

/// A collated batch: named tensors in the order the Python collator returns them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// `(key, tensor)` pairs.
    pub entries: Vec<(String, Tensor)>,
}

impl Batch {
    /// The tensor under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Mutable access to the tensor under `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Tensor> {
        self.entries.iter_mut().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Insert or replace.
    pub fn insert(&mut self, key: &str, t: Tensor) {
        match self.get_mut(key) {
            Some(old) => *old = t,
            None => self.entries.push((key.to_string(), t)),
        }
    }

    /// Remove and return.
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// The batch as a JSON object with nested lists, Python's keys and order.
    pub fn to_json(&self) -> Value {
        Value::Object(self.entries.iter().map(|(k, t)| (k.clone(), t.to_json())).collect())
    }
}
