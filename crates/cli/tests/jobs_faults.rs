//! Faults produced for real: job processes that exceed their wall time, crash, get
//! killed by a signal, cannot get a job directory, or give physically unusable answers.
//! Every one runs the real binary on real processes; nothing is injected.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn import_command(dir: &Path, n: usize, command: &str) {
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, n);
    ok(&[
        "jobs",
        "import",
        xyz.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--engine",
        "command",
        "--command",
        command,
    ]);
}

fn attempts(dir: &Path, id: i64) -> Vec<serde_json::Value> {
    let out = ok(&["jobs", "status", "--dir", dir.to_str().unwrap(), "--id", &id.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["attempts"].as_array().cloned().unwrap_or_else(|| panic!("attempts in {v}"))
}

fn outcomes(dir: &Path, id: i64) -> Vec<String> {
    attempts(dir, id).iter().map(|a| a["outcome"].as_str().unwrap_or("in flight").to_string()).collect()
}

/// A process that exists and is not a zombie (a killed process whose parent has not
/// reaped it yet is dead for our purposes).
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[test]
fn wall_time_exceeded_kills_the_whole_process_group_and_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The engine starts a grandchild; the wall-time kill must take it too.
    import_command(dir, 1, "sleep 30 & echo $! >> grandchild.pids; wait");
    let start = Instant::now();
    let out = run(&["jobs", "run", "--dir", dir.to_str().unwrap(), "--walltime-s", "0.5", "--max-infra-retries", "1"]);
    assert!(start.elapsed() < Duration::from_secs(20), "the wall-time limit was not enforced");
    let err = stderr(&out);
    assert!(err.contains("Retrying calculation 1 (attempt 2 of 2)"), "{err}");
    let s = status_json(dir);
    assert_eq!(count(&s, "timeout"), 1, "{s}");
    assert_eq!(s["executions"], 2);
    assert_eq!(outcomes(dir, 1), ["timeout", "timeout"]);
    let pids: String = (1..=2)
        .map(|k| std::fs::read_to_string(dir.join(format!("jobs/000/000001/attempt-{k}/grandchild.pids"))).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for pid in pids.split_whitespace() {
        assert!(!pid_alive(pid.parse().unwrap()), "grandchild {pid} survived the wall-time kill");
    }
    // A person reads the reason.
    let table = stdout(&ok(&["jobs", "status", "--dir", dir.to_str().unwrap()]));
    assert!(table.contains("wall time of 0.5 s exceeded"), "{table}");
}

#[test]
fn a_crashing_job_is_retried_then_marked_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_command(dir, 1, "echo 'segmentation fault (pretend)' >&2; exit 1");
    let out = run(&["jobs", "run", "--dir", dir.to_str().unwrap(), "--failure-tolerance", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Retrying calculation 1 (attempt 2 of 3)"), "{err}");
    assert!(err.contains("Retrying calculation 1 (attempt 3 of 3)"), "{err}");
    let s = status_json(dir);
    assert_eq!(count(&s, "failed"), 1);
    assert_eq!(s["executions"], 3);
    assert_eq!(s["failed_ids"], serde_json::json!([1]));
    assert_eq!(outcomes(dir, 1), ["crashed", "crashed", "crashed"]);
    assert!(attempts(dir, 1)[0]["message"].as_str().unwrap().contains("exited with code 1"));
}

#[test]
fn an_engine_killed_by_a_signal_is_retried_and_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // First attempt: the engine process kills itself with SIGKILL; second attempt works.
    let command = format!("if [ ! -e ../once ]; then touch ../once; kill -KILL $$; fi; {WRITE_LABEL}");
    import_command(dir, 1, &command);
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    assert!(stderr(&out).contains("killed by signal 9"), "{}", stderr(&out));
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 1, "{s}");
    assert_eq!(outcomes(dir, 1), ["crashed", "done"]);
}

#[test]
fn a_job_process_killed_from_outside_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let command = format!("if [ ! -e ../once ]; then touch ../once; sleep 20; fi; {WRITE_LABEL}");
    import_command(dir, 1, &command);
    let mut child = autopipe().args(["jobs", "run", "--dir", dir.to_str().unwrap()]).spawn().unwrap();
    // Wait for the job process to be recorded, then kill it with SIGKILL, as the
    // kernel's OOM killer or an administrator would.
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        assert!(Instant::now() < deadline, "the job never started");
        if let Some(pid) = attempts(dir, 1).first().and_then(|a| a["backend_id"].as_str().map(str::to_string)) {
            if dir.join("jobs/000/000001/once").exists() {
                break pid.parse::<i32>().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: killing the job process this test's orchestrator started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(status.success());
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 1, "{s}");
    assert_eq!(outcomes(dir, 1), ["killed", "done"]);
    assert!(attempts(dir, 1)[0]["message"].as_str().unwrap().contains("killed by signal 9"));
    // SAFETY: clean up the orphaned `sleep` of the killed attempt (its process group).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

#[test]
fn an_unusable_job_directory_is_an_infrastructure_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, 4);
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", dir.to_str().unwrap()]);
    // A file where the job directory of calculation 2 must go: it cannot be created
    // (permissions would not stop root, a file in the way stops everyone).
    std::fs::create_dir_all(dir.join("jobs/000")).unwrap();
    std::fs::write(dir.join("jobs/000/000002"), "in the way").unwrap();
    let out = ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 3, "{s}");
    assert_eq!(s["failed_ids"], serde_json::json!([2]));
    assert_eq!(outcomes(dir, 2), ["setup", "setup", "setup"]);
    assert!(attempts(dir, 2)[0]["message"].as_str().unwrap().contains("cannot create the job directory"));
    assert!(stderr(&out).contains("Retrying calculation 2 (attempt 2 of 3)"));
}

#[test]
fn physics_and_infrastructure_failures_have_separate_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Attempts 1-2 crash (infrastructure), 3-4 are not converged (physics), 5 works:
    // with 2 retries of each kind, the calculation must still finish.
    let command = format!(
        r#"n=$(cat ../count 2>/dev/null || echo 0); echo $((n+1)) > ../count
case $n in
  0|1) exit 1 ;;
  2|3) printf '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:3 energy=0 converged=F pbc="T T T"\nCu 0 0 0 0 0 0\n' > output.xyz ;;
  *) {WRITE_LABEL} ;;
esac"#
    );
    import_command(dir, 1, &command);
    ok(&["jobs", "run", "--dir", dir.to_str().unwrap()]);
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), 1, "{s}");
    assert_eq!(outcomes(dir, 1), ["crashed", "crashed", "physics", "physics", "done"]);
    assert_eq!(s["executions"], 5);
    // The label is the one of the successful attempt.
    let out = dir.join("out.xyz");
    ok(&["jobs", "export", "--dir", dir.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(std::fs::read_to_string(out).unwrap().contains("energy=-1.5"));
}

#[test]
fn more_than_half_failing_stops_the_batch_resumably() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_command(dir, 20, "exit 1");
    let out = run(&["jobs", "run", "--dir", dir.to_str().unwrap(), "--max-infra-retries", "0"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Stopping: 11 of 20 calculations in this batch failed"), "{err}");
    assert!(err.contains("failure_tolerance = 0.5"), "{err}");
    let s = status_json(dir);
    let (failed, pending) = (count(&s, "failed"), count(&s, "pending"));
    assert!((11..=12).contains(&failed), "{s}");
    assert_eq!(failed + pending, 20, "{s}");
    assert_eq!(count(&s, "running"), 0);
    // Resumable: reset brings everything back.
    ok(&["jobs", "reset", "--dir", dir.to_str().unwrap(), "--failed"]);
    assert_eq!(count(&status_json(dir), "pending"), 20);
}

#[test]
fn failures_below_tolerance_finish_the_batch_and_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let command = format!("case $AUTOPIPE_CALCULATION_ID in 2|5) exit 1 ;; esac; {WRITE_LABEL}");
    import_command(dir, 10, &command);
    let out = run(&["jobs", "run", "--dir", dir.to_str().unwrap(), "--max-infra-retries", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("batch of 10: 8 done, 2 failed"), "{}", stderr(&out));
    let s = status_json(dir);
    assert_eq!(s["failed_ids"], serde_json::json!([2, 5]));
    assert_eq!(count(&s, "done"), 8);
    let table = stdout(&ok(&["jobs", "status", "--dir", dir.to_str().unwrap()]));
    assert!(table.contains("#2") && table.contains("#5") && table.contains("exited with code 1"), "{table}");
}

#[test]
fn ctrl_c_stops_running_jobs_and_puts_them_back_to_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_command(dir, 3, "sleep 30");
    let child = autopipe()
        .args(["jobs", "run", "--dir", dir.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&status_json(dir), "running") < 2 {
        assert!(Instant::now() < deadline, "the jobs never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: SIGINT to the orchestrator this test started, as Ctrl-C would send.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10), "Ctrl-C must not wait for the jobs");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let s = status_json(dir);
    assert_eq!(count(&s, "pending"), 3, "{s}");
    assert_eq!(count(&s, "running"), 0);
    let err = String::from_utf8_lossy(&out.stderr);
    let db = dir.join("autopipe.db");
    assert!(
        err.contains(&format!(
            "interrupted: 0 labels are saved in {}; 2 running jobs were stopped and put back to pending; \
             run the same command again to resume",
            db.display()
        )),
        "{err}"
    );
}
