//! Per-thread cache of piece → ids, and the byte-level symbol mapping.
//!
//! Natural text repeats its words: after a few thousand rows nearly every piece is a hit, and
//! a hit is one hash lookup instead of a BPE merge loop. The cache is per thread (no lock on the
//! hot path; rayon's workers live as long as the pool) and per encoder.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pieces longer than this are rare and not worth keeping.
const MAX_PIECE_BYTES: usize = 64;
/// Entries per thread and encoder: a few tens of MB at most.
const CAPACITY: usize = 1 << 18;

type PieceMap = HashMap<Box<str>, Box<[u32]>, ahash::RandomState>;

thread_local! {
    static CACHES: RefCell<HashMap<u64, PieceMap>> = RefCell::new(HashMap::new());
}

/// A handle to one encoder's cache in every thread.
#[derive(Debug, Clone)]
pub(crate) struct PieceCache {
    id: u64,
}

impl PieceCache {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self { id: NEXT.fetch_add(1, Ordering::Relaxed) }
    }

    /// Runs `f` with this thread's cache for this encoder.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Pieces<'_>) -> R) -> R {
        CACHES.with(|caches| {
            let mut caches = caches.borrow_mut();
            let map = caches.entry(self.id).or_default();
            f(&mut Pieces { map })
        })
    }
}

/// One thread's piece cache, borrowed for the length of an encode.
pub(crate) struct Pieces<'a> {
    map: &'a mut PieceMap,
}

impl Pieces<'_> {
    /// Appends the ids of `piece` to `out`, from the cache or from `compute` (which appends
    /// them and says whether it could).
    #[inline]
    pub(crate) fn ids_of(&mut self, piece: &str, out: &mut Vec<u32>, compute: impl FnOnce(&str, &mut Vec<u32>) -> bool) -> bool {
        if let Some(ids) = self.map.get(piece) {
            out.extend_from_slice(ids);
            return true;
        }
        let start = out.len();
        if !compute(piece, out) {
            return false;
        }
        if piece.len() <= MAX_PIECE_BYTES && self.map.len() < CAPACITY {
            self.map.insert(piece.into(), out[start..].into());
        }
        true
    }
}

/// GPT-2's byte → symbol table (`bytes_to_unicode`): printable Latin-1 bytes stand for
/// themselves, the other 68 take the code points from U+0100 up, in byte order.
const BYTE_CHARS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        table[b] = if printable {
            b as u8 as char
        } else {
            let c = match char::from_u32(next) {
                Some(c) => c,
                None => panic!("below U+0200"),
            };
            next += 1;
            c
        };
        b += 1;
    }
    table
};

/// The symbol standing for byte `b`.
pub(crate) fn byte_char(b: u8) -> char {
    BYTE_CHARS[b as usize]
}

/// `piece` as byte-level symbols (what `ByteLevel` hands the BPE model).
pub(crate) fn byte_level(piece: &str) -> String {
    piece.bytes().map(byte_char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    #[test]
    fn byte_symbols_are_the_byte_level_alphabet() {
        let ours: std::collections::HashSet<char> = BYTE_CHARS.iter().copied().collect();
        assert_eq!(ours.len(), 256);
        assert_eq!(ours, ByteLevel::alphabet().into_iter().collect());
        assert_eq!(byte_level(" é"), "Ġé".replace('é', "Ã©"));
    }

    #[test]
    fn cache_returns_what_compute_gave_and_skips_failures() {
        let cache = PieceCache::new();
        cache.with(|pieces| {
            let mut out = Vec::new();
            assert!(pieces.ids_of("ab", &mut out, |_, o| {
                o.extend([1, 2]);
                true
            }));
            assert!(pieces.ids_of("ab", &mut out, |_, _| unreachable!("cached")));
            assert!(!pieces.ids_of("zz", &mut out, |_, _| false));
            assert_eq!(out, [1, 2, 1, 2]);
        });
    }
}
