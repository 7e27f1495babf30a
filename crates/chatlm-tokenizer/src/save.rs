//! `save_pretrained`: files transformers loads back to the same tokenizer.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Tokenizer, TokenizerError};

impl Tokenizer {
    /// Writes `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into `dir`
    /// (created if needed). Each file is written to a temporary name and renamed, so a failure
    /// never leaves a half-written tokenizer.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), TokenizerError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;

        let tokenizer_json = self
            .inner()
            .to_string(true)
            .map_err(|e| TokenizerError::Load { path: dir.join("tokenizer.json"), message: e.to_string() })?;
        write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;

        let special = self.special_tokens();
        let mut config: Map<String, Value> = self.config().raw.clone();
        let mut map = Map::new();
        for (role, token) in special.named() {
            config.insert(role.to_owned(), Value::String(token.to_owned()));
            map.insert(role.to_owned(), Value::String(token.to_owned()));
        }
        config.remove("extra_special_tokens");
        if special.additional.is_empty() {
            config.remove("additional_special_tokens");
        } else {
            let list = Value::Array(special.additional.iter().cloned().map(Value::String).collect());
            config.insert("additional_special_tokens".into(), list.clone());
            map.insert("additional_special_tokens".into(), list);
        }
        let mut decoder: Vec<(u32, tokenizers::AddedToken)> = self.inner().get_added_tokens_decoder().into_iter().collect();
        decoder.sort_by_key(|(id, _)| *id);
        let decoder: Map<String, Value> = decoder
            .into_iter()
            .map(|(id, t)| {
                (
                    id.to_string(),
                    serde_json::json!({
                        "content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                        "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special,
                    }),
                )
            })
            .collect();
        config.insert("added_tokens_decoder".into(), Value::Object(decoder));
        match self.chat_template() {
            Some(template) => config.insert("chat_template".into(), template.to_json()),
            None => config.remove("chat_template"),
        };
        config.insert("padding_side".into(), Value::String(self.padding_side().as_str().to_owned()));
        config.entry("tokenizer_class").or_insert_with(|| Value::String("PreTrainedTokenizerFast".into()));

        write_json(&dir.join("tokenizer_config.json"), &Value::Object(config))?;
        write_json(&dir.join("special_tokens_map.json"), &Value::Object(map))?;
        // A stale template file would win over the config on reload.
        for stale in ["chat_template.jinja", "chat_template.json"] {
            let path = dir.join(stale);
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| TokenizerError::io(&path, e))?;
            }
        }
        Ok(())
    }
}

fn write_json(path: &Path, value: &Value) -> Result<(), TokenizerError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|source| TokenizerError::Json { path: path.to_owned(), source })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to a sibling temporary file, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TokenizerError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| TokenizerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TokenizerError::io(path, e)
    })
}
