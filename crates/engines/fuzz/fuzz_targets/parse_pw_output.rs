#![no_main]
//! `cargo +nightly fuzz run parse_pw_output` (from crates/engines): the pw.x parser must
//! never panic, and a result that claims convergence must carry finite numbers.

use autopipe_engines::output::{bytes_to_text, RunStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = bytes_to_text(data);
    if let Ok(p) = autopipe_engines::qe::parse_pw_output(&text, "fuzz") {
        if p.status == RunStatus::Converged {
            // the end of a run: `JOB DONE.`, or the final `PWSCF :` timing line (QE 4.0-4.2)
            assert!(
                text.contains("JOB DONE")
                    || text.lines().any(|l| {
                        let l = l.trim_start();
                        l.starts_with("PWSCF") && (l.contains("WALL") || l.contains("wall time"))
                    })
            );
        }
        if let Some(l) = p.to_labels() {
            assert!(l.energy_ev.is_finite());
            assert!(l.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
        }
    }
    let _ = autopipe_engines::qe::parse_pw_xml_convergence(&text);
});
