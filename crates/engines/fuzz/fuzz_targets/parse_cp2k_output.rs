#![no_main]
//! `cargo +nightly fuzz run parse_cp2k_output` (from crates/engines): the CP2K parser must
//! never panic, and a result that claims convergence must carry finite numbers.

use autopipe_engines::output::{bytes_to_text, RunStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = bytes_to_text(data);
    if let Ok(p) = autopipe_engines::cp2k::parse_cp2k_output(&text, "fuzz") {
        if p.status == RunStatus::Converged {
            assert!(text.contains("PROGRAM ENDED AT"));
        }
        if let Some(l) = p.to_labels() {
            assert!(l.energy_ev.is_finite());
            assert!(l.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
        }
    }
});
