//! The user's side of the job manager: attempt directories, `cancel`, `forget`,
//! `status --id`, the messages of a stopped or interrupted batch, and input that is
//! refused before anything is created. Every test runs the real binary on real
//! processes (EMT or tiny shell commands); nothing is injected.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn d(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn import_emt(dir: &Path, n: usize) {
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, n);
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d(dir)]);
}

fn import_command(dir: &Path, n: usize, command: &str) {
    let xyz = dir.join("cells.xyz");
    one_atom_cells(&xyz, n);
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d(dir), "--engine", "command", "--command", command]);
}

fn detail(dir: &Path, id: i64) -> serde_json::Value {
    let out = ok(&["jobs", "status", "--dir", d(dir), "--id", &id.to_string(), "--json"]);
    serde_json::from_slice(&out.stdout).expect("status --id --json prints one JSON object")
}

fn outcomes(dir: &Path, id: i64) -> Vec<String> {
    detail(dir, id)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("in flight").to_string())
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[test]
fn every_attempt_runs_in_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Attempt 1 crashes, attempt 2 writes a label; each says which it is on stdout.
    let command = format!(
        "echo \"this is attempt $AUTOPIPE_ATTEMPT\"; if [ ! -e ../once ]; then touch ../once; exit 1; fi; {WRITE_LABEL}"
    );
    import_command(dir, 1, &command);
    ok(&["jobs", "run", "--dir", d(dir)]);
    assert_eq!(outcomes(dir, 1), ["crashed", "done"]);
    let calc = dir.join("jobs/000/000001");
    let read = |p: &str| std::fs::read_to_string(calc.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("attempt-1/stdout").trim(), "this is attempt 1");
    assert_eq!(read("attempt-2/stdout").trim(), "this is attempt 2");
    for f in ["job.json", "stderr", "input.xyz", "result.json"] {
        assert!(calc.join("attempt-1").join(f).is_file(), "attempt-1/{f}");
    }
    assert!(calc.join("attempt-2/output.xyz").is_file());
    assert!(!calc.join("stdout").exists(), "nothing is appended across attempts any more");
    let v = detail(dir, 1);
    assert_eq!(v["attempts"][1]["dir"].as_str().unwrap(), calc.join("attempt-2").to_str().unwrap());
    assert_eq!(v["calc_dir"].as_str().unwrap(), calc.to_str().unwrap());
}

#[test]
fn status_of_one_calculation_shows_everything_and_unknown_ids_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_emt(dir, 1);
    ok(&["jobs", "run", "--dir", d(dir)]);
    let text = stdout(&ok(&["jobs", "status", "--dir", d(dir), "--id", "1"]));
    for want in ["calculation 1: done", "emt", "Cu (1 atom)", "import:", "generation 0", "energy", "max force"] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    assert!(text.contains("1 attempt ") && !text.contains("1 attempts"), "{text}");
    assert!(text.contains("attempt-1") && text.contains("wall time"), "{text}");
    let v = detail(dir, 1);
    assert_eq!(v["status"], "done");
    assert_eq!(v["structure"]["formula"], "Cu");
    assert_eq!(v["structure"]["n_atoms"], 1);
    assert!(v["energy_ev"].is_f64() && v["max_force_ev_per_a"].is_f64(), "{v}");
    assert_eq!(v["attempts"][0]["outcome"], "done");

    let out = run(&["jobs", "status", "--dir", d(dir), "--id", "999"]);
    assert_eq!(out.status.code(), Some(1));
    let db = dir.join("autopipe.db");
    assert!(stderr(&out).contains(&format!("no calculation 999 in {}", db.display())), "{}", stderr(&out));
}

#[test]
fn cancelled_calculations_never_run_and_reset_brings_them_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_emt(dir, 3);
    // Unknown ids: an error naming them, and nothing changes.
    let out = run(&["jobs", "cancel", "--dir", d(dir), "2", "98", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no calculations 98, 99 in"), "{}", stderr(&out));
    assert_eq!(count(&status_json(dir), "pending"), 3);

    let out = ok(&["jobs", "cancel", "--dir", d(dir), "2"]);
    assert!(stdout(&out).contains("cancelled calculation 2 (it was pending)"), "{}", stdout(&out));
    let out = ok(&["jobs", "run", "--dir", d(dir)]);
    assert!(stderr(&out).contains("batch of 2: 2 done"), "{}", stderr(&out));
    let s = status_json(dir);
    assert_eq!(s["cancelled_ids"], serde_json::json!([2]));
    assert_eq!(count(&s, "done"), 2);
    assert_eq!(s["executions"], 2, "a cancelled calculation never runs");

    let out = ok(&["jobs", "reset", "--dir", d(dir), "--cancelled"]);
    assert!(stdout(&out).contains("1 calculation back to pending"), "{}", stdout(&out));
    ok(&["jobs", "run", "--dir", d(dir)]);
    assert_eq!(count(&status_json(dir), "done"), 3);
}

#[test]
fn cancel_from_another_process_stops_a_running_job_that_is_never_harvested() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Calculation 1 hangs (and records its process id); calculation 2 is quick.
    let command = format!("case $AUTOPIPE_CALCULATION_ID in 1) echo $$ > ../pid; sleep 30 ;; esac; {WRITE_LABEL}");
    import_command(dir, 2, &command);
    let child = autopipe()
        .args(["jobs", "run", "--dir", d(dir), "--workers", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = dir.join("jobs/000/000001/pid");
    wait_until("calculation 1 to start", || pid_file.exists() && count(&status_json(dir), "done") == 1);

    // Writers wait their turn (the run lock), cancel does not.
    let out = run(&["jobs", "forget", "--dir", d(dir), "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("another autopipe"), "{}", stderr(&out));

    let start = Instant::now();
    let out = ok(&["jobs", "cancel", "--dir", d(dir), "1"]);
    assert!(stdout(&out).contains("cancelled calculation 1 (it was running)"), "{}", stdout(&out));
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10), "the cancelled job was not stopped");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a cancellation is no failure: {err}");
    assert!(err.contains("Calculation 1 was cancelled"), "{err}");
    assert!(!err.contains("error"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    wait_until("the cancelled engine to die", || !pid_alive(pid));
    let s = status_json(dir);
    assert_eq!(s["cancelled_ids"], serde_json::json!([1]));
    assert_eq!(s["done_ids"], serde_json::json!([2]));
    assert_eq!(outcomes(dir, 1), ["cancelled"]);
    // Never harvested later either.
    ok(&["jobs", "run", "--dir", d(dir)]);
    assert_eq!(status_json(dir)["cancelled_ids"], serde_json::json!([1]));

    // Now it may be forgotten; its directory stays on disk and is named.
    let out = ok(&["jobs", "forget", "--dir", d(dir), "1"]);
    let text = stdout(&out);
    assert!(text.contains("forgot calculation 1 (Cu, cancelled, 1 attempt"), "{text}");
    assert!(text.contains(dir.join("jobs/000/000001").to_str().unwrap()), "{text}");
    assert!(dir.join("jobs/000/000001").is_dir());
    let s = status_json(dir);
    assert_eq!(s["counts"]["cancelled"], 0);
    assert_eq!(count(&s, "done"), 1);
}

#[test]
fn forget_removes_finished_calculations_and_unknown_ids_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_emt(dir, 3);
    ok(&["jobs", "run", "--dir", d(dir)]);
    let out = run(&["jobs", "forget", "--dir", d(dir), "2", "77"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no calculation 77 in"), "{}", stderr(&out));
    assert_eq!(count(&status_json(dir), "done"), 3);
    let out = ok(&["jobs", "forget", "--dir", d(dir), "2"]);
    assert!(stdout(&out).contains("1 calculation forgotten"), "{}", stdout(&out));
    let xyz = dir.join("out.xyz");
    let out = ok(&["jobs", "export", "--dir", d(dir), xyz.to_str().unwrap()]);
    assert!(stdout(&out).contains("2 labels written"), "{}", stdout(&out));
    let s = status_json(dir);
    assert_eq!(s["done_ids"], serde_json::json!([1, 3]));
    // Importing the file again brings the forgotten structure back as a new calculation.
    let out = ok(&["jobs", "import", dir.join("cells.xyz").to_str().unwrap(), "--dir", d(dir)]);
    assert!(stdout(&out).contains("1 calculation added, 2 already present"), "{}", stdout(&out));
}

#[test]
fn a_wall_time_stop_names_the_reset_that_brings_the_jobs_back_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_command(dir, 3, "sleep 5");
    let out = run(&[
        "jobs",
        "run",
        "--dir",
        d(dir),
        "--workers",
        "1",
        "--walltime-s",
        "0.3",
        "--max-infra-retries",
        "0",
        "--failure-tolerance",
        "0.3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_eq!(err.matches("Stopping:").count(), 1, "{err}");
    let hint = format!("autopipe jobs reset --dir {} --timeout", d(dir));
    assert_eq!(err.matches(&hint).count(), 1, "{err}");
    assert!(!err.contains("--failed"), "{err}");
    assert!(err.contains("2 calculations stay pending"), "{err}");
    // The hinted command does bring it back.
    let out = ok(&["jobs", "reset", "--dir", d(dir), "--timeout"]);
    assert!(stdout(&out).contains("1 calculation back to pending"), "{}", stdout(&out));
}

#[test]
fn once_stopping_nothing_is_retried_or_launched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 1 fails at once (twice: it has one retry); 2 fails later, while the batch stops.
    import_command(dir, 4, "case $AUTOPIPE_CALCULATION_ID in 1) exit 1 ;; 2) sleep 1; exit 1 ;; esac; sleep 5");
    let out = run(&[
        "jobs",
        "run",
        "--dir",
        d(dir),
        "--workers",
        "2",
        "--max-infra-retries",
        "1",
        "--failure-tolerance",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    let stop = err.find("Stopping:").unwrap_or_else(|| panic!("{err}"));
    assert!(!err[stop..].contains("Retrying"), "{err}");
    assert!(err.contains("waiting for 1 running job to finish"), "{err}");
    let s = status_json(dir);
    assert_eq!(s["failed_ids"], serde_json::json!([1]));
    // 2 keeps its retry for the next run; 3 and 4 were never launched.
    assert_eq!(s["pending_ids"], serde_json::json!([2, 3, 4]), "{s}");
    assert_eq!(s["executions"], 3);
    let table = stdout(&ok(&["jobs", "status", "--dir", d(dir)]));
    assert!(table.contains("after 2 attempts"), "{table}");
}

#[test]
fn empty_and_singular_inputs_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    let run_dir = tmp.path().join("RUN");
    let out = run(&["jobs", "import", empty.to_str().unwrap(), "--dir", run_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{} has no frames", empty.display())), "{}", stderr(&out));
    assert!(!run_dir.exists());

    // Frame 2 says periodic but has no Lattice.
    let bad = tmp.path().join("bad.xyz");
    std::fs::write(
        &bad,
        "1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 0 0\n\
         1\nProperties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 0 0\n",
    )
    .unwrap();
    let out = run(&["jobs", "import", bad.to_str().unwrap(), "--dir", run_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let want = format!("{}: frame 2: periodic but the cell is singular (no Lattice)", bad.display());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(!run_dir.exists());
}

#[test]
fn absurd_pool_settings_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_emt(dir, 1);
    for (flag, value) in [("--workers", "0"), ("--workers", "100000"), ("--max-infra-retries", "1000000")] {
        let out = run(&["jobs", "run", "--dir", d(dir), flag, value]);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr(&out).contains(flag), "{flag}: {}", stderr(&out));
    }
    assert_eq!(status_json(dir)["executions"], 0);
}

#[test]
fn an_input_error_fails_at_once_without_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A QE configuration whose pseudopotential directory does not exist: pw.x could
    // never succeed, so no attempt is retried (and pw.x is not even needed here).
    let config = stdout(&ok(&["init", "--example", "si-qe"]))
        .replace("/usr/share/espresso/pseudo", dir.join("no-such-pseudo-dir").to_str().unwrap());
    std::fs::write(dir.join("qe.toml"), config).unwrap();
    let xyz = dir.join("si.xyz");
    ok(&[
        "build",
        "bulk",
        "--lattice",
        "diamond",
        "--elements",
        "Si",
        "--lattice-constant-a",
        "5.43",
        "--supercell",
        "1",
        "1",
        "1",
        "--count",
        "1",
        "--out",
        xyz.to_str().unwrap(),
    ]);
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d(dir), "--config", dir.join("qe.toml").to_str().unwrap()]);
    let out = run(&["jobs", "run", "--dir", d(dir), "--failure-tolerance", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Calculation 1 can never succeed with this input and is not retried"), "{err}");
    assert!(!err.contains("Retrying"), "{err}");
    let s = status_json(dir);
    assert_eq!(s["failed_ids"], serde_json::json!([1]));
    assert_eq!(s["executions"], 1);
    assert_eq!(outcomes(dir, 1), ["input"]);
    assert!(detail(dir, 1)["message"].as_str().unwrap().contains("no-such-pseudo-dir/Si.pbe-rrkj.UPF"));
}

#[test]
fn a_job_orphaned_by_kill_9_cannot_be_forgotten_but_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_command(dir, 1, &format!("echo $$ > ../pid; sleep 30; {WRITE_LABEL}"));
    let mut child = autopipe().args(["jobs", "run", "--dir", d(dir)]).spawn().unwrap();
    let pid_file = dir.join("jobs/000/000001/pid");
    wait_until("the job to start", || pid_file.exists());
    child.kill().unwrap(); // SIGKILL: the job lives on, the database says running
    child.wait().unwrap();
    let out = run(&["jobs", "forget", "--dir", d(dir), "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("calculation 1 is running; cancel first") && err.contains("nothing was changed"), "{err}");
    assert_eq!(count(&status_json(dir), "running"), 1);
    // No orchestrator is left to stop it: cancel stops the live job itself.
    let out = ok(&["jobs", "cancel", "--dir", d(dir), "1"]);
    assert!(stdout(&out).contains("cancelled calculation 1 (it was running)"), "{}", stdout(&out));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    wait_until("the orphaned engine to die", || !pid_alive(pid));
    ok(&["jobs", "forget", "--dir", d(dir), "1"]);
    assert_eq!(
        status_json(dir)["counts"],
        serde_json::json!({"pending": 0, "submitted": 0, "running": 0, "done": 0, "failed": 0, "timeout": 0, "cancelled": 0})
    );
}

#[test]
fn an_error_shows_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-attempt");
    let out = run(&["job-exec", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(missing.join(".lock").to_str().unwrap()), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
