//! Compares chatlm's llama.cpp numerics with llama.cpp's own intermediate tensors, node by
//! node: the tool for finding where two forward passes part.
//!
//! ```text
//! python3 scripts/reference/llamacpp_dump.py --out /tmp/llamacpp_dump      # llama.cpp's tensors
//! cargo run --release -p chatlm-model --example ggml_trace -- MODEL.gguf /tmp/llamacpp_dump
//! ```
//! An optional third argument names the llama.cpp build to follow (`llamacpp-avx2`,
//! `llamacpp-avx512`; default `llamacpp`, this CPU's): the one the dump was made with.
//! For every token of the dumped run (the prompt batch, then each decode step) it prints the
//! first node whose values differ from llama.cpp's (bit for bit) and a summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chatlm_model::{LoadOptions, Model, ModelSource, Numerics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, dump, numerics) = match &args[..] {
        [model, dump] => (model, dump, Numerics::LlamaCpp),
        [model, dump, numerics] => (model, dump, numerics.parse::<Numerics>()?),
        _ => return Err("usage: ggml_trace MODEL.gguf DUMP_DIR [llamacpp|llamacpp-avx2|llamacpp-avx512]".into()),
    };
    let dump = PathBuf::from(dump);
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dump.join("run.json"))?)?;
    let ids = |key: &str| -> Vec<u32> { run[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
    let (prompt, greedy) = (ids("prompt_ids"), ids("greedy_tokens"));

    let mut model = Model::from_source(&ModelSource::resolve(model_path)?, &LoadOptions::default())?;
    model.set_numerics(numerics)?;
    println!("numerics: {numerics:?}");
    let mut cache = model.new_cache(1, 1024)?;
    let mut report = Report::default();

    let ubatches = std::iter::once(prompt.clone()).chain(greedy.iter().take(greedy.len() - 1).map(|&t| vec![t]));
    for (ub, tokens) in ubatches.enumerate() {
        let nodes = Nodes::open(&dump.join(format!("ubatch_{ub}")))?;
        let mut token = usize::MAX;
        let mut trace = |name: &str, layer: usize, ours: &[f32]| {
            if name == "embd" && layer == 0 {
                token = token.wrapping_add(1);
            }
            report.compare(&nodes, ub, token, name, layer, ours);
        };
        let logits = model.forward_last_traced(&tokens, &mut cache, &mut trace)?;
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap();
        println!("ubatch {ub}: {} token(s), next {next} (llama.cpp {})", tokens.len(), greedy[ub]);
    }
    println!("{} nodes compared, {} equal bit for bit", report.compared, report.equal);
    Ok(())
}

#[derive(Default)]
struct Report {
    compared: usize,
    equal: usize,
    /// (ubatch, token) pairs already reported (their first difference only).
    reported: std::collections::HashSet<(usize, usize)>,
}

impl Report {
    fn compare(&mut self, nodes: &Nodes, ub: usize, token: usize, name: &str, layer: usize, ours: &[f32]) {
        let key = if matches!(name, "embd" | "result_norm" | "result_output") { name.to_string() } else { format!("{name}-{layer}") };
        let Some(theirs) = nodes.row(&key, token, ours.len()) else { return };
        self.compared += 1;
        let diffs: Vec<usize> = (0..ours.len()).filter(|&i| ours[i].to_bits() != theirs[i].to_bits()).collect();
        if diffs.is_empty() {
            self.equal += 1;
            return;
        }
        if self.reported.insert((ub, token)) {
            let max = diffs.iter().map(|&i| (ours[i] - theirs[i]).abs()).fold(0.0f32, f32::max);
            let i = diffs[0];
            println!(
                "ubatch {ub} token {token}: first difference at {key}: {}/{} values differ (max |d| {max:e}); [{i}] ours {:e} theirs {:e}",
                diffs.len(),
                ours.len(),
                ours[i],
                theirs[i]
            );
        }
    }
}

/// One ubatch's dumped tensors, by name (the last node of each name: after rope, etc.).
struct Nodes {
    dir: PathBuf,
    files: HashMap<String, String>,
}

impl Nodes {
    fn open(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json"))?)?;
        let mut files = HashMap::new();
        for node in index["nodes"].as_array().unwrap() {
            if let (Some(name), Some(file), "f32") = (node["name"].as_str(), node["file"].as_str(), node["type"].as_str().unwrap_or("")) {
                files.insert(name.to_string(), file.to_string());
            }
        }
        Ok(Self { dir: dir.to_path_buf(), files })
    }

    /// Row `token` (of `len` values) of the tensor `name`.
    fn row(&self, name: &str, token: usize, len: usize) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.dir.join(self.files.get(name)?)).ok()?;
        let values = npy_f32(&bytes)?;
        values.get(token * len..(token + 1) * len).map(<[f32]>::to_vec)
    }
}

/// The values of a little-endian f32 `.npy` file.
fn npy_f32(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return None;
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).ok()?;
    if !header.contains("'<f4'") {
        return None;
    }
    Some(bytes[start + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
}
