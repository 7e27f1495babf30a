//! Finding a model: a transformers directory, the Hugging Face hub cache, or a GGUF file.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory with `config.json` and `model.safetensors` (or shards), plus usually the
    /// tokenizer files and `generation_config.json`. Hub cache snapshots resolve to this.
    Directory(PathBuf),
    /// A single GGUF file holding weights, hyper-parameters, tokenizer and chat template.
    Gguf(PathBuf),
}

impl ModelSource {
    /// Resolves what a user typed: a `.gguf` file, a model directory, a hub cache repository
    /// folder (`models--org--name`), or a hub id (`org/name`, optionally `org/name@revision`)
    /// looked up offline in the hub cache ([`hub_cache_dir`]).
    ///
    /// ```no_run
    /// use chatlm_model::ModelSource;
    /// let local = ModelSource::resolve("./SmolLM2-135M-Instruct.Q4_1.gguf")?;
    /// let cached = ModelSource::resolve("HuggingFaceTB/SmolLM2-135M-Instruct")?;
    /// # Ok::<(), chatlm_model::ModelError>(())
    /// ```
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::from_path(path);
        }
        let (repo_id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        if is_repo_id(repo_id) {
            let cache = hub_cache_dir().ok_or_else(|| ModelError::NotFound {
                path: path.to_path_buf(),
                message: "not a file, and no hub cache directory is known (set HF_HUB_CACHE or HF_HOME)".into(),
            })?;
            return match Self::from_hub_cache(&cache, repo_id, revision) {
                #[cfg(feature = "hub-download")]
                Err(ModelError::NotFound { .. }) => crate::download::download(repo_id, revision),
                other => other,
            };
        }
        Err(ModelError::NotFound {
            path: path.to_path_buf(),
            message: "no such file or directory, and not a hub id of the form org/name".into(),
        })
    }

    /// Classifies an existing path.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_file() {
            return if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                Ok(Self::Gguf(path.to_path_buf()))
            } else {
                Err(ModelError::NotFound {
                    path: path.to_path_buf(),
                    message: "a model file must be a .gguf; for safetensors give the directory".into(),
                })
            };
        }
        if path.join("config.json").is_file() {
            return Ok(Self::Directory(path.to_path_buf()));
        }
        if path.join("snapshots").is_dir() {
            return snapshot_of(path, "main").map(Self::Directory);
        }
        let ggufs = gguf_files(path);
        if let [only] = ggufs.as_slice() {
            return Ok(Self::Gguf(only.clone()));
        }
        Err(ModelError::NotFound {
            path: path.to_path_buf(),
            message: "directory has no config.json, no hub snapshots and not exactly one .gguf file".into(),
        })
    }

    /// Finds `repo_id` at `revision` (a branch/tag name under `refs/`, or a commit hash) in a
    /// hub cache directory laid out like `huggingface_hub` does, without any network access.
    pub fn from_hub_cache(cache_dir: &Path, repo_id: &str, revision: &str) -> Result<Self> {
        let repo_dir = cache_dir.join(format!("models--{}", repo_id.replace('/', "--")));
        if !repo_dir.is_dir() {
            return Err(ModelError::NotFound {
                path: repo_dir,
                message: format!("`{repo_id}` is not in the hub cache"),
            });
        }
        let snapshot = snapshot_of(&repo_dir, revision)?;
        Self::from_path(&snapshot)
    }

    /// The directory holding the model's side files (tokenizer, generation config), if any.
    pub fn directory(&self) -> Option<&Path> {
        match self {
            Self::Directory(dir) => Some(dir),
            Self::Gguf(_) => None,
        }
    }
}

/// The hub cache in use: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`
/// (the order `huggingface_hub` uses).
pub fn hub_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("huggingface").join("hub"))
}

fn is_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!((parts.next(), parts.next(), parts.next()), (Some(org), Some(name), None) if valid(org) && valid(name))
}

/// `repo_dir/snapshots/<commit>` for a ref name (read from `refs/<name>`) or a commit hash.
///
/// Written by hand: hf-hub 1.0 exposes the cache layout only through its HTTP client, which
/// is too heavy a dependency for reading three paths offline.
fn snapshot_of(repo_dir: &Path, revision: &str) -> Result<PathBuf> {
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        let ref_path = repo_dir.join("refs").join(revision);
        let text = std::fs::read_to_string(&ref_path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ModelError::NotFound {
                path: ref_path.clone(),
                message: format!("revision `{revision}` is not in the hub cache"),
            },
            _ => ModelError::Io {
                path: ref_path.clone(),
                source,
            },
        })?;
        text.trim().to_string()
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(ModelError::NotFound {
            path: snapshot,
            message: format!("snapshot {commit} of revision `{revision}` is missing"),
        });
    }
    Ok(snapshot)
}

fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
        .collect();
    files.sort();
    files
}
