//! Hand-written equivalents of the split regexes byte-level BPE tokenizers use.
//!
//! `tokenizers` runs these patterns through Oniguruma, a backtracking engine, and wraps every
//! piece in a `NormalizedString` with per-byte alignments; for a text corpus that is most of the
//! encoding time. Each pattern here is a small state machine that takes the same alternative the
//! backtracking engine would at every position (the comments spell out which), over the same
//! character classes ([`super::classes`]). Equality with the real regex is tested on random
//! strings below and on the conformance corpus through the whole tokenizer.

use super::classes::{class_of, CharClass};

/// GPT-2's pattern, built into `ByteLevel(use_regex=true)`.
pub(crate) const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's `Split` pattern.
pub(crate) const LLAMA3: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's `Split` pattern: Llama 3's with single digits.
pub(crate) const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A pre-tokenization this module reproduces exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitPattern {
    /// [`GPT2`]
    Gpt2,
    /// `Digits(individual_digits=true)` then [`GPT2`] (SmolLM, StarCoder).
    DigitsThenGpt2,
    /// [`LLAMA3`] (`max_digits` 3) or [`QWEN2`] (`max_digits` 1).
    Llama3 { max_digits: usize },
}

/// A character whose Unicode case folding could make `(?i:'s…)` match where the ASCII
/// comparison below does not (ſ folds to s; the ligatures ﬅ/ﬆ to "st"). Texts holding one are
/// left to the regex engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CaseFoldHazard;

impl SplitPattern {
    /// Calls `piece` with each piece of `text`, in order; the pieces concatenate to `text`.
    pub(crate) fn split<'a>(&self, text: &'a str, piece: &mut impl FnMut(&'a str)) -> Result<(), CaseFoldHazard> {
        match *self {
            SplitPattern::Gpt2 => {
                each_piece(text, piece, gpt2_end);
                Ok(())
            }
            SplitPattern::Llama3 { max_digits } => {
                let mut pos = 0;
                while pos < text.len() {
                    let end = llama3_end(text, pos, max_digits)?;
                    piece(&text[pos..end]);
                    pos = end;
                }
                Ok(())
            }
            SplitPattern::DigitsThenGpt2 => {
                // `Digits` isolates every char for which Rust's `char::is_numeric` holds.
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if c.is_numeric() {
                        each_piece(&text[start..i], piece, gpt2_end);
                        piece(&text[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                each_piece(&text[start..], piece, gpt2_end);
                Ok(())
            }
        }
    }
}

/// The GPT-2 pattern cannot fail (it is case-sensitive), so its pieces come without a `Result`.
fn each_piece<'a>(text: &'a str, piece: &mut impl FnMut(&'a str), end_at: fn(&str, usize) -> usize) {
    let mut pos = 0;
    while pos < text.len() {
        let end = end_at(text, pos);
        piece(&text[pos..end]);
        pos = end;
    }
}

#[inline]
fn char_at(s: &str, i: usize) -> char {
    // Callers only pass char boundaries below `s.len()`.
    s[i..].chars().next().unwrap_or('\0')
}

#[inline]
fn class_at(s: &str, i: usize) -> Option<CharClass> {
    (i < s.len()).then(|| class_of(char_at(s, i)))
}

/// End of the run of `class` characters starting at `i`.
#[inline]
fn run_end(s: &str, mut i: usize, class: CharClass) -> usize {
    let bytes = s.as_bytes();
    while i < s.len() {
        let b = bytes[i];
        // ASCII without a table lookup through `char_at`.
        let (cls, len) = if b < 0x80 { (class_of(b as char), 1) } else {
            let c = char_at(s, i);
            (class_of(c), c.len_utf8())
        };
        if cls != class {
            break;
        }
        i += len;
    }
    i
}

/// Start of the last char before byte `end`.
fn last_char_start(s: &str, end: usize) -> usize {
    s[..end].char_indices().next_back().map_or(0, |(i, _)| i)
}

/// `\s+(?!\S)|\s+` at a whitespace char `i`: the whole run when it reaches the end of the text,
/// else the run less its last char (left to prefix the next word), else the single char.
fn whitespace_end(s: &str, i: usize) -> usize {
    let end = run_end(s, i, CharClass::Space);
    if end == s.len() {
        return end;
    }
    let last = last_char_start(s, end);
    if last > i { last } else { end }
}

/// `'s|'t|'re|'ve|'m|'ll|'d`, case-sensitive: length after the apostrophe.
fn contraction_exact(rest: &[u8]) -> Option<usize> {
    match rest {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

fn gpt2_end(s: &str, i: usize) -> usize {
    let bytes = s.as_bytes();
    if bytes[i] == b'\'' {
        if let Some(n) = contraction_exact(&bytes[i + 1..]) {
            return i + 1 + n;
        }
    }
    // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let j = if bytes[i] == b' ' { i + 1 } else { i };
    match class_at(s, j) {
        Some(CharClass::Space) | None => whitespace_end(s, i),
        Some(class) => run_end(s, j, class),
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)`: length after the apostrophe.
fn contraction_ignore_case(s: &str, after: usize) -> Result<Option<usize>, CaseFoldHazard> {
    let rest = &s.as_bytes()[after..];
    let lower = |k: usize| rest.get(k).map(u8::to_ascii_lowercase);
    if let Some(n) = match (lower(0), lower(1)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => Some(1),
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => Some(2),
        _ => None,
    } {
        return Ok(Some(n));
    }
    if after < s.len() && matches!(char_at(s, after), '\u{17F}' | '\u{FB05}' | '\u{FB06}' | '\u{212A}') {
        return Err(CaseFoldHazard);
    }
    Ok(None)
}

fn llama3_end(s: &str, i: usize, max_digits: usize) -> Result<usize, CaseFoldHazard> {
    let c = char_at(s, i);
    let after = i + c.len_utf8();
    if c == '\'' {
        if let Some(n) = contraction_ignore_case(s, after)? {
            return Ok(after + n);
        }
    }
    let class = class_of(c);
    match class {
        // `[^\r\n\p{L}\p{N}]?\p{L}+` with the optional char empty.
        CharClass::Letter => return Ok(run_end(s, after, CharClass::Letter)),
        // `\p{N}{1,3}`
        CharClass::Number => {
            let mut end = after;
            for _ in 1..max_digits {
                match class_at(s, end) {
                    Some(CharClass::Number) => end += char_at(s, end).len_utf8(),
                    _ => break,
                }
            }
            return Ok(end);
        }
        _ => {}
    }
    // `[^\r\n\p{L}\p{N}]?\p{L}+` with `c` as the optional char.
    if c != '\r' && c != '\n' && class_at(s, after) == Some(CharClass::Letter) {
        return Ok(run_end(s, after, CharClass::Letter));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let j = if c == ' ' { after } else { i };
    if class_at(s, j) == Some(CharClass::Other) {
        let mut end = run_end(s, j, CharClass::Other);
        while end < s.len() && matches!(s.as_bytes()[end], b'\r' | b'\n') {
            end += 1;
        }
        return Ok(end);
    }
    // `c` is whitespace. `\s*[\r\n]+`: the greedy `\s*` backs off to the run's last newline.
    let run = run_end(s, i, CharClass::Space);
    if let Some(k) = s.as_bytes()[i..run].iter().rposition(|&b| b == b'\r' || b == b'\n') {
        return Ok(i + k + 1);
    }
    Ok(whitespace_end(s, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces the real regex gives (`Split(..., behavior=Isolated)`: matches and the gaps).
    fn regex_pieces(pattern: &str, text: &str) -> Vec<String> {
        let re = onig::Regex::new(pattern).unwrap();
        let mut out = Vec::new();
        let mut last = 0;
        for (start, end) in re.find_iter(text) {
            if start > last {
                out.push(text[last..start].to_owned());
            }
            out.push(text[start..end].to_owned());
            last = end;
        }
        if last < text.len() {
            out.push(text[last..].to_owned());
        }
        out
    }

    fn our_pieces(pattern: SplitPattern, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pattern.split(text, &mut |p| out.push(p.to_owned())).unwrap();
        out
    }

    fn digits_then_gpt2_reference(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                out.extend(regex_pieces(GPT2, &text[start..i]));
                out.push(c.to_string());
                start = i + c.len_utf8();
            }
        }
        out.extend(regex_pieces(GPT2, &text[start..]));
        out
    }

    /// Characters that exercise every branch: each class, newlines, the apostrophe and the
    /// contraction letters in both cases, marks, CJK, Hangul, emoji, odd spaces.
    const ALPHABET: &[char] = &[
        'a', 'b', 's', 'S', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'V', 'l', 'L', 'm', 'M', 'd', 'D', 'x', '\'', '\'', '\'',
        ' ', ' ', ' ', '\t', '\n', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{3000}', '\u{2028}', '0', '1', '9',
        '٣', '½', 'Ⅳ', '.', ',', '!', '?', '-', '"', '(', '#', '😀', '🇰', '\u{301}', '\u{94d}', 'न', 'é', '한', '국',
        '語', 'ア', 'ß', 'İ', 'ǅ', '\u{200d}', '\u{feff}', '_',
    ];

    fn random_texts(seed: u64, count: usize) -> Vec<String> {
        let mut state = seed;
        let mut next = move || {
            // xorshift64*: deterministic, no test dependency needed
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        (0..count)
            .map(|_| {
                let len = (next() % 24) as usize;
                (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect()
            })
            .collect()
    }

    #[test]
    fn llama3_split_equals_the_regex() {
        for text in random_texts(1, 20_000) {
            assert_eq!(our_pieces(SplitPattern::Llama3 { max_digits: 3 }, &text), regex_pieces(LLAMA3, &text), "{text:?}");
        }
    }

    #[test]
    fn qwen2_split_equals_the_regex() {
        for text in random_texts(2, 20_000) {
            assert_eq!(our_pieces(SplitPattern::Llama3 { max_digits: 1 }, &text), regex_pieces(QWEN2, &text), "{text:?}");
        }
    }

    #[test]
    fn gpt2_split_equals_the_regex() {
        for text in random_texts(3, 20_000) {
            assert_eq!(our_pieces(SplitPattern::Gpt2, &text), regex_pieces(GPT2, &text), "{text:?}");
        }
    }

    #[test]
    fn digits_then_gpt2_equals_the_two_step_split() {
        for text in random_texts(4, 20_000) {
            assert_eq!(our_pieces(SplitPattern::DigitsThenGpt2, &text), digits_then_gpt2_reference(&text), "{text:?}");
        }
    }

    #[test]
    fn case_fold_hazards_are_reported() {
        let pattern = SplitPattern::Llama3 { max_digits: 3 };
        assert_eq!(pattern.split("it'ſ", &mut |_| {}), Err(CaseFoldHazard));
        assert_eq!(our_pieces(pattern, "IT'S ok"), ["IT", "'S", " ok"]);
    }
}
