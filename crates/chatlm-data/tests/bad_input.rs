//! Options and rows that cannot be honoured give typed errors naming the option or the row,
//! never a panic.

use chatlm_data::{DataError, Example, PackScope, PrepareConfig, Preparer, Strategy, TrlLmCollator};
use chatlm_tokenizer::Tokenizer;

/// The tokenizer inside chatlm-model's tiny Llama GGUF (no fixtures needed).
fn tiny_tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf/model.gguf")).unwrap()
}

#[test]
fn zero_sizes_in_the_prepare_config_name_the_option() {
    let tok = tiny_tokenizer();
    let packing = PrepareConfig { pack: Some(Strategy::Bfd), seq_length: Some(8), ..PrepareConfig::default() };
    for (cfg, option) in [
        (PrepareConfig { scope: PackScope::Batch(0), ..packing.clone() }, "batch_size"),
        (PrepareConfig { seq_length: Some(0), ..packing.clone() }, "seq-length"),
        (PrepareConfig { chunk_rows: 0, ..PrepareConfig::default() }, "chunk_rows"),
    ] {
        match Preparer::new(&tok, None, cfg) {
            Err(DataError::Option { name, .. }) => assert_eq!(name, option),
            Err(other) => panic!("{option}: expected an option error, got {other}"),
            Ok(_) => panic!("{option}: accepted"),
        }
    }
    assert!(Preparer::new(&tok, None, packing).is_ok());
}

#[test]
fn packed_row_whose_seq_lengths_do_not_cover_its_ids_is_refused() {
    let collator = TrlLmCollator { padding_free: true, ..TrlLmCollator::new(0) };
    let row = |lengths: Vec<i64>| Example::from_ids(vec![5, 6, 7, 8]).with("seq_lengths", lengths);
    assert!(collator.collate(&[row(vec![1, 3])]).is_ok());
    for lengths in [vec![2, 3], vec![5, -1], vec![i64::MAX, i64::MAX], vec![1 << 40]] {
        let err = collator.collate(&[row(vec![1, 3]), row(lengths.clone())]).unwrap_err();
        assert!(matches!(&err, DataError::Features(_)) && err.to_string().contains("example 1"), "{lengths:?}: {err}");
    }
}
