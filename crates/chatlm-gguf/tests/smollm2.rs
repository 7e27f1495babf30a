//! The real SmolLM2-135M-Instruct GGUF against what the Python `gguf` package reads from it
//! (tests/data/smollm2_meta.json, from scripts/reference/gguf_smollm2_meta.py).

use chatlm_gguf::{GgufFile, MetadataValue};
use serde_json::Value;

fn smollm2() -> Option<GgufFile> {
    let path = std::env::var("CHATLM_SMOLLM2").ok().filter(|p| std::path::Path::new(p).exists());
    let Some(path) = path else {
        println!("skipped: CHATLM_SMOLLM2 not set or missing");
        return None;
    };
    Some(GgufFile::open(path).unwrap())
}

fn reference() -> Value {
    serde_json::from_str(include_str!("data/smollm2_meta.json")).unwrap()
}

fn as_json(value: &MetadataValue) -> Value {
    match value {
        MetadataValue::String(s) => Value::from(s.as_str()),
        MetadataValue::Bool(b) => Value::from(*b),
        MetadataValue::F32(v) => Value::from(f64::from(*v)),
        MetadataValue::F64(v) => Value::from(*v),
        MetadataValue::Array { values, .. } => Value::Array(values.iter().map(as_json).collect()),
        other => Value::from(other.as_i64().unwrap()),
    }
}

#[test]
fn header_and_counts_match_python_gguf() {
    let Some(file) = smollm2() else { return };
    let r = reference();
    assert_eq!(u64::from(file.version()), r["version"].as_u64().unwrap());
    assert_eq!(file.tensors().len() as u64, r["tensor_count"].as_u64().unwrap());
    assert_eq!(file.metadata().len() as u64, r["kv_count"].as_u64().unwrap());
    assert_eq!(file.alignment(), r["alignment"].as_u64().unwrap());
    assert_eq!(file.data_offset(), r["data_offset"].as_u64().unwrap());
    assert_eq!(file.as_bytes().len() as u64, r["file_size"].as_u64().unwrap());
}

#[test]
fn metadata_matches_python_gguf() {
    let Some(file) = smollm2() else { return };
    let r = reference();
    for (key, expected) in r["scalars"].as_object().unwrap() {
        let value = file.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let ty = format!("{:?}", value.value_type()).to_uppercase();
        let expected_ty = expected["type"].as_str().unwrap().replace("UINT", "U").replace("INT", "I").replace("FLOAT", "F");
        assert_eq!(ty, expected_ty, "{key}");
        assert_eq!(as_json(value), expected["value"], "{key}");
    }
    for (key, expected) in r["arrays"].as_object().unwrap() {
        let values = file.get(key).and_then(MetadataValue::as_array).unwrap_or_else(|| panic!("{key} not an array"));
        assert_eq!(values.len() as u64, expected["len"].as_u64().unwrap(), "{key}");
        let first: Vec<Value> = values.iter().take(5).map(as_json).collect();
        assert_eq!(Value::Array(first), expected["first"], "{key}");
        assert_eq!(values.last().map(as_json).unwrap_or(Value::Null), expected["last"], "{key}");
    }
    assert_eq!(file.get_str("tokenizer.ggml.pre"), Some("smollm"));
}

#[test]
fn tensor_table_matches_python_gguf() {
    let Some(file) = smollm2() else { return };
    let r = reference();
    let expected = r["tensors"].as_array().unwrap();
    assert_eq!(file.tensors().len(), expected.len());
    for (info, want) in file.tensors().iter().zip(expected) {
        assert_eq!(info.name, want["name"].as_str().unwrap());
        let dims: Vec<u64> = want["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(info.dims, dims, "{}", info.name);
        assert_eq!(info.ggml_type.name(), want["type"].as_str().unwrap(), "{}", info.name);
        assert_eq!(info.offset, want["offset"].as_u64().unwrap(), "{}", info.name);
        assert_eq!(info.size_bytes, want["size"].as_u64().unwrap(), "{}", info.name);
        assert_eq!(file.tensor_data(info).unwrap().len() as u64, info.size_bytes);
    }
}
