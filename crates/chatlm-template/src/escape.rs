//! String literals as Python writes them: `json.dumps(str)` and `repr(str)`.
//!
//! Both are on the hot path of tool-use templates (`tools | tojson`, dicts printed with `{{ }}`), and
//! nearly all of their text needs no escape at all. So the texts are scanned eight bytes at a time
//! for the bytes that do, and everything between two such bytes is copied with one `push_str`.

/// One in every byte lane.
const LO: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte lane.
const HI: u64 = 0x8080_8080_8080_8080;
/// A word of a byte that no test below marks, for the lanes of a word that lie outside the text.
const PAD: u64 = LO * b'a' as u64;

/// The lanes of `x` holding a byte below `n` (`n <= 0x80`), marked in their high bit.
///
/// The classic "has a byte less than n" trick. Its subtraction can borrow into the lanes above a
/// true hit and mark them too, but never below one: the lowest mark is always exact, and the
/// scans only use the lowest. The same holds for [`eq`] and for any OR of such tests.
#[inline(always)]
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// The lanes of `x` holding the byte `b`, marked in their high bit (see [`below`]).
#[inline(always)]
fn eq(x: u64, b: u8) -> u64 {
    let y = x ^ (LO * u64::from(b));
    y.wrapping_sub(LO) & !y & HI
}

/// Bytes `json.dumps` escapes whatever its options: controls, `"` and `\`.
#[inline(always)]
fn json_hits(x: u64) -> u64 {
    below(x, 0x20) | eq(x, b'"') | eq(x, b'\\')
}

/// With `ensure_ascii`, DEL and every byte of a non-ASCII character as well (Python escapes all
/// but `' '..='~'`).
#[inline(always)]
fn json_ascii_hits(x: u64) -> u64 {
    json_hits(x) | eq(x, 0x7f) | (x & HI)
}

/// Bytes `repr` may have to escape: controls, DEL, both quotes (the one not chosen as the
/// delimiter is a false alarm, handled where it is found), `\`, and every non-ASCII byte (most
/// non-ASCII characters are printable and kept, but which is a per-character question).
#[inline(always)]
fn repr_hits(x: u64) -> u64 {
    below(x, 0x20) | eq(x, 0x7f) | eq(x, b'"') | eq(x, b'\'') | eq(x, b'\\') | (x & HI)
}

#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn half_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// The lane of the lowest mark of a non-zero `hits`.
#[inline(always)]
fn lane(hits: u64) -> usize {
    (hits.trailing_zeros() / 8) as usize
}

/// The index of the first byte at or after `from` that `hits` marks, or `bytes.len()`.
///
/// The last partial word is read as a whole word too (short keys like `type` or `name` would
/// otherwise be all tail): overlapping the bytes before it when the text has eight bytes, those
/// replaced by [`PAD`] so that an earlier hit cannot borrow into it; as two overlapping halves for
/// four to seven bytes; as first, middle and last byte for one to three. Each of these maps lanes
/// to bytes in order, so the lowest mark is still the first hit.
#[inline(always)]
fn first_hit(bytes: &[u8], from: usize, hits: impl Fn(u64) -> u64) -> usize {
    let n = bytes.len();
    let mut i = from;
    while i + 8 <= n {
        let h = hits(word_at(bytes, i));
        if h != 0 {
            return i + lane(h);
        }
        i += 8;
    }
    let rest = n - i;
    if rest == 0 {
        return n;
    }
    if n >= 8 {
        let start = n - 8;
        let keep = !0u64 << (8 * (8 - rest));
        let h = hits((word_at(bytes, start) & keep) | (PAD & !keep));
        return if h == 0 { n } else { start + lane(h) };
    }
    if rest >= 4 {
        let h = hits(half_at(bytes, i) | (half_at(bytes, n - 4) << 32));
        return match h {
            0 => n,
            h if lane(h) < 4 => i + lane(h),
            h => n + lane(h) - 8,
        };
    }
    let mid = i + rest / 2;
    let x = u64::from(bytes[i]) | u64::from(bytes[mid]) << 8 | u64::from(bytes[n - 1]) << 16 | (PAD & !0xff_ffff);
    match hits(x) {
        0 => n,
        h => [i, mid, n - 1][lane(h).min(2)],
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `prefix` and the low `digits` hex digits of `u` (lower case, as Python writes them).
fn push_hex(out: &mut String, prefix: &str, u: u32, digits: u32) {
    out.push_str(prefix);
    for k in (0..digits).rev() {
        out.push(HEX[(u >> (4 * k)) as usize & 0xf] as char);
    }
}

/// A JSON string literal as Python's `json` module writes it (`ensure_ascii`: DEL and non-ASCII
/// as `\uXXXX`, surrogate pairs beyond the BMP).
pub(crate) fn json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    json_str_between("\"", s, "\"", ensure_ascii, out);
}

/// A key of a map as `json.dumps` writes it with its default separators: `"key": `. One call for
/// what would be the literal and the separator (the constant `": "` is copied by a store, a
/// separator of the options by a call of `memcpy`).
pub(crate) fn json_key(s: &str, ensure_ascii: bool, out: &mut String) {
    json_str_between("\"", s, "\": ", ensure_ascii, out);
}

/// `open`, the body of the JSON string literal of `s`, and `close` (`open` ends with the opening
/// quote, `close` starts with the closing one).
#[inline(always)]
fn json_str_between(open: &str, s: &str, close: &str, ensure_ascii: bool, out: &mut String) {
    let plain = if ensure_ascii { json_plain(s.as_bytes(), json_ascii_hits, ascii_block) } else { json_plain(s.as_bytes(), json_hits, json_block) };
    out.reserve(open.len() + s.len() + close.len());
    out.push_str(open);
    if plain {
        // Nearly every key and value of a tool schema: kept apart so that this path stays a
        // small function (the escaping loop's registers made every call save and restore more).
        out.push_str(s);
    } else {
        json_escaped(s, ensure_ascii, out);
    }
    out.push_str(close);
}

/// Bytes `json.dumps` escapes among 16 (see [`json_hits`]). Written lane by lane for the
/// compiler to make vector compares of it: a 16-byte block costs about what one word of the
/// bit tricks does.
#[inline(always)]
fn json_block(b: &[u8; 16]) -> bool {
    b.iter().fold(false, |any, &c| any | (c < 0x20) | (c == b'"') | (c == b'\\'))
}

/// [`json_block`] with `ensure_ascii` (see [`json_ascii_hits`]).
#[inline(always)]
fn ascii_block(b: &[u8; 16]) -> bool {
    b.iter().fold(false, |any, &c| any | (c < 0x20) | (c == b'"') | (c == b'\\') | (c >= 0x7f))
}

/// Whether no byte of `bytes` is one to escape, as `hits` and `block` mark them: what nearly all
/// texts of a tool schema are. Only the answer is needed, not where the first such byte is, so the
/// pieces read may overlap: 16-byte blocks and a last one ending at the end; below 16 bytes, the
/// first and last word, half word or byte (texts of 1 to 3 bytes fill the rest with [`PAD`]).
#[inline(always)]
fn json_plain(bytes: &[u8], hits: impl Fn(u64) -> u64, block: impl Fn(&[u8; 16]) -> bool) -> bool {
    let n = bytes.len();
    if n >= 16 {
        let mut blocks = bytes.chunks_exact(16);
        let whole = blocks.all(|b| b.try_into().is_ok_and(|b| !block(b)));
        return whole && (n % 16 == 0 || bytes[n - 16..].try_into().is_ok_and(|b| !block(b)));
    }
    let x = if n >= 8 {
        hits(word_at(bytes, 0)) | hits(word_at(bytes, n - 8))
    } else if n >= 4 {
        hits(half_at(bytes, 0) | half_at(bytes, n - 4) << 32)
    } else if n > 0 {
        hits(u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16 | (PAD & !0xff_ffff))
    } else {
        0
    };
    x == 0
}

/// The body of a JSON string literal of a text with a byte to escape.
#[inline(never)]
fn json_escaped(s: &str, ensure_ascii: bool, out: &mut String) {
    let bytes = s.as_bytes();
    let next = |from| if ensure_ascii { first_hit(bytes, from, json_ascii_hits) } else { first_hit(bytes, from, json_hits) };
    let mut run = 0;
    let mut i = next(0);
    while i < bytes.len() {
        out.push_str(&s[run..i]);
        let b = bytes[i];
        run = i + 1;
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0..0x20 | 0x7f => push_hex(out, "\\u", u32::from(b), 4),
            _ => {
                // Only marked with `ensure_ascii`: the character starting here, as UTF-16 units.
                let c = s[i..].chars().next().unwrap_or_default();
                run = i + c.len_utf8();
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_hex(out, "\\u", u32::from(*unit), 4);
                }
            }
        }
        i = next(run);
    }
    out.push_str(&s[run..]);
}

/// Whether Python's `str.isprintable()` holds for the non-ASCII `c` (approximated by the categories
/// that occur in practice: controls, format characters, separators, private use; surrogates cannot
/// occur in a Rust `str`).
fn py_printable(c: char) -> bool {
    let u = c as u32;
    !((0x7f..=0xa0).contains(&u)
        || u == 0xad
        || u == 0x1680
        || u == 0x180e
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x2064).contains(&u)
        || (0x2066..=0x206f).contains(&u)
        || u == 0x3000
        || u == 0xfeff
        || (0xfff9..=0xfffb).contains(&u)
        || (0xe000..=0xf8ff).contains(&u)
        || (0xf0000..).contains(&u))
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub(crate) fn repr_str(s: &str, out: &mut String) {
    let first = first_hit(s.as_bytes(), 0, repr_hits);
    out.reserve(s.len() + 2);
    if first == s.len() {
        // Plain ASCII without quotes, as most keys and values are: kept apart from the escaping
        // loop so that this stays a small function (see `json_str`).
        out.push('\'');
        out.push_str(s);
        out.push('\'');
    } else {
        repr_escaped(s, first, out);
    }
}

/// `repr(s)` of a text whose first byte to look at is `first`.
#[inline(never)]
fn repr_escaped(s: &str, first: usize, out: &mut String) {
    let bytes = s.as_bytes();
    let mut i = first;
    // Quotes are marked bytes, so none lies before the first mark.
    let rest = &bytes[i..];
    let quote = if rest.contains(&b'\'') && !rest.contains(&b'"') { b'"' } else { b'\'' };
    out.push(quote as char);
    let mut run = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            // The quote that is not the delimiter was a false alarm: it stays in the run.
            if b != quote && (b == b'"' || b == b'\'') {
                i = first_hit(bytes, i + 1, repr_hits);
                continue;
            }
            out.push_str(&s[run..i]);
            match b {
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                b'"' | b'\'' => {
                    out.push('\\');
                    out.push(b as char);
                }
                _ => push_hex(out, "\\x", u32::from(b), 2),
            }
            run = i + 1;
            i = first_hit(bytes, run, repr_hits);
        } else {
            // A non-ASCII character: printable ones stay in the run. Consecutive ones (a text in
            // another script) are taken here one after the other, without a word scan for each.
            let c = s[i..].chars().next().unwrap_or_default();
            if !py_printable(c) {
                out.push_str(&s[run..i]);
                let u = c as u32;
                match u {
                    0x80..=0xff => push_hex(out, "\\x", u, 2),
                    0x100..=0xffff => push_hex(out, "\\u", u, 4),
                    _ => push_hex(out, "\\U", u, 8),
                }
                run = i + c.len_utf8();
            }
            i += c.len_utf8();
            if i < bytes.len() && bytes[i] < 0x80 {
                i = first_hit(bytes, i, repr_hits);
            }
        }
    }
    out.push_str(&s[run..]);
    out.push(quote as char);
}

#[cfg(test)]
#[path = "escape_tests.rs"]
mod tests;
