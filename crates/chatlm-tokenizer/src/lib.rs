//! chatlm-tokenizer (work in progress)
