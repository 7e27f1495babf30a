//! The sampling and stopping fields shared by `/v1/chat/completions` and `/v1/completions`,
//! read from the request JSON with OpenAI's names, types and ranges, into a
//! [`GenerationConfig`]. Every rejection names its field (`param`).

use chatlm::GenerationConfig;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Most choices one request may ask for (`n`).
pub const MAX_N: u64 = 16;
/// Most stop strings (OpenAI allows 4; llama.cpp's server more).
pub const MAX_STOP: usize = 16;
/// Most `top_logprobs` (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u64 = 20;

/// A request body as a JSON object.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The body parsed as an object, or a 400 naming what it is instead.
    pub fn of(body: &'a Value) -> Result<Self, ApiError> {
        body.as_object().map(Fields).ok_or_else(|| ApiError::invalid("the request body must be a JSON object", None))
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A number field.
    pub fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::invalid(format!("`{name}` must be a number, got {v}"), Some(name))),
        }
    }

    /// An integer field.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_u64().map(|u| u as i64))
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("`{name}` must be an integer, got {v}"), Some(name))),
        }
    }

    /// A non-negative integer field.
    pub fn count(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.integer(name)? {
            Some(n) if n < 0 => Err(ApiError::out_of_range(name, format!("`{name}` must be >= 0, got {n}"))),
            other => Ok(other.map(|n| n as u64)),
        }
    }

    /// A boolean field.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| ApiError::invalid(format!("`{name}` must be a boolean, got {v}"), Some(name))),
        }
    }

    /// A string field.
    pub fn string(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| ApiError::invalid(format!("`{name}` must be a string, got {v}"), Some(name))),
        }
    }

    /// Any field.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        self.present(name)
    }
}

/// What a completion request asks for besides its prompt.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// Sampling and stopping settings.
    pub config: GenerationConfig,
    /// Choices to generate.
    pub n: usize,
    /// `Some(k)`: log-probabilities with the `k` most likely tokens.
    pub logprobs: Option<usize>,
    /// Stream server-sent events.
    pub stream: bool,
    /// Send a last chunk with `usage` when streaming.
    pub include_usage: bool,
    /// Whether the caller gave a seed (choices then use seed, seed + 1, ...).
    pub seeded: bool,
}

fn check(name: &str, value: f64, ok: bool, range: &str) -> Result<f32, ApiError> {
    if ok && value.is_finite() {
        Ok(value as f32)
    } else {
        Err(ApiError::out_of_range(name, format!("`{name}` must be {range}, got {value}")))
    }
}

/// Reads the shared fields over `base` (the model's defaults). `legacy_logprobs`: the
/// completions API's `logprobs: int` instead of chat's `logprobs: bool` + `top_logprobs`.
pub fn sampling(f: &Fields, base: &GenerationConfig, legacy_logprobs: bool) -> Result<Sampling, ApiError> {
    let mut config = base.clone();
    if let Some(t) = f.number("temperature")? {
        config.temperature = check("temperature", t, (0.0..=2.0).contains(&t), "in [0, 2]")?;
        config.do_sample = t > 0.0;
    }
    if let Some(p) = f.number("top_p")? {
        config.top_p = check("top_p", p, (0.0..=1.0).contains(&p), "in [0, 1]")?;
        if p == 0.0 {
            // The nucleus of mass 0 is the top token alone.
            config.top_p = 1.0;
            config.do_sample = false;
        }
    }
    if let Some(k) = f.integer("top_k")? {
        // llama.cpp's server and vLLM read top_k <= 0 as "off".
        config.top_k = (k > 0).then_some(k as usize);
    }
    if let Some(p) = f.number("min_p")? {
        config.min_p = Some(check("min_p", p, (0.0..=1.0).contains(&p), "in [0, 1]")?).filter(|&p| p > 0.0);
    }
    if let Some(r) = f.number("repetition_penalty")? {
        config.repetition_penalty = check("repetition_penalty", r, r > 0.0, "> 0")?;
    }
    for name in ["frequency_penalty", "presence_penalty"] {
        if let Some(v) = f.number(name)? {
            let v = check(name, v, (-2.0..=2.0).contains(&v), "in [-2, 2]")?;
            if name == "frequency_penalty" {
                config.frequency_penalty = v;
            } else {
                config.presence_penalty = v;
            }
        }
    }
    let max_tokens = match f.count("max_completion_tokens")? {
        Some(n) => Some(("max_completion_tokens", n)),
        None => f.count("max_tokens")?.map(|n| ("max_tokens", n)),
    };
    if let Some((name, n)) = max_tokens {
        if n == 0 {
            return Err(ApiError::out_of_range(name, format!("`{name}` must be at least 1")));
        }
        config.max_new_tokens = Some(n.min(u32::MAX as u64) as usize);
    }
    let seed = f.integer("seed")?;
    if let Some(seed) = seed {
        config.seed = seed as u64;
    } else {
        // OpenAI: without a seed, answers vary from request to request.
        config.seed = fresh_seed();
    }
    config.stop_strings.extend(stop_strings(f)?);
    let n = f.count("n")?.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::out_of_range("n", format!("`n` must be between 1 and {MAX_N}, got {n}")));
    }
    let logprobs = if legacy_logprobs {
        match f.value("logprobs") {
            Some(Value::Bool(false)) | None => None,
            Some(Value::Bool(true)) => Some(0),
            Some(_) => Some(limit_top(f.count("logprobs")?.unwrap_or(0), "logprobs")?),
        }
    } else {
        let top = f.count("top_logprobs")?;
        match (f.boolean("logprobs")?.unwrap_or(false), top) {
            (true, top) => Some(limit_top(top.unwrap_or(0), "top_logprobs")?),
            (false, Some(t)) if t > 0 => {
                return Err(ApiError::invalid("`top_logprobs` needs `logprobs: true`", Some("top_logprobs")));
            }
            (false, _) => None,
        }
    };
    let stream = f.boolean("stream")?.unwrap_or(false);
    let include_usage = match f.value("stream_options") {
        None => false,
        Some(Value::Object(o)) => o.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
        Some(v) => return Err(ApiError::invalid(format!("`stream_options` must be an object, got {v}"), Some("stream_options"))),
    };
    config.validate().map_err(|e| ApiError::invalid(e.to_string(), None))?;
    Ok(Sampling { config, n: n as usize, logprobs, stream, include_usage, seeded: seed.is_some() })
}

fn limit_top(k: u64, name: &str) -> Result<usize, ApiError> {
    if k > MAX_TOP_LOGPROBS {
        return Err(ApiError::out_of_range(name, format!("`{name}` must be at most {MAX_TOP_LOGPROBS}, got {k}")));
    }
    Ok(k as usize)
}

fn stop_strings(f: &Fields) -> Result<Vec<String>, ApiError> {
    let stops = match f.value("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid(format!("`stop` entries must be strings, got {v}"), Some("stop"))))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(ApiError::invalid(format!("`stop` must be a string or a list of strings, got {v}"), Some("stop"))),
    };
    if stops.len() > MAX_STOP {
        return Err(ApiError::out_of_range("stop", format!("at most {MAX_STOP} stop strings, got {}", stops.len())));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::out_of_range("stop", "stop strings must not be empty"));
    }
    Ok(stops)
}

/// A seed for a request that gave none: the clock's nanoseconds mixed with a counter.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finaliser: nearby clocks give unrelated seeds.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
