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

fn import_slow_label(dir: &std::path::Path) {
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, 1);
    // Counts its executions in the calculation's directory, shared by all attempts.
    let command = format!("echo ran >> ../runs; sleep 1; {WRITE_LABEL}");
    let d = dir.to_str().unwrap();
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d, "--engine", "command", "--command", &command]);
}

/// Start `jobs run`, wait until calculation 1's first attempt is running, SIGKILL the
/// orchestrator (the job process lives on in its own process group).
fn kill_orchestrator_mid_job(dir: &std::path::Path) {
    let mut child = autopipe().args(["jobs", "run", "--dir", dir.to_str().unwrap()]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("jobs/000/000001/runs").exists() {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_job_still_running_after_kill_9_is_adopted_and_harvested_from_its_attempt_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_slow_label(dir);
    kill_orchestrator_mid_job(dir);
    assert_eq!(count(&status_json(dir), "running"), 1);
    // The job still holds the lock of jobs/000/000001/attempt-1: adopted, not rerun.
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Resuming: adopted 1 job still running, harvested 0 finished results"),
        "{}",
        stderr(&out)
    );
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 1, "{s}");
    assert_eq!(s["executions"], 1);
    let attempt = dir.join("jobs/000/000001/attempt-1");
    assert!(attempt.join("result.json").is_file() && attempt.join("job.json").is_file());
    assert_eq!(std::fs::read_to_string(dir.join("jobs/000/000001/runs")).unwrap().lines().count(), 1);
}

#[test]
fn a_corrupt_result_is_an_infrastructure_failure_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_slow_label(dir);
    kill_orchestrator_mid_job(dir);
    // The job finishes on its own; then its result.json is damaged. (Simulated: a
    // half-written file cannot be produced for real, the job writes it atomically; a
    // disk error or a person editing it can.)
    let result = dir.join("jobs/000/000001/attempt-1/result.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !result.exists() {
        assert!(Instant::now() < deadline, "the job never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&result, r#"{"calculation_id": 1, "attem"#).unwrap();
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("Retrying calculation 1 (attempt 2 of 3) after a crashed failure"), "{err}");
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["jobs", "status", "--dir", dir.to_str().unwrap(), "--id", "1", "--json"]).stdout)
            .unwrap();
    assert_eq!(v["status"], "done");
    let first = &v["attempts"][0];
    assert_eq!(first["outcome"], "crashed", "{v}");
    let message = first["message"].as_str().unwrap();
    assert!(message.contains(result.to_str().unwrap()) && message.contains("corrupt"), "{message}");
}
