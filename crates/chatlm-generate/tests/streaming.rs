//! UTF-8-safe streaming on real byte-level tokenizers (fixtures) and chat sessions.

mod common;

use chatlm_generate::{generate, ChatSession, ChatWarning, GenerationConfig, Message, PromptRenderer};
use common::{fixtures, FakeError, HfDecoder, PieceDecoder, ScriptModel};

const KOREAN: &str = "안녕하세요! 한국어 스트리밍 테스트입니다. 서울은 대한민국의 수도입니다 🇰🇷.";

#[test]
fn korean_streams_without_replacement_characters() {
    let Some(fx) = fixtures() else { return };
    for name in ["llama3", "gpt2"] {
        let tok = tokenizers::Tokenizer::from_file(fx.join("tokenizers").join(name).join("tokenizer.json")).unwrap();
        let ids = tok.encode(KOREAN, false).unwrap().get_ids().to_vec();
        assert!(ids.len() > 20, "{name}: byte-level pieces expected");
        let full = tok.decode(&ids, true).unwrap();
        let vocab = tok.get_vocab_size(true);
        let stop = vocab as u32; // one past the vocabulary: never produced by the script
        let mut model = ScriptModel::new(vocab + 1, vec![ids.clone()], stop);
        let cfg = GenerationConfig { max_new_tokens: Some(ids.len() + 4), ..Default::default() };
        let mut pieces = Vec::new();
        let dec = HfDecoder(tok);
        let out = generate(&mut model, &dec, &[ids[0]], &cfg, &[stop], |p| pieces.push(p.to_string())).unwrap();
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{name}: {pieces:?}");
        assert!(pieces.len() > 5, "{name}: expected incremental pieces");
        assert_eq!(pieces.concat(), full, "{name}");
        assert_eq!(out.text, full, "{name}");
        // A stop string inside multi-byte text: cut, never partially streamed.
        let cfg = GenerationConfig { stop_strings: vec!["대한민국".into()], ..cfg };
        let mut model = ScriptModel::new(vocab + 1, vec![ids.clone()], stop);
        let mut pieces = Vec::new();
        let out = generate(&mut model, &dec, &[ids[0]], &cfg, &[stop], |p| pieces.push(p.to_string())).unwrap();
        let cut = &full[..full.find("대한민국").unwrap()];
        assert_eq!((out.text.as_str(), pieces.concat().as_str()), (cut, cut), "{name}");
        assert!(pieces.iter().all(|p| !p.contains('대')), "{name}: {pieces:?}");
    }
}

/// `<role>content` per message, `<assistant>` as the generation prompt; one id per char.
struct CharTemplate;

impl PromptRenderer for CharTemplate {
    type Error = FakeError;
    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, FakeError> {
        let mut text: String = messages.iter().map(|m| format!("<{}>{}", m.role, m.content)).collect();
        if add_generation_prompt {
            text.push_str("<assistant>");
        }
        Ok(text.chars().map(|c| c as u32 % 3).collect())
    }
}

#[test]
fn chat_session_keeps_history_and_warns_without_generation_prompt() {
    let dec = PieceDecoder(vec!["Hi", " there", "!"]);
    let mut model = ScriptModel::new(4, vec![vec![0, 1, 3]], 3);
    let cfg = GenerationConfig { max_new_tokens: Some(5), ..Default::default() };
    let renderer = CharTemplate;
    let mut chat = ChatSession::new(&mut model, &dec, &renderer, cfg, vec![3]);
    chat.set_system(Some("Be brief.".into()));
    let mut streamed = String::new();
    let out = chat.send("Hello", |p| streamed.push_str(p)).unwrap();
    assert_eq!((out.text.as_str(), streamed.as_str()), ("Hi there", "Hi there"));
    let expected = vec![Message::new("system", "Be brief."), Message::new("user", "Hello"), Message::new("assistant", "Hi there")];
    assert_eq!(chat.messages(), expected);
    // The prompt of the turn contained the generation prompt.
    let with = renderer.render(&expected[..2], true).unwrap().len();
    assert_eq!(out.prompt_tokens, with);
    let warning = chat.set_generation_prompt(false).unwrap();
    assert_eq!(warning, ChatWarning::GenerationPromptDisabled);
    assert!(warning.to_string().contains("answered as `system`"));
    assert!(chat.set_generation_prompt(true).is_none());
    chat.reset();
    assert_eq!(chat.messages(), vec![Message::new("system", "Be brief.")]);
}
