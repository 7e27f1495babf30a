//! Bad models and bad inputs give typed errors that say what is wrong.

mod common;

use chatlm_model::{BatchInput, LoadOptions, Model, ModelError, ModelSource};
use common::{copy_model, data_dir, scratch_dir};

fn load_dir(dir: &std::path::Path) -> Result<Model, ModelError> {
    Model::from_source(&ModelSource::from_path(dir)?, &LoadOptions::default())
}

fn edit_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn truncated_safetensors_is_a_safetensors_error_naming_the_file() {
    let dir = scratch_dir("truncated");
    copy_model("llama3", &dir);
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    match load_dir(&dir) {
        Err(ModelError::Safetensors { path, .. }) => assert_eq!(path, weights),
        other => panic!("expected a safetensors error, got {other:?}"),
    }
}

#[test]
fn config_not_matching_weights_names_tensor_and_both_shapes() {
    let dir = scratch_dir("mismatch");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| c["intermediate_size"] = 96.into());
    let err = load_dir(&dir).unwrap_err();
    match &err {
        ModelError::ShapeMismatch { name, expected, found, .. } => {
            assert_eq!(name, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!(expected, &[96, 64]);
            assert_eq!(found, &[64, 64]);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("model.layers.0.mlp.gate_proj.weight"), "{err}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = scratch_dir("unknown-arch");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| c["architectures"] = serde_json::json!(["GPT2LMHeadModel"]));
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::UnsupportedArchitecture { name, .. } if name == "GPT2LMHeadModel"), "{err:?}");
    assert!(err.to_string().contains("GPT2LMHeadModel"));
}

#[test]
fn unknown_model_type_is_named_when_architectures_is_absent() {
    let dir = scratch_dir("unknown-type");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| {
        c.as_object_mut().unwrap().remove("architectures");
        c["model_type"] = "gpt_neox".into();
    });
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::UnsupportedArchitecture { name, .. } if name == "gpt_neox"), "{err:?}");
}

#[test]
fn unsupported_rope_scaling_is_named() {
    let dir = scratch_dir("longrope");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| c["rope_parameters"]["rope_type"] = "longrope".into());
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::Unsupported { value, .. } if value == "longrope"), "{err:?}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = scratch_dir("untied");
    copy_model("llama_tied", &dir);
    edit_config(&dir, |c| c["tie_word_embeddings"] = false.into());
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::MissingTensor { name, .. } if name == "lm_head.weight"), "{err:?}");
}

#[test]
fn bad_inputs_are_rejected_and_leave_the_cache_usable() {
    let model = load_dir(&data_dir("llama3")).unwrap();
    let mut cache = model.new_cache(1, 8).unwrap();
    let err = model.forward(&[1, 999], &mut cache).unwrap_err();
    assert!(matches!(&err, ModelError::InvalidInput(m) if m.contains("999")), "{err:?}");
    assert!(matches!(model.forward(&[], &mut cache), Err(ModelError::InvalidInput(_))));
    model.forward(&[1, 2, 3, 4, 5], &mut cache).unwrap();
    let err = model.forward(&[1, 2, 3, 4], &mut cache).unwrap_err();
    assert!(matches!(err, ModelError::ContextOverflow { needed: 9, capacity: 8 }), "{err:?}");
    assert_eq!(cache.len(), 5);
    model.forward(&[6, 7, 8], &mut cache).unwrap();
    assert_eq!(cache.len(), 8);

    let too_long = model.config().context_length() + 1;
    assert!(matches!(model.new_cache(1, too_long), Err(ModelError::ContextOverflow { .. })));

    let mut batch_cache = model.new_cache(2, 8).unwrap();
    let ragged = BatchInput { ids: vec![vec![1, 2], vec![3]], attention_mask: vec![vec![true, true], vec![true]] };
    assert!(matches!(model.forward_batch(&ragged, &mut batch_cache), Err(ModelError::InvalidInput(_))));
    let wrong_rows = BatchInput::step(&[1, 2, 3]);
    assert!(matches!(model.forward_batch(&wrong_rows, &mut batch_cache), Err(ModelError::InvalidInput(_))));
    assert!(batch_cache.is_empty());
}

#[test]
fn truncated_gguf_is_a_gguf_error_naming_a_tensor_or_the_header() {
    let dir = scratch_dir("truncated-gguf");
    let bytes = std::fs::read(data_dir("llama_tied_q8_0").join("model.gguf")).unwrap();
    let path = dir.join("model.gguf");
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Model::from_source(&ModelSource::Gguf(path.clone()), &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { path: p, message } if p == &path && message.contains("truncated")), "{err:?}");
    std::fs::write(&path, &bytes[..100]).unwrap();
    let err = Model::from_source(&ModelSource::Gguf(path.clone()), &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { .. }), "{err:?}");
    std::fs::write(&path, b"not a gguf file at all").unwrap();
    let err = Model::from_source(&ModelSource::Gguf(path.clone()), &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { .. }), "{err:?}");
}

#[test]
fn inconsistent_head_counts_are_config_errors() {
    let dir = scratch_dir("heads");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| c["num_key_value_heads"] = 3.into());
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::InvalidConfig { message, .. } if message.contains("num_key_value_heads 3")), "{err:?}");
}

#[test]
fn unknown_gguf_quant_type_is_a_gguf_error() {
    let mut bytes = std::fs::read(data_dir("llama_tied_q8_0").join("model.gguf")).unwrap();
    // Tensor info: name, n_dims (u32), dims (u64 each), ggml type (u32), offset (u64).
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let path = scratch_dir("quant-type").join("model.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let err = Model::from_source(&ModelSource::Gguf(path), &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { message, .. } if message.contains("99")), "{err:?}");
}

/// A rotary part wider than the head would slice past each head in the rope step.
#[test]
fn rotary_dimension_wider_than_the_head_is_a_config_error() {
    let dir = scratch_dir("rotary");
    copy_model("llama3", &dir);
    edit_config(&dir, |c| c["partial_rotary_factor"] = 2.0.into());
    for quantize in [None, Some("q8_0".parse().unwrap())] {
        let err = Model::from_source(&ModelSource::from_path(&dir).unwrap(), &LoadOptions { quantize, ..LoadOptions::default() })
            .unwrap_err();
        assert!(matches!(&err, ModelError::InvalidConfig { message, .. } if message.contains("exceeds head_dim 16")), "{err:?}");
    }
}

/// The tiny GGUF with one metadata value replaced (`None`: removed).
fn gguf_with(key: &str, value: Option<chatlm_gguf::MetadataValue>) -> std::path::PathBuf {
    let src = chatlm_gguf::GgufFile::open(data_dir("llama3_gguf").join("model.gguf")).unwrap();
    let mut out = chatlm_gguf::GgufWriter::new();
    for (k, v) in src.metadata().iter().filter(|(k, _)| k != key) {
        out.add_metadata(k.clone(), v.clone());
    }
    if let Some(v) = value {
        out.add_metadata(key, v);
    }
    for t in src.tensors() {
        out.add_tensor(t.name.clone(), &t.dims, t.ggml_type, src.tensor_data(t).unwrap().to_vec());
    }
    let path = scratch_dir(&format!("meta-{key}")).join("model.gguf");
    out.write_to(&path).unwrap();
    path
}

#[test]
fn gguf_counts_that_are_negative_or_not_integers_name_the_key() {
    use chatlm_gguf::MetadataValue::{String, I32, U64};
    for (key, value, want) in [
        ("llama.attention.head_count", I32(-4), "-4 is out of range"),
        ("llama.attention.head_count_kv", U64(1 << 40), "1099511627776 is out of range"),
        ("llama.block_count", String("2".into()), "expected an integer"),
    ] {
        let err = Model::from_source(&ModelSource::Gguf(gguf_with(key, Some(value))), &LoadOptions::default()).unwrap_err();
        assert!(matches!(&err, ModelError::Gguf { message, .. } if message.contains(key) && message.contains(want)), "{err:?}");
    }
}

#[test]
fn gguf_tensor_offset_past_any_file_size_is_an_error_not_an_overflow() {
    let mut bytes = std::fs::read(data_dir("llama3_gguf").join("model.gguf")).unwrap();
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let offset_at = at + 4 + 8 * n_dims + 4;
    // Aligned (candle checks that) and so large that adding the data section's start overflows.
    bytes[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    let path = scratch_dir("offset").join("model.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let err = Model::from_source(&ModelSource::Gguf(path), &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, ModelError::Gguf { message, .. } if message.contains("blk.0.attn_q.weight")), "{err:?}");
}
