//! Collators built from the Python constructors' keyword arguments (`chatlm data collate --options`),
//! so a setup can be held against transformers / TRL as written in Python.

use serde_json::{Map, Value};

use crate::collate::{FlatteningCollator, LmCollator, PadConfig, PaddingCollator, PaddingSide, TrlLmCollator};
use crate::completion::{CollatorWarning, CompletionOnlyCollator};
use crate::error::{DataError, Result};
use crate::features::{Batch, Example};

/// What a collator needs to know about the tokenizer.
#[derive(Clone, Debug, Default)]
pub struct TokenizerInfo {
    /// `tokenizer.pad_token_id`.
    pub pad_token_id: Option<i64>,
    /// `tokenizer.eos_token_id`.
    pub eos_token_id: Option<i64>,
    /// `tokenizer.padding_side`.
    pub padding_side: PaddingSide,
}

/// Encodes a template string without special tokens (`tokenizer.encode(s, add_special_tokens=False)`).
pub type TemplateEncoder<'a> = &'a dyn Fn(&str) -> Result<Vec<i64>>;

/// Any of the collators, chosen by name.
#[derive(Clone, Debug)]
pub enum AnyCollator {
    /// `DataCollatorWithPadding`.
    Padding(PaddingCollator),
    /// transformers `DataCollatorForLanguageModeling(mlm=False)`.
    Lm(LmCollator),
    /// TRL 1.x `DataCollatorForLanguageModeling`.
    TrlLm(TrlLmCollator),
    /// `DataCollatorForCompletionOnlyLM`.
    CompletionOnly(CompletionOnlyCollator),
    /// `DataCollatorWithFlattening`.
    Flatten(FlatteningCollator),
}

impl AnyCollator {
    /// Collate; warnings are those the Python collator emits (template not found).
    pub fn collate(&self, examples: &[Example]) -> Result<(Batch, Vec<CollatorWarning>)> {
        match self {
            AnyCollator::Padding(c) => Ok((c.collate(examples)?, vec![])),
            AnyCollator::Lm(c) => Ok((c.collate(examples)?, vec![])),
            AnyCollator::TrlLm(c) => Ok((c.collate(examples)?, vec![])),
            AnyCollator::CompletionOnly(c) => c.collate(examples),
            AnyCollator::Flatten(c) => Ok((c.collate(examples)?, vec![])),
        }
    }

    /// Setup warnings worth printing before collating (PAD == EOS).
    pub fn setup_warnings(&self, tok: &TokenizerInfo) -> Vec<String> {
        let pad = match self {
            AnyCollator::Padding(_) | AnyCollator::Flatten(_) => return vec![],
            AnyCollator::Lm(c) => c.pad.pad_token_id,
            AnyCollator::CompletionOnly(c) => c.pad.pad_token_id,
            AnyCollator::TrlLm(_) => return vec![],
        };
        if pad.is_some() && pad == tok.eos_token_id {
            vec![format!(
                "pad_token_id == eos_token_id ({}): this collator sets labels to -100 wherever the token equals PAD, \
                 so every real EOS is masked too and the model never learns to stop; set a distinct pad token \
                 (`chatlm data tokenizer --pad-token ...`) or use the trl-lm collator, which masks by position",
                pad.unwrap_or_default()
            )]
        } else {
            vec![]
        }
    }
}

struct Opts<'a> {
    map: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Opts<'a> {
    fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.push(k);
        self.map.get(k).filter(|v| !v.is_null())
    }
    fn bool(&mut self, k: &'static str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| DataError::option(k, format!("expected true/false, got {v}"))),
        }
    }
    fn int(&mut self, k: &'static str) -> Result<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| DataError::option(k, format!("expected an integer, got {v}"))),
        }
    }
    fn usize(&mut self, k: &'static str) -> Result<Option<usize>> {
        match self.int(k)? {
            Some(x) if x < 0 => Err(DataError::option(k, "must not be negative")),
            x => Ok(x.map(|x| x as usize)),
        }
    }
    fn finish(self, kind: &str) -> Result<()> {
        for k in self.map.keys() {
            if !self.used.contains(&k.as_str()) {
                return Err(DataError::option(k, format!("not an argument of the {kind} collator (accepted: {})", self.used.join(", "))));
            }
        }
        Ok(())
    }
}

/// A template given as a string (encoded) or as a list of ids (used as is).
fn template(v: &Value, name: &str, encode: TemplateEncoder<'_>) -> Result<(Vec<i64>, String)> {
    match v {
        Value::String(s) => Ok((encode(s)?, s.clone())),
        Value::Array(a) => {
            let ids = a
                .iter()
                .map(|x| x.as_i64().ok_or_else(|| DataError::option(name, format!("non-integer id {x}"))))
                .collect::<Result<Vec<_>>>()?;
            Ok((ids.clone(), format!("{ids:?}")))
        }
        _ => Err(DataError::option(name, "expected a string or a list of token ids")),
    }
}

/// Build a collator from its name (`padding`, `lm`, `trl-lm`, `completion-only`, `flatten`) and the Python
/// constructor's keyword arguments. `padding_side` and `pad_token_id` set what Python reads from the tokenizer.
pub fn build_collator(
    kind: &str,
    options: &Map<String, Value>,
    tok: &TokenizerInfo,
    encode: TemplateEncoder<'_>,
) -> Result<AnyCollator> {
    let mut o = Opts { map: options, used: vec![] };
    let pad_token_id = o.int("pad_token_id")?.or(tok.pad_token_id);
    let padding_side = match o.get("padding_side") {
        Some(Value::String(s)) => PaddingSide::parse(s)?,
        Some(v) => return Err(DataError::option("padding_side", format!("expected a string, got {v}"))),
        None => tok.padding_side,
    };
    let mut pad = PadConfig { pad_token_id, padding_side, ..PadConfig::default() };
    let c = match kind {
        "padding" => {
            pad.pad_to_multiple_of = o.usize("pad_to_multiple_of")?;
            pad.max_length = o.usize("max_length")?;
            match o.get("padding") {
                None | Some(Value::Bool(true)) => pad.max_length = None,
                Some(Value::String(s)) if s == "longest" => pad.max_length = None,
                Some(Value::String(s)) if s == "max_length" => {
                    if pad.max_length.is_none() {
                        return Err(DataError::option("max_length", "padding=\"max_length\" needs max_length"));
                    }
                }
                Some(v) => return Err(DataError::option("padding", format!("unsupported value {v}"))),
            }
            AnyCollator::Padding(PaddingCollator { pad })
        }
        "lm" => {
            if o.bool("mlm", false)? {
                return Err(DataError::option("mlm", "masked language modeling is random and not supported; use mlm=false"));
            }
            pad.pad_to_multiple_of = o.usize("pad_to_multiple_of")?;
            AnyCollator::Lm(LmCollator { pad })
        }
        "trl-lm" => {
            let pad_token_id = pad_token_id.ok_or_else(|| DataError::option("pad_token_id", "required (the tokenizer has none)"))?;
            AnyCollator::TrlLm(TrlLmCollator {
                pad_token_id,
                padding_free: o.bool("padding_free", false)?,
                return_position_ids: o.bool("return_position_ids", false)?,
                pad_to_multiple_of: o.usize("pad_to_multiple_of")?,
            })
        }
        "completion-only" => {
            if o.bool("mlm", false)? {
                return Err(DataError::option("mlm", "not supported; use mlm=false"));
            }
            pad.pad_to_multiple_of = o.usize("pad_to_multiple_of")?;
            let resp = o.get("response_template").ok_or_else(|| DataError::option("response_template", "required"))?;
            let (resp_ids, resp_text) = template(resp, "response_template", encode)?;
            let instr = match o.get("instruction_template") {
                Some(v) => Some(template(v, "instruction_template", encode)?),
                None => None,
            };
            let mut c = CompletionOnlyCollator::new(pad, resp_ids, instr.as_ref().map(|x| x.0.clone()))?;
            c.response_template_text = resp_text;
            if let Some((_, t)) = instr {
                c.instruction_template_text = t;
            }
            c.ignore_index = o.int("ignore_index")?.unwrap_or(crate::IGNORE_INDEX);
            c.padding_free = o.bool("padding_free", false)?;
            AnyCollator::CompletionOnly(c)
        }
        "flatten" => AnyCollator::Flatten(FlatteningCollator {
            return_position_ids: o.bool("return_position_ids", true)?,
            separator_id: o.int("separator_id")?.unwrap_or(crate::IGNORE_INDEX),
            return_flash_attn_kwargs: o.bool("return_flash_attn_kwargs", false)?,
            return_seq_idx: o.bool("return_seq_idx", false)?,
            position_ids_start: o.int("position_ids_start")?.unwrap_or(0),
        }),
        _ => {
            return Err(DataError::option(
                "collator",
                format!("unknown collator {kind:?} (padding, lm, completion-only, flatten, trl-lm)"),
            ))
        }
    };
    o.finish(kind)?;
    Ok(c)
}
