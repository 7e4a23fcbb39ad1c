#![no_main]
//! `cargo +nightly fuzz run parse_vasprun` (from crates/engines): the vasprun.xml parser
//! must never panic, a result that claims convergence must come from a complete file
//! (`</modeling>`), and labels must carry finite numbers.

use autopipe_engines::output::{bytes_to_text, RunStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = bytes_to_text(data);
    if let Ok(p) = autopipe_engines::vasp::parse_vasprun(&text, "fuzz") {
        if p.status == RunStatus::Converged {
            assert!(text.contains("</modeling>"));
        }
        if let Some(l) = p.to_labels() {
            assert!(l.energy_ev.is_finite());
            assert!(l.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
            assert!(l.stress_ev_per_a3.iter().flatten().all(|x| x.is_finite()));
        }
    }
});
