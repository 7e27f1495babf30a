//! Every validation path, on files built with `GgufWriter` and then damaged byte by byte.

use chatlm_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetadataValue, ValueType};

fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama");
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["a", "b", "<s>"]));
    w.add_metadata("count", MetadataValue::U64(7));
    w.add_tensor("w", &[32, 2], GgmlType::Q8_0, vec![1; 68]);
    w
}

fn open(bytes: Vec<u8>) -> GgufError {
    GgufFile::from_bytes(bytes).unwrap_err()
}

#[test]
fn round_trip_every_value_type() {
    let mut w = GgufWriter::new().with_version(2);
    let values = vec![
        MetadataValue::U8(1),
        MetadataValue::I8(-2),
        MetadataValue::U16(3),
        MetadataValue::I16(-4),
        MetadataValue::U32(5),
        MetadataValue::I32(-6),
        MetadataValue::F32(0.5),
        MetadataValue::Bool(true),
        MetadataValue::String("héllo".into()),
        MetadataValue::U64(u64::MAX),
        MetadataValue::I64(i64::MIN),
        MetadataValue::F64(-1.25),
        MetadataValue::string_array(["x", "", "유니코드"]),
        MetadataValue::array(ValueType::F32, vec![]),
        MetadataValue::array(ValueType::Array, vec![MetadataValue::array(ValueType::I32, vec![MetadataValue::I32(9)])]),
    ];
    for (i, v) in values.iter().enumerate() {
        w.add_metadata(format!("k{i}"), v.clone());
    }
    w.add_metadata("general.alignment", MetadataValue::U32(64));
    w.add_tensor("a", &[3], GgmlType::F32, vec![7; 12]);
    w.add_tensor("b", &[256, 1], GgmlType::Q4_K, vec![9; 144]);
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.version(), 2);
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(file.get(&format!("k{i}")), Some(v));
    }
    let b = file.tensor("b").unwrap();
    assert_eq!((b.offset, b.size_bytes, b.element_count()), (64, 144, 256));
    assert_eq!(file.tensor_data(b).unwrap(), &[9; 144][..]);
    assert_eq!(file.tensor_data(file.tensor("a").unwrap()).unwrap(), &[7; 12][..]);
}

#[test]
fn wrong_magic() {
    let mut bytes = sample().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(open(bytes), GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(matches!(open(b"GG".to_vec()), GgufError::BadMagic { .. }));
    assert!(matches!(open(Vec::new()), GgufError::BadMagic { .. }));
}

#[test]
fn unsupported_and_big_endian_versions() {
    for (version, big) in [(1u32, false), (4, false), (3u32.swap_bytes(), true)] {
        let mut bytes = sample().to_bytes();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        match open(bytes) {
            GgufError::UnsupportedVersion { version: v } if !big => assert_eq!(v, version),
            GgufError::BigEndian { version: 3 } if big => {}
            other => panic!("version {version}: {other}"),
        }
    }
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let bytes = sample().to_bytes();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let header_end = file.data_offset() as usize;
    let data_end = header_end + 68;
    for cut in 0..data_end {
        let err = GgufFile::from_bytes(bytes[..cut].to_vec()).unwrap_err();
        if cut < header_end - 32 {
            assert!(
                matches!(err, GgufError::BadMagic { .. } | GgufError::Truncated { .. } | GgufError::ImplausibleCount { .. }),
                "cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn truncated_metadata_names_the_key_and_offset() {
    let bytes = sample().to_bytes();
    // Cut inside the u64 value of "count" (after its key and its 4-byte type).
    let value_at = bytes.windows(5).position(|w| w == b"count").unwrap() + 5 + 4;
    match open(bytes[..value_at + 3].to_vec()) {
        GgufError::Truncated { what, offset, needed, len } => {
            assert_eq!(what, "value of \"count\"");
            assert_eq!((offset, needed, len), (value_at as u64, 8, value_at as u64 + 3));
        }
        other => panic!("{other}"),
    }
    // Cut inside the token strings: the array's element count no longer fits the file.
    let token_at = bytes.windows(3).position(|w| w == b"<s>").unwrap();
    match open(bytes[..token_at + 1].to_vec()) {
        GgufError::ImplausibleCount { what, count: 3, .. } => assert!(what.contains("tokenizer.ggml.tokens"), "{what}"),
        other => panic!("{other}"),
    }
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let bytes = sample().to_bytes();
    // Tensor count at offset 8, kv count at 16.
    for (offset, what) in [(8usize, "tensor count"), (16, "metadata key-value count")] {
        let mut b = bytes.clone();
        b[offset..offset + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        match open(b) {
            GgufError::ImplausibleCount { what: w, offset: o, .. } => assert_eq!((w.as_str(), o), (what, offset as u64)),
            other => panic!("{other}"),
        }
    }
    // The element count of the token array.
    let mut b = bytes.clone();
    let key = b.windows(21).position(|w| w == b"tokenizer.ggml.tokens").unwrap();
    let count_at = key + 21 + 8; // after the array's value type and element type
    b[count_at..count_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    match open(b) {
        GgufError::ImplausibleCount { what, count, offset, .. } => {
            assert!(what.contains("tokenizer.ggml.tokens"));
            assert_eq!((count, offset), (1 << 40, count_at as u64));
        }
        other => panic!("{other}"),
    }
    // A string length.
    let mut b = bytes;
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(b), GgufError::ImplausibleCount { offset: 24, .. }));
}

#[test]
fn unknown_value_type_and_bad_utf8() {
    let bytes = sample().to_bytes();
    let key_end = 24 + 8 + "general.architecture".len();
    let mut b = bytes.clone();
    b[key_end..key_end + 4].copy_from_slice(&13u32.to_le_bytes());
    match open(b) {
        GgufError::UnknownValueType { key, type_id: 13, offset } => {
            assert_eq!((key.as_str(), offset), ("general.architecture", key_end as u64))
        }
        other => panic!("{other}"),
    }
    let mut b = bytes;
    b[32] = 0xff;
    assert!(matches!(open(b), GgufError::InvalidUtf8 { offset: 32, .. }));
}

#[test]
fn duplicates_nesting_and_alignment() {
    let mut w = sample();
    w.add_metadata("count", MetadataValue::U8(1));
    assert!(matches!(open(w.to_bytes()), GgufError::DuplicateKey { key, .. } if key == "count"));

    let mut w = sample();
    w.add_tensor("w", &[4], GgmlType::F32, vec![0; 16]);
    assert!(matches!(open(w.to_bytes()), GgufError::DuplicateTensor { name, .. } if name == "w"));

    let mut nested = MetadataValue::U8(0);
    for _ in 0..6 {
        nested = MetadataValue::array(nested.value_type(), vec![nested]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", nested);
    assert!(matches!(open(w.to_bytes()), GgufError::NestingTooDeep { key, .. } if key == "deep"));

    for bad in [MetadataValue::U32(0), MetadataValue::U32(48), MetadataValue::U64(32)] {
        let mut w = sample();
        w.add_metadata("general.alignment", bad.clone());
        assert!(matches!(open(w.to_bytes()), GgufError::BadAlignment { .. }), "{bad:?}");
    }
}

#[test]
fn tensor_table_errors_name_the_tensor() {
    let mut w = GgufWriter::new();
    w.add_tensor("five_dims", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]);
    assert!(matches!(open(w.to_bytes()), GgufError::BadTensorShape { tensor, .. } if tensor == "five_dims"));

    let mut w = GgufWriter::new();
    w.add_tensor("ragged", &[33, 1], GgmlType::Q4_0, vec![0; 32]);
    assert!(matches!(open(w.to_bytes()), GgufError::BadTensorShape { tensor, reason } if tensor == "ragged" && reason.contains("block size 32")));

    let mut w = GgufWriter::new();
    w.add_tensor("huge", &[u64::MAX, 4], GgmlType::F32, vec![]);
    assert!(matches!(open(w.to_bytes()), GgufError::BadTensorShape { tensor, .. } if tensor == "huge"));

    // Unknown type id: patch Q8_0 (8) to 4, a retired id.
    let bytes = sample().to_bytes();
    let name_at = bytes.windows(9).position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b'w']).unwrap();
    let type_at = name_at + 9 + 4 + 16;
    let mut b = bytes.clone();
    b[type_at..type_at + 4].copy_from_slice(&4u32.to_le_bytes());
    match open(b) {
        GgufError::UnknownGgmlType { tensor, type_id: 4, offset } => assert_eq!((tensor.as_str(), offset), ("w", type_at as u64)),
        other => panic!("{other}"),
    }
    // Misaligned offset.
    let mut b = bytes.clone();
    b[type_at + 4..type_at + 12].copy_from_slice(&3u64.to_le_bytes());
    assert!(matches!(open(b), GgufError::MisalignedTensor { tensor, offset: 3, alignment: 32 } if tensor == "w"));
    // Data past EOF: cut the last data bytes off.
    let cut = bytes.len() - 40;
    match open(bytes[..cut].to_vec()) {
        GgufError::TensorDataPastEnd { tensor, end, len, .. } => {
            assert_eq!(tensor, "w");
            assert!(end > len);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn accessors_report_wrong_types_and_foreign_tensors() {
    let file = GgufFile::from_bytes(sample().to_bytes()).unwrap();
    assert_eq!(file.get_u64("count").unwrap(), Some(7));
    assert!(matches!(file.get_u64("general.architecture"), Err(GgufError::WrongType { .. })));
    assert!(matches!(file.require_str("count"), Err(GgufError::WrongType { key, .. }) if key == "count"));
    assert!(matches!(file.require("nope"), Err(GgufError::MissingKey { .. })));
    assert_eq!(file.get_bool("nope").unwrap(), None);
    let mut forged = file.tensor("w").unwrap().clone();
    forged.size_bytes = 1 << 40;
    assert!(matches!(file.tensor_data(&forged), Err(GgufError::ForeignTensor { .. })));
}

#[test]
fn open_reports_the_path() {
    let err = GgufFile::open("/nonexistent/x.gguf").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.gguf"));
}

#[test]
fn gguf_file_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GgufFile>();
    let file = std::sync::Arc::new(GgufFile::from_bytes(sample().to_bytes()).unwrap());
    let f = std::sync::Arc::clone(&file);
    let len = std::thread::spawn(move || f.tensor_data(f.tensor("w").unwrap()).unwrap().len()).join().unwrap();
    assert_eq!(len, 68);
}
