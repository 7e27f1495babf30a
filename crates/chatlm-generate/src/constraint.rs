//! [`Constraint`]: what restricts the ids a [`Sequence`](crate::Sequence) may produce (a JSON
//! schema, a grammar).
//!
//! Why a trait here and the grammar engine elsewhere: the generation rules stay free of any
//! one structured-output library; the pipeline crate implements this with llguidance.

use crate::error::GenerateError;

/// Restricts which ids may come next (a grammar, a JSON schema).
///
/// A [`Sequence`](crate::Sequence) with a constraint calls, per step: [`mask`](Self::mask) on
/// the raw logits (before any processor, so penalties and top-k/top-p only ever see allowed
/// ids), then [`commit`](Self::commit) with the chosen id, then [`is_complete`](Self::is_complete):
/// a complete constraint ends the sequence with [`FinishReason::Stop`](crate::FinishReason::Stop).
pub trait Constraint: Send {
    /// Sets the logits of every id not allowed next to `-inf`.
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), GenerateError>;
    /// Advances over the chosen id (an id the last mask did not allow is an error).
    fn commit(&mut self, id: u32) -> Result<(), GenerateError>;
    /// Whether the constrained text is complete: nothing may follow it.
    fn is_complete(&self) -> bool;
}
