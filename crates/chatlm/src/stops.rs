//! The one stop-id policy: which generated ids end an answer.
//!
//! The tokenizer knows the tokens that end a turn in its vocabulary and template
//! ([`Tokenizer::stop_token_ids`]: EOS, the GGUF's end-of-turn ids, end-of-turn tokens the
//! template uses); the model's `generation_config.json` may add its own `eos_token_id`s; and
//! the model can only ever produce ids inside its embedding. Every face (CLI, server, Python)
//! stops on exactly this set, computed here and nowhere else.

use chatlm_generate::GenerationConfig;
use chatlm_tokenizer::Tokenizer;

/// The ids that end an answer: the tokenizer's stop tokens ∪ the generation config's
/// `eos_token_id`, without ids at or past `vocab_size` (a tokenizer with more added tokens
/// than the embedding has rows: those ids are never generated). Sorted, no repeats.
pub fn stop_ids(tokenizer: &Tokenizer, generation: &GenerationConfig, vocab_size: Option<usize>) -> Vec<u32> {
    let mut ids = tokenizer.stop_token_ids();
    ids.extend(&generation.eos_token_id);
    if let Some(vocab) = vocab_size {
        ids.retain(|&id| (id as usize) < vocab);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}
