//! chatlm-template (work in progress)
