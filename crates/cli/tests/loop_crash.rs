//! `kill -9` of `autopipe run` during each phase of the loop (labelling, fitting, MD),
//! then the same command again: the run must end exactly where an uninterrupted run
//! ends — same labels, same final model — having repeated at most what was in flight.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A small loop that runs to max_generations (targets no model can meet), labelled by a
/// real external command (this binary's EMT behind a short sleep, so that labelling
/// lasts long enough to be interrupted).
fn config(dir: &Path) -> std::path::PathBuf {
    let exe = env!("CARGO_BIN_EXE_autopipe");
    let text = stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", "structures = 8 ")
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("twojmax = 10 ", "twojmax = 8 ")
        .replace(
            "engine = \"emt\" ",
            &format!("engine = \"command\"\ncommand = \"sleep 0.2; '{exe}' label input.xyz -o output.xyz\" "),
        )
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [900, 1500]")
        .replace("steps = 1000", "steps = 300")
        .replace("max_generations = 7", "max_generations = 3")
        .replace("per_generation = 20 ", "per_generation = 6 ")
        .replace("target_force_rmse_ev_per_a = 0.045", "target_force_rmse_ev_per_a = 0.0001");
    let path = dir.join("loop.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&ok(&["status", "--dir", dir.to_str().unwrap(), "--json"]).stdout).unwrap()
}

fn final_model(dir: &Path) -> String {
    let s = status(dir);
    std::fs::read_to_string(dir.join(s["model"].as_str().unwrap())).unwrap()
}

#[test]
fn kill_9_in_each_phase_then_resume_ends_like_an_uninterrupted_run() {
    // The reference: one uninterrupted run.
    let reference = tempfile::tempdir().unwrap();
    let cfg = config(reference.path());
    run_loop(&[cfg.to_str().unwrap()]);
    let want = status(reference.path());
    assert_eq!(want["phase"], "finished", "{want}");
    let want_labels = want["labels"].as_u64().unwrap();
    assert!(want_labels > 8, "the loop must have gone past generation 0: {want}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = config(dir);
    for phase in ["label", "fit", "explore"] {
        let mut child =
            autopipe().args(["run", cfg.to_str().unwrap()]).stderr(std::process::Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            assert!(Instant::now() < deadline, "never saw phase {phase}");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed in phase {phase}");
            if dir.join("autopipe.db").exists() {
                let s = status(dir);
                // Labelling is caught with some labels done and some not, to kill it mid-batch.
                let mid_batch = phase != "label"
                    || (s["counts"]["done"].as_u64() > Some(0) && s["counts"]["pending"].as_u64() > Some(0));
                if s["phase"] == phase && mid_batch {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    run_loop(&[cfg.to_str().unwrap()]);
    let got = status(dir);
    assert_eq!(got["phase"], "finished", "{got}");
    assert_eq!(got["labels"], want_labels, "a resumed run must end with the same labels");
    assert_eq!(got["generation"], want["generation"]);
    let executions = got["executions"].as_u64().unwrap();
    assert!(
        executions <= want_labels + 2,
        "{executions} executions for {want_labels} labels (2 workers, one kill while labelling)"
    );
    assert_eq!(final_model(dir), final_model(reference.path()), "the same data must give the same final model");
}
