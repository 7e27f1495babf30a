//! Template text → tokens, with the whitespace rules of the crate's minijinja environment
//! (`trim_blocks`, `lstrip_blocks`, no trailing newline, `-`/`+` flags), reproduced from what
//! minijinja's lexer does so that text segments come out byte for byte the same.
//!
//! Anything this lexer does not know (raw blocks, escapes other than the simple ones, radix or
//! exponent numbers, non-ASCII identifiers) makes it give up: the template then renders on minijinja.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok<'s> {
    Text(&'s str),
    VarStart,
    VarEnd,
    BlockStart,
    BlockEnd,
    Ident(&'s str),
    Str(Cow<'s, str>),
    Int(i64),
    Float(f64),
    /// An operator or punctuation, spelled as in the source.
    Op(&'static str),
}

#[derive(Clone, Copy, PartialEq)]
enum Ws {
    Default,
    Preserve,
    Remove,
}

impl Ws {
    fn from_byte(b: Option<u8>) -> Ws {
        match b {
            Some(b'-') => Ws::Remove,
            Some(b'+') => Ws::Preserve,
            _ => Ws::Default,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Marker {
    Var,
    Block,
    Comment,
}

/// The next `{{`, `{%` or `{#` at or after `from`: (offset, marker, whitespace flag).
fn find_marker(b: &[u8], mut from: usize) -> Option<(usize, Marker, Ws)> {
    loop {
        let i = from + b[from..].iter().position(|&c| c == b'{')?;
        let marker = match b.get(i + 1) {
            Some(b'{') => Marker::Var,
            Some(b'%') => Marker::Block,
            Some(b'#') => Marker::Comment,
            _ => {
                from = i + 1;
                continue;
            }
        };
        return Some((i, marker, Ws::from_byte(b.get(i + 2).copied())));
    }
}

fn is_nl(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// `lstrip_blocks` applies only when the tag starts its line (or the template).
fn starts_line(prefix: &str) -> bool {
    for c in prefix.chars().rev() {
        if is_nl(c) {
            return true;
        } else if !c.is_whitespace() {
            return false;
        }
    }
    true
}

fn lstrip_block(s: &str) -> &str {
    let trimmed = s.trim_end_matches(|x: char| x.is_whitespace() && !is_nl(x));
    if trimmed.is_empty() || trimmed.ends_with('\n') {
        trimmed
    } else {
        s
    }
}

/// Tokenizes a whole template; `None` when it uses syntax the fast renderer does not handle.
pub(super) fn lex(source: &str) -> Option<Vec<Tok<'_>>> {
    let mut src = source;
    if let Some(s) = src.strip_suffix('\n') {
        src = s;
    }
    if let Some(s) = src.strip_suffix('\r') {
        src = s;
    }
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        if trim_next {
            trim_next = false;
            let rest = &src[pos..];
            pos += rest.len() - rest.trim_start().len();
        }
        let Some((start, marker, ws)) = find_marker(b, pos) else {
            if pos < src.len() {
                toks.push(Tok::Text(&src[pos..]));
            }
            return Some(toks);
        };
        let lead = &src[pos..start];
        let lead = match ws {
            Ws::Default if marker != Marker::Var && starts_line(&src[..start]) => lstrip_block(lead),
            Ws::Remove => lead.trim_end(),
            _ => lead,
        };
        if !lead.is_empty() {
            toks.push(Tok::Text(lead));
        }
        let skip = 2 + usize::from(ws != Ws::Default);
        match marker {
            Marker::Comment => {
                let end = start + skip + find(&b[start + skip..], b"#}")?;
                let tail = Ws::from_byte(b.get((end - start - skip).saturating_sub(1) + start + skip).copied());
                pos = end + 2;
                match tail {
                    Ws::Default => pos = skip_newline(b, pos),
                    Ws::Remove => trim_next = true,
                    Ws::Preserve => {}
                }
            }
            Marker::Var | Marker::Block => {
                let block = marker == Marker::Block;
                if block && is_raw(&src[start + 2..]) {
                    return None;
                }
                toks.push(if block { Tok::BlockStart } else { Tok::VarStart });
                let (end, tail) = lex_code(src, start + skip, block, &mut toks)?;
                pos = end;
                match tail {
                    Ws::Default if block => pos = skip_newline(b, pos),
                    Ws::Remove => trim_next = true,
                    _ => {}
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn skip_newline(b: &[u8], mut pos: usize) -> usize {
    if b.get(pos) == Some(&b'\r') {
        pos += 1;
    }
    if b.get(pos) == Some(&b'\n') {
        pos += 1;
    }
    pos
}

/// Whether a block tag body (after `{%`) is `raw` (minijinja treats it before tokenizing).
fn is_raw(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    s.strip_prefix("raw").is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
}

const TWO_CHAR: [&str; 6] = ["//", "**", "==", "!=", ">=", "<="];
const ONE_CHAR: [&str; 19] =
    ["+", "-", "*", "/", "%", ".", ",", ":", "~", "|", "=", ">", "<", "(", ")", "[", "]", "{", "}"];

/// Tokens of one `{{ }}` or `{% %}` body starting at `pos`; returns the offset after the closing
/// delimiter and its whitespace flag.
fn lex_code<'s>(src: &'s str, mut pos: usize, block: bool, toks: &mut Vec<Tok<'s>>) -> Option<(usize, Ws)> {
    let b = src.as_bytes();
    let close: &[u8] = if block { b"%}" } else { b"}}" };
    let mut balance = 0i32;
    loop {
        while b.get(pos).is_some_and(|c| c.is_ascii_whitespace()) {
            pos += 1;
        }
        let rest = b.get(pos..)?;
        if rest.is_empty() {
            return None;
        }
        if balance == 0 {
            if matches!(rest[0], b'-' | b'+') && rest[1..].starts_with(close) {
                toks.push(if block { Tok::BlockEnd } else { Tok::VarEnd });
                return Some((pos + 3, Ws::from_byte(Some(rest[0]))));
            }
            if rest.starts_with(close) {
                toks.push(if block { Tok::BlockEnd } else { Tok::VarEnd });
                return Some((pos + 2, Ws::Default));
            }
        }
        if let Some(op) = TWO_CHAR.iter().find(|op| rest.starts_with(op.as_bytes())) {
            toks.push(Tok::Op(op));
            pos += 2;
            continue;
        }
        let c = rest[0];
        if let Some(op) = ONE_CHAR.iter().find(|op| op.as_bytes()[0] == c) {
            balance += match c {
                b'(' | b'[' | b'{' => 1,
                b')' | b']' | b'}' => -1,
                _ => 0,
            };
            toks.push(Tok::Op(op));
            pos += 1;
        } else if c == b'\'' || c == b'"' {
            let (tok, len) = lex_string(&src[pos..], c)?;
            toks.push(tok);
            pos += len;
        } else if c.is_ascii_digit() {
            let (tok, len) = lex_number(&src[pos..], b.get(pos.wrapping_sub(1)) == Some(&b'.'))?;
            toks.push(tok);
            pos += len;
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let len = rest.iter().take_while(|&&c| c == b'_' || c.is_ascii_alphanumeric()).count();
            toks.push(Tok::Ident(&src[pos..pos + len]));
            pos += len;
        } else {
            return None;
        }
    }
}

/// A quoted string: the token and the bytes it spans. Only the simple escapes are handled.
fn lex_string(s: &str, quote: u8) -> Option<(Tok<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    let mut escapes = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                escapes = true;
                i += 2;
            }
            c if c == quote => break,
            _ => i += 1,
        }
    }
    if i >= b.len() {
        return None;
    }
    let body = &s[1..i];
    if !escapes {
        return Some((Tok::Str(Cow::Borrowed(body)), i + 1));
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            d @ ('"' | '\\' | '/' | '\'') => d,
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            _ => return None,
        });
    }
    Some((Tok::Str(Cow::Owned(out)), i + 1))
}

/// A decimal integer or a plain `digits.digits` float (after a dot only the integer part, as
/// `foo.1.0` is `foo[1][0]`).
fn lex_number(s: &str, after_dot: bool) -> Option<(Tok<'_>, usize)> {
    let b = s.as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let next = b.get(int_len).copied();
    if matches!(next, Some(b'_' | b'e' | b'E' | b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        return None;
    }
    if next == Some(b'.') && !after_dot && b.get(int_len + 1).is_some_and(|c| c.is_ascii_digit()) {
        let frac = b[int_len + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let end = int_len + 1 + frac;
        if matches!(b.get(end), Some(b'_' | b'e' | b'E' | b'.')) {
            return None;
        }
        return Some((Tok::Float(s[..end].parse().ok()?), end));
    }
    Some((Tok::Int(s[..int_len].parse().ok()?), int_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        lex(src)
            .unwrap()
            .into_iter()
            .filter_map(|t| match t {
                Tok::Text(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn whitespace_control() {
        assert_eq!(texts("a  {%- if x %}\n  b\n  {% endif %}\nc\n"), ["a", "  b\n", "c"]);
        assert_eq!(texts("x {{- y -}} z"), ["x", "z"]);
        assert_eq!(texts("  {# c #}\n  {{ y }}\n"), ["  "]);
        assert_eq!(texts("a {% if %} b"), ["a ", " b"]);
        assert!(lex("{% raw %}{{ x }}{% endraw %}").is_none());
    }

    #[test]
    fn code_tokens() {
        let t = lex("{{ a.b[1:] + 'x\\n' ~ 2.5 != {'k': 1} }}").unwrap();
        assert_eq!(t.len(), 19, "{t:?}");
        assert_eq!(t[9], Tok::Str(Cow::Owned("x\n".into())));
        assert!(lex("{{ '\\u00e9' }}").is_none());
        assert!(lex("{{ 1e5 }}").is_none());
    }
}
