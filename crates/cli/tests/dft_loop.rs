//! The learning loop with real DFT oracles: the si-qe and si-cp2k examples for two
//! generations, and a convergence failure repaired by the remediation ladder through the
//! executor. Needs pw.x and cp2k.psmp (the README's test command installs them).

mod common;
use common::*;
use std::path::Path;
use std::time::Instant;

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn two_generations(example: &str, program: &str) {
    assert!(
        have(program),
        "{program} not found: apt-get install quantum-espresso cp2k cp2k-data (the README's test command does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join(format!("{example}.toml"));
    let text = stdout(&ok(&["init", "--example", example]));
    assert!(text.contains("max_generations = 4"));
    std::fs::write(&config, text.replace("max_generations = 4", "max_generations = 2")).unwrap();
    let start = Instant::now();
    let out = run_loop(&[config.to_str().unwrap()]);
    let wall_s = start.elapsed().as_secs_f64();
    let status: serde_json::Value =
        serde_json::from_slice(&ok(&["status", "--dir", dir.to_str().unwrap(), "--json"]).stdout).unwrap();
    let gens = status["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "two generations: {status}\n{}", stderr(&out));
    assert!(matches!(status["phase"].as_str(), Some("finished" | "converged")), "{status}");
    for g in gens {
        assert!(g["n_labelled"].as_u64().unwrap() > 0, "every generation labelled something: {g}");
        assert_eq!(g["n_failed"], 0);
        assert!(
            g["test_force_rmse_ev_per_a"].is_number() || g["metrics"]["train"]["forces_ev_per_a"]["rmse"].is_number()
        );
    }
    // Labels are DFT numbers: no net force on a periodic cell.
    let labels = dir.join("labels.xyz");
    ok(&["jobs", "export", "--dir", dir.to_str().unwrap(), labels.to_str().unwrap()]);
    for f in autopipe_atoms::extxyz::read_extxyz_file(&labels).unwrap() {
        let forces = f.forces_ev_per_a.unwrap();
        for c in 0..3 {
            let net: f64 = forces.iter().map(|x| x[c]).sum();
            assert!(net.abs() < 2e-3 * forces.len() as f64, "net force {net} eV/Å");
        }
    }
    let dft_core_s: f64 = gens.iter().map(|g| g["core_hours"].as_f64().unwrap() * 3600.0).sum();
    eprintln!(
        "{example}: two generations in {wall_s:.1} s wall; DFT {dft_core_s:.1} core-s on 2 workers (>= {:.1} s wall); everything else <= {:.1} s",
        dft_core_s / 2.0,
        wall_s - dft_core_s / 2.0
    );
}

#[test]
fn si_qe_example_runs_two_generations() {
    two_generations("si-qe", "pw.x");
}

#[test]
fn si_cp2k_example_runs_two_generations() {
    two_generations("si-cp2k", "cp2k.psmp");
}

fn attempts(dir: &Path, id: i64) -> Vec<serde_json::Value> {
    let out = ok(&["jobs", "status", "--dir", dir.to_str().unwrap(), "--id", &id.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["attempts"].as_array().cloned().unwrap()
}

/// pw.x with `electron_maxstep` far too small: the job fails as not converged (a physics
/// failure, although pw.x prints JOB DONE), the ladder changes only convergence knobs,
/// the retry converges, and the label equals a run converged directly.
#[test]
fn qe_non_convergence_is_repaired_by_the_ladder_through_the_executor() {
    assert!(have("pw.x"), "pw.x not found: apt-get install quantum-espresso");
    let tmp = tempfile::tempdir().unwrap();
    let si = stdout(&ok(&["init", "--example", "si-qe"]))
        .replace("kspacing_per_a = 0.5 ", "kpoints = [2, 2, 2] ")
        .replace("ecutwfc_ry = 25.0", "ecutwfc_ry = 20.0");
    let cell = tmp.path().join("si2.xyz");
    std::fs::write(
        &cell,
        "2\nLattice=\"0 2.715 2.715 2.715 0 2.715 2.715 2.715 0\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nSi 0 0 0\nSi 1.40 1.35 1.36\n",
    )
    .unwrap();
    let mut energies = Vec::new();
    for (name, text) in
        [("direct", si.clone()), ("repaired", si.replace("electron_maxstep = 100", "electron_maxstep = 3"))]
    {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("si.toml");
        std::fs::write(&config, text).unwrap();
        let d = dir.to_str().unwrap();
        ok(&["jobs", "import", cell.to_str().unwrap(), "--dir", d, "--config", config.to_str().unwrap()]);
        let out = ok(&["jobs", "run", "--dir", d]);
        let s = status_json(&dir);
        assert_eq!(count(&s, "done"), 1, "{s}\n{}", stderr(&out));
        let a = attempts(&dir, 1);
        if name == "repaired" {
            assert_eq!(a[0]["outcome"], "physics", "{a:?}");
            let changes = a[0]["changes"].as_str().unwrap();
            assert!(changes.contains("electron_maxstep"), "{changes}");
            assert!(
                !changes.contains("ecutwfc") && !changes.contains("kpoints"),
                "label-defining settings never change: {changes}"
            );
            assert_eq!(a.last().unwrap()["outcome"], "done");
            assert!(stderr(&out).contains("Retrying calculation 1 (attempt 2 of 3)"), "{}", stderr(&out));
            let table = stdout(&ok(&["jobs", "status", "--dir", d, "--id", "1"]));
            assert!(table.contains("next attempt:") && table.contains("electron_maxstep"), "{table}");
        } else {
            assert_eq!(a.len(), 1);
        }
        let labels = dir.join("labels.xyz");
        ok(&["jobs", "export", "--dir", d, labels.to_str().unwrap()]);
        energies.push(autopipe_atoms::extxyz::read_extxyz_file(&labels).unwrap()[0].energy_ev.unwrap());
    }
    // Same label-defining settings, so the same idempotency key and the same energy.
    assert!((energies[0] - energies[1]).abs() / 2.0 < 1e-5, "{energies:?} eV");
}
