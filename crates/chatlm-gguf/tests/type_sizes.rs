//! The ggml type table against the Python `gguf` package's GGML_QUANT_SIZES
//! (tests/data/ggml_type_sizes.json, from scripts/reference/gguf_smollm2_meta.py).

use chatlm_gguf::GgmlType;

#[test]
fn type_table_matches_python_gguf() {
    let text = include_str!("data/ggml_type_sizes.json");
    let reference: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    assert_eq!(reference.len(), GgmlType::all().count(), "type count differs from gguf-py");
    for (name, row) in &reference {
        let id = row["id"].as_u64().unwrap() as u32;
        let t = GgmlType::from_id(id).unwrap_or_else(|| panic!("id {id} ({name}) unknown"));
        assert_eq!(&t.name(), name);
        assert_eq!(t.id(), id);
        assert_eq!(t.block_size(), row["block_size"].as_u64().unwrap(), "{name}");
        assert_eq!(t.type_size(), row["type_size"].as_u64().unwrap(), "{name}");
    }
    for retired in [4, 5, 31, 32, 33, 36, 37, 38, 1000] {
        assert_eq!(GgmlType::from_id(retired), None);
    }
}
