//! The one thing generation needs from a model: logits for the last position of
//! each sequence, with a KV cache kept between calls.

/// A causal LM seen from the generation loop (ids → next-token logits).
///
/// Call order for one batch: [`reset`](LogitsModel::reset) with the batch size, one
/// prefill [`forward`](LogitsModel::forward) with the left-padded prompts and their
/// mask, then one `forward` per step with a single new token per sequence.
pub trait LogitsModel {
    /// Error of the model's forward pass.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Length of each logits row.
    fn vocab_size(&self) -> usize;

    /// Longest sequence (prompt + generated) the model can attend over.
    fn context_window(&self) -> usize;

    /// Drops every cached sequence and prepares `batch_size` empty ones that will hold at
    /// most `max_len` tokens each (left padding included; never more than
    /// [`context_window`](LogitsModel::context_window)), so a KV cache can be sized once.
    fn reset(&mut self, batch_size: usize, max_len: usize) -> Result<(), Self::Error>;

    /// Appends `tokens[i]` to sequence `i` (all rows the same length) and returns the
    /// logits at each sequence's last position. `attention_mask[i][j]` is 0 for a
    /// left-padding position that must never be attended to, 1 otherwise; the model
    /// remembers the masks of earlier calls.
    fn forward(&mut self, tokens: &[Vec<u32>], attention_mask: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, Self::Error>;
}
