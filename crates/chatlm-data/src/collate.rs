//! Collators with the semantics of transformers and TRL.
//!
//! | here | Python |
//! |---|---|
//! | [`PaddingCollator`] | `transformers.DataCollatorWithPadding` (= `tokenizer.pad`) |
//! | [`LmCollator`] | `transformers.DataCollatorForLanguageModeling(mlm=False)` — labels -100 by **pad value** |
//! | [`TrlLmCollator`] | `trl.trainer.sft_trainer.DataCollatorForLanguageModeling` (TRL 1.x) — labels by **position** |
//! | [`CompletionOnlyCollator`](crate::completion::CompletionOnlyCollator) | `trl.DataCollatorForCompletionOnlyLM` (TRL ≤ 0.19) |
//! | [`FlatteningCollator`] | `transformers.DataCollatorWithFlattening` |

use crate::error::{DataError, Result};
use crate::features::{Batch, Example, Tensor};

/// The label value the loss ignores.
pub const IGNORE_INDEX: i64 = -100;

/// Which side padding goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaddingSide {
    /// Pads before the tokens (generation batches).
    Left,
    /// Pads after the tokens (training; transformers' default).
    #[default]
    Right,
}

impl PaddingSide {
    /// Parse Python's `"left"` / `"right"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "left" => Ok(PaddingSide::Left),
            "right" => Ok(PaddingSide::Right),
            _ => Err(DataError::option("padding_side", format!("expected \"left\" or \"right\", got {s:?}"))),
        }
    }
}

/// Round `len` up to a multiple of `m` (transformers' `pad_to_multiple_of`).
pub fn round_up(len: usize, m: Option<usize>) -> usize {
    match m {
        Some(m) if m > 0 && len % m != 0 => (len / m + 1) * m,
        _ => len,
    }
}

/// Pad one sequence to `target` with `value` on `side`.
pub fn pad_seq(seq: &[i64], target: usize, value: i64, side: PaddingSide) -> Vec<i64> {
    let diff = target.saturating_sub(seq.len());
    let mut out = Vec::with_capacity(seq.len() + diff);
    if side == PaddingSide::Left {
        out.resize(diff, value);
    }
    out.extend_from_slice(seq);
    if side == PaddingSide::Right {
        out.resize(seq.len() + diff, value);
    }
    out
}

/// Settings of `tokenizer.pad(...)`.
#[derive(Clone, Debug)]
pub struct PadConfig {
    /// `tokenizer.pad_token_id`; padding without one is an error, as in transformers.
    pub pad_token_id: Option<i64>,
    /// `tokenizer.padding_side`.
    pub padding_side: PaddingSide,
    /// `pad_to_multiple_of`.
    pub pad_to_multiple_of: Option<usize>,
    /// `padding="max_length"` with this length; `None` pads to the longest (`padding=True`).
    pub max_length: Option<usize>,
    /// Add `attention_mask` (it is in the tokenizer's `model_input_names` for every causal LM we load).
    pub return_attention_mask: bool,
    /// `tokenizer.pad_token_type_id`.
    pub pad_token_type_id: i64,
}

impl Default for PadConfig {
    fn default() -> Self {
        PadConfig {
            pad_token_id: None,
            padding_side: PaddingSide::Right,
            pad_to_multiple_of: None,
            max_length: None,
            return_attention_mask: true,
            pad_token_type_id: 0,
        }
    }
}

/// Convert a key's per-example lists into a matrix, failing like `torch.tensor` on ragged lists.
fn to_matrix(key: &str, rows: Vec<Vec<i64>>) -> Result<Tensor> {
    if let Some(first) = rows.first() {
        if rows.iter().any(|r| r.len() != first.len()) {
            return Err(DataError::features(format!(
                "column `{key}` has rows of different lengths and is not padded by this collator \
                 (transformers fails the same way: \"Unable to create tensor\")"
            )));
        }
    }
    Ok(Tensor::Matrix(rows))
}

/// `tokenizer.pad(examples, padding=..., return_tensors="pt")`: pads `input_ids` with the pad id,
/// `attention_mask` with 0 (creating it when absent), `token_type_ids` with the pad type id and
/// `special_tokens_mask` with 1; other columns must already have equal lengths.
pub fn tokenizer_pad(examples: &[Example], cfg: &PadConfig) -> Result<Batch> {
    let first = examples.first().ok_or_else(|| DataError::features("empty batch"))?;
    let mut keys: Vec<String> = first.columns.iter().map(|(k, _)| k.clone()).collect();
    if !first.contains("input_ids") {
        return Err(DataError::features("examples have no `input_ids` column"));
    }
    let mut cols: Vec<Vec<Vec<i64>>> = vec![Vec::with_capacity(examples.len()); keys.len()];
    for (i, ex) in examples.iter().enumerate() {
        for (k, col) in keys.iter().zip(cols.iter_mut()) {
            let v = ex
                .get(k)
                .ok_or_else(|| DataError::features(format!("example {i} has no `{k}` column")))?;
            col.push(v.to_vec());
        }
    }
    let ids_pos = keys.iter().position(|k| k == "input_ids").unwrap_or(0);
    let longest = cols[ids_pos].iter().map(Vec::len).max().unwrap_or(0);
    let target = round_up(cfg.max_length.unwrap_or(longest), cfg.pad_to_multiple_of);
    if cfg.return_attention_mask && !keys.iter().any(|k| k == "attention_mask") {
        keys.push("attention_mask".into());
        cols.push(cols[ids_pos].iter().map(|r| vec![1; r.len()]).collect());
    }
    // transformers refuses `padding=True` without a pad token even when no row needs padding.
    let pad = cfg.pad_token_id.ok_or_else(|| {
        DataError::option(
            "pad_token_id",
            "asking to pad but the tokenizer has no padding token (set one, e.g. `--pad-token`)",
        )
    })?;
    let lens: Vec<usize> = cols[ids_pos].iter().map(Vec::len).collect();
    for (k, col) in keys.iter().zip(cols.iter_mut()) {
        let value = match k.as_str() {
            "input_ids" => pad,
            "attention_mask" if cfg.return_attention_mask => 0,
            "token_type_ids" => cfg.pad_token_type_id,
            "special_tokens_mask" => 1,
            _ => continue,
        };
        for (row, &len) in col.iter_mut().zip(&lens) {
            // Python pads every key by the length of `input_ids`, not by the key's own length.
            let diff = target.saturating_sub(len);
            *row = pad_seq(row, row.len() + diff, value, cfg.padding_side);
        }
    }
    let mut batch = Batch::default();
    for (k, col) in keys.into_iter().zip(cols) {
        let t = to_matrix(&k, col)?;
        batch.entries.push((k, t));
    }
    Ok(batch)
}

/// `transformers.DataCollatorWithPadding`.
#[derive(Clone, Debug, Default)]
pub struct PaddingCollator {
    /// Padding settings (from the tokenizer plus the collator's arguments).
    pub pad: PadConfig,
}

impl PaddingCollator {
    /// Collate a batch.
    pub fn collate(&self, examples: &[Example]) -> Result<Batch> {
        let mut batch = tokenizer_pad(examples, &self.pad)?;
        for old in ["label", "label_ids"] {
            if let Some(t) = batch.remove(old) {
                batch.insert("labels", t);
            }
        }
        Ok(batch)
    }
}

/// `transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False)`: labels are `input_ids` with every
/// token equal to the pad id set to -100 — which also masks real EOS tokens when PAD == EOS.
#[derive(Clone, Debug, Default)]
pub struct LmCollator {
    /// Padding settings.
    pub pad: PadConfig,
}

impl LmCollator {
    /// Collate a batch.
    pub fn collate(&self, examples: &[Example]) -> Result<Batch> {
        let mut batch = tokenizer_pad(examples, &self.pad)?;
        batch.remove("special_tokens_mask");
        let ids = batch
            .get("input_ids")
            .and_then(Tensor::as_matrix)
            .cloned()
            .ok_or_else(|| DataError::features("no input_ids after padding"))?;
        let labels = match self.pad.pad_token_id {
            Some(p) => ids
                .into_iter()
                .map(|r| r.into_iter().map(|x| if x == p { IGNORE_INDEX } else { x }).collect())
                .collect(),
            None => ids,
        };
        batch.insert("labels", Tensor::Matrix(labels));
        Ok(batch)
    }
}

/// TRL 1.x `DataCollatorForLanguageModeling` (the `SFTTrainer` default): right padding, labels from the
/// `labels` column (or `input_ids`) padded with -100 — masking by position, so a real EOS equal to PAD
/// keeps its label.
#[derive(Clone, Debug)]
pub struct TrlLmCollator {
    /// `pad_token_id`.
    pub pad_token_id: i64,
    /// `padding_free`: one flattened row with `position_ids`, `cu_seq_lens_*`, `max_length_*`, `seq_idx`.
    pub padding_free: bool,
    /// `return_position_ids` (padded mode).
    pub return_position_ids: bool,
    /// `pad_to_multiple_of`.
    pub pad_to_multiple_of: Option<usize>,
}

impl TrlLmCollator {
    /// A collator with TRL's defaults.
    pub fn new(pad_token_id: i64) -> Self {
        TrlLmCollator { pad_token_id, padding_free: false, return_position_ids: false, pad_to_multiple_of: None }
    }

    /// `get_position_ids_from_packed_seq_lengths`: positions restarting at every packed document.
    pub fn position_ids_from_seq_lengths(seq_lengths: &[i64]) -> Vec<i64> {
        seq_lengths.iter().flat_map(|&l| 0..l.max(0)).collect()
    }

    /// Collate a batch.
    pub fn collate(&self, examples: &[Example]) -> Result<Batch> {
        let first = examples.first().ok_or_else(|| DataError::features("empty batch"))?;
        let packed = first.contains("seq_lengths");
        let has_labels = first.contains("labels");
        let mut ids = Vec::with_capacity(examples.len());
        let mut labels = Vec::with_capacity(examples.len());
        let mut pos = Vec::new();
        for (n, ex) in examples.iter().enumerate() {
            let i = ex.input_ids()?.to_vec();
            let l = if has_labels {
                ex.get("labels").ok_or_else(|| DataError::features("an example lacks `labels`"))?.to_vec()
            } else {
                i.clone()
            };
            if self.padding_free || self.return_position_ids {
                pos.push(match (packed, ex.get("seq_lengths")) {
                    (true, Some(s)) => {
                        // Positions are built from the lengths: a row whose lengths do not cover its
                        // ids exactly would give misaligned tensors (or, with an absurd length, an
                        // allocation that cannot succeed).
                        let total = s.iter().try_fold(0i64, |sum, &l| if l < 0 { None } else { sum.checked_add(l) });
                        if total != Some(i.len() as i64) {
                            return Err(DataError::features(format!(
                                "example {n}: `seq_lengths` {s:?} do not add up to its {} input ids",
                                i.len()
                            )));
                        }
                        Self::position_ids_from_seq_lengths(s)
                    }
                    (true, None) => return Err(DataError::features("an example lacks `seq_lengths`")),
                    _ => (0..i.len() as i64).collect(),
                });
            }
            ids.push(i);
            labels.push(l);
        }
        let mask: Vec<Vec<i64>> = ids.iter().map(|r| vec![1; r.len()]).collect();
        if self.padding_free {
            ids = vec![ids.concat()];
            labels = vec![labels.concat()];
            pos = vec![pos.concat()];
        }
        let pad_all = |rows: Vec<Vec<i64>>, value: i64| -> Vec<Vec<i64>> {
            let target = round_up(rows.iter().map(Vec::len).max().unwrap_or(0), self.pad_to_multiple_of);
            rows.iter().map(|r| pad_seq(r, target, value, PaddingSide::Right)).collect()
        };
        let mut batch = Batch::default();
        batch.insert("input_ids", Tensor::Matrix(pad_all(ids, self.pad_token_id)));
        let mut labels = pad_all(labels, IGNORE_INDEX);
        if self.padding_free {
            let pos = pad_all(pos, 0);
            let row = &pos[0];
            for (l, &p) in labels[0].iter_mut().zip(row) {
                if p == 0 {
                    *l = IGNORE_INDEX;
                }
            }
            let mut cu: Vec<i64> = row.iter().enumerate().filter(|(_, &p)| p == 0).map(|(i, _)| i as i64).collect();
            cu.push(row.len() as i64);
            let max_len = cu.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let seq_idx: Vec<i64> =
                cu.windows(2).enumerate().flat_map(|(i, w)| std::iter::repeat_n(i as i64, (w[1] - w[0]) as usize)).collect();
            batch.insert("labels", Tensor::Matrix(labels));
            batch.insert("position_ids", Tensor::Matrix(pos));
            batch.insert("cu_seq_lens_q", Tensor::Vector(cu.clone()));
            batch.insert("cu_seq_lens_k", Tensor::Vector(cu));
            batch.insert("max_length_q", Tensor::Int(max_len));
            batch.insert("max_length_k", Tensor::Int(max_len));
            batch.insert("seq_idx", Tensor::Matrix(vec![seq_idx]));
        } else {
            batch.insert("labels", Tensor::Matrix(labels));
            if self.return_position_ids {
                batch.insert("position_ids", Tensor::Matrix(pad_all(pos, 0)));
            }
            batch.insert("attention_mask", Tensor::Matrix(pad_all(mask, 0)));
        }
        Ok(batch)
    }
}

/// `transformers.DataCollatorWithFlattening`: concatenates the batch into one row; each sequence's first
/// label becomes `separator_id`; positions restart per sequence.
#[derive(Clone, Debug)]
pub struct FlatteningCollator {
    /// `return_position_ids`.
    pub return_position_ids: bool,
    /// `separator_id` (default -100).
    pub separator_id: i64,
    /// `return_flash_attn_kwargs`: adds `cu_seq_lens_q/k` and `max_length_q/k`.
    pub return_flash_attn_kwargs: bool,
    /// `return_seq_idx`.
    pub return_seq_idx: bool,
    /// `position_ids_start` (2 for RoBERTa-like models).
    pub position_ids_start: i64,
}

impl Default for FlatteningCollator {
    fn default() -> Self {
        FlatteningCollator {
            return_position_ids: true,
            separator_id: IGNORE_INDEX,
            return_flash_attn_kwargs: false,
            return_seq_idx: false,
            position_ids_start: 0,
        }
    }
}

impl FlatteningCollator {
    /// Collate a batch.
    pub fn collate(&self, examples: &[Example]) -> Result<Batch> {
        let first = examples.first().ok_or_else(|| DataError::features("empty batch"))?;
        let has_labels = first.contains("labels");
        let (mut ids, mut labels, mut pos, mut seq_idx) = (vec![], vec![], vec![], vec![]);
        let mut cu = vec![0i64];
        let mut max_len = 0i64;
        for (s, ex) in examples.iter().enumerate() {
            let i = ex.input_ids()?;
            ids.extend_from_slice(i);
            let src = if has_labels {
                ex.get("labels").ok_or_else(|| DataError::features(format!("example {s} lacks `labels`")))?
            } else {
                i
            };
            labels.push(self.separator_id);
            labels.extend_from_slice(src.get(1..).unwrap_or(&[]));
            if self.return_position_ids {
                pos.extend((0..i.len() as i64).map(|p| p + self.position_ids_start));
            }
            if self.return_seq_idx {
                seq_idx.extend(std::iter::repeat_n(s as i64, i.len()));
            }
            let last = *cu.last().unwrap_or(&0);
            cu.push(last + i.len() as i64);
            max_len = max_len.max(i.len() as i64);
        }
        let mut batch = Batch::default();
        batch.insert("input_ids", Tensor::Matrix(vec![ids]));
        batch.insert("labels", Tensor::Matrix(vec![labels]));
        if self.return_position_ids {
            batch.insert("position_ids", Tensor::Matrix(vec![pos]));
        }
        if self.return_seq_idx {
            batch.insert("seq_idx", Tensor::Matrix(vec![seq_idx]));
        }
        if self.return_flash_attn_kwargs {
            batch.insert("cu_seq_lens_q", Tensor::Vector(cu.clone()));
            batch.insert("cu_seq_lens_k", Tensor::Vector(cu));
            batch.insert("max_length_q", Tensor::Int(max_len));
            batch.insert("max_length_k", Tensor::Int(max_len));
        }
        Ok(batch)
    }
}
