//! Streaming readers for JSONL, JSON, CSV and Parquet. Every reader yields `(row number, JSON object)`
//! with 1-based row numbers (the line number for JSONL, the data row for CSV / Parquet / JSON arrays),
//! so errors and skipped rows can be reported by number.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use rayon::prelude::*;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// One input row: its 1-based number and its columns.
pub type Record = (usize, Map<String, Value>);

/// Input file kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// A JSON array of objects, or an object of equal-length columns (`.json`).
    Json,
    /// Comma-separated with a header row (`.csv`).
    Csv,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl InputKind {
    /// From the file extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Ok(InputKind::Jsonl),
            "json" => Ok(InputKind::Json),
            "csv" => Ok(InputKind::Csv),
            "parquet" | "pq" => Ok(InputKind::Parquet),
            _ => Err(DataError::Input {
                path: path.to_path_buf(),
                message: "unknown input type: expected .jsonl, .json, .csv or .parquet".into(),
            }),
        }
    }
}

/// A streaming reader over the rows of one input.
pub struct RecordReader {
    path: PathBuf,
    inner: Inner,
    schema: Option<SchemaRef>,
}

enum Inner {
    Lines { lines: BufReader<Box<dyn Read + Send>>, line: usize, pending: std::vec::IntoIter<Result<Record>> },
    Buffered { rows: std::vec::IntoIter<Record> },
    Csv { reader: BufReader<File>, header: Vec<String>, row: usize, line: usize },
    Parquet { reader: ParquetRecordBatchReader, pending: std::vec::IntoIter<Result<Record>>, row: usize },
}

/// Parquet record batches (1024 rows each) converted together.
const PARQUET_BATCHES: usize = 8;

/// JSONL lines parsed together (in parallel) before their rows are handed out.
const JSONL_BATCH: usize = 4096;

fn row_error(path: &Path, row: usize, message: impl Into<String>) -> DataError {
    DataError::Row { path: path.to_path_buf(), row, message: message.into() }
}

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io { path: path.to_path_buf(), source }
}

impl RecordReader {
    /// Open a file by extension.
    pub fn open(path: &Path) -> Result<Self> {
        let kind = InputKind::from_path(path)?;
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let p = path.to_path_buf();
        let (inner, schema) = match kind {
            InputKind::Jsonl => {
                let r: Box<dyn Read + Send> = Box::new(file);
                (Inner::Lines { lines: BufReader::with_capacity(1 << 20, r), line: 0, pending: Vec::new().into_iter() }, None)
            }
            InputKind::Json => (Inner::Buffered { rows: read_json(path, file)?.into_iter() }, None),
            InputKind::Csv => {
                let mut reader = BufReader::with_capacity(1 << 20, file);
                let header = match read_csv_record(&mut reader).map_err(|e| io_err(path, e))? {
                    Some((h, _)) => h,
                    None => Vec::new(),
                };
                (Inner::Csv { reader, header, row: 0, line: 1 }, None)
            }
            InputKind::Parquet => {
                let pq = |e: parquet::errors::ParquetError| DataError::Parquet { path: p.clone(), message: e.to_string() };
                let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?.with_batch_size(1024);
                let schema = b.schema().clone();
                (Inner::Parquet { reader: b.build().map_err(pq)?, pending: Vec::new().into_iter(), row: 0 }, Some(schema))
            }
        };
        Ok(RecordReader { path: p, inner, schema })
    }

    /// JSONL from any reader (stdin), named `name` in errors.
    pub fn jsonl_from(reader: Box<dyn Read + Send>, name: &str) -> Self {
        RecordReader {
            path: PathBuf::from(name),
            inner: Inner::Lines {
                lines: BufReader::with_capacity(1 << 20, reader),
                line: 0,
                pending: Vec::new().into_iter(),
            },
            schema: None,
        }
    }

    /// The Parquet file's Arrow schema (for checking column types before reading rows).
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// The input's path (or name).
    pub fn path(&self) -> &Path {
        &self.path
    }

}

impl Iterator for RecordReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Lines { lines, line, pending } => {
                if let Some(r) = pending.next() {
                    return Some(r);
                }
                // Lines are read in order but parsed in parallel, a batch at a time: JSON
                // parsing is a fifth of a data-prep run and would otherwise run on one core.
                // Bytes, not `String`s: UTF-8 is checked by the parser, in parallel too.
                let mut raw: Vec<(usize, Vec<u8>)> = Vec::with_capacity(JSONL_BATCH);
                let mut failed = None;
                while raw.len() < JSONL_BATCH {
                    let mut text = Vec::new();
                    match lines.read_until(b'\n', &mut text) {
                        Ok(0) => break,
                        Ok(_) => {
                            *line += 1;
                            if !text.iter().all(u8::is_ascii_whitespace) {
                                raw.push((*line, text));
                            }
                        }
                        Err(e) => {
                            *line += 1;
                            failed = Some(row_error(&self.path, *line, format!("unreadable line: {e}")));
                            break;
                        }
                    }
                }
                let path = &self.path;
                let mut parsed: Vec<Result<Record>> = raw
                    .into_par_iter()
                    .map(|(n, text)| match serde_json::from_slice::<Value>(&text) {
                        Ok(Value::Object(m)) => Ok((n, m)),
                        Ok(_) => Err(row_error(path, n, "line is JSON but not an object")),
                        Err(e) => Err(row_error(path, n, format!("invalid JSON: {e}"))),
                    })
                    .collect();
                parsed.extend(failed.map(Err));
                *pending = parsed.into_iter();
                pending.next()
            }
            Inner::Buffered { rows } => rows.next().map(Ok),
            Inner::Csv { reader, header, row, line } => {
                let start = *line + 1;
                let rec = match read_csv_record(reader) {
                    Ok(Some(r)) => r,
                    Ok(None) => return None,
                    Err(e) => return Some(Err(DataError::Row { path: self.path.clone(), row: *row + 1, message: e.to_string() })),
                };
                *line += rec.1;
                *row += 1;
                let n = *row;
                if rec.0.len() != header.len() {
                    let message = format!("line {start}: {} fields, header has {}", rec.0.len(), header.len());
                    return Some(Err(DataError::Row { path: self.path.clone(), row: n, message }));
                }
                let map = header.iter().cloned().zip(rec.0.into_iter().map(csv_value)).collect();
                Some(Ok((n, map)))
            }
            Inner::Parquet { reader, pending, row } => {
                if let Some(r) = pending.next() {
                    return Some(r);
                }
                // A few batches at a time, turned into rows in parallel (like JSONL lines).
                let mut batches = Vec::with_capacity(PARQUET_BATCHES);
                let mut failed = None;
                while batches.len() < PARQUET_BATCHES {
                    match reader.next() {
                        None => break,
                        Some(Ok(b)) => batches.push(b),
                        Some(Err(e)) => {
                            // Rows read before the bad page still come first.
                            failed = Some(DataError::Parquet { path: self.path.clone(), message: e.to_string() });
                            break;
                        }
                    }
                }
                let mut first = Vec::with_capacity(batches.len());
                for b in &batches {
                    first.push(*row);
                    *row += b.num_rows();
                }
                let rows: Result<Vec<Vec<Record>>, String> =
                    batches.par_iter().zip(first).map(|(b, first)| batch_to_records(b, first)).collect();
                let mut out: Vec<Result<Record>> = match rows {
                    Ok(v) => v.into_iter().flatten().map(Ok).collect(),
                    Err(m) => vec![Err(DataError::Parquet { path: self.path.clone(), message: m })],
                };
                out.extend(failed.map(Err));
                *pending = out.into_iter();
                pending.next()
            }
        }
    }
}

/// A CSV cell: JSON lists / objects written into cells (e.g. `input_ids`) are parsed, everything else is text.
fn csv_value(s: String) -> Value {
    let t = s.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        if let Ok(v) = serde_json::from_str(t) {
            return v;
        }
    }
    Value::String(s)
}

/// Read one RFC 4180 record (quoted fields may span lines). Returns the fields and the lines consumed.
fn read_csv_record(r: &mut impl BufRead) -> std::io::Result<Option<(Vec<String>, usize)>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut lines = 0;
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 {
            if lines == 0 {
                return Ok(None);
            }
            fields.push(std::mem::take(&mut field));
            return Ok(Some((fields, lines)));
        }
        lines += 1;
        let mut chars = buf.chars().peekable();
        while let Some(c) = chars.next() {
            match (in_quotes, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => in_quotes = false,
                (true, c) => field.push(c),
                (false, '"') => in_quotes = true,
                (false, ',') => fields.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {}
                (false, '\n') => {
                    fields.push(std::mem::take(&mut field));
                    return Ok(Some((fields, lines)));
                }
                (false, c) => field.push(c),
            }
        }
    }
}

fn read_json(path: &Path, mut file: File) -> Result<Vec<Record>> {
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| io_err(path, e))?;
    let bad = |m: String| DataError::Input { path: path.to_path_buf(), message: m };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    match v {
        Value::Array(rows) => rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Value::Object(m) => Ok((i + 1, m)),
                _ => Err(DataError::Row { path: path.to_path_buf(), row: i + 1, message: "not a JSON object".into() }),
            })
            .collect(),
        Value::Object(cols) => {
            // Column-oriented `{"text": [...], ...}` (what `Dataset.to_dict()` gives).
            let n = cols.values().next().and_then(Value::as_array).map_or(0, Vec::len);
            let mut rows: Vec<Record> = (1..=n).map(|i| (i, Map::new())).collect();
            for (k, col) in cols {
                let arr = match col {
                    Value::Array(a) if a.len() == n => a,
                    _ => return Err(bad(format!("column `{k}` is not a list of {n} values"))),
                };
                for (r, v) in rows.iter_mut().zip(arr) {
                    r.1.insert(k.clone(), v);
                }
            }
            Ok(rows)
        }
        _ => Err(bad("expected an array of objects or an object of columns".into())),
    }
}

fn batch_to_records(batch: &RecordBatch, first_row: usize) -> Result<Vec<Record>, String> {
    let schema = batch.schema();
    let cols: Vec<Vec<Value>> = batch.columns().iter().map(|c| array_values(c.as_ref())).collect::<Result<_, _>>()?;
    let mut rows: Vec<Record> = (0..batch.num_rows()).map(|i| (first_row + i + 1, Map::new())).collect();
    for (f, col) in schema.fields().iter().zip(cols) {
        for (r, v) in rows.iter_mut().zip(col) {
            r.1.insert(f.name().clone(), v);
        }
    }
    Ok(rows)
}

/// Arrow array → JSON values, for the types `datasets` writes.
/// Rows of a list column from its flat values, moved (not cloned) into each row's array.
fn split_list<O: Copy + TryInto<usize>>(values: Vec<Value>, offsets: &[O], is_null: impl Fn(usize) -> bool) -> Vec<Value> {
    let at = |o: O| o.try_into().unwrap_or(0);
    let mut values = values.into_iter().skip(offsets.first().map_or(0, |&o| at(o)));
    offsets
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let row: Vec<Value> = values.by_ref().take(at(w[1]).saturating_sub(at(w[0]))).collect();
            if is_null(i) { Value::Null } else { Value::Array(row) }
        })
        .collect()
}

fn array_values(a: &dyn Array) -> Result<Vec<Value>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    macro_rules! prim {
        ($t:ty) => {{
            let p = a.as_primitive::<$t>();
            (0..p.len()).map(|i| if p.is_null(i) { Value::Null } else { Value::from(p.value(i)) }).collect()
        }};
    }
    let out: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; a.len()],
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..b.len()).map(|i| if b.is_null(i) { Value::Null } else { Value::Bool(b.value(i)) }).collect()
        }
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            (0..s.len()).map(|i| if s.is_null(i) { Value::Null } else { Value::from(s.value(i)) }).collect()
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            (0..s.len()).map(|i| if s.is_null(i) { Value::Null } else { Value::from(s.value(i)) }).collect()
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            split_list(array_values(l.values().as_ref())?, l.value_offsets(), |i| l.is_null(i))
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            split_list(array_values(l.values().as_ref())?, l.value_offsets(), |i| l.is_null(i))
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let cols: Vec<Vec<Value>> = s.columns().iter().map(|c| array_values(c.as_ref())).collect::<Result<_, _>>()?;
            (0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        return Value::Null;
                    }
                    Value::Object(fields.iter().zip(&cols).map(|(f, c)| (f.name().clone(), c[i].clone())).collect())
                })
                .collect()
        }
        other => return Err(format!("unsupported Arrow column type {other}")),
    };
    Ok(out)
}

/// Check the Arrow types of the columns the preparation reads, so a Parquet file with a wrong column type
/// fails up front, naming the column, instead of failing on every row.
pub fn check_schema(path: &Path, schema: &arrow_schema::Schema, text_field: &str) -> Result<()> {
    fn is_text(t: &DataType) -> bool {
        matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    }
    fn is_list_of(t: &DataType, f: fn(&DataType) -> bool) -> bool {
        match t {
            DataType::List(i) | DataType::LargeList(i) => f(i.data_type()),
            _ => false,
        }
    }
    let is_int = |t: &DataType| t.is_integer();
    let is_msgs = |t: &DataType| is_list_of(t, |i| matches!(i, DataType::Struct(_)));
    for f in schema.fields() {
        let t = f.data_type();
        let ok = match f.name().as_str() {
            "messages" | "conversations" => is_msgs(t),
            "prompt" | "completion" => is_text(t) || is_msgs(t),
            n if n == text_field => is_text(t),
            "input_ids" | "labels" | "completion_mask" | "assistant_masks" => is_list_of(t, is_int),
            _ => true,
        };
        if !ok {
            let want = match f.name().as_str() {
                "messages" | "conversations" => "a list of message structs",
                "prompt" | "completion" => "a string or a list of message structs",
                n if n == text_field => "a string",
                _ => "a list of integers",
            };
            return Err(DataError::Input {
                path: path.to_path_buf(),
                message: format!("column `{}` has type {t}, expected {want}", f.name()),
            });
        }
    }
    Ok(())
}
