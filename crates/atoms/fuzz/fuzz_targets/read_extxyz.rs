#![no_main]
//! `cargo +nightly fuzz run read_extxyz` (from crates/atoms): the extended XYZ reader must
//! never panic on any text; every error names the source; what it accepts, the writer
//! writes and the reader reads back with the same frames and atoms.

use autopipe_atoms::extxyz::{read_extxyz, write_extxyz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match read_extxyz(&text, "fuzz.xyz") {
        Ok(frames) => {
            let again = read_extxyz(&write_extxyz(&frames), "rewritten.xyz")
                .unwrap_or_else(|e| panic!("written frames do not read back: {e}"));
            assert_eq!(again.len(), frames.len());
            for (a, b) in frames.iter().zip(&again) {
                assert_eq!(a.structure.species, b.structure.species);
                assert_eq!(a.structure.pbc, b.structure.pbc);
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.xyz"), "error without the file name: {e}"),
    }
});
