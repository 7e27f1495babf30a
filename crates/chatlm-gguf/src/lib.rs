//! chatlm-gguf (work in progress)
