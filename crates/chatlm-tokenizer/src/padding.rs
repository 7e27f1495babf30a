//! Padding and truncation of id batches (`tokenizer.pad`, `padding=True, truncation=True`).

use crate::{PaddingSide, Tokenizer, TokenizerError};

/// How to pad a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PadOptions {
    /// Overrides the tokenizer's `padding_side`.
    pub side: Option<PaddingSide>,
    /// Round the padded length up to a multiple of this (`pad_to_multiple_of`).
    pub pad_to_multiple_of: Option<usize>,
    /// Pad to exactly this length (`padding="max_length"`) instead of the longest row.
    pub max_length: Option<usize>,
    /// Cut rows longer than `max_length` (or `model_max_length`), keeping the start.
    pub truncation: bool,
}

/// A padded batch: rectangular ids with the attention mask (1 = real token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Padded ids.
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
}

impl Tokenizer {
    /// Pads (and optionally truncates) rows of ids like transformers' `tokenizer.pad`.
    ///
    /// Errors with [`TokenizerError::NoPadToken`] when padding is needed and there is no pad token.
    pub fn pad(&self, batch: &[Vec<u32>], options: &PadOptions) -> Result<PaddedBatch, TokenizerError> {
        let side = options.side.unwrap_or(self.padding_side());
        let limit = if options.truncation { options.max_length.or(self.model_max_length()) } else { None };
        let rows: Vec<&[u32]> = batch.iter().map(|r| limit.map_or(r.as_slice(), |l| &r[..r.len().min(l)])).collect();
        let longest = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let length = options.max_length.map_or(longest, |m| m.max(longest));
        let n_rows = rows.len();
        let too_long = |reason: &str| TokenizerError::PadLength { rows: n_rows, length, reason: reason.into() };
        let target = match options.pad_to_multiple_of.filter(|&m| m > 0) {
            Some(multiple) => {
                length.div_ceil(multiple).checked_mul(multiple).ok_or_else(|| too_long("the rounded-up length overflows"))?
            }
            None => length,
        };
        let needs_pad = rows.iter().any(|r| r.len() < target);
        let pad_id = match self.pad_token_id() {
            Some(id) => id,
            None if needs_pad => return Err(TokenizerError::NoPadToken),
            None => 0,
        };
        let mut out = PaddedBatch::default();
        for row in rows {
            let fill = target - row.len();
            let (mut ids, mut mask) = (Vec::new(), Vec::new());
            // A caller's length is not trusted to fit in memory (`with_capacity` would abort).
            for buf in [&mut ids, &mut mask] {
                buf.try_reserve_exact(target).map_err(|e| too_long(&e.to_string()))?;
            }
            if side == PaddingSide::Left {
                ids.resize(fill, pad_id);
                mask.resize(fill, 0);
            }
            ids.extend_from_slice(row);
            mask.resize(mask.len() + row.len(), 1);
            if side == PaddingSide::Right {
                ids.resize(target, pad_id);
                mask.resize(target, 0);
            }
            out.input_ids.push(ids);
            out.attention_mask.push(mask);
        }
        Ok(out)
    }
}
