//! Python refuses to iterate `None` (`TypeError: 'NoneType' object is not iterable`); minijinja
//! iterates it as empty. Templates rely on the difference: Hermes-2-Pro's `{% for tool in tools %}`
//! must fail without tools, not render an empty tool list. Every `for` tag's iterable is therefore
//! rewritten to pass through a filter that rejects `none`: `{% for x in EXPR if C %}` becomes
//! `{% for x in (EXPR)|_it if C %}`.
//!
//! The scan is lexical but respects what matters: `{{ }}` and `{# #}` are skipped, string literals
//! are skipped, `{% raw %}` blocks are left alone, and the iterable ends at the first top-level `if`
//! or `recursive` (Jinja does not allow an unparenthesised conditional expression there).

/// The internal filter the iterables go through.
pub(crate) const ITER_FILTER: &str = "_it";

/// Returns the rewritten source, or `None` when it has no `for` tag.
pub(crate) fn rewrite(source: &str) -> Option<String> {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 64);
    let mut copied = 0;
    let mut i = 0;
    let mut changed = false;
    while i + 1 < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'#' => i = source[i + 2..].find("#}").map_or(b.len(), |p| i + 2 + p + 2),
            b'{' => i = skip_code(b, i + 2, b"}}"),
            b'%' => {
                let start = i;
                let end = skip_code(b, i + 2, b"%}");
                let tag = &source[start..end.min(b.len())];
                let (name, name_end) = tag_name(tag);
                if name == "raw" {
                    // Skip to the end of the raw block untouched.
                    i = find_endraw(source, end);
                    continue;
                }
                if name == "for" {
                    if let Some((expr_start, expr_end)) = iterable_range(tag, name_end) {
                        out.push_str(&source[copied..start + expr_start]);
                        out.push('(');
                        out.push_str(&tag[expr_start..expr_end]);
                        out.push_str(")|");
                        out.push_str(ITER_FILTER);
                        out.push(' ');
                        copied = start + expr_end;
                        changed = true;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&source[copied..]);
    Some(out)
}

/// Index just past `close`, skipping string literals; the end of input when unterminated.
fn skip_code(b: &[u8], mut i: usize, close: &[u8; 2]) -> usize {
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => i = skip_string(b, i, q),
            c if c == close[0] && b.get(i + 1) == Some(&close[1]) => return i + 2,
            _ => i += 1,
        }
    }
    b.len()
}

/// Index just past the string literal starting at `i` (quote `q`).
fn skip_string(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The statement keyword of a `{% ... %}` tag and the index after it.
fn tag_name(tag: &str) -> (&str, usize) {
    let b = tag.as_bytes();
    let mut i = 2;
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    let start = i;
    while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        i += 1;
    }
    (&tag[start..i], i)
}

fn find_endraw(source: &str, mut from: usize) -> usize {
    let b = source.as_bytes();
    while let Some(p) = source[from..].find("{%") {
        let at = from + p;
        let end = skip_code(b, at + 2, b"%}");
        if tag_name(&source[at..end.min(b.len())]).0 == "endraw" {
            return end;
        }
        from = at + 2;
    }
    b.len()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The byte range (within `tag`) of a `for` tag's iterable expression.
fn iterable_range(tag: &str, after_for: usize) -> Option<(usize, usize)> {
    let b = tag.as_bytes();
    // The tag body ends before `%}` and an optional whitespace-control flag.
    let mut body_end = tag.len().checked_sub(2)?;
    if body_end > after_for && matches!(b[body_end - 1], b'-' | b'+') {
        body_end -= 1;
    }
    let word_at = |i: usize, w: &[u8]| {
        b[i..body_end].starts_with(w)
            && (i == 0 || !is_ident(b[i - 1]))
            && b.get(i + w.len()).is_none_or(|c| !is_ident(*c))
    };
    let mut depth = 0i32;
    let mut i = after_for;
    let mut expr_start = None;
    while i < body_end {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i = skip_string(b, i, q);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 => {
                if expr_start.is_none() && word_at(i, b"in") {
                    expr_start = Some(i + 2);
                    i += 2;
                    continue;
                }
                if let Some(s) = expr_start {
                    if word_at(i, b"if") || word_at(i, b"recursive") {
                        return Some((s, i));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    expr_start.map(|s| (s, body_end))
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn wraps_iterables() {
        assert_eq!(
            rewrite("{% for m in messages %}{{ m }}{% endfor %}").unwrap(),
            "{% for m in( messages )|_it %}{{ m }}{% endfor %}"
        );
        assert_eq!(
            rewrite("{%- for k, v in d.items() if k != 'in' recursive -%}").unwrap(),
            "{%- for k, v in( d.items() )|_it if k != 'in' recursive -%}"
        );
        assert_eq!(
            rewrite("{{ '{% for x in y %}' }}{# {% for a in b %} #}{% raw %}{% for q in r %}{% endraw %}"),
            None
        );
        assert_eq!(rewrite("{% for x in [1, 2] if x %}").unwrap(), "{% for x in( [1, 2] )|_it if x %}");
        assert_eq!(rewrite("{% if x %}{% endif %}"), None);
    }
}
