#![no_main]
//! `cargo +nightly fuzz run parse_orca_output` (from crates/engines): the ORCA text-output
//! and `.engrad` parsers must never panic, a result that claims convergence must come
//! from an output that terminated normally, and labels must carry finite numbers.

use autopipe_engines::output::{bytes_to_text, RunStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = bytes_to_text(data);
    if let Ok(p) = autopipe_engines::orca::parse_orca_output(&text, "fuzz") {
        if p.status == RunStatus::Converged {
            assert!(text.contains("ORCA TERMINATED NORMALLY"));
        }
        if let Some(l) = p.to_labels() {
            assert!(l.energy_ev.is_finite());
            assert!(l.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
        }
    }
    if let Ok(g) = autopipe_engines::orca::parse_engrad(&text) {
        assert_eq!(g.forces_ev_per_a.len(), g.natoms);
        assert!(g.energy_ev.is_finite());
        assert!(g.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
        assert!(g.atomic_numbers.is_empty() || g.atomic_numbers.len() == g.natoms);
    }
});
