//! Packing exactly like `trl.pack_dataset`: `wrapped`, `bfd` (best fit decreasing, overflow truncated)
//! and `bfd_split` (overflow split into `seq_length` fragments), applied per map batch of
//! `batch_size` rows (1000, `datasets.map`'s default) — or, opt-in, over the whole dataset at once
//! ([`PackScope::Global`]), which fills bins better.
//!
//! BFD details that decide the exact output: empty rows dropped; a *stable* sort by length, longest
//! first; each sequence goes to the bin with the smallest remaining space that fits it, the oldest such
//! bin first (FIFO); bins are emitted in creation order; `seq_lengths` lists each bin's documents.

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::features::Example;

/// A packing strategy (`trl.pack_dataset`'s `strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Concatenate everything and cut every `seq_length` tokens, ignoring boundaries.
    Wrapped,
    /// Best fit decreasing; sequences longer than `seq_length` are truncated.
    Bfd,
    /// Best fit decreasing; longer sequences are split into fragments.
    BfdSplit,
}

impl Strategy {
    /// Parse `wrapped`, `bfd`, `bfd_split` (or `bfd-split`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "wrapped" => Ok(Strategy::Wrapped),
            "bfd" => Ok(Strategy::Bfd),
            "bfd_split" | "bfd-split" => Ok(Strategy::BfdSplit),
            _ => Err(DataError::option("strategy", format!("expected wrapped, bfd or bfd_split, got {s:?}"))),
        }
    }
}

/// Which rows are packed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackScope {
    /// Independently per `batch_size` rows, like `Dataset.map(batched=True)` (TRL's behaviour).
    Batch(usize),
    /// All rows at once (better fill; not what TRL produces).
    Global,
}

impl Default for PackScope {
    fn default() -> Self {
        PackScope::Batch(1000)
    }
}

/// Pack `rows` into sequences of at most `seq_length` tokens. Every column must be an integer list of
/// the same length within a row (TRL: "Packing requires all columns to be lists of lists").
pub fn pack(rows: &[Example], seq_length: usize, strategy: Strategy, scope: PackScope) -> Result<Vec<Example>> {
    if seq_length == 0 {
        return Err(DataError::option("seq_length", "must be at least 1"));
    }
    let names = check_columns(rows)?;
    let chunk = match scope {
        PackScope::Batch(n) if n > 0 => n,
        PackScope::Batch(_) => return Err(DataError::option("batch_size", "must be at least 1")),
        PackScope::Global => rows.len().max(1),
    };
    // Batches are independent: pack them in parallel, keep their order (deterministic for any thread count).
    let parts: Vec<Vec<Example>> = rows
        .par_chunks(chunk)
        .map(|batch| match strategy {
            Strategy::Wrapped => pack_wrapped(batch, &names, seq_length),
            Strategy::Bfd => pack_bfd(batch, &names, seq_length, false),
            Strategy::BfdSplit => pack_bfd(batch, &names, seq_length, true),
        })
        .collect();
    Ok(parts.into_iter().flatten().collect())
}

fn check_columns(rows: &[Example]) -> Result<Vec<String>> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let names: Vec<String> = first.columns.iter().map(|(n, _)| n.clone()).collect();
    if names.is_empty() {
        return Err(DataError::features("packing needs at least one list column"));
    }
    if names.iter().any(|n| n == "seq_lengths") {
        return Err(DataError::features("rows already have `seq_lengths`: they are packed already"));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.columns.len() != names.len() || r.columns.iter().zip(&names).any(|((a, _), b)| a != b) {
            return Err(DataError::features(format!("row {} has different columns than row 1", i + 1)));
        }
        let len = r.columns[0].1.len();
        if let Some((n, _)) = r.columns.iter().find(|(_, v)| v.len() != len) {
            return Err(DataError::features(format!(
                "row {}: column `{n}` and `{}` differ in length; all columns must have values of the same length",
                i + 1,
                names[0]
            )));
        }
    }
    Ok(names)
}

fn pack_wrapped(batch: &[Example], names: &[String], seq_length: usize) -> Vec<Example> {
    let total: usize = batch.iter().map(|r| r.columns[0].1.len()).sum();
    let mut out: Vec<Example> = (0..total.div_ceil(seq_length)).map(|_| Example::default()).collect();
    for (c, name) in names.iter().enumerate() {
        let flat: Vec<i64> = batch.iter().flat_map(|r| r.columns[c].1.iter().copied()).collect();
        for (ex, piece) in out.iter_mut().zip(flat.chunks(seq_length)) {
            ex.columns.push((name.clone(), piece.to_vec()));
        }
    }
    out
}

/// TRL's `_SegmentTree`: leaf `v-1` holds `v` while a bin with `v` free slots exists; `search` returns the
/// smallest available space `>= val`.
struct SegmentTree {
    size: usize,
    tree: Vec<u32>,
}

impl SegmentTree {
    fn new(maxval: usize) -> Self {
        let size = maxval.next_power_of_two();
        SegmentTree { size, tree: vec![0; 2 * size] }
    }
    fn set(&mut self, val: usize, on: bool) {
        let mut i = self.size + val - 1;
        self.tree[i] = if on { val as u32 } else { 0 };
        while i > 1 {
            i >>= 1;
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }
    fn search(&self, val: usize) -> usize {
        let mut i = 1;
        while i < self.size {
            i = if self.tree[2 * i] as usize >= val { 2 * i } else { 2 * i + 1 };
        }
        self.tree[i] as usize
    }
}

/// Assign sequences (given as lengths, each `1..=seq_length`) to bins; returns each bin's sequence indices.
pub fn bfd_bins(lengths: &[usize], seq_length: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable: equal lengths keep their input order (pyarrow's sort is stable).
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
    let mut tree = SegmentTree::new(seq_length);
    tree.set(seq_length, true);
    // space -> FIFO of bins with exactly that much room (a ring of indices per space).
    let mut by_space: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); seq_length + 1];
    let mut bins: Vec<(Vec<usize>, usize)> = Vec::new();
    for idx in order {
        let len = lengths[idx];
        let space = tree.search(len);
        let b = if space < seq_length {
            // Invariant: the tree only holds spaces whose queue is non-empty.
            let b = by_space[space].pop_front().unwrap_or(usize::MAX);
            if by_space[space].is_empty() {
                tree.set(space, false);
            }
            b
        } else {
            bins.push((Vec::new(), 0));
            bins.len() - 1
        };
        let Some(bin) = bins.get_mut(b) else { continue };
        bin.0.push(idx);
        bin.1 += len;
        let rest = space - len;
        by_space[rest].push_back(b);
        if rest > 0 {
            tree.set(rest, true);
        }
    }
    bins.into_iter().map(|(ids, _)| ids).collect()
}

fn pack_bfd(batch: &[Example], names: &[String], seq_length: usize, split: bool) -> Vec<Example> {
    // Pieces: (row, start, len) after dropping empty rows and truncating or splitting.
    let mut pieces: Vec<(usize, usize, usize)> = Vec::with_capacity(batch.len());
    for (r, ex) in batch.iter().enumerate() {
        let len = ex.columns[0].1.len();
        if len == 0 {
            continue;
        }
        if split {
            let mut start = 0;
            while start < len {
                let l = seq_length.min(len - start);
                pieces.push((r, start, l));
                start += l;
            }
        } else {
            pieces.push((r, 0, len.min(seq_length)));
        }
    }
    let lengths: Vec<usize> = pieces.iter().map(|p| p.2).collect();
    bfd_bins(&lengths, seq_length)
        .into_iter()
        .map(|ids| {
            let mut ex = Example::default();
            for (c, name) in names.iter().enumerate() {
                let mut v = Vec::with_capacity(ids.iter().map(|&i| pieces[i].2).sum());
                for &i in &ids {
                    let (r, s, l) = pieces[i];
                    v.extend_from_slice(&batch[r].columns[c].1[s..s + l]);
                }
                ex.columns.push((name.clone(), v));
            }
            ex.columns.push(("seq_lengths".into(), ids.iter().map(|&i| pieces[i].2 as i64).collect()));
            ex
        })
        .collect()
}
