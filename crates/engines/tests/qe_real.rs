//! Real pw.x runs (Quantum ESPRESSO 6.7 on this machine): a single point through
//! `run_pw`, forces against a central finite difference of the DFT energy, the ASE
//! stress sign against a finite strain, and an SCF failure repaired by `remediate`.
//!
//! These tests FAIL (they do not skip) when pw.x is missing.

use autopipe_atoms::{Element, Structure};
use autopipe_engines::output::{ParsedOutput, RunStatus};
use autopipe_engines::qe::{label_params, parse_pw_xml_convergence, remediate, run_pw, QeSettings};
use std::path::Path;
use std::time::Instant;

/// One DFT process at a time (the machine is small and shared): tests that run the
/// program hold this lock.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn require(program: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false);
    assert!(
        found,
        "{program} is not on PATH: these tests run the real programs; install them with \
         `apt-get install quantum-espresso cp2k cp2k-data`"
    );
}

fn si2(dx: [f64; 3]) -> Structure {
    let si = Element::from_symbol("Si").unwrap();
    let a = 2.715;
    Structure::new(
        [[0.0, a, a], [a, 0.0, a], [a, a, 0.0]],
        vec![[0.0 + dx[0], 0.0 + dx[1], 0.0 + dx[2]], [1.40, 1.30, 1.36]],
        vec![si, si],
        [true; 3],
    )
    .unwrap()
}

fn settings() -> QeSettings {
    let mut s = QeSettings::default();
    s.pseudopotentials.insert("Si".into(), "Si.pbe-rrkj.UPF".into());
    s.ecutwfc_ry = 20.0;
    s.kpoints = Some([3, 3, 3]);
    s.occupations = "fixed".into();
    s.conv_thr_ry = 1e-11;
    s
}

fn run(dir: &Path, name: &str, s: &Structure, set: &QeSettings) -> ParsedOutput {
    let t = Instant::now();
    let p = run_pw(&dir.join(name), s, set).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("pw.x {name}: {:.2} s, status {:?}, E = {:?} eV", t.elapsed().as_secs_f64(), p.status, p.energy_ev);
    p
}

fn converged_energy(p: &ParsedOutput, what: &str) -> f64 {
    assert_eq!(p.status, RunStatus::Converged, "{what}: {:?}", p.message);
    p.energy_ev.unwrap()
}

#[test]
fn pw_single_point_forces_stress_and_remediation() {
    require("pw.x");
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let set = settings();

    // --- single point
    let base = run(dir, "base", &si2([0.0; 3]), &set);
    let e0 = converged_energy(&base, "base");
    let labels = base.to_labels().expect("a converged run gives labels");
    assert_eq!(labels.forces_ev_per_a.len(), 2);
    let f = &labels.forces_ev_per_a;
    // Newton's third law for two atoms
    for k in 0..3 {
        assert!((f[0][k] + f[1][k]).abs() < 1e-4, "{f:?}");
    }
    assert!(base.max_force_ev_per_a.unwrap() > 0.1, "the displaced atom feels a force");
    assert!(base.scf_steps.unwrap() > 3);
    assert!(base.wall_time_s.unwrap() > 0.0);
    for file in ["pw.in", "pw.out", "pw.err"] {
        assert!(dir.join("base").join(file).is_file(), "{file}");
    }
    assert!(dir.join("base/out").is_dir(), "outdir inside the job directory");
    let xml = std::fs::read_to_string(dir.join("base/out/pw.save/data-file-schema.xml")).unwrap();
    assert_eq!(parse_pw_xml_convergence(&xml), Some(true));

    // --- forces = -dE/dx by central differences, h = 0.01 Å. With conv_thr 1e-11 Ry
    // the energy is converged far below its printed precision (1e-8 Ry = 1.4e-7 eV), so
    // the FD error is that rounding, 2 * 1.4e-7 / 0.02 = 1.4e-5 eV/Å, plus the O(h²)
    // truncation (~1e-4 eV/Å for Si): tolerance 1e-3 eV/Å.
    let h = 0.01;
    for k in [0usize, 1] {
        let mut dp = [0.0; 3];
        dp[k] = h;
        let ep = converged_energy(&run(dir, &format!("fd{k}p"), &si2(dp), &set), "fd+");
        dp[k] = -h;
        let em = converged_energy(&run(dir, &format!("fd{k}m"), &si2(dp), &set), "fd-");
        let fd = -(ep - em) / (2.0 * h);
        eprintln!("force component {k}: analytic {:.6} eV/Å, finite difference {fd:.6} eV/Å", f[0][k]);
        assert!((fd - f[0][k]).abs() < 1e-3, "component {k}: analytic {} vs FD {fd}", f[0][k]);
    }

    // --- stress sign and units: ASE stress_xx = (1/V) dE/dε_xx. The energy at fixed
    // cutoff is not exactly the analytic stress's energy (the plane-wave set changes with
    // the cell: Pulay stress, measured 4.5 % at 20 Ry), so this checks sign and
    // magnitude (10 %).
    let eps = 0.003;
    let strained = |e: f64| {
        let mut s = si2([0.0; 3]);
        for row in s.cell_a.iter_mut() {
            row[0] *= 1.0 + e;
        }
        for p in s.positions_a.iter_mut() {
            p[0] *= 1.0 + e;
        }
        s
    };
    let ep = converged_energy(&run(dir, "strain+", &strained(eps), &set), "strain+");
    let em = converged_energy(&run(dir, "strain-", &strained(-eps), &set), "strain-");
    let v = si2([0.0; 3]).volume_a3().abs();
    let fd_sxx = (ep - em) / (2.0 * eps) / v;
    let sxx = labels.stress_ev_per_a3.unwrap()[0];
    eprintln!("stress xx: analytic {sxx:.6} eV/Å³, finite strain {fd_sxx:.6} eV/Å³");
    assert!(fd_sxx.signum() == sxx.signum() && (fd_sxx - sxx).abs() < 0.1 * sxx.abs(), "{sxx} vs {fd_sxx}");

    // --- SCF not converged (electron_maxstep too small): detected, no label
    let mut bad = set.clone();
    bad.electron_maxstep = 3;
    let failed = run(dir, "maxstep3", &si2([0.0; 3]), &bad);
    assert_eq!(failed.status, RunStatus::ScfNotConverged, "{:?}", failed.message);
    assert!(failed.to_labels().is_none());
    assert!(failed.energy_ev.is_none());
    let xml = std::fs::read_to_string(dir.join("maxstep3/out/pw.save/data-file-schema.xml")).unwrap();
    assert_eq!(parse_pw_xml_convergence(&xml), Some(false));

    // --- remediation: only convergence knobs change; the repaired label agrees
    let (fixed, what) = remediate(&bad, 1).expect("the ladder has a first rung");
    eprintln!("remediation: {what}");
    assert!(what.contains("electron_maxstep 3 -> 200"), "{what}");
    assert_eq!(label_params(&fixed), label_params(&bad));
    assert_eq!(label_params(&fixed), label_params(&set));
    let repaired = run(dir, "repaired", &si2([0.0; 3]), &fixed);
    let er = converged_energy(&repaired, "repaired");
    let n = 2.0;
    assert!((er - e0).abs() / n < 1e-5, "repaired {er} vs direct {e0} eV");
    let fr = repaired.to_labels().unwrap().forces_ev_per_a;
    for (a, b) in fr.iter().zip(f) {
        for k in 0..3 {
            assert!((a[k] - b[k]).abs() < 1e-4, "{fr:?} vs {f:?}");
        }
    }
}

#[test]
fn pw_missing_pseudopotential_is_a_crash_with_qe_message() {
    require("pw.x");
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut set = settings();
    set.pseudopotentials.insert("Si".into(), "Si.does-not-exist.UPF".into());
    let p = run(tmp.path(), "crash", &si2([0.0; 3]), &set);
    assert_eq!(p.status, RunStatus::Crashed);
    let msg = p.message.unwrap();
    assert!(msg.contains("Si.does-not-exist.UPF"), "{msg}");
}

#[test]
fn run_pw_reports_a_missing_program() {
    let tmp = tempfile::tempdir().unwrap();
    let mut set = settings();
    set.command = "/nonexistent/pw.x".into();
    let err = run_pw(tmp.path(), &si2([0.0; 3]), &set).unwrap_err().to_string();
    assert!(err.contains("apt-get install quantum-espresso"), "{err}");
}
