//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A committed tiny model directory.
pub fn data_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A fresh, empty scratch directory unique to this test process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatlm-model-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the files of tiny model `name` into `dest`.
pub fn copy_model(name: &str, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(data_dir(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
    }
}

pub fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32
}

/// The prompt the native-path tests feed to the tiny models.
pub const NATIVE_PROMPT: [u32; 12] = [1, 9, 9, 9, 101, 33, 60, 14, 2, 95, 11, 71];

/// Tiny model `name`, optionally quantized while loading.
pub fn load_quantized(name: &str, quantize: Option<chatlm_model::Quantization>) -> chatlm_model::Model {
    let source = chatlm_model::ModelSource::from_path(&data_dir(name)).unwrap();
    let opts = chatlm_model::LoadOptions { quantize, ..chatlm_model::LoadOptions::default() };
    chatlm_model::Model::from_source(&source, &opts).unwrap()
}

/// Largest absolute difference between two equally long vectors.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
