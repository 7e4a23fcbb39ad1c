//! Commands no other test runs through the binary: `autopipe parse` on every real output
//! fixture of the engines' tests, and `autopipe bench`. (`autopipe export --lammps` and
//! its files in LAMMPS: hardening.rs,
//! `the_exported_potential_carries_provenance_and_works_from_any_directory`.)

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn data(engine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../engines/tests/data").join(engine)
}

fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * y.abs().max(1e-3), "{what}: printed {x}, expected {y}"),
        (None, None) => {}
        _ => panic!("{what}: printed {a}, expected {b}"),
    }
}

/// `autopipe parse` prints, for every fixture, the values verified by hand in the
/// engines' `tests/data/ENGINE/expected.json` (QE, CP2K, ORCA with a gzipped output, VASP
/// vasprun.xml, gzipped vasprun.xml and OUTCAR).
#[test]
fn parse_prints_the_verified_values_of_every_real_output() {
    let mut n = 0;
    for engine in ["qe", "cp2k", "orca", "vasp"] {
        let dir = data(engine);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        for (file, exp) in expected.as_object().unwrap() {
            let path = dir.join(file);
            let out = ok(&["parse", "--engine", engine, path.to_str().unwrap()]);
            let ctx = format!("parse --engine {engine} {file}");
            let text = stdout(&out);
            assert_eq!(text.lines().count(), 1, "{ctx}: one JSON object on one line\n{text}");
            let p: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{ctx}: {e}\n{text}"));
            assert_eq!(p["status"], exp["status"], "{ctx}: {p}");
            for key in ["energy_ev", "max_force_ev_per_a", "wall_time_s"] {
                close(&p[key], &exp[key], &format!("{ctx} {key}"));
            }
            assert_eq!(p["scf_steps"].as_u64(), exp["scf_steps"].as_u64(), "{ctx}: scf_steps");
            match (p["forces_ev_per_a"].as_array(), exp["forces_ev_per_a"].as_array()) {
                (Some(f), Some(e)) => {
                    assert_eq!(f.len(), e.len(), "{ctx}: number of forces");
                    for (i, (a, b)) in f.iter().zip(e).enumerate() {
                        for k in 0..3 {
                            close(&a[k], &b[k], &format!("{ctx} force {i}/{k}"));
                        }
                    }
                }
                (None, None) => {}
                (a, b) => panic!("{ctx}: forces printed {a:?}, expected {b:?}"),
            }
            match (p["stress_ev_per_a3"].as_array(), exp["stress_ev_per_a3"].as_array()) {
                (Some(s), Some(e)) => {
                    assert_eq!(s.len(), 6, "{ctx}: Voigt stress");
                    for k in 0..6 {
                        close(&s[k], &e[k], &format!("{ctx} stress {k}"));
                    }
                }
                (None, None) => {}
                (a, b) => panic!("{ctx}: stress printed {a:?}, expected {b:?}"),
            }
            if let Some(m) = exp.get("message_contains").and_then(Value::as_str) {
                let message = p["message"].as_str().unwrap_or_default();
                assert!(message.contains(m), "{ctx}: message {message:?} should contain {m:?}");
            }
            n += 1;
        }
    }
    assert!(n >= 45, "only {n} fixtures");

    // Not an output of that program, a missing file, an unknown engine: exit 1, saying so.
    let not_output = data("qe").join("expected.json");
    for (args, needle) in [
        (vec!["parse", "--engine", "qe", not_output.to_str().unwrap()], not_output.to_str().unwrap().to_string()),
        (vec!["parse", "--engine", "cp2k", "/nonexistent/cp2k.out"], "/nonexistent/cp2k.out".to_string()),
        (vec!["parse", "--engine", "gaussian", not_output.to_str().unwrap()], "unknown engine".to_string()),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&needle), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
}

/// `autopipe bench` prints only `name value unit` lines with finite positive values, every
/// measurement included (the LAMMPS ones too: this test needs LAMMPS's Python, like the
/// other comparisons with LAMMPS; the Slurm ones run when a Slurm answers). Run as `--smoke` (every measurement once at toy sizes,
/// seconds) because `--quick` takes about a minute on 2 cores, too long for the suite.
#[test]
fn bench_prints_one_name_value_unit_line_per_figure() {
    let python = std::env::var("AUTOPIPE_LAMMPS_PYTHON").unwrap_or_else(|_| "/opt/autopipe-venv/bin/python".into());
    assert!(
        std::path::Path::new(&python).exists(),
        "LAMMPS's Python {python} is missing: run ./scripts/install-test-deps.sh"
    );
    let out = autopipe()
        .args(["bench", "--smoke"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AUTOPIPE_LAMMPS_PYTHON", &python)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let mut names = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "not `name value unit`: {line:?}");
        let (name, value, unit) = (fields[0], fields[1], fields[2]);
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "name {name:?} in {line:?}"
        );
        let v: f64 = value.parse().unwrap_or_else(|e| panic!("value {value:?} in {line:?}: {e}"));
        assert!(v.is_finite() && v > 0.0, "value {v} in {line:?}");
        assert!(!unit.is_empty(), "no unit in {line:?}");
        assert!(!names.contains(&name), "{name} printed twice");
        names.push(name);
    }
    for wanted in [
        "qe_parse_mb_per_s",
        "cp2k_parse_mb_per_s",
        "snap_desc_grad_atoms_per_s",
        "lammps_snad_atoms_per_s",
        "snap_desc_grad_vs_lammps",
        "snap_md_2j6_atom_steps_per_s",
        "snap_md_2j6_atom_steps_per_s_2_threads",
        "lammps_2j6_md_atom_steps_per_s",
        "snap_md_2j6_vs_lammps",
        "snap_md_2j8_atom_steps_per_s",
        "snap_md_2j8_vs_lammps",
        "fit_s_12_cells_1_thread",
        "fit_s_12_cells_2_threads",
        "emt_atoms_per_s",
        "elastic_cu_model_s",
        "elastic_cu_emt_s",
        "elastic_with_oracle_cu_emt_jobs_s",
        "hull_goal_cu_ni_13_candidates_s",
        "sqs_trial_swaps_per_s",
        "sqs_s_to_within_0_01_of_best",
        "lammps_explore_atom_steps_per_s_1core",
        "lammps_explore_atom_steps_per_s_2core",
        "lammps_explore_nowatch_atom_steps_per_s_1core",
        "lammps_explore_nowatch_atom_steps_per_s_2core",
        "native_md_atom_steps_per_s",
        "extract_cells_per_s",
        "fps_s",
        "fps_s_uniform_random",
        "ase_bridge_structures_per_s",
        "emt_builtin_structures_per_s",
        "screen_structures_per_s",
        "emt_ms_per_500_atoms",
        "store_import_per_s",
        "store_transitions_per_s",
        "status_ms_200",
        "status_table_ms_200",
        "jobs_per_s_local",
        "job_seconds_each",
        "speedup_2_workers",
        "reconcile_200_s",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from:\n{text}");
    }
}

/// `bench --only` runs the groups named and no other; an unknown group is refused with the
/// list of groups before anything is measured.
#[test]
fn bench_only_runs_the_groups_named() {
    let out = autopipe().args(["bench", "--smoke", "--only", "emt"]).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(names.contains(&"emt_atoms_per_s"), "{text}");
    assert!(names.iter().all(|n| n.starts_with("emt_")), "a group not asked for ran: {text}");

    let out = autopipe().args(["bench", "--smoke", "--only", "emt,nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty(), "measured before refusing: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("\"nope\"") && err.contains("explore"), "{err}");
}
