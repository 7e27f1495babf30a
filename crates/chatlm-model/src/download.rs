//! Fetching a missing model from the Hugging Face Hub (feature `hub-download`).
//!
//! The files land in the regular hub cache, so later runs resolve them offline.

use std::path::PathBuf;

use crate::error::{ModelError, Result};
use crate::source::ModelSource;

/// Files a chat model needs; weights of other formats (`*.bin`, `*.pth`, ONNX) are skipped.
const MODEL_FILES: &[&str] = &["*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt"];

/// Downloads `repo_id` at `revision` into the hub cache and returns the snapshot directory.
pub(crate) fn download(repo_id: &str, revision: &str) -> Result<ModelSource> {
    let failed = |message: String| ModelError::NotFound {
        path: PathBuf::from(repo_id),
        message,
    };
    let (owner, name) = repo_id
        .split_once('/')
        .ok_or_else(|| failed("a hub id has the form owner/name".into()))?;
    let client = hf_hub::HFClientSync::new().map_err(|e| failed(format!("hub client: {e}")))?;
    let snapshot = client
        .model(owner, name)
        .snapshot_download()
        .revision(revision)
        .allow_patterns(MODEL_FILES.iter().map(|p| p.to_string()).collect())
        .send()
        .map_err(|e| failed(format!("download failed: {e}")))?;
    ModelSource::from_path(&snapshot)
}
