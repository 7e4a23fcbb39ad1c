//! Several orchestrators on one database, and allocation mode.
//!
//! Two `jobs run` processes share 1,000 calculations: each claim is one transaction and
//! each in-flight calculation carries its owner's lease, so no calculation is executed
//! twice (counted in the attempts table and in the job directories). Allocation mode
//! binds each worker's job to its own cores.

mod common;
use common::*;
use std::path::Path;
use std::process::Stdio;

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// "batch of N: D done, ..." -> D.
fn done_in(stderr: &str) -> u64 {
    let line = stderr.lines().rev().find(|l| l.starts_with("batch of ")).unwrap_or_else(|| panic!("{stderr}"));
    let after = line.split(": ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn two_jobs_run_processes_share_a_thousand_calculations_and_run_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cells = tmp.path().join("cells.xyz");
    one_atom_cells(&cells, 1000);
    ok(&["jobs", "import", d(&cells), "--dir", d(&dir)]);
    let spawn = || {
        autopipe()
            .args(["jobs", "run", "--dir", d(&dir), "--workers", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", stderr(&a), stderr(&b));
    let (da, db) = (done_in(&stderr(&a)), done_in(&stderr(&b)));
    assert_eq!(da + db, 1000, "each label is finished by exactly one of them");
    assert!(da > 0 && db > 0, "both worked: {da} and {db}");
    let s = status_json(&dir);
    assert_eq!(count(&s, "done"), 1000, "{s}");
    assert_eq!(s["executions"], 1000, "no calculation was executed twice: {s}");
    let mut attempt_dirs = 0;
    for group in std::fs::read_dir(dir.join("jobs")).unwrap() {
        for calc in std::fs::read_dir(group.unwrap().path()).unwrap() {
            let n = std::fs::read_dir(calc.unwrap().path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("attempt-"))
                .count();
            assert_eq!(n, 1);
            attempt_dirs += n;
        }
    }
    assert_eq!(attempt_dirs, 1000);
}

#[test]
fn allocation_mode_binds_each_worker_to_its_own_cores() {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cells = tmp.path().join("cells.xyz");
    one_atom_cells(&cells, 6);
    // Each job records the CPUs it may run on and OMP_NUM_THREADS, while both run.
    let command = format!(
        "grep Cpus_allowed_list /proc/self/status | cut -f2 > ../cpus; echo \"$OMP_NUM_THREADS $AUTOPIPE_CORES\" > ../omp; sleep 0.5; {WRITE_LABEL}"
    );
    ok(&["jobs", "import", d(&cells), "--dir", d(&dir), "--engine", "command", "--command", &command]);
    ok(&["jobs", "run", "--dir", d(&dir), "--workers", "2", "--cores-per-worker", "1"]);
    let mut seen = std::collections::BTreeSet::new();
    for id in 1..=6 {
        let calc = dir.join(format!("jobs/000/{id:06}"));
        let allowed = std::fs::read_to_string(calc.join("cpus")).unwrap().trim().to_string();
        assert!(allowed.parse::<usize>().is_ok(), "calculation {id} is bound to one CPU: {allowed:?}");
        seen.insert(allowed);
        assert_eq!(std::fs::read_to_string(calc.join("omp")).unwrap().trim(), "1 1");
    }
    assert_eq!(seen.len(), cpus.min(2), "the two workers use different cores: {seen:?}");
    // Allocation mode is the local backend's.
    let out = run(&["jobs", "run", "--dir", d(&dir), "--backend", "slurm", "--cores-per-worker", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--cpus-per-task"), "{}", stderr(&out));
}
