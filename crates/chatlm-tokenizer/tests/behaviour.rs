//! transformers behaviours beyond plain encoding: stop ids, special tokens, padding, added
//! tokens, streaming decode, GGUF loading, save/load round trip.

mod common;

use chatlm_tokenizer::{ChatTemplateSource, PadOptions, PaddingSide, Tokenizer, TokenizerError};

fn fixture(name: &str) -> Option<Tokenizer> {
    let dir = common::fixtures()?.join("tokenizers").join(name);
    Some(Tokenizer::from_pretrained(dir).expect("load fixture"))
}

#[test]
fn llama3_stops_on_end_of_text_and_eot() {
    let Some(tok) = fixture("llama3") else { return };
    assert_eq!(tok.stop_token_ids(), [128001, 128009]);
    assert_eq!(tok.len(), 128256);
    assert_eq!(tok.vocab_size(), 128000);
    assert!(tok.add_bos_token());
    assert!(!tok.add_eos_token());
}

#[test]
fn stop_ids_of_other_families() {
    let Some(phi3) = fixture("phi3") else { return };
    // eos <|endoftext|> plus the template's <|end|>
    assert_eq!(phi3.stop_token_ids(), [32000, 32007]);
    let Some(qwen2) = fixture("qwen2") else { return };
    assert_eq!(qwen2.stop_token_ids(), [151645]);
}

#[test]
fn generation_config_eos_ids_join_the_stop_set() {
    let Some(fixtures) = common::fixtures() else { return };
    let dir = tempdir("genconf");
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(fixtures.join("tokenizers/llama3").join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": [128001, 128008, 128009]}"#).expect("write");
    let tok = Tokenizer::from_pretrained(&dir).expect("load");
    assert_eq!(tok.stop_token_ids(), [128001, 128008, 128009]);
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": "x"}"#).expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("bad generation_config");
    assert!(err.to_string().contains("generation_config.json"), "{err}");
}

#[test]
fn padding_follows_side_and_multiple() {
    let Some(mut tok) = fixture("llama3") else { return };
    let rows = vec![vec![1, 2, 3], vec![4]];
    let right = tok.pad(&rows, &PadOptions { pad_to_multiple_of: Some(4), ..Default::default() }).expect("pad");
    assert_eq!(right.input_ids, [vec![1, 2, 3, 128001], vec![4, 128001, 128001, 128001]]);
    assert_eq!(right.attention_mask, [vec![1, 1, 1, 0], vec![1, 0, 0, 0]]);
    tok.set_padding_side(PaddingSide::Left);
    let left = tok.pad(&rows, &PadOptions::default()).expect("pad");
    assert_eq!(left.input_ids, [vec![1, 2, 3], vec![128001, 128001, 4]]);
    let cut = tok.pad(&rows, &PadOptions { max_length: Some(2), truncation: true, ..Default::default() }).expect("pad");
    assert_eq!(cut.input_ids, [vec![1, 2], vec![128001, 4]]);
}

#[test]
fn padding_to_an_impossible_length_is_an_error() {
    let Some(tok) = fixture("llama3") else { return };
    let rows = vec![vec![1, 2, 3]];
    for options in [
        PadOptions { max_length: Some(usize::MAX), ..Default::default() },
        PadOptions { max_length: Some(usize::MAX - 3), pad_to_multiple_of: Some(8), ..Default::default() },
        PadOptions { max_length: Some(1 << 60), ..Default::default() },
    ] {
        let err = tok.pad(&rows, &options).unwrap_err();
        assert!(matches!(err, TokenizerError::PadLength { rows: 1, .. }), "{options:?}: {err:?}");
    }
    // An ordinary length still pads (to the multiple of the asked length).
    let cut = PadOptions { max_length: Some(5), truncation: true, pad_to_multiple_of: Some(4), ..Default::default() };
    assert_eq!(tok.pad(&rows, &cut).expect("pad").input_ids[0].len(), 8);
}

#[test]
fn padding_without_pad_token_is_an_error() {
    let Some(tok) = fixture("llama2") else { return };
    assert!(matches!(tok.pad(&[vec![1, 2], vec![1]], &PadOptions::default()), Err(TokenizerError::NoPadToken)));
    // equal lengths need no pad token
    assert!(tok.pad(&[vec![1, 2], vec![3, 4]], &PadOptions::default()).is_ok());
}

#[test]
fn added_tokens_grow_len_not_vocab_size() {
    let Some(mut tok) = fixture("llama2") else { return };
    assert_eq!(tok.add_special_tokens(&["<|im_start|>", "<|im_end|>"]).expect("add"), 2);
    assert_eq!(tok.set_pad_token("<pad>").expect("pad"), 1);
    assert_eq!(tok.len(), 32003);
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(tok.pad_token_id(), Some(32002));
    let ids = tok.encode("<|im_start|>user hi<|im_end|>", false).expect("encode");
    assert_eq!(ids[0], 32000);
    assert_eq!(*ids.last().expect("ids"), 32001);
    assert_eq!(tok.decode(&ids, true).expect("decode"), "user hi");
    assert!(matches!(tok.set_special_token("boss_token", "x"), Err(TokenizerError::UnknownRole { .. })));
}

fn stream_all(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    let mut stream = tok.decode_stream(false);
    ids.iter().filter_map(|&id| stream.step(tok, id).expect("step")).collect()
}

#[test]
fn streaming_never_splits_a_character_or_drops_a_space() {
    for name in ["gpt2", "llama2", "llama3"] {
        let Some(tok) = fixture(name) else { return };
        for text in ["오늘은 배가 너무 고프다", "Hello 😀 world 👩‍👩‍👧‍👦 끝!", "  two  spaces\nand 한국어 😀😀"] {
            let ids = tok.encode(text, false).expect("encode");
            let pieces = stream_all(&tok, &ids);
            let joined: String = pieces.concat();
            assert_eq!(joined, tok.decode(&ids, false).expect("decode"), "{name}: {text:?}");
            assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{name}: {pieces:?}");
            if name != "llama3" {
                // these vocabularies split Korean/emoji into byte tokens: pieces < ids proves holding back
                assert!(pieces.len() < ids.len(), "{name}: {} pieces for {} ids", pieces.len(), ids.len());
            }
        }
    }
}

#[test]
fn gguf_file_loads_through_from_pretrained() {
    let path = std::env::var_os("CHATLM_SMOLLM2").map(std::path::PathBuf::from);
    let Some(path) = path.filter(|p| p.is_file()) else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2; scripts/fetch-smollm2.sh)");
        return;
    };
    let tok = Tokenizer::from_pretrained(&path).expect("gguf");
    assert_eq!(tok.special_tokens().eos.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.stop_token_ids(), [2]);
    assert!(matches!(tok.chat_template(), Some(ChatTemplateSource::Single(t)) if t.contains("<|im_start|>")));
    assert!(tok.pre_tokenizer_name().contains("smollm"));
    assert_eq!(tok.decode(&tok.encode("Hello, world!", false).expect("enc"), false).expect("dec"), "Hello, world!");
}

#[test]
fn save_pretrained_round_trips() {
    let Some(mut tok) = fixture("llama2") else { return };
    tok.add_special_tokens(&["<|im_end|>"]).expect("add");
    tok.set_pad_token("<unk>").expect("pad");
    tok.set_chat_template(Some(ChatTemplateSource::Single("{{ messages }}".into())));
    let dir = tempdir("save");
    tok.save_pretrained(&dir).expect("save");
    let back = Tokenizer::from_pretrained(&dir).expect("reload");
    assert_eq!(back.len(), tok.len());
    assert_eq!(back.special_tokens(), tok.special_tokens());
    assert_eq!(back.chat_template(), tok.chat_template());
    assert_eq!(back.padding_side(), tok.padding_side());
    for text in [" leading", "<|im_end|> x", "오늘은"] {
        assert_eq!(back.encode(text, true).expect("enc"), tok.encode(text, true).expect("enc"), "{text:?}");
    }
    // transformers itself must load it to the same ids (skipped without Python)
    let script = r#"
import sys, json
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
print(json.dumps([len(t), t.pad_token, t.encode(" leading<|im_end|> x오늘은"), t.chat_template]))
"#;
    match std::process::Command::new("python3").arg("-c").arg(script).arg(&dir).output() {
        Ok(out) if out.status.success() => {
            let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python json");
            assert_eq!(got[0], tok.len());
            assert_eq!(got[1], "<unk>");
            assert_eq!(got[2], serde_json::json!(tok.encode(" leading<|im_end|> x오늘은", true).expect("enc")));
            assert_eq!(got[3], "{{ messages }}");
        }
        _ => println!("skipped: python3 with transformers not available for the reload check"),
    }
}

pub fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chatlm-tok-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}
