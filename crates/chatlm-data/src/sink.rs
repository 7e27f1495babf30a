//! Output: Parquet (what `datasets.load_dataset("parquet", ...)` loads) or JSONL, written atomically —
//! rows go to a temporary file beside the target, which is renamed over it only after a successful
//! finish, so an interrupted or failed run leaves nothing half-written, and the input is never the output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, ListBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{DataError, Result};
use crate::features::Example;

/// Output file kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// Apache Parquet, snappy-compressed, one list column per example column.
    Parquet,
    /// One JSON object per line.
    Jsonl,
}

/// Refuse to write over an input (compares canonical paths when the output exists).
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out = std::fs::canonicalize(output).ok();
    for &inp in inputs {
        let same = match (&out, std::fs::canonicalize(inp).ok()) {
            (Some(a), Some(b)) => *a == b,
            _ => output == inp,
        };
        if same {
            return Err(DataError::Input {
                path: output.to_path_buf(),
                message: "the output is the input file; refusing to overwrite it".into(),
            });
        }
    }
    Ok(())
}

/// A writer for examples, atomic on [`ExampleSink::finish`].
pub struct ExampleSink {
    target: PathBuf,
    tmp: PathBuf,
    inner: Option<SinkInner>,
    columns: Option<Vec<String>>,
    rows: usize,
}

enum SinkInner {
    Jsonl(BufWriter<File>),
    Parquet(ParquetThread),
}

/// Parquet encoding (dictionary pages, snappy) runs on its own thread: it is a tenth of a
/// data-prep run and would otherwise stall the parallel row processing between chunks.
struct ParquetThread {
    batches: Option<std::sync::mpsc::SyncSender<(Vec<Example>, Vec<String>)>>,
    done: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ParquetThread {
    fn spawn(file: File, tmp: PathBuf) -> Self {
        // Two batches in flight at most: memory stays bounded when encoding is the slower side.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Example>, Vec<String>)>(2);
        let done = std::thread::spawn(move || {
            let pq = |e: parquet::errors::ParquetError| DataError::Parquet { path: tmp.clone(), message: e.to_string() };
            let mut writer: Option<ArrowWriter<File>> = None;
            for (rows, names) in rx {
                // Built here, not by the caller: copying the ids into Arrow arrays is work too.
                let batch = to_record_batch(&rows, &names)?;
                drop(rows);
                if writer.is_none() {
                    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                    let f = file.try_clone().map_err(io(&tmp))?;
                    writer = Some(ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(pq)?);
                }
                if let Some(w) = writer.as_mut() {
                    w.write(&batch).map_err(pq)?;
                }
            }
            match writer {
                Some(w) => {
                    w.close().map_err(pq)?;
                }
                None => {
                    // No rows: still a valid (empty) Parquet file with the columns we would have written.
                    let schema = Arc::new(Schema::new(vec![list_field("input_ids", DataType::Int64)]));
                    let f = file.try_clone().map_err(io(&tmp))?;
                    ArrowWriter::try_new(f, schema, None).map_err(pq)?.close().map_err(pq)?;
                }
            }
            file.sync_all().map_err(io(&tmp))
        });
        Self { batches: Some(tx), done: Some(done) }
    }

    fn send(&mut self, rows: Vec<Example>, names: Vec<String>) -> Result<()> {
        let sent = self.batches.as_ref().is_some_and(|tx| tx.send((rows, names)).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped early: its error says why.
            self.finish().and(Err(DataError::features("the Parquet writer stopped")))
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.batches = None;
        match self.done.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(DataError::features("the Parquet writer thread panicked")),
            None => Err(DataError::features("the Parquet writer already finished")),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.to_path_buf(), source }
}

impl ExampleSink {
    /// Start writing `target` (through a temporary file in the same directory).
    pub fn create(target: &Path, kind: OutputKind) -> Result<Self> {
        let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("output");
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let inner = match kind {
            OutputKind::Jsonl => SinkInner::Jsonl(BufWriter::with_capacity(1 << 20, file)),
            OutputKind::Parquet => SinkInner::Parquet(ParquetThread::spawn(file, tmp.clone())),
        };
        Ok(ExampleSink { target: target.to_path_buf(), tmp, inner: Some(inner), columns: None, rows: 0 })
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append rows; every row must have the columns of the first.
    pub fn write(&mut self, rows: Vec<Example>) -> Result<()> {
        let Some(first) = rows.first() else { return Ok(()) };
        let names: Vec<String> = first.columns.iter().map(|(n, _)| n.clone()).collect();
        match &self.columns {
            None => self.columns = Some(names.clone()),
            Some(c) if *c != names => {
                return Err(DataError::features(format!("output columns changed from {c:?} to {names:?}")))
            }
            Some(_) => {}
        }
        let tmp = self.tmp.clone();
        match self.inner.as_mut() {
            Some(SinkInner::Jsonl(w)) => {
                for r in &rows {
                    serde_json::to_writer(&mut *w, &r.to_json())
                        .map_err(|e| DataError::Io { path: tmp.clone(), source: e.into() })?;
                    w.write_all(b"\n").map_err(io(&tmp))?;
                }
            }
            Some(SinkInner::Parquet(thread)) => {
                let n = rows.len();
                thread.send(rows, names)?;
                self.rows += n;
                return Ok(());
            }
            None => return Err(DataError::features("sink already finished")),
        }
        self.rows += rows.len();
        Ok(())
    }

    /// Flush, sync and rename the temporary file over the target.
    pub fn finish(mut self) -> Result<PathBuf> {
        let tmp = self.tmp.clone();
        match self.inner.take() {
            Some(SinkInner::Jsonl(mut w)) => {
                w.flush().map_err(io(&tmp))?;
                w.get_ref().sync_all().map_err(io(&tmp))?;
            }
            Some(SinkInner::Parquet(mut thread)) => thread.finish()?,
            None => {}
        }
        std::fs::rename(&tmp, &self.target).map_err(io(&self.target))?;
        Ok(self.target.clone())
    }
}

impl Drop for ExampleSink {
    fn drop(&mut self) {
        // Not finished (error or panic upstream): remove the partial temporary file; the target is untouched.
        if let Some(inner) = self.inner.take() {
            if let SinkInner::Parquet(mut thread) = inner {
                // Wait for the writer to let go of the file before removing it.
                let _ = thread.finish();
            }
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn list_field(name: &str, t: DataType) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", t, true))), true)
}

/// Column types as the Python pipeline writes them: token ids and labels int64, `seq_lengths` int32
/// (`pyarrow.compute.list_value_length`).
fn to_record_batch(rows: &[Example], names: &[String]) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (c, name) in names.iter().enumerate() {
        fn col<'a>(r: &'a Example, c: usize, name: &str) -> Result<&'a [i64]> {
            r.columns
                .get(c)
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
                .ok_or_else(|| DataError::features(format!("a row lacks column `{name}`")))
        }
        if name == "seq_lengths" {
            let mut b = ListBuilder::new(Int32Builder::new());
            for r in rows {
                for &x in col(r, c, name)? {
                    b.values().append_value(x as i32);
                }
                b.append(true);
            }
            fields.push(list_field(name, DataType::Int32));
            arrays.push(Arc::new(b.finish()));
        } else {
            let mut b = ListBuilder::new(Int64Builder::new());
            for r in rows {
                b.values().append_slice(col(r, c, name)?);
                b.append(true);
            }
            fields.push(list_field(name, DataType::Int64));
            arrays.push(Arc::new(b.finish()));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| DataError::features(format!("building a Parquet batch: {e}")))
}
