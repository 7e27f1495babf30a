//! Tests of [`super`]: Python's own outputs, and agreement with the straightforward character loops
//! the word scans replaced, for every escape class at every position of texts around a word long.

use super::*;

/// `json.dumps` and `repr` of texts covering every escape class, written by
/// `scripts/reference/template_escape.py` (Python itself).
#[test]
fn matches_python() {
    let cases: Vec<serde_json::Value> = serde_json::from_str(include_str!("escape_cases.json")).unwrap();
    assert!(cases.len() > 300);
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let mut out = String::new();
        json_str(text, false, &mut out);
        assert_eq!(out, case["json"].as_str().unwrap(), "json.dumps({text:?})");
        out.clear();
        json_str(text, true, &mut out);
        assert_eq!(out, case["json_ascii"].as_str().unwrap(), "json.dumps({text:?}, ensure_ascii=True)");
        out.clear();
        repr_str(text, &mut out);
        assert_eq!(out, case["repr"].as_str().unwrap(), "repr({text:?})");
    }
}

/// The character loop `json_str` was before the word scan (with Python's escape of DEL under
/// `ensure_ascii`, which the loop missed).
fn json_str_by_chars(s: &str, ensure_ascii: bool) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && (c as u32) >= 0x7f => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The character loop `repr_str` was before the word scan.
fn repr_str_by_chars(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if (c as u32) > 0x7f && py_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                if u <= 0xff {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u <= 0xffff {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

/// Characters of every class: ASCII neighbours of the tested bytes (a wrong borrow or compare shows
/// on them), controls with short and long escapes, both quotes, backslash, DEL, and non-ASCII of
/// two, three and four UTF-8 bytes, printable or not.
const CLASSES: &[char] = &[
    'a', ' ', '!', '#', '&', '(', '[', ']', '~', '\0', '\u{1}', '\u{8}', '\t', '\n', '\u{c}', '\r', '\u{1f}', '"',
    '\'', '\\', '\u{7f}', '\u{80}', '\u{a0}', '\u{ad}', 'é', '中', '\u{2028}', '\u{feff}', '\u{e000}', '😀',
    '\u{f0000}',
];

fn check(text: &str) {
    for ensure_ascii in [false, true] {
        let mut out = String::from("prefix");
        json_str(text, ensure_ascii, &mut out);
        assert_eq!(out[6..], json_str_by_chars(text, ensure_ascii), "{text:?} ensure_ascii={ensure_ascii}");
    }
    let mut out = String::from("prefix");
    repr_str(text, &mut out);
    assert_eq!(out[6..], repr_str_by_chars(text), "{text:?}");
}

#[test]
fn agrees_with_the_character_loops() {
    for &fill in CLASSES {
        for len in 0..20 {
            let base: Vec<char> = vec![fill; len];
            check(&base.iter().collect::<String>());
            for pos in 0..len {
                for &special in CLASSES {
                    let mut t = base.clone();
                    t[pos] = special;
                    check(&t.iter().collect::<String>());
                    // A second special right after, and one word further on.
                    for gap in [1, 8] {
                        if pos + gap < len {
                            t[pos + gap] = '"';
                            check(&t.iter().collect::<String>());
                            t[pos + gap] = '\'';
                            check(&t.iter().collect::<String>());
                            t[pos + gap] = fill;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn first_hit_finds_the_first_marked_byte() {
    type Test = (fn(u64) -> u64, fn(u8) -> bool);
    let tests: [Test; 3] = [
        (json_hits, |b| b < 0x20 || b == b'"' || b == b'\\'),
        (json_ascii_hits, |b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f),
        (repr_hits, |b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\'' || b == b'\\' || b >= 0x80),
    ];
    let bytes = [b'a', 0x00, 0x1f, 0x20, 0x21, b'"', b'#', b'\'', b'(', b'[', b'\\', b']', 0x7e, 0x7f, 0x80, 0xff];
    for (hits, slow) in tests {
        for &fill in &bytes {
            for len in 0..20 {
                let mut buf = vec![fill; len];
                for pos in 0..len {
                    for &special in &bytes {
                        buf[pos] = special;
                        for from in 0..=len {
                            let want = (from..len).find(|&i| slow(buf[i])).unwrap_or(len);
                            assert_eq!(first_hit(&buf, from, hits), want, "{buf:?} from {from}");
                        }
                        buf[pos] = fill;
                    }
                }
            }
        }
    }
}

/// `json_plain` answers whether any byte is marked, for texts over two 16-byte blocks long and a
/// marked byte at every position (the overlapping pieces it reads must not miss or invent one).
#[test]
fn json_plain_sees_every_marked_byte() {
    let bytes = [b'a', 0x00, 0x1f, 0x20, 0x21, b'"', b'#', b'\'', b'[', b'\\', b']', 0x7e, 0x7f, 0x80, 0xff];
    let json = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let ascii = |b: u8| json(b) || b >= 0x7f;
    for &fill in &bytes {
        for len in 0..50 {
            let mut buf = vec![fill; len];
            let whole = |buf: &[u8]| {
                let plain = json_plain(buf, json_hits, json_block);
                assert_eq!(plain, !buf.iter().any(|&b| json(b)), "{buf:?}");
                let plain = json_plain(buf, json_ascii_hits, ascii_block);
                assert_eq!(plain, !buf.iter().any(|&b| ascii(b)), "{buf:?} ensure_ascii");
            };
            whole(&buf);
            for pos in 0..len {
                for &special in &bytes {
                    buf[pos] = special;
                    whole(&buf);
                    buf[pos] = fill;
                }
            }
        }
    }
}
