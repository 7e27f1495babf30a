//! Shared by the conformance tests: where the fixtures are, or a clear skip.

use std::path::PathBuf;

/// `$CHATLM_FIXTURES` (default `../shared/fixtures` from the workspace root), or `None` after
/// printing the one skip line.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if dir.join("tokenizers").is_dir() {
        Some(dir)
    } else {
        println!("skipped: fixtures not found (set CHATLM_FIXTURES; looked in {})", dir.display());
        None
    }
}

#[allow(dead_code)]
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}
