//! Built-in templates for tokenizers that ship none.

/// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`), byte-identical to the one
/// transformers' documentation and many ChatML models (e.g. dolphin-2.5-mixtral) ship.
pub const CHATML: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The [`CHATML`] template.
pub fn chatml() -> &'static str {
    CHATML
}

/// A ChatML-style template built from a tokenizer's own bos/eos tokens, as TRL's
/// `setup_chat_format`/`ChatMlSpecialTokens` does in the fine-tuning tutorials: each turn is
/// `{bos}role\ncontent{eos}\n`, and the generation prompt is `{bos}assistant\n`.
///
/// The tokens are written into the template as Jinja string literals (escaped), so any token text
/// is safe.
///
/// ```
/// let t = chatlm_template::chatml_with_tokens("<|im_start|>", "</s>");
/// assert!(t.contains("'<|im_start|>'") && t.contains("'</s>'"));
/// ```
pub fn chatml_with_tokens(bos: &str, eos: &str) -> String {
    let (b, e) = (jinja_escape(bos), jinja_escape(eos));
    format!(
        "{{% for message in messages %}}{{{{'{b}' + message['role'] + '\n' + message['content'] + '{e}' + '\n'}}}}{{% endfor %}}{{% if add_generation_prompt %}}{{{{ '{b}assistant\n' }}}}{{% endif %}}"
    )
}

/// Escapes text for a single-quoted Jinja string literal.
fn jinja_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out
}
