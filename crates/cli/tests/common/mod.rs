//! Helpers for tests that run the real `autopipe` binary in a temporary directory.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn autopipe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_autopipe"))
}

/// Run `autopipe ARGS` and return its output (whatever the exit code).
pub fn run(args: &[&str]) -> Output {
    autopipe().args(args).output().expect("the autopipe binary runs")
}

/// Run `autopipe ARGS`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "autopipe {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn status_json(dir: &Path) -> serde_json::Value {
    let out = ok(&["jobs", "status", "--dir", dir.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout).expect("status --json prints one JSON object")
}

pub fn count(status: &serde_json::Value, key: &str) -> u64 {
    status["counts"][key].as_u64().unwrap_or_else(|| panic!("counts.{key} in {status}"))
}

/// Write `n` distinct one-atom Cu cells (simple cubic, strained) as extended XYZ.
pub fn one_atom_cells(path: &Path, n: usize) {
    ok(&[
        "build",
        "bulk",
        "--lattice",
        "sc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "2.5",
        "--supercell",
        "1",
        "1",
        "1",
        "--count",
        &n.to_string(),
        "--max-strain",
        "0.05",
        "--rattle-a",
        "0",
        "--out",
        path.to_str().unwrap(),
    ]);
}

/// A shell command for `--engine command` that writes a valid one-atom label.
pub const WRITE_LABEL: &str = r#"printf '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc="T T T"\nCu 0 0 0 0.1 0 0\n' > output.xyz"#;

/// Run `autopipe run ARGS`, which must end converged (exit 0) or finished without
/// converging (exit 4).
pub fn run_loop(args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        matches!(out.status.code(), Some(0 | 4)),
        "autopipe {all:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `name value unit` lines (what `potential fit|eval` print) -> name -> value.
pub fn figures(stdout: &str) -> std::collections::BTreeMap<String, f64> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// Labels in the run's database whose structure came from `origin` (e.g. "goal:hull").
pub fn labels_of_origin(dir: &Path, origin: &str) -> usize {
    let store = autopipe_store::JobStore::open_read_only(dir).expect("the run's database");
    store.labels().expect("labels").iter().filter(|l| l.origin == origin).count()
}
