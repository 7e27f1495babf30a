//! Deterministic fake models and decoders for the generation-loop tests.
#![allow(dead_code)]

use chatlm_generate::{LogitsModel, TextDecoder};

#[derive(Debug)]
pub struct FakeError(pub String);
impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for FakeError {}

/// Logits are a hash of the unmasked context: any mask/padding mistake changes them.
pub struct HashModel {
    pub vocab: usize,
    pub window: usize,
    /// Unmasked tokens per sequence.
    pub seqs: Vec<Vec<u32>>,
    pub forwards: usize,
    /// `max_len` of the last `reset`: forwards beyond it fail, like a sized KV cache.
    pub max_len: usize,
    /// Cache slots used per sequence (padding included).
    pub slots: Vec<usize>,
}

impl HashModel {
    pub fn new(vocab: usize, window: usize) -> Self {
        Self { vocab, window, seqs: Vec::new(), forwards: 0, max_len: 0, slots: Vec::new() }
    }
}

pub fn hash_logits(context: &[u32], vocab: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in context {
        h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3);
    }
    (0..vocab)
        .map(|i| {
            let x = (h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

impl LogitsModel for HashModel {
    type Error = FakeError;
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn context_window(&self) -> usize {
        self.window
    }
    fn reset(&mut self, batch_size: usize, max_len: usize) -> Result<(), FakeError> {
        if max_len > self.window {
            return Err(FakeError(format!("reset for {max_len} tokens, window is {}", self.window)));
        }
        self.seqs = vec![Vec::new(); batch_size];
        self.slots = vec![0; batch_size];
        self.max_len = max_len;
        Ok(())
    }
    fn forward(&mut self, tokens: &[Vec<u32>], mask: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, FakeError> {
        self.forwards += 1;
        if tokens.len() != self.seqs.len() {
            return Err(FakeError(format!("batch {} != {}", tokens.len(), self.seqs.len())));
        }
        let mut out = Vec::new();
        let max_len = self.max_len;
        for (((seq, t), m), slots) in self.seqs.iter_mut().zip(tokens).zip(mask).zip(self.slots.iter_mut()) {
            // Left padding only: once a real token was seen, no masked ones may follow.
            let first_real = m.iter().position(|&b| b == 1).unwrap_or(m.len());
            if m[first_real..].contains(&0) || (!seq.is_empty() && first_real != 0) {
                return Err(FakeError("padding must be on the left of the prompt".into()));
            }
            // Padding slots count against the cache like real ones.
            *slots += t.len();
            seq.extend(t.iter().zip(m).filter(|(_, &b)| b == 1).map(|(&id, _)| id));
            if seq.len() > self.window || *slots > max_len {
                return Err(FakeError(format!("cache of {max_len} slots exceeded")));
            }
            out.push(hash_logits(seq, self.vocab));
        }
        Ok(out)
    }
}

/// Emits a fixed script of ids per sequence (after the prompt), then `then` forever.
pub struct ScriptModel {
    pub vocab: usize,
    pub scripts: Vec<Vec<u32>>,
    pub then: u32,
    pos: Vec<usize>,
}

impl ScriptModel {
    pub fn new(vocab: usize, scripts: Vec<Vec<u32>>, then: u32) -> Self {
        Self { vocab, scripts, then, pos: Vec::new() }
    }
}

impl LogitsModel for ScriptModel {
    type Error = FakeError;
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn context_window(&self) -> usize {
        4096
    }
    fn reset(&mut self, batch_size: usize, _max_len: usize) -> Result<(), FakeError> {
        self.pos = vec![0; batch_size];
        Ok(())
    }
    fn forward(&mut self, tokens: &[Vec<u32>], _mask: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, FakeError> {
        Ok((0..tokens.len())
            .map(|i| {
                let id = self.scripts[i].get(self.pos[i]).copied().unwrap_or(self.then);
                self.pos[i] += 1;
                let mut l = vec![0.0; self.vocab];
                l[id as usize] = 10.0;
                l
            })
            .collect())
    }
}

/// id → fixed string; ids >= pieces.len() are "special" (dropped when skipping).
pub struct PieceDecoder(pub Vec<&'static str>);

impl TextDecoder for PieceDecoder {
    type Error = FakeError;
    fn decode_ids(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, FakeError> {
        Ok(ids
            .iter()
            .map(|&i| self.0.get(i as usize).copied().unwrap_or(if skip_special_tokens { "" } else { "<s>" }))
            .collect())
    }
}

/// The real HF tokenizer (what chatlm-tokenizer wraps).
pub struct HfDecoder(pub tokenizers::Tokenizer);

impl TextDecoder for HfDecoder {
    type Error = FakeError;
    fn decode_ids(&self, ids: &[u32], skip: bool) -> Result<String, FakeError> {
        self.0.decode(ids, skip).map_err(|e| FakeError(e.to_string()))
    }
}

pub fn fixtures() -> Option<std::path::PathBuf> {
    let dir = std::env::var("CHATLM_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures").to_string());
    let p = std::path::PathBuf::from(dir);
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipped: fixtures not found");
        None
    }
}
