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

/// How long the slow label's job sleeps: long enough that the orchestrator is killed, and
/// started again, while it runs.
const JOB_SLEEP_S: u64 = 2;

fn import_slow_label(dir: &std::path::Path) {
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, 1);
    // Counts its executions in the calculation's directory, shared by all attempts.
    let command = format!("echo ran >> ../runs; sleep {JOB_SLEEP_S}; {WRITE_LABEL}");
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

/// `jobs status --id 1 --json`.
fn calculation_1(dir: &std::path::Path) -> serde_json::Value {
    let out = ok(&["jobs", "status", "--dir", dir.to_str().unwrap(), "--id", "1", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The job process of calculation 1's attempt 1 (the store's backend id).
fn job_pid(dir: &std::path::Path) -> u32 {
    let c = calculation_1(dir);
    let attempts = c["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{c}");
    attempts[0]["backend_id"].as_str().and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("no pid in {c}"))
}

/// Whether process `pid` runs (exists and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// After the resumed run: calculation 1 is done, computed once, in one attempt and one
/// attempt directory.
fn assert_one_attempt_one_execution(dir: &std::path::Path) {
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 1, "{s}");
    assert_eq!(s["executions"], 1, "{s}");
    let c = calculation_1(dir);
    assert_eq!(c["status"], "done", "{c}");
    assert_eq!(c["n_attempts"], 1, "{c}");
    let attempts = c["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{c}");
    assert_eq!(attempts[0]["attempt"], 1, "{c}");
    let calc_dir = dir.join("jobs/000/000001");
    let mut attempt_dirs: Vec<String> = std::fs::read_dir(&calc_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("attempt-"))
        .collect();
    attempt_dirs.sort();
    assert_eq!(attempt_dirs, ["attempt-1"]);
    let attempt = calc_dir.join("attempt-1");
    assert!(attempt.join("result.json").is_file() && attempt.join("job.json").is_file());
    // The engine itself ran once.
    assert_eq!(std::fs::read_to_string(calc_dir.join("runs")).unwrap().lines().count(), 1);
}

#[test]
fn a_job_still_running_after_kill_9_is_adopted_and_harvested_from_its_attempt_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_slow_label(dir);
    kill_orchestrator_mid_job(dir);
    assert_eq!(count(&status_json(dir), "running"), 1);
    // The job outlived the orchestrator, and is still at work (sleeping 2 s).
    let pid = job_pid(dir);
    assert!(alive(pid), "the job process {pid} died with the orchestrator");
    let result = dir.join("jobs/000/000001/attempt-1/result.json");
    assert!(!result.exists(), "the job finished before the orchestrator came back: adoption is not tested");
    // The job still holds the lock of jobs/000/000001/attempt-1: adopted, not rerun.
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Resuming: adopted 1 job still running, harvested 0 finished results, requeued 0"),
        "{}",
        stderr(&out)
    );
    assert!(!alive(pid), "the adopted job was waited for");
    assert_one_attempt_one_execution(dir);
}

#[test]
fn a_result_written_after_kill_9_is_harvested_not_computed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_slow_label(dir);
    kill_orchestrator_mid_job(dir);
    // The job finishes while no orchestrator runs: its result lands in its attempt
    // directory and the database still has it in flight.
    let pid = job_pid(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the job process {pid} never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.join("jobs/000/000001/attempt-1/result.json").is_file(), "the job wrote no result");
    assert_eq!(count(&status_json(dir), "running"), 1);
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Resuming: adopted 0 jobs still running, harvested 1 finished result, requeued 0"),
        "{}",
        stderr(&out)
    );
    assert_one_attempt_one_execution(dir);
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
    let pid = job_pid(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the job process {pid} never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(result.is_file(), "the job wrote no result");
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
