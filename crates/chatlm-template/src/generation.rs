//! `{% generation %}…{% endgeneration %}`: transformers' `AssistantTracker` extension, which marks the
//! text a model is trained to produce (`return_assistant_tokens_mask`).
//!
//! minijinja has no custom tags, so before compiling, each tag is rewritten in place into an
//! equivalent block tag, `{% filter _g %}…{% endfilter %}` (a block tag, so `trim_blocks` and
//! `lstrip_blocks` treat it exactly like the original; padded to the original length so error columns
//! stay right). The filter wraps the rendered body in two Unicode noncharacters, and
//! [`extract_spans`] removes them from the output and records where they were.

use std::ops::Range;

/// Marks the start of a generation body in the raw output (a Unicode noncharacter: never in text).
pub(crate) const GEN_START: char = '\u{FDD0}';
/// Marks the end of a generation body in the raw output.
pub(crate) const GEN_END: char = '\u{FDD1}';
/// The internal filter the tags are rewritten to.
pub(crate) const GEN_FILTER: &str = "_g";

/// Rewrites `{% generation %}` / `{% endgeneration %}` tags (with any whitespace-control flags) into
/// filter blocks. Returns `None` when the source has no such tag.
pub(crate) fn rewrite(source: &str) -> Option<String> {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut found = false;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        match parse_tag(tag) {
            Some((len, open_flag, end, close_flag)) => {
                found = true;
                let body = if end { " endfilter".to_string() } else { format!(" filter {GEN_FILTER}") };
                let mut rewritten = format!("{{%{open_flag}{body}");
                // Pad to the original length (never longer than the original: see the lengths).
                let target = len.saturating_sub(2 + close_flag.len());
                while rewritten.len() < target {
                    rewritten.push(' ');
                }
                rewritten.push_str(close_flag);
                rewritten.push_str("%}");
                out.push_str(&rewritten);
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    found.then_some(out)
}

/// Parses `{%[-+]? \s* (end)?generation \s* [-+]? %}` at the start of `s`: (byte length, open flag,
/// is end tag, close flag).
fn parse_tag(s: &str) -> Option<(usize, &str, bool, &str)> {
    let b = s.as_bytes();
    let mut i = 2;
    let open_flag = match b.get(i) {
        Some(b'-') | Some(b'+') => {
            i += 1;
            &s[2..3]
        }
        _ => "",
    };
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    let end = if s[i..].starts_with("endgeneration") {
        i += "endgeneration".len();
        true
    } else if s[i..].starts_with("generation") {
        i += "generation".len();
        false
    } else {
        return None;
    };
    let after_name = i;
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    let close_flag = match b.get(i) {
        Some(b'-') | Some(b'+') => {
            i += 1;
            &s[i - 1..i]
        }
        _ => "",
    };
    // `generation_foo` or `generation(` is not our tag.
    if i == after_name && close_flag.is_empty() && !s[i..].starts_with("%}") {
        return None;
    }
    if !s[i..].starts_with("%}") {
        return None;
    }
    Some((i + 2, open_flag, end, close_flag))
}

/// Removes the generation markers from `raw`, returning the clean text and the byte spans of every
/// generation body in the order the bodies finished (nested bodies before the enclosing one, as
/// transformers records them).
pub(crate) fn extract_spans(raw: &str) -> (String, Vec<Range<usize>>) {
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut open = Vec::new();
    // Both markers are EF B7 90/91 in UTF-8: look for their lead byte and copy the text between.
    let b = raw.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == 0xEF) {
        let at = i + p;
        i = at + 1;
        let marker = match b.get(at + 1..at + 3) {
            Some([0xB7, 0x90]) => GEN_START,
            Some([0xB7, 0x91]) => GEN_END,
            _ => continue,
        };
        text.push_str(&raw[copied..at]);
        copied = at + marker.len_utf8();
        i = copied;
        if marker == GEN_START {
            open.push(text.len());
        } else if let Some(start) = open.pop() {
            spans.push(start..text.len());
        }
    }
    text.push_str(&raw[copied..]);
    (text, spans)
}

/// Whether a string the caller supplied contains a marker (which would forge a span).
pub(crate) fn contains_marker(s: &str) -> bool {
    // The markers are not ASCII and nearly all request text is (tool schemas are hundreds of short
    // keys and values): a word-at-a-time test rules a string out in a few instructions, where even a
    // byte search costs a call and a loop per byte on short strings. Both markers start with the
    // byte 0xEF in UTF-8; a byte scan rules most other text out.
    high_bits(s.as_bytes()) != 0 && s.as_bytes().contains(&0xEF) && s.contains([GEN_START, GEN_END])
}

/// The high bits of the bytes of `b`, ORed together in some order: zero exactly when `b` is ASCII.
/// Reads whole words; the ends of a string are read as words that overlap the rest.
fn high_bits(b: &[u8]) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let word = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u64::from(u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes")));
    let all = if n >= 8 {
        let (words, _) = b.as_chunks::<8>();
        words.iter().fold(word(n - 8), |acc, w| acc | u64::from_ne_bytes(*w))
    } else if n >= 4 {
        half(0) | half(n - 4)
    } else if n > 0 {
        u64::from(b[0] | b[n / 2] | b[n - 1])
    } else {
        0
    };
    all & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_tags_in_place() {
        let src = "a{% generation %}b{%- endgeneration -%}c{%generation%}{%endgeneration%}{% generation_x %}";
        let out = rewrite(src).unwrap();
        assert_eq!(out, "a{% filter _g  %}b{%- endfilter     -%}c{% filter _g%}{% endfilter   %}{% generation_x %}");
        assert_eq!(out.len(), src.len());
        assert!(rewrite("{% if x %}{% endif %}").is_none());
    }

    #[test]
    fn the_word_test_sees_every_non_ascii_byte() {
        // Every length from 0 to 20, with one non-ASCII byte at every position.
        for n in 0..=20 {
            let ascii = vec![b'a'; n];
            assert_eq!(high_bits(&ascii), 0, "{n}");
            for at in 0..n {
                let mut b = ascii.clone();
                b[at] = 0xEF;
                assert_ne!(high_bits(&b), 0, "{n} {at}");
            }
        }
        assert!(contains_marker(&format!("role{GEN_END}")) && contains_marker(&format!("{GEN_START}")));
        assert!(!contains_marker("é€ \u{ef}\u{b7}") && !contains_marker("\u{FDCF}\u{FDD2}ascii text"));
    }

    #[test]
    fn spans_from_markers() {
        let raw = format!("ab{GEN_START}cd{GEN_END}é{GEN_START}{GEN_END}");
        let (text, spans) = extract_spans(&raw);
        assert_eq!(text, "abcdé");
        assert_eq!(spans, vec![2..4, 6..6]);
    }
}
