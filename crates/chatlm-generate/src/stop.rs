//! Stop strings across token boundaries: text that might be the start of a stop
//! string is held back until it is ruled out, so a stop string never leaks, not even
//! partially, into the stream.

/// Incremental matcher over streamed text pieces.
#[derive(Debug, Clone, Default)]
pub struct StopStringMatcher {
    stops: Vec<String>,
    /// Text received but not yet released (a possible stop-string prefix).
    pending: String,
}

/// What a [`StopStringMatcher::push`] releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Text safe to show now.
    pub text: String,
    /// Whether a full stop string was found (the text after it is dropped).
    pub stopped: bool,
}

impl StopStringMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Feeds a piece; returns the text that can no longer be part of a stop string.
    ///
    /// ```
    /// let mut m = chatlm_generate::StopStringMatcher::new(&["</end>".to_string()]);
    /// assert_eq!(m.push("Hi </e").text, "Hi ");
    /// let r = m.push("nd> more");
    /// assert!(r.stopped && r.text.is_empty());
    /// ```
    pub fn push(&mut self, piece: &str) -> Released {
        self.pending.push_str(piece);
        // Earliest full match wins: it ends the text.
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let text = self.pending[..at].to_string();
            self.pending.clear();
            return Released { text, stopped: true };
        }
        let hold = self.held_suffix_start();
        let text = self.pending[..hold].to_string();
        self.pending.drain(..hold);
        Released { text, stopped: false }
    }

    /// Releases whatever is held back (call when generation ends without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Start of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn held_suffix_start(&self) -> usize {
        let mut start = self.pending.len();
        for (i, _) in self.pending.char_indices().rev() {
            let tail = &self.pending[i..];
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                start = i;
            }
        }
        start
    }
}

impl StopStringMatcher {
    /// Bytes currently held back.
    pub fn held_len(&self) -> usize {
        self.pending.len()
    }
}
