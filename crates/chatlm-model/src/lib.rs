//! chatlm-model (work in progress)
