//! The three character classes the split regexes of byte-level BPE tokenizers test:
//! `\p{L}`, `\p{N}` and `\s`.
//!
//! The classes are not taken from a Unicode crate: they are asked of Oniguruma, the very regex
//! engine `tokenizers` runs those patterns with, so a hand-written split agrees with the regex on
//! every code point, whatever Unicode version either side was built with. Each block of 256 code
//! points is classified once, on first use, by running the three class regexes over the block.

use std::sync::OnceLock;

/// What one character is, for the split patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CharClass {
    /// `\p{L}`
    Letter = 0,
    /// `\p{N}`
    Number = 1,
    /// `\s`
    Space = 2,
    /// none of the above (punctuation, symbols, marks, controls…)
    Other = 3,
}

const BLOCK: usize = 256;
const BLOCKS: usize = (char::MAX as usize + 1) / BLOCK;

struct Table {
    blocks: Vec<OnceLock<Box<[CharClass; BLOCK]>>>,
    letter: onig::Regex,
    number: onig::Regex,
    space: onig::Regex,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let re = |p: &str| onig::Regex::new(p).expect("class regexes are valid");
        Table {
            blocks: (0..BLOCKS).map(|_| OnceLock::new()).collect(),
            letter: re(r"\p{L}"),
            number: re(r"\p{N}"),
            space: re(r"\s"),
        }
    })
}

/// The class of `c`.
#[inline]
pub(crate) fn class_of(c: char) -> CharClass {
    let cp = c as usize;
    if cp < 128 {
        return ASCII[cp];
    }
    let table = table();
    table.blocks[cp / BLOCK].get_or_init(|| classify_block(table, cp / BLOCK))[cp % BLOCK]
}

fn classify_block(table: &Table, block: usize) -> Box<[CharClass; BLOCK]> {
    let mut classes = Box::new([CharClass::Other; BLOCK]);
    // Surrogates are not chars: those slots stay `Other` and are never looked up.
    let chars: Vec<(usize, char)> =
        (0..BLOCK).filter_map(|i| char::from_u32((block * BLOCK + i) as u32).map(|c| (i, c))).collect();
    let text: String = chars.iter().map(|&(_, c)| c).collect();
    // Byte offset in `text` → slot in the block.
    let mut slot_at = std::collections::HashMap::with_capacity(chars.len());
    let mut offset = 0;
    for &(i, c) in &chars {
        slot_at.insert(offset, i);
        offset += c.len_utf8();
    }
    // Later classes win, which never matters: the three are disjoint in Unicode.
    for (regex, class) in [(&table.letter, CharClass::Letter), (&table.number, CharClass::Number), (&table.space, CharClass::Space)] {
        for (start, _) in regex.find_iter(&text) {
            classes[slot_at[&start]] = class;
        }
    }
    classes
}

const fn ascii_class(b: u8) -> CharClass {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => CharClass::Letter,
        b'0'..=b'9' => CharClass::Number,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => CharClass::Space,
        _ => CharClass::Other,
    }
}

static ASCII: [CharClass; 128] = {
    let mut t = [CharClass::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class(i as u8);
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_table_agrees_with_oniguruma() {
        let table = table();
        let block = classify_block(table, 0);
        for (cp, expected) in block.iter().enumerate().take(128) {
            assert_eq!(ASCII[cp], *expected, "U+{cp:04X}");
        }
    }

    #[test]
    fn classes_of_known_characters() {
        assert_eq!(class_of('한'), CharClass::Letter);
        assert_eq!(class_of('é'), CharClass::Letter);
        assert_eq!(class_of('٣'), CharClass::Number);
        assert_eq!(class_of('½'), CharClass::Number);
        assert_eq!(class_of('\u{3000}'), CharClass::Space);
        assert_eq!(class_of('\u{85}'), CharClass::Space);
        assert_eq!(class_of('\u{301}'), CharClass::Other); // combining acute: a mark, not a letter
        assert_eq!(class_of('😀'), CharClass::Other);
    }
}
