//! Log-probabilities of a step, as OpenAI's `logprobs` / `top_logprobs` report them: of the
//! model's own distribution (the raw logits, before penalties and sampling filters — what
//! vLLM reports by default).

/// One step's log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen id and its log-probability.
    pub chosen: (u32, f32),
    /// The `k` most likely ids, most likely first.
    pub top: Vec<(u32, f32)>,
    /// `log Σ exp(logits)`, to price any id.
    log_norm: f32,
    /// The raw logits, until the chosen id is known.
    row: Vec<f32>,
}

/// Log-probabilities of the row `logits` (before processing) with its `top` most likely ids.
///
/// ```
/// let lp = chatlm::logprobs::token_logprobs(&[0.0, (2.0f32).ln()], 1).with_chosen(1);
/// assert!((lp.chosen.1 - (2.0f32 / 3.0).ln()).abs() < 1e-6);
/// assert_eq!(lp.top[0].0, 1);
/// ```
pub fn token_logprobs(logits: &[f32], top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|v| !v.is_nan()).map(|&v| ((v - max) as f64).exp()).sum();
    let log_norm = max + sum.ln() as f32;
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let top = top.min(logits.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(top);
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    } else {
        order.clear();
    }
    TokenLogprobs {
        chosen: (0, f32::NEG_INFINITY),
        top: order.into_iter().map(|id| (id, logits[id as usize] - log_norm)).collect(),
        log_norm,
        row: logits.to_vec(),
    }
}

impl TokenLogprobs {
    /// Records the id that was chosen (after processing and sampling).
    pub fn with_chosen(mut self, id: u32) -> Self {
        let logit = self.row.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
        self.chosen = (id, logit - self.log_norm);
        self.row = Vec::new();
        self
    }
}
