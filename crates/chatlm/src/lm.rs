//! [`ModelLm`]: the model as the generation loop sees it ([`LogitsModel`]), with a KV cache of
//! its own and, optionally, prompt caching.
//!
//! Prompt caching: a chat resends the whole conversation every turn, and a server client its
//! growing message list. When on, the cache is kept after a generation together with the ids
//! it holds; the next single-sequence prompt is compared with them, the cache is rolled back
//! to the longest common prefix and only the rest is prefilled. At least the prompt's last
//! token is always run again: its logits are the first answer token's.

use std::sync::Arc;

use chatlm_generate::LogitsModel;
use chatlm_model::{BatchInput, KvCache, Model, ModelError};

/// Smallest cache allocated when prompt caching is on: growing a cache loses what it held,
/// so it is sized with room to spare.
const MIN_CACHED_CAPACITY: usize = 512;

/// [`LogitsModel`] over a shared [`Model`] with one KV cache.
pub struct ModelLm {
    model: Arc<Model>,
    /// Longest sequence this view attends over (the model's, or less: a server's per-slot size).
    window: usize,
    cache: Option<KvCache>,
    /// With prompt caching: the ids whose keys and values the cache holds, in order.
    cached: Vec<u32>,
    prompt_cache: bool,
    /// Set by `reset`: the next `forward` is a prefill and may reuse the cached prefix.
    prefill_next: bool,
    /// Prompt tokens taken from the cache by the last prefill.
    reused: usize,
    /// With prompt caching: the logits after the last prefill's final token and the length
    /// they were computed at. A prompt repeated exactly (a retry, another choice of the same
    /// request) gets them back instead of a recomputation of its last token, whose one-row
    /// arithmetic differs from the prefill's in the last bits and can flip a near-tie.
    prefill_logits: Option<(usize, Vec<f32>)>,
}

impl ModelLm {
    /// A view of `model` with an empty cache (allocated on first use).
    pub fn new(model: Arc<Model>, prompt_cache: bool) -> Self {
        let window = model.config().context_length();
        Self { model, window, cache: None, cached: Vec::new(), prompt_cache, prefill_next: false, reused: 0, prefill_logits: None }
    }

    /// Limits the context window to `tokens` (at most the model's).
    pub fn with_window(mut self, tokens: usize) -> Self {
        self.window = tokens.clamp(1, self.model.config().context_length());
        self
    }

    /// How many leading ids of `prompt` the cache holds (what a prefill of it would reuse).
    pub fn cached_prefix(&self, prompt: &[u32]) -> usize {
        common_prefix(&self.cached, prompt)
    }

    /// Prompt tokens the last prefill took from the cache instead of computing them.
    pub fn reused_tokens(&self) -> usize {
        self.reused
    }

    /// Whether prompt caching is on.
    pub fn prompt_cache(&self) -> bool {
        self.prompt_cache
    }

    /// Forgets the cached prefix (the buffers stay).
    pub fn forget(&mut self) {
        self.cached.clear();
        self.prefill_logits = None;
        if let Some(cache) = &mut self.cache {
            cache.clear();
        }
    }

    /// The cache, for a batched step of several sequences ([`Model::forward_step_many`]).
    pub(crate) fn cache_mut(&mut self) -> Option<&mut KvCache> {
        self.cache.as_mut()
    }

    /// Records that `token` was appended to the cache outside [`LogitsModel::forward`].
    pub(crate) fn note_appended(&mut self, token: u32) {
        if self.prompt_cache {
            self.cached.push(token);
        }
    }

    /// Brings `cached` back in line with the cache after a failed step (the model rolls the
    /// cache back; the ids must follow).
    fn sync_after_error(&mut self) {
        let len = self.cache.as_ref().map_or(0, KvCache::len);
        self.cached.truncate(len);
        self.prefill_logits = None;
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl LogitsModel for ModelLm {
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn context_window(&self) -> usize {
        self.window
    }

    fn reset(&mut self, batch_size: usize, max_len: usize) -> Result<(), ModelError> {
        let max_len = max_len.max(1);
        self.prefill_next = true;
        self.reused = 0;
        let keep = self.prompt_cache && batch_size == 1;
        match &mut self.cache {
            Some(cache) if cache.batch_size() == batch_size && cache.capacity() >= max_len => {
                if !keep {
                    cache.clear();
                    self.cached.clear();
                    self.prefill_logits = None;
                }
            }
            _ => {
                self.cache = None; // free the old buffers before allocating new ones
                self.cached.clear();
                self.prefill_logits = None;
                let capacity = if keep {
                    // Room to grow: a longer conversation would otherwise lose its prefix.
                    max_len.max(MIN_CACHED_CAPACITY).next_power_of_two().min(self.context_window()).max(max_len)
                } else {
                    max_len
                };
                self.cache = Some(self.model.new_cache(batch_size, capacity)?);
            }
        }
        Ok(())
    }

    fn forward(&mut self, tokens: &[Vec<u32>], attention_mask: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let prefill = std::mem::take(&mut self.prefill_next);
        let cache = self
            .cache
            .as_mut()
            .ok_or_else(|| ModelError::InvalidInput("forward before reset: no KV cache".into()))?;
        let single = match (tokens, attention_mask) {
            ([ids], [mask]) if mask.iter().all(|&m| m == 1) => Some(ids),
            _ => None,
        };
        let Some(ids) = single else {
            if prefill {
                cache.clear();
            }
            self.cached.clear();
            self.prefill_logits = None;
            let input = BatchInput::with_mask(tokens.to_vec(), attention_mask);
            return self.model.forward_batch_last(&input, cache);
        };
        let mut start = 0;
        if prefill {
            let common = common_prefix(&self.cached, ids);
            if let Some((at, logits)) = &self.prefill_logits {
                if self.prompt_cache && *at == ids.len() && common >= ids.len() {
                    cache.truncate(ids.len());
                    self.cached.truncate(ids.len());
                    self.reused = ids.len();
                    return Ok(vec![logits.clone()]);
                }
            }
            if self.prompt_cache {
                // Keep the common prefix, but always recompute the last prompt token.
                start = common_prefix(&self.cached, ids).min(ids.len().saturating_sub(1));
                cache.truncate(start);
                self.cached.truncate(start);
                self.reused = start;
            } else {
                cache.clear();
            }
        }
        let result = self.model.forward_last(&ids[start..], cache);
        match result {
            Ok(logits) => {
                if self.prompt_cache {
                    self.cached.extend_from_slice(&ids[start..]);
                    if prefill {
                        self.prefill_logits = Some((ids.len(), logits.clone()));
                    }
                }
                Ok(vec![logits])
            }
            Err(e) => {
                self.sync_after_error();
                Err(e)
            }
        }
    }
}
