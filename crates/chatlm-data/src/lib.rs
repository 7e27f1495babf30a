//! chatlm-data (work in progress)
