//! potential (in progress)
