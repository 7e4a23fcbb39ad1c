#![no_main]
//! `cargo +nightly fuzz run parse_config` (from crates/workflow): the configuration parser
//! must never panic on any text, and every error names the file.

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = autopipe_workflow::parse_config(text, Path::new("fuzz.toml")) {
        assert!(e.to_string().contains("fuzz.toml"), "error without the file name: {e}");
    }
});
