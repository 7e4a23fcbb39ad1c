//! workflow (in progress)
