//! Pacemaker (ACE) as the training engine, end to end with the real Pacemaker
//! (python-ace + tensorpotential in `/opt/autopipe-pace`, or `AUTOPIPE_PACE_PYTHON`; made by
//! `scripts/install-test-deps.sh`): a small Cu/EMT set from `autopipe md --emt`, fitted by
//! `potential fit --kind pace` (a tiny basis, 20 BFGS iterations: about a minute), which runs
//! Pacemaker as a job through the executor and evaluates with Pacemaker's own calculator.
//!
//! Checked against independent numbers: the training errors we compute (pyace's C++
//! calculator in our long-lived Python process) equal what Pacemaker itself reports at the
//! end of its fit (its TensorFlow evaluator); our forces and stress are the derivatives of
//! our energy (central finite differences), so units and signs are carried right; γ from
//! the active set is near 1 on the training frames and far above it on a compressed cell.

mod common;
use autopipe_atoms::extxyz::read_extxyz_file;
use autopipe_workflow::pace_job::{pace_python, read_pace_model, PaceEvaluator};
use common::*;
use std::path::Path;

fn require_pacemaker() {
    let py = pace_python();
    let ok = std::process::Command::new(&py)
        .args(["-c", "import pyace, tensorpotential"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok && py.with_file_name("pacemaker").is_file(),
        "this test needs Pacemaker: {} cannot import pyace/tensorpotential (run scripts/install-test-deps.sh, \
         or set AUTOPIPE_PACE_PYTHON)",
        py.display()
    );
}

/// Pacemaker's own final training RMSE from its log: (energy meV/atom, forces meV/Å).
fn pacemaker_reported_rmse(log: &Path) -> (f64, f64) {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text.lines().rev().find(|l| l.trim_start().starts_with("RMSE:")).expect("an RMSE table in the log");
    let v: Vec<f64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    (v[0], v[2])
}

#[test]
fn pace_fit_and_eval_end_to_end() {
    require_pacemaker();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    ok(&["md", "--emt", "--supercell", "2", "2", "2", "--temperature-k", "800", "--steps", "300", "--every", "20"]
        .into_iter()
        .chain(["--out", &p("cu.xyz")])
        .collect::<Vec<_>>());

    // Bad input is refused before anything runs.
    let out = run(&["potential", "fit", "--kind", "pace", &p("cu.xyz"), "--out", &p("x.json"), "--folds", "3"]);
    assert!(!out.status.success() && stderr(&out).contains("not --kind pace"), "{}", stderr(&out));
    let out = autopipe()
        .args(["potential", "fit", "--kind", "pace", &p("cu.xyz"), "--out", &p("x.json")])
        .env("AUTOPIPE_PACE_PYTHON", "/nonexistent/bin/python")
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("Pacemaker is not installed"), "{}", stderr(&out));
    let out = run(&["potential", "fit", "--kind", "pace", &p("cu.xyz"), "--out", &p("x.json"), "--functions", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("functions_per_element"), "{}", stderr(&out));

    // The settings from a configuration's [potential.pace]; k-fold cross-validation (the
    // example's fit.folds) would be that many Pacemaker fits: refused at its key, before any work.
    let config = p("pace.toml");
    let example = stdout(&ok(&["init", "--example", "cu-emt"]));
    let example = example.replace("[potential]", "[potential]\nkind = \"pace\"");
    let pace = "\n[potential.pace]\nfunctions_per_element = 8\nmax_iterations = 20\n";
    std::fs::write(&config, example.clone() + pace).unwrap();
    let out = run(&["run", &config, "--dir", &p("run")]);
    assert!(!out.status.success() && stderr(&out).contains("fit.folds"), "{}", stderr(&out));
    assert!(!tmp.path().join("run").join("autopipe.db").exists());
    let example = example.lines().filter(|l| !l.starts_with("folds")).collect::<Vec<_>>().join("\n");
    std::fs::write(&config, example + pace).unwrap();

    let model_path = p("pace.json");
    let out = ok(&[
        "potential",
        "fit",
        "--kind",
        "pace",
        &p("cu.xyz"),
        "--out",
        &model_path,
        "--config",
        &config,
        "--test-fraction",
        "0.2",
    ]);
    let fig = figures(&stdout(&out));
    let fit_dir = tmp.path().join("pace.json.pace-fit");
    for f in ["input.yaml", "data.pckl.gzip", "weights.pckl.gzip", "output_potential.yaml", "output_potential.asi"] {
        assert!(fit_dir.join(f).is_file(), "{f} missing in {}", fit_dir.display());
    }
    let yaml = std::fs::read_to_string(fit_dir.join("input.yaml")).unwrap();
    assert!(yaml.contains("number_of_functions_per_element: 8") && yaml.contains("maxiter: 20"), "{yaml}");
    eprintln!("{}", stderr(&out));

    // Our training errors are Pacemaker's own (it prints two decimals).
    let (e_pm, f_pm) = pacemaker_reported_rmse(&fit_dir.join("pacemaker.log"));
    let (e_ours, f_ours) = (fig["train_energy_rmse"], fig["train_force_rmse"] * 1e3);
    assert!((e_ours - e_pm).abs() <= 0.006 + 1e-3 * e_pm, "energy RMSE: ours {e_ours} vs Pacemaker {e_pm} meV/atom");
    assert!((f_ours - f_pm).abs() <= 0.006 + 1e-3 * f_pm, "force RMSE: ours {f_ours} vs Pacemaker {f_pm} meV/Å");
    // And the fit learned something: forces well below the labels' own spread.
    let frames = read_extxyz_file(&tmp.path().join("cu.xyz")).unwrap();
    let f_rms = {
        let v: Vec<f64> = frames.iter().flat_map(|f| f.forces_ev_per_a.clone().unwrap().concat()).collect();
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    };
    assert!(fig["train_force_rmse"] < 0.6 * f_rms, "train force RMSE {} vs label RMS {f_rms}", fig["train_force_rmse"]);
    assert!(fig.contains_key("test_force_rmse"), "a held-out test set: {fig:?}");

    // `potential eval` on the training labels gives the fit's training errors again.
    let labels = fit_dir.join("labels.xyz");
    let ev = figures(&stdout(&ok(&["potential", "eval", labels.to_str().unwrap(), "--model", &model_path])));
    assert!((ev["force_rmse"] - fig["train_force_rmse"]).abs() < 1e-6, "{ev:?} vs {fig:?}");
    let gamma_train = ev["max_gamma"];
    // A cell compressed by 9% is outside the training data: γ far above the training frames'.
    ok(&["md", "--emt", "--lattice-constant-a", "3.3", "--supercell", "2", "2", "2", "--steps", "20", "--every", "20"]
        .into_iter()
        .chain(["--out", &p("hot.xyz")])
        .collect::<Vec<_>>());
    let hot = figures(&stdout(&ok(&["potential", "eval", &p("hot.xyz"), "--model", &model_path])));
    assert!(gamma_train < 2.5 && hot["max_gamma"] > 2.0 * gamma_train, "γ train {gamma_train}, compressed {hot:?}");

    // Forces and stress are the derivatives of the energy (units and signs carried right).
    let model = read_pace_model(Path::new(&model_path)).unwrap();
    let mut calc = PaceEvaluator::start(&model).unwrap();
    let s0 = frames[5].structure.clone();
    let r0 = calc.evaluate(&s0).unwrap();
    let h = 1e-4;
    for (atom, c) in [(0, 0), (3, 1), (7, 2)] {
        let mut e = [0.0; 2];
        for (k, sign) in [1.0, -1.0].into_iter().enumerate() {
            let mut s = s0.clone();
            s.positions_a[atom][c] += sign * h;
            e[k] = calc.evaluate(&s).unwrap().energy_ev;
        }
        let fd = -(e[0] - e[1]) / (2.0 * h);
        assert!(
            (fd - r0.forces_ev_per_a[atom][c]).abs() < 2e-5,
            "atom {atom} {c}: {fd} vs {:?}",
            r0.forces_ev_per_a[atom]
        );
    }
    // σ_xx = (1/V) dE/dε_xx and σ_xy (Voigt 5) with a symmetric strain, atoms moved along.
    let stress = r0.stress_ev_per_a3.expect("a periodic cell has a stress");
    for (voigt, (i, j)) in [(0usize, (0usize, 0usize)), (5, (0, 1))] {
        let mut e = [0.0; 2];
        for (k, sign) in [1.0, -1.0].into_iter().enumerate() {
            let mut eps = [[0.0; 3]; 3];
            eps[i][j] += sign * h / if i == j { 1.0 } else { 2.0 };
            eps[j][i] = eps[i][j];
            let deform = |v: [f64; 3]| -> [f64; 3] {
                std::array::from_fn(|a| v[a] + (0..3).map(|b| v[b] * eps[b][a]).sum::<f64>())
            };
            let mut s = s0.clone();
            s.cell_a = s.cell_a.map(deform);
            s.positions_a = s.positions_a.iter().map(|&v| deform(v)).collect();
            e[k] = calc.evaluate(&s).unwrap().energy_ev;
        }
        let fd = (e[0] - e[1]) / (2.0 * h) / s0.volume_a3();
        assert!((fd - stress[voigt]).abs() < 1e-6, "stress {voigt}: {fd} vs {stress:?}");
    }

    // The fit's job is done: running its directory again changes nothing.
    let result = std::fs::read(fit_dir.join("result.json")).unwrap();
    ok(&["job-exec", fit_dir.to_str().unwrap()]);
    assert_eq!(std::fs::read(fit_dir.join("result.json")).unwrap(), result);
}
