//! GGUF models: llama.cpp tensor names and hyper-parameters mapped onto the same decoder.

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::load::LoadOptions;
use crate::model::Model;

pub(crate) fn load(path: &Path, _options: &LoadOptions) -> Result<Model> {
    Err(ModelError::Gguf {
        path: path.to_path_buf(),
        message: "GGUF loading is not available yet".into(),
    })
}
