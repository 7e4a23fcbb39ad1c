//! Crash recovery: SIGKILL the orchestrator in the middle of a campaign, run the same
//! command again, and check that every label is there exactly once and that at most
//! what was in flight ran twice.

mod common;
use common::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const N: u64 = 2000;
const WORKERS: u64 = 2;

#[test]
fn kill_9_mid_run_then_resume_labels_everything_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let xyz = dir.join("cells.xyz");
    // 2,000 distinct fcc Cu cells of 4 atoms, labelled by EMT.
    ok(&[
        "build",
        "bulk",
        "--lattice",
        "fcc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "3.61",
        "--supercell",
        "1",
        "1",
        "1",
        "--count",
        &N.to_string(),
        "--rattle-a",
        "0.1",
        "--out",
        xyz.to_str().unwrap(),
    ]);
    let out = ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d, "--engine", "emt"]);
    assert!(stdout(&out).contains("2000 calculations added"), "{}", stdout(&out));
    // Importing again adds nothing: the idempotency key is the content hash.
    let out = ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d, "--engine", "emt"]);
    assert!(stdout(&out).contains("0 calculations added, 2000 already present"));

    // Two kills at different stages of the campaign.
    for target in [300, 1200] {
        let mut child =
            autopipe().args(["jobs", "run", "--dir", d, "--workers", &WORKERS.to_string()]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            assert!(Instant::now() < deadline, "the campaign made no progress");
            assert!(child.try_wait().unwrap().is_none(), "the run finished before it could be killed");
            if count(&status_json(dir), "done") >= target {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let s = status_json(dir);
        assert!(count(&s, "done") < N, "killed too late to test anything: {}", s["counts"]);
    }

    let out = ok(&["jobs", "run", "--dir", d, "--workers", &WORKERS.to_string()]);
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), N, "{}\n{}", s["counts"], stderr(&out));
    assert_eq!(count(&s, "failed") + count(&s, "timeout") + count(&s, "pending") + count(&s, "running"), 0);
    let executions = s["executions"].as_u64().unwrap();
    eprintln!("{N} labels after two kills: {executions} engine executions");
    // Each kill can cost at most what was in flight.
    assert!(executions <= N + 2 * WORKERS, "{executions} executions for {N} labels");
    let done: HashSet<u64> = s["done_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(done.len() as u64, N);

    // The export has every label once, with energy, forces and stress.
    let out_xyz = dir.join("labels.xyz");
    ok(&["jobs", "export", "--dir", d, out_xyz.to_str().unwrap()]);
    let frames = autopipe_atoms::extxyz::read_extxyz_file(&out_xyz).unwrap();
    assert_eq!(frames.len() as u64, N);
    let ids: HashSet<_> = frames.iter().map(|f| format!("{:?}", f.info.get("calculation_id"))).collect();
    assert_eq!(ids.len() as u64, N);
    assert!(frames
        .iter()
        .all(|f| f.energy_ev.is_some() && f.forces_ev_per_a.is_some() && f.stress_ev_per_a3.is_some()));
}
