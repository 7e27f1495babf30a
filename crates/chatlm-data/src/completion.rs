//! `trl.DataCollatorForCompletionOnlyLM` (TRL ≤ 0.19, removed later): masks everything but the responses,
//! found by searching the *padded labels* for the response (and instruction) template's token ids.
//!
//! The search is on token ids, so a template given as a string is encoded alone — and may tokenize
//! differently than in context (the Llama 2 `"### Assistant:"` trap); give the ids as they appear in
//! context to fix it. Because the search runs on labels where PAD was already replaced by -100, a PAD
//! equal to EOS also hides the EOS from the loss.

use crate::collate::{LmCollator, PadConfig, IGNORE_INDEX};
use crate::error::{DataError, Result};
use crate::features::{Batch, Example, Tensor};

/// A warning the collator would print with `warnings.warn` (template not found in a row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollatorWarning {
    /// Row index in the batch.
    pub row: usize,
    /// The message (names the template; the caller may append the decoded row).
    pub message: String,
}

/// `DataCollatorForCompletionOnlyLM(response_template, instruction_template, tokenizer, mlm=False, ...)`.
#[derive(Clone, Debug)]
pub struct CompletionOnlyCollator {
    /// Padding (the parent `DataCollatorForLanguageModeling`).
    pub pad: PadConfig,
    /// Response template ids (encoded with `add_special_tokens=False` when given as a string).
    pub response_token_ids: Vec<i64>,
    /// Instruction template ids for multi-turn masking.
    pub instruction_token_ids: Option<Vec<i64>>,
    /// How the response template was given (for warnings).
    pub response_template_text: String,
    /// How the instruction template was given (for warnings).
    pub instruction_template_text: String,
    /// `ignore_index`.
    pub ignore_index: i64,
    /// `padding_free`.
    pub padding_free: bool,
}

impl CompletionOnlyCollator {
    /// A collator for the given templates' ids.
    pub fn new(pad: PadConfig, response_token_ids: Vec<i64>, instruction_token_ids: Option<Vec<i64>>) -> Result<Self> {
        if response_token_ids.is_empty() {
            return Err(DataError::option("response_template", "encodes to no tokens"));
        }
        if instruction_token_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(DataError::option("instruction_template", "encodes to no tokens"));
        }
        Ok(CompletionOnlyCollator {
            response_template_text: format!("{response_token_ids:?}"),
            instruction_template_text: instruction_token_ids.as_ref().map(|v| format!("{v:?}")).unwrap_or_default(),
            pad,
            response_token_ids,
            instruction_token_ids,
            ignore_index: IGNORE_INDEX,
            padding_free: false,
        })
    }

    /// Collate a batch; returns the batch and the warnings Python would emit.
    pub fn collate(&self, examples: &[Example]) -> Result<(Batch, Vec<CollatorWarning>)> {
        let mut batch = LmCollator { pad: self.pad.clone() }.collate(examples)?;
        let mut warnings = Vec::new();
        if let Some(Tensor::Matrix(labels)) = batch.get_mut("labels") {
            for (i, row) in labels.iter_mut().enumerate() {
                for kind in mask_row(row, &self.response_token_ids, self.instruction_token_ids.as_deref(), self.ignore_index) {
                    let tpl = if kind == "response" { &self.response_template_text } else { &self.instruction_template_text };
                    warnings.push(self.not_found(i, kind, tpl));
                }
            }
        }
        if self.padding_free {
            batch = self.flatten(batch)?;
        }
        Ok((batch, warnings))
    }

    fn not_found(&self, row: usize, what: &str, tpl: &str) -> CollatorWarning {
        let key = if what == "response" { "response key" } else { "instruction key" };
        CollatorWarning {
            row,
            message: format!(
                "Could not find {key} `{tpl}` in row {row}. This instance will be ignored in loss calculation. \
                 Note, if this happens often, consider increasing the `max_length`."
            ),
        }
    }

    /// The `padding_free` tail: drop padding, positions from the attention mask, first label of each
    /// sequence ignored, `cu_seq_lens_*` as a `[1, n+1]` tensor and `max_length_*` as a 1-element tensor.
    fn flatten(&self, mut batch: Batch) -> Result<Batch> {
        let mask = match batch.remove("attention_mask") {
            Some(Tensor::Matrix(m)) => m,
            _ => return Err(DataError::features("padding_free needs an attention_mask")),
        };
        let take = |t: Option<&Tensor>| -> Result<Vec<i64>> {
            let m = t.and_then(Tensor::as_matrix).ok_or_else(|| DataError::features("missing column"))?;
            Ok(m.iter().zip(&mask).flat_map(|(r, mr)| r.iter().zip(mr).filter(|(_, &a)| a != 0).map(|(&x, _)| x)).collect())
        };
        let ids = take(batch.get("input_ids"))?;
        let mut labels = take(batch.get("labels"))?;
        let pos: Vec<i64> = mask
            .iter()
            .flat_map(|r| {
                let mut c = 0i64;
                r.iter().filter_map(move |&a| { c += a; (a != 0).then_some(c - 1) }).collect::<Vec<_>>()
            })
            .collect();
        for (l, &p) in labels.iter_mut().zip(&pos) {
            if p == 0 {
                *l = self.ignore_index;
            }
        }
        let mut cu: Vec<i64> = pos.iter().enumerate().filter(|(_, &p)| p == 0).map(|(i, _)| i as i64).collect();
        cu.push(pos.len() as i64);
        let max_len = pos.iter().max().map_or(0, |m| m + 1);
        batch.insert("input_ids", Tensor::Matrix(vec![ids]));
        batch.insert("labels", Tensor::Matrix(vec![labels]));
        batch.insert("position_ids", Tensor::Matrix(vec![pos]));
        batch.insert("cu_seq_lens_q", Tensor::Matrix(vec![cu.clone()]));
        batch.insert("cu_seq_lens_k", Tensor::Matrix(vec![cu]));
        batch.insert("max_length_k", Tensor::Vector(vec![max_len]));
        batch.insert("max_length_q", Tensor::Vector(vec![max_len]));
        Ok(batch)
    }
}

/// Mask one row of labels like the collator: everything but the responses becomes `ign`. Returns which
/// templates were not found (`"response"`, `"instruction"`), in the order Python warns about them.
pub fn mask_row(row: &mut [i64], resp: &[i64], instr: Option<&[i64]>, ign: i64) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let resp_starts = find_all(row, resp);
    match instr {
        None => match resp_starts.last() {
            // Last match wins: everything up to the end of the last response template is masked.
            Some(&s) => {
                let end = (s + resp.len()).min(row.len());
                row[..end].fill(ign);
            }
            None => {
                missing.push("response");
                row.fill(ign);
            }
        },
        Some(instr) => {
            let resp_ends: Vec<usize> = resp_starts.iter().map(|s| s + resp.len()).collect();
            if resp_ends.is_empty() {
                missing.push("response");
                row.fill(ign);
            }
            let mut human = find_all(row, instr);
            if human.is_empty() {
                missing.push("instruction");
                row.fill(ign);
            }
            if !human.is_empty() && !resp_ends.is_empty() && human[0] > resp_ends[0] {
                human.insert(0, 0);
            }
            for (k, (&start, &end)) in human.iter().zip(&resp_ends).enumerate() {
                let end = end.min(row.len());
                // Python slices: an empty range when start >= end.
                let start = if k == 0 { 0 } else { start.min(end) };
                row[start..end].fill(ign);
            }
            if resp_ends.len() < human.len() {
                if let Some(&last) = human.last() {
                    row[last..].fill(ign);
                }
            }
        }
    }
    missing
}

/// Start indices of every occurrence of `pat` in `row` (overlapping matches included, like the Python loop).
pub fn find_all(row: &[i64], pat: &[i64]) -> Vec<usize> {
    if pat.is_empty() || row.len() < pat.len() {
        return Vec::new();
    }
    (0..=row.len() - pat.len()).filter(|&i| row[i..i + pat.len()] == *pat).collect()
}
