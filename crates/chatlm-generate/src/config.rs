//! `GenerationConfig`: sampling and stopping settings with transformers' defaults,
//! loadable from a model's `generation_config.json`.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::GenerateError;
use crate::processors;

/// `eos_token_id` in `generation_config.json` is an int or a list of ints.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(id) => vec![id],
        OneOrMany::Many(ids) => ids,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// Settings of one `generate` call. Defaults are transformers' `GenerationConfig`
/// defaults (greedy, temperature 1, top-k 50, top-p 1, 20 tokens of `max_length`).
///
/// ```
/// let mut cfg = chatlm_generate::GenerationConfig::default();
/// cfg.top_p = 1.5;
/// assert!(cfg.validate().unwrap_err().to_string().contains("top_p"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Sample from the processed distribution; greedy (argmax) when false.
    pub do_sample: bool,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 or `None` disables).
    pub top_k: Option<usize>,
    /// Nucleus sampling mass in (0, 1]; 1 disables.
    pub top_p: f32,
    /// Minimum probability relative to the top token; `None` disables.
    pub min_p: Option<f32>,
    /// CTRL repetition penalty (> 0); 1 disables.
    pub repetition_penalty: f32,
    /// OpenAI's frequency penalty in [-2, 2] over the answer's ids; 0 disables.
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty in [-2, 2] over the answer's ids; 0 disables.
    pub presence_penalty: f32,
    /// New tokens to generate at most; takes precedence over `max_length`.
    pub max_new_tokens: Option<usize>,
    /// Total length (prompt + new) at most, used only without `max_new_tokens`.
    pub max_length: usize,
    /// Token ids that end a sequence (the token is kept in `ids`, not in `text`).
    #[serde(deserialize_with = "one_or_many")]
    pub eos_token_id: Vec<u32>,
    /// Padding id for finished sequences of a batch.
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence id (informational; the template/tokenizer adds it).
    pub bos_token_id: Option<u32>,
    /// Strings that end generation; cut from the returned text.
    pub stop_strings: Vec<String>,
    /// Seed of the sampling RNG.
    pub seed: u64,
    /// Drop special tokens from the decoded text.
    pub skip_special_tokens: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            do_sample: false,
            temperature: 1.0,
            top_k: Some(50),
            top_p: 1.0,
            min_p: None,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            max_new_tokens: None,
            max_length: 20,
            eos_token_id: Vec::new(),
            pad_token_id: None,
            bos_token_id: None,
            stop_strings: Vec::new(),
            seed: 0,
            skip_special_tokens: true,
        }
    }
}

/// `min_tokens_to_keep` transformers uses for single-beam sampling.
const MIN_TOKENS_TO_KEEP: usize = 1;

impl GenerationConfig {
    /// Defaults overridden by a model's `generation_config.json` (keys absent there keep
    /// transformers' defaults; unknown keys are ignored).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, GenerateError> {
        let path = path.as_ref();
        let err = |e: Box<dyn std::error::Error + Send + Sync>| GenerateError::Config {
            path: path.display().to_string(),
            source: e,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.into()))?;
        serde_json::from_str(&text).map_err(|e| err(e.into()))
    }

    /// New tokens allowed for a prompt of `prompt_len` tokens:
    /// `max_new_tokens` wins over `max_length` (transformers' precedence).
    pub fn new_token_budget(&self, prompt_len: usize) -> usize {
        self.max_new_tokens
            .unwrap_or_else(|| self.max_length.saturating_sub(prompt_len))
    }

    /// Whether tokens are picked by argmax: sampling off or temperature 0.
    pub fn is_greedy(&self) -> bool {
        !self.do_sample || self.temperature == 0.0
    }

    /// Rejects values transformers rejects, naming the parameter and value.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let bad = |name, value: String, reason| Err(GenerateError::InvalidParameter { name, value, reason });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", self.temperature.to_string(), "must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p.to_string(), "must be in (0, 1]");
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return bad("min_p", p.to_string(), "must be in [0, 1]");
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", self.repetition_penalty.to_string(), "must be a finite number > 0");
        }
        for (name, value) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(-2.0..=2.0).contains(&value) {
                return bad(name, value.to_string(), "must be in [-2, 2]");
            }
        }
        if self.max_new_tokens == Some(0) {
            return bad("max_new_tokens", "0".into(), "must be >= 1");
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("stop_strings", "\"\"".into(), "stop strings must not be empty");
        }
        Ok(())
    }

    /// Applies the processors in transformers' order to one row of logits:
    /// repetition penalty over `context` (prompt + generated), OpenAI's frequency/presence
    /// penalties over the answer (`context[prompt_len..]`), then — when sampling —
    /// temperature, top-k, top-p, min-p.
    pub fn process(&self, logits: &mut [f32], context: &[u32], prompt_len: usize) -> Result<(), GenerateError> {
        if self.repetition_penalty != 1.0 {
            processors::repetition_penalty(logits, context, self.repetition_penalty)?;
        }
        if self.frequency_penalty != 0.0 || self.presence_penalty != 0.0 {
            let answer = context.get(prompt_len..).unwrap_or(&[]);
            processors::frequency_presence_penalty(logits, answer, self.frequency_penalty, self.presence_penalty)?;
        }
        if self.is_greedy() {
            return Ok(());
        }
        if self.temperature != 1.0 {
            processors::temperature(logits, self.temperature);
        }
        if let Some(k) = self.top_k.filter(|&k| k > 0) {
            processors::top_k(logits, k, MIN_TOKENS_TO_KEEP);
        }
        if self.top_p < 1.0 {
            processors::top_p(logits, self.top_p, MIN_TOKENS_TO_KEEP);
        }
        if let Some(p) = self.min_p {
            processors::min_p(logits, p, MIN_TOKENS_TO_KEEP);
        }
        Ok(())
    }
}
