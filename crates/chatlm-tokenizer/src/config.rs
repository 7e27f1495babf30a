//! The files beside `tokenizer.json` that transformers reads: `tokenizer_config.json`,
//! `special_tokens_map.json`, `added_tokens.json`, `generation_config.json` and the chat template
//! files (`chat_template.jinja`, `chat_template.json`, `additional_chat_templates/`).
//!
//! They are kept as parsed values; [`crate::Tokenizer`] applies them to the `tokenizers` pipeline.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::TokenizerError;

/// transformers' `VERY_LARGE_INTEGER` (`int(1e30)`) and friends mean "no limit".
const NO_LIMIT: f64 = 1e18;

/// The special-token map of `tokenizer.special_tokens_map` (token texts, not ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<String>,
    /// End of sequence.
    pub eos: Option<String>,
    /// Unknown token.
    pub unk: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
    /// Separator.
    pub sep: Option<String>,
    /// Classifier token.
    pub cls: Option<String>,
    /// Mask token.
    pub mask: Option<String>,
    /// `additional_special_tokens` (v4) / `extra_special_tokens` (v5).
    pub additional: Vec<String>,
}

/// The seven named roles, in transformers' order, with their config keys.
pub const SPECIAL_ROLES: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

impl SpecialTokens {
    /// The token for a role such as `"eos_token"`.
    pub fn get(&self, role: &str) -> Option<&str> {
        self.slot(role).and_then(|slot| slot.as_deref())
    }

    fn slot(&self, role: &str) -> Option<&Option<String>> {
        Some(match role {
            "bos_token" => &self.bos,
            "eos_token" => &self.eos,
            "unk_token" => &self.unk,
            "pad_token" => &self.pad,
            "sep_token" => &self.sep,
            "cls_token" => &self.cls,
            "mask_token" => &self.mask,
            _ => return None,
        })
    }

    pub(crate) fn slot_mut(&mut self, role: &str) -> Option<&mut Option<String>> {
        Some(match role {
            "bos_token" => &mut self.bos,
            "eos_token" => &mut self.eos,
            "unk_token" => &mut self.unk,
            "pad_token" => &mut self.pad,
            "sep_token" => &mut self.sep,
            "cls_token" => &mut self.cls,
            "mask_token" => &mut self.mask,
            _ => return None,
        })
    }

    /// `(role, token)` for every named role that is set, in transformers' order.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        SPECIAL_ROLES.iter().filter_map(|role| self.get(role).map(|token| (*role, token))).collect()
    }

    /// Every special token text: named ones, then additional ones, without repeats.
    pub fn all(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for token in self.named().into_iter().map(|(_, t)| t).chain(self.additional.iter().map(String::as_str)) {
            if !out.contains(&token) {
                out.push(token);
            }
        }
        out
    }
}

/// A model's chat template(s), as transformers stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplateSource {
    /// One template (`"chat_template": "…"`).
    Single(String),
    /// Named templates (`"chat_template": [{"name": "default", "template": …}, …]`), in file order.
    Named(Vec<(String, String)>),
}

impl ChatTemplateSource {
    /// The template transformers uses when no name is asked for: the single one, or `default`.
    pub fn default_template(&self) -> Option<&str> {
        match self {
            Self::Single(t) => Some(t),
            Self::Named(list) => list.iter().find(|(n, _)| n == "default").map(|(_, t)| t.as_str()),
        }
    }

    /// The template called `name` (`"default"` also finds a single template).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            Self::Single(t) => (name == "default").then_some(t.as_str()),
            Self::Named(list) => list.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str()),
        }
    }

    /// Parses the JSON value of a `chat_template` key (string or list of `{name, template}`).
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::Single(s.clone())),
            Value::Array(items) => {
                let list: Option<Vec<(String, String)>> = items
                    .iter()
                    .map(|item| {
                        Some((item.get("name")?.as_str()?.to_owned(), item.get("template")?.as_str()?.to_owned()))
                    })
                    .collect();
                list.map(Self::Named)
            }
            _ => None,
        }
    }

    /// The JSON value transformers writes for this source.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Single(t) => Value::String(t.clone()),
            Self::Named(list) => Value::Array(
                list.iter()
                    .map(|(name, template)| serde_json::json!({ "name": name, "template": template }))
                    .collect(),
            ),
        }
    }
}

/// Which side padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingSide {
    /// Pad at the end (transformers' default).
    #[default]
    Right,
    /// Pad at the start (what batched generation needs).
    Left,
}

impl PaddingSide {
    /// transformers' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Left => "left",
        }
    }
}

/// The parsed configuration files of a tokenizer directory.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// `tokenizer_config.json` as read (written back by `save_pretrained` with updates).
    pub raw: Map<String, Value>,
    /// Named and additional special tokens.
    pub special_tokens: SpecialTokens,
    /// The chat template(s), from whichever file held them.
    pub chat_template: Option<ChatTemplateSource>,
    /// `model_max_length`, `None` for transformers' "very large integer".
    pub model_max_length: Option<usize>,
    /// `padding_side` (default right).
    pub padding_side: PaddingSide,
    /// `add_bos_token` when the config states it.
    pub add_bos_token: Option<bool>,
    /// `add_eos_token` when the config states it.
    pub add_eos_token: Option<bool>,
    /// `clean_up_tokenization_spaces` (default false, as in transformers 5).
    pub clean_up_tokenization_spaces: bool,
    /// Added tokens the config declares (`added_tokens_decoder`, `added_tokens.json`):
    /// `(id, content, special)`.
    pub declared_added_tokens: Vec<DeclaredToken>,
    /// `generation_config.json`'s `eos_token_id` (int or list).
    pub generation_eos_token_ids: Vec<u32>,
    /// Keep tokenizer.json's pipeline even for classes transformers 5 rebuilds
    /// (see [`crate::LoadOptions`]).
    pub keep_pipeline: bool,
}

/// An added token as a config file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredToken {
    /// Its id, when the file gives one.
    pub id: Option<u32>,
    /// Its text.
    pub content: String,
    /// Whether it is special (skipped by `skip_special_tokens`).
    pub special: bool,
    /// `lstrip` flag.
    pub lstrip: bool,
    /// `rstrip` flag.
    pub rstrip: bool,
    /// `normalized` flag.
    pub normalized: bool,
    /// `single_word` flag.
    pub single_word: bool,
}

pub(crate) fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json { path: path.to_owned(), source })
}

fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    match read_json(path)? {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(TokenizerError::InvalidConfig {
            path: path.to_owned(),
            key: String::new(),
            message: "expected a JSON object".into(),
        }),
    }
}

/// A special token value: a string, an `AddedToken` object with `content`, or null.
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn token_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(token_text).collect(),
        // v5 `extra_special_tokens` may be a name → token map
        Value::Object(map) if !map.contains_key("content") => map.values().filter_map(token_text).collect(),
        _ => Vec::new(),
    }
}

fn bad(path: &Path, key: &str, message: &str) -> TokenizerError {
    TokenizerError::InvalidConfig { path: path.to_owned(), key: key.to_owned(), message: message.to_owned() }
}

impl TokenizerConfig {
    /// Reads every config file of a model directory that exists (none is required).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let config_path = dir.join("tokenizer_config.json");
        let raw = read_json_object(&config_path)?.unwrap_or_default();
        let mut config = Self::from_map(raw, &config_path)?;

        // transformers lets special_tokens_map.json fill and override the config's roles.
        let map_path = dir.join("special_tokens_map.json");
        if let Some(map) = read_json_object(&map_path)? {
            for (key, value) in &map {
                if let Some(slot) = config.special_tokens.slot_mut(key) {
                    if let Some(text) = token_text(value) {
                        *slot = Some(text);
                    }
                } else if key == "additional_special_tokens" {
                    for token in token_list(value) {
                        if !config.special_tokens.additional.contains(&token) {
                            config.special_tokens.additional.push(token);
                        }
                    }
                }
            }
        }

        let added_path = dir.join("added_tokens.json");
        if let Some(map) = read_json_object(&added_path)? {
            for (content, id) in map {
                let id = id.as_u64().ok_or_else(|| bad(&added_path, &content, "expected an integer id"))?;
                if !config.declared_added_tokens.iter().any(|t| t.content == content) {
                    config.declared_added_tokens.push(DeclaredToken {
                        id: u32::try_from(id).ok(),
                        content,
                        special: false,
                        lstrip: false,
                        rstrip: false,
                        normalized: true,
                        single_word: false,
                    });
                }
            }
        }

        let generation_path = dir.join("generation_config.json");
        if let Some(map) = read_json_object(&generation_path)? {
            config.generation_eos_token_ids = match map.get("eos_token_id") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Number(n)) => {
                    vec![n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                        bad(&generation_path, "eos_token_id", "expected a non-negative integer")
                    })?]
                }
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                            bad(&generation_path, "eos_token_id", "expected a list of non-negative integers")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(bad(&generation_path, "eos_token_id", "expected an integer or a list")),
            };
        }

        // Newer transformers save templates in their own files; those win over the config key.
        let json_path = dir.join("chat_template.json");
        if let Some(map) = read_json_object(&json_path)? {
            if let Some(value) = map.get("chat_template") {
                config.chat_template = Some(
                    ChatTemplateSource::from_json(value)
                        .ok_or_else(|| bad(&json_path, "chat_template", "expected a string or a list of {name, template}"))?,
                );
            }
        }
        let jinja_path = dir.join("chat_template.jinja");
        let mut named: Vec<(String, String)> = Vec::new();
        if jinja_path.is_file() {
            let text = std::fs::read_to_string(&jinja_path).map_err(|e| TokenizerError::io(&jinja_path, e))?;
            named.push(("default".to_owned(), text));
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&extra_dir)
                .map_err(|e| TokenizerError::io(&extra_dir, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|e| TokenizerError::io(&file, e))?;
                let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                named.push((name, text));
            }
        }
        match named.len() {
            0 => {}
            1 if named[0].0 == "default" => {
                config.chat_template = named.pop().map(|(_, t)| ChatTemplateSource::Single(t));
            }
            _ => config.chat_template = Some(ChatTemplateSource::Named(named)),
        }
        Ok(config)
    }

    /// Interprets a `tokenizer_config.json` object (`path` is only used in errors).
    pub fn from_map(raw: Map<String, Value>, path: &Path) -> Result<Self, TokenizerError> {
        let mut config = TokenizerConfig { raw, ..Default::default() };
        let raw = &config.raw;
        for role in SPECIAL_ROLES {
            if let Some(value) = raw.get(role) {
                *config.special_tokens.slot_mut(role).unwrap_or(&mut None) = token_text(value);
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            if let Some(value) = raw.get(key) {
                for token in token_list(value) {
                    if !config.special_tokens.additional.contains(&token) {
                        config.special_tokens.additional.push(token);
                    }
                }
            }
        }
        if let Some(value) = raw.get("chat_template") {
            if !value.is_null() {
                config.chat_template = Some(
                    ChatTemplateSource::from_json(value)
                        .ok_or_else(|| bad(path, "chat_template", "expected a string or a list of {name, template}"))?,
                );
            }
        }
        config.model_max_length = match raw.get("model_max_length") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f >= NO_LIMIT => None,
                Some(f) if f >= 0.0 => Some(f as usize),
                _ => return Err(bad(path, "model_max_length", "expected a non-negative number")),
            },
            Some(_) => return Err(bad(path, "model_max_length", "expected a number")),
        };
        config.padding_side = match raw.get("padding_side").and_then(Value::as_str) {
            None | Some("right") => PaddingSide::Right,
            Some("left") => PaddingSide::Left,
            Some(other) => return Err(bad(path, "padding_side", &format!("expected \"left\" or \"right\", got {other:?}"))),
        };
        config.add_bos_token = raw.get("add_bos_token").and_then(Value::as_bool);
        config.add_eos_token = raw.get("add_eos_token").and_then(Value::as_bool);
        config.clean_up_tokenization_spaces =
            raw.get("clean_up_tokenization_spaces").and_then(Value::as_bool).unwrap_or(false);
        if let Some(Value::Object(decoder)) = raw.get("added_tokens_decoder") {
            for (id, token) in decoder {
                let content = token
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(path, "added_tokens_decoder", &format!("entry {id} has no \"content\"")))?;
                let flag = |name: &str, default: bool| token.get(name).and_then(Value::as_bool).unwrap_or(default);
                config.declared_added_tokens.push(DeclaredToken {
                    id: id.parse().ok(),
                    content: content.to_owned(),
                    special: flag("special", false),
                    lstrip: flag("lstrip", false),
                    rstrip: flag("rstrip", false),
                    normalized: flag("normalized", true),
                    single_word: flag("single_word", false),
                });
            }
        }
        Ok(config)
    }
}
