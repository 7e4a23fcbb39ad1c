//! The Slurm backend against a real one-node Slurm cluster (`scripts/slurm-cluster.sh`,
//! started by `scripts/test.sh`, which exports SLURM_CONF): job arrays with a throttle,
//! kill -9 of the orchestrator and adoption, two-phase submission, wall time (TIMEOUT),
//! `scancel` by an administrator, physics failures, `jobs cancel`, `--detach` and
//! `jobs submit`, a refused submission, and the learning loop with its labels run by
//! Slurm. Slurm's own records (`scontrol show job`, kept MinJobAge = 300 s) are the
//! witness of how many jobs ran.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test cluster must be up: a missing cluster is a failure, never a skip.
fn cluster() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty() && Path::new(&conf).is_file(),
        "SLURM_CONF is not set to a slurm.conf: start the test cluster (scripts/slurm-cluster.sh start DIR, as scripts/test.sh does)"
    );
    let out = Command::new("sinfo").args(["-h", "-o", "%t"]).output().expect("sinfo runs (apt-get install slurm-wlm)");
    let state = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !state.trim().is_empty(), "the test cluster does not answer: {state:?}");
}

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A command engine: this binary's EMT, after `pre` (a shell snippet).
fn emt_after(pre: &str) -> String {
    format!("{pre} '{}' label input.xyz -o output.xyz", env!("CARGO_BIN_EXE_autopipe"))
}

fn import(dir: &Path, n: usize, command: Option<&str>) {
    let cells = dir.with_extension("xyz");
    one_atom_cells(&cells, n);
    let mut args = vec!["jobs", "import", d(&cells), "--dir", d(dir)];
    if let Some(c) = command {
        args.extend(["--engine", "command", "--command", c]);
    }
    ok(&args);
}

fn detail(dir: &Path, id: i64) -> serde_json::Value {
    let out = ok(&["jobs", "status", "--dir", d(dir), "--id", &id.to_string(), "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every job record Slurm keeps for the job names of this run directory's campaign.
fn slurm_records(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("sched"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".sh").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let out = Command::new("scontrol").args(["-o", "show", "job"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: std::collections::HashMap<&str, &str> =
                l.split_whitespace().filter_map(|t| t.split_once('=')).collect();
            let name = f.get("JobName")?;
            if !names.iter().any(|n| n == name) {
                return None;
            }
            // Skip the record of array tasks not yet split off (ArrayTaskId=2-5%2).
            let task = f.get("ArrayTaskId").copied().unwrap_or("");
            if !task.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((format!("{}_{task}", f.get("ArrayJobId").unwrap_or(&"")), f.get("JobState")?.to_string()))
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn attempts(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["attempts"].as_array().unwrap()
}

#[test]
fn fifty_emt_calculations_run_as_one_throttled_array() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    import(&dir, 50, None);
    let out = ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--array-throttle", "10", "--poll-s", "0.3"]);
    assert!(stderr(&out).contains("submitted 50 calculations to Slurm"), "{}", stderr(&out));
    let s = status_json(&dir);
    assert_eq!(count(&s, "done"), 50, "{s}");
    assert_eq!(s["executions"], 50, "{s}");
    let scripts: Vec<_> = std::fs::read_dir(dir.join("sched"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sh"))
        .collect();
    assert_eq!(scripts.len(), 1, "one submission, one array");
    let script = std::fs::read_to_string(scripts[0].path()).unwrap();
    assert!(script.contains("#SBATCH --array=0-49%10"), "{script}");
    // Slurm ran each task once, and each calculation knows its task.
    let records = slurm_records(&dir);
    assert_eq!(records.len(), 50, "{records:?}");
    assert!(records.iter().all(|(_, state)| state == "COMPLETED"), "{records:?}");
    let c = detail(&dir, 7);
    let task = c["backend_id"].as_str().unwrap();
    assert!(records.iter().any(|(id, _)| id == task), "{task} in {records:?}");
}

#[test]
fn a_killed_orchestrator_adopts_queued_and_running_jobs() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let n = 12;
    import(&dir, n, Some(&emt_after("sleep 1;")));
    let mut child = autopipe()
        .args(["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--array-throttle", "2", "--poll-s", "0.3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("three labels", Duration::from_secs(120), || count(&status_json(&dir), "done") >= 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let s = status_json(&dir);
    let in_flight = count(&s, "submitted") + count(&s, "running");
    assert!(in_flight > 0, "jobs must still be with Slurm when the orchestrator dies: {s}");
    assert_eq!(count(&s, "pending"), 0, "everything was submitted in one array: {s}");
    let out = ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"]);
    assert!(stderr(&out).contains("adopted"), "{}", stderr(&out));
    let s = status_json(&dir);
    assert_eq!(count(&s, "done"), n as u64, "{s}");
    // Nothing was submitted again: one attempt each, one array, each task run once.
    assert_eq!(s["executions"], n as u64, "{s}");
    let records = slurm_records(&dir);
    assert_eq!(records.len(), n, "{records:?}");
    assert!(records.iter().all(|(_, state)| state == "COMPLETED"), "{records:?}");
}

#[test]
fn a_kill_between_submission_and_database_is_found_by_the_job_name() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    import(&dir, 6, Some(&emt_after("sleep 1;")));
    // Fault injection (a kill at exactly this instant cannot be timed from outside): the
    // orchestrator aborts right after sbatch returned, before it records the job ids.
    let out = autopipe()
        .args(["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"])
        .env("AUTOPIPE_TEST_ABORT_AFTER_SUBMIT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let c = detail(&dir, 1);
    assert!(c["backend_id"].as_str().unwrap().starts_with('?'), "the intent is recorded: {c}");
    let out = ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"]);
    assert!(stderr(&out).contains("adopted 6 jobs"), "{}", stderr(&out));
    let s = status_json(&dir);
    assert_eq!(count(&s, "done"), 6, "{s}");
    assert_eq!(s["executions"], 6, "{s}");
    assert_eq!(slurm_records(&dir).len(), 6, "submitted once: {:?}", slurm_records(&dir));
    assert!(!detail(&dir, 1)["backend_id"].as_str().unwrap().starts_with('?'));
}

#[test]
fn a_job_over_its_wall_time_ends_timeout_and_is_retried_on_the_infrastructure_budget() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // The first attempt outlives Slurm's limit (1 minute, its smallest); the second labels.
    import(&dir, 1, Some(&emt_after(r#"if [ "$AUTOPIPE_ATTEMPT" = 1 ]; then sleep 600; fi;"#)));
    let out = ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--time", "1", "--poll-s", "0.5"]);
    let c = detail(&dir, 1);
    assert_eq!(c["status"], "done", "{c}\n{}", stderr(&out));
    let a = attempts(&c);
    assert_eq!(a.len(), 2, "{c}");
    assert_eq!(a[0]["outcome"], "timeout", "{c}");
    assert!(a[0]["message"].as_str().unwrap().contains("TIMEOUT"), "{c}");
    assert_eq!(c["physics_failures"], 0, "wall time never uses the physics budget: {c}");
    assert_eq!(c["infra_failures"], 1, "{c}");
    // The engine was told less than Slurm's limit, to stop cleanly before the kill.
    let script = std::fs::read_dir(dir.join("sched"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "sh"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(script.contains("#SBATCH --time=00:01:00"), "{script}");
    assert!(script.contains("AUTOPIPE_WALLTIME_S=54"), "{script}");
}

#[test]
fn a_job_cancelled_by_an_administrator_is_retried_and_jobs_cancel_calls_scancel() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Calculation 1 sleeps on its first attempt (an administrator scancels it); 2 sleeps
    // on every attempt (the user cancels it with `jobs cancel`).
    import(
        &dir,
        2,
        Some(&emt_after(
            r#"if [ "$AUTOPIPE_ATTEMPT" = 1 ] || [ "$AUTOPIPE_CALCULATION_ID" = 2 ]; then sleep 600; fi;"#,
        )),
    );
    let mut child = autopipe()
        .args(["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("both running", Duration::from_secs(60), || count(&status_json(&dir), "running") == 2);
    let first = detail(&dir, 1)["backend_id"].as_str().unwrap().to_string();
    let out = Command::new("scancel").arg(&first).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("the retry of calculation 1", Duration::from_secs(60), || detail(&dir, 1)["status"] == "done");
    let second = detail(&dir, 2)["backend_id"].as_str().unwrap().to_string();
    let out = ok(&["jobs", "cancel", "--dir", d(&dir), "--id", "2"]);
    assert!(stdout(&out).contains(&format!("scancel {second}")), "{}", stdout(&out));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let c = detail(&dir, 1);
    let a = attempts(&c);
    assert_eq!(a.len(), 2, "{c}");
    assert_eq!(a[0]["outcome"], "killed", "{c}");
    assert!(a[0]["message"].as_str().unwrap().contains("CANCELLED"), "{c}");
    assert_eq!(c["physics_failures"], 0, "{c}");
    assert_eq!(detail(&dir, 2)["status"], "cancelled");
    // Slurm stopped the user's job too.
    wait_for("the cancelled job to leave the queue", Duration::from_secs(30), || {
        let q = Command::new("squeue").args(["-h", "-j", &second]).output().unwrap();
        String::from_utf8_lossy(&q.stdout).trim().is_empty()
    });
}

#[test]
fn physics_failures_are_repaired_or_failed_on_their_own_budget() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Calculation 1 does not converge on its first attempt; 2 never converges.
    let unconverged = r#"printf '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 converged=F pbc="T T T"\nCu 0 0 0 0 0 0\n' > output.xyz"#;
    let command = format!(
        r#"if [ "$AUTOPIPE_CALCULATION_ID" = 2 ] || [ "$AUTOPIPE_ATTEMPT" = 1 ]; then {unconverged}; else {}; fi"#,
        emt_after("")
    );
    import(&dir, 2, Some(&command));
    let out =
        run(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3", "--failure-tolerance", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let one = detail(&dir, 1);
    assert_eq!(one["status"], "done", "{one}");
    assert_eq!(one["physics_failures"], 1, "{one}");
    let two = detail(&dir, 2);
    assert_eq!(two["status"], "failed", "{two}");
    assert_eq!(two["physics_failures"], 3, "{two}");
    assert_eq!(two["infra_failures"], 0, "{two}");
    assert_eq!(attempts(&two).len(), 3);
}

#[test]
fn detach_and_submit_hand_work_to_slurm_and_a_later_run_picks_it_up() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    import(&dir, 8, None);
    let out = ok(&["jobs", "submit", "--dir", d(&dir), "--backend", "slurm", "--batch-size", "5"]);
    assert!(stderr(&out).contains("submitted 5 calculations"), "{}", stderr(&out));
    let s = status_json(&dir);
    assert_eq!(count(&s, "pending"), 3, "{s}");
    let out = ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--detach"]);
    assert!(stderr(&out).contains("submitted 3 calculations"), "{}", stderr(&out));
    assert_eq!(count(&status_json(&dir), "pending"), 0);
    ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"]);
    let s = status_json(&dir);
    assert_eq!(count(&s, "done"), 8, "{s}");
    assert_eq!(s["executions"], 8, "{s}");
    // `jobs submit` is for schedulers; the local backend says so.
    let out = run(&["jobs", "submit", "--dir", d(&dir), "--batch-size", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--backend slurm"), "{}", stderr(&out));
}

#[test]
fn a_refused_submission_is_an_error_that_keeps_everything() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    import(&dir, 3, None);
    // A value that would break the script is refused before anything happens.
    let out = run(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--partition", "debug; rm -rf /"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--partition"), "{}", stderr(&out));
    assert!(!dir.join("sched").exists());
    // A partition Slurm does not have: sbatch's own words, and nothing lost.
    let out = run(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--partition", "nosuchpartition"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).to_lowercase().contains("partition"), "{}", stderr(&out));
    let s = status_json(&dir);
    assert_eq!(count(&s, "pending"), 3, "{s}");
    let c = detail(&dir, 1);
    assert_eq!(c["infra_failures"], 0, "a refused submission uses no retry: {c}");
    ok(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--poll-s", "0.3"]);
    assert_eq!(count(&status_json(&dir), "done"), 3);
}

#[test]
fn the_learning_loop_runs_its_labels_through_slurm() {
    cluster();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The cu-emt example as it is, but for its backend.
    let text = stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("backend = \"local\" ", "backend = \"slurm\"\npoll_s = 0.3 ");
    assert!(text.contains("backend = \"slurm\""), "{text}");
    let cfg = dir.join("slurm-loop.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = run_loop(&[d(&cfg)]);
    assert_eq!(out.status.code(), Some(0), "the loop converges: {}", stderr(&out));
    assert!(stderr(&out).contains("slurm backend"), "{}", stderr(&out));
    let loop_status: serde_json::Value =
        serde_json::from_slice(&ok(&["status", "--dir", d(dir), "--json"]).stdout).unwrap();
    assert_eq!(loop_status["converged"], true, "{loop_status}");
    let s = status_json(dir);
    let done = count(&s, "done");
    assert!(done > 20, "the loop went past generation 0: {s}");
    // Every label was a Slurm array task.
    for id in 1..=done as i64 {
        let c = detail(dir, id);
        let b = c["backend_id"].as_str().unwrap_or("");
        assert!(b.contains('_'), "calculation {id} ran as a Slurm task: {c}");
    }
    // The exploration segments ran as Slurm jobs too: one array per generation
    // (job name ending in xG), one task per segment.
    let segment_scripts = std::fs::read_dir(dir.join("sched"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sh") && e.file_name().to_string_lossy().contains("-x"))
        .count();
    assert!(segment_scripts >= 1, "exploration went through Slurm");
    let records = slurm_records(dir);
    let segment_tasks = records.len() as u64 - s["executions"].as_u64().unwrap();
    assert_eq!(
        segment_tasks,
        3 * segment_scripts as u64,
        "three segments (300, 900, 1500 K) per generation: {records:?}"
    );
    assert!(dir.join("explore/gen-000/T900/result.json").is_file());
}
