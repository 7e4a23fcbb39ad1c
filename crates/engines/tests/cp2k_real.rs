//! Real CP2K runs (CP2K 2023.1 on this machine): a single point through `run_cp2k`,
//! forces against a central finite difference of the DFT energy, and an SCF failure
//! (CP2K exits 0 and prints energy and forces anyway) detected and repaired by
//! `remediate`.
//!
//! These tests FAIL (they do not skip) when cp2k.psmp is missing.

use autopipe_atoms::{Element, Structure};
use autopipe_engines::cp2k::{label_params, remediate, run_cp2k, Cp2kSettings};
use autopipe_engines::output::{ParsedOutput, RunStatus};
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
        vec![[dx[0], dx[1], dx[2]], [1.40, 1.30, 1.36]],
        vec![si, si],
        [true; 3],
    )
    .unwrap()
}

/// Small and fast (a few seconds per run on this machine): minimal basis, Γ only.
/// Not physics, a consistency check of energies, forces and the failure handling.
fn settings() -> Cp2kSettings {
    let mut s = Cp2kSettings::default();
    s.basis_sets.insert("Si".into(), "SZV-MOLOPT-SR-GTH".into());
    s.potentials.insert("Si".into(), "GTH-PBE-q4".into());
    s.cutoff_ry = 150.0;
    s.rel_cutoff_ry = 30.0;
    s.kpoints = Some([1, 1, 1]);
    s.added_mos = Some(4);
    s.eps_scf = 1e-9;
    s
}

fn run(dir: &Path, name: &str, s: &Structure, set: &Cp2kSettings) -> ParsedOutput {
    let t = Instant::now();
    let p = run_cp2k(&dir.join(name), s, set).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("cp2k {name}: {:.2} s, status {:?}, E = {:?} eV", t.elapsed().as_secs_f64(), p.status, p.energy_ev);
    p
}

fn converged_energy(p: &ParsedOutput, what: &str) -> f64 {
    assert_eq!(p.status, RunStatus::Converged, "{what}: {:?}", p.message);
    p.energy_ev.unwrap()
}

#[test]
fn cp2k_single_point_forces_and_remediation() {
    require("cp2k.psmp");
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let set = settings();

    let base = run(dir, "base", &si2([0.0; 3]), &set);
    let e0 = converged_energy(&base, "base");
    let labels = base.to_labels().expect("a converged run gives labels");
    let f = labels.forces_ev_per_a.clone();
    assert_eq!(f.len(), 2);
    assert!(labels.stress_ev_per_a3.is_some(), "analytical stress requested and parsed");
    assert!(base.max_force_ev_per_a.unwrap() > 0.1, "the displaced atom feels a force");
    for file in ["cp2k.inp", "cp2k.out", "cp2k.err"] {
        assert!(dir.join("base").join(file).is_file(), "{file}");
    }

    // forces = -dE/dy by central differences (h = 0.01 Å) along the largest component.
    // EPS_SCF 1e-9 makes the SCF error in E ~1e-12 Ha, negligible; what remains is the
    // real-space grid (egg-box) error of GPW at 150 Ry and the O(h²) truncation,
    // measured at ~1e-3 eV/Å here: tolerance 5e-3 eV/Å (0.5 % of the force).
    let h = 0.01;
    let k = 1;
    let mut dp = [0.0; 3];
    dp[k] = h;
    let ep = converged_energy(&run(dir, "fd_p", &si2(dp), &set), "fd+");
    dp[k] = -h;
    let em = converged_energy(&run(dir, "fd_m", &si2(dp), &set), "fd-");
    let fd = -(ep - em) / (2.0 * h);
    eprintln!("force component {k}: analytic {:.6} eV/Å, finite difference {fd:.6} eV/Å", f[0][k]);
    assert!((fd - f[0][k]).abs() < 5e-3, "analytic {} vs FD {fd}", f[0][k]);

    // stress sign and units: ASE stress_yy = (1/V) dE/dε_yy by a ±0.3 % strain
    // (measured agreement 0.1 %; tolerance 2 %: the energy at a fixed cutoff on a
    // strained grid is not exactly the analytic stress's energy)
    let eps = 0.003;
    let strained = |e: f64| {
        let mut s = si2([0.0; 3]);
        for row in s.cell_a.iter_mut() {
            row[1] *= 1.0 + e;
        }
        for p in s.positions_a.iter_mut() {
            p[1] *= 1.0 + e;
        }
        s
    };
    let ep = converged_energy(&run(dir, "strain_p", &strained(eps), &set), "strain+");
    let em = converged_energy(&run(dir, "strain_m", &strained(-eps), &set), "strain-");
    let v = si2([0.0; 3]).volume_a3().abs();
    let fd_syy = (ep - em) / (2.0 * eps) / v;
    let syy = labels.stress_ev_per_a3.unwrap()[1];
    eprintln!("stress yy: analytic {syy:.6} eV/Å³, finite strain {fd_syy:.6} eV/Å³");
    assert!(fd_syy.signum() == syy.signum() && (fd_syy - syy).abs() < 0.02 * syy.abs(), "{syy} vs {fd_syy}");

    // SCF not converged: CP2K exits 0 and prints energy and forces; they must not be labels
    let mut bad = set.clone();
    bad.max_scf = 3;
    let failed = run(dir, "maxscf3", &si2([0.0; 3]), &bad);
    assert_eq!(failed.status, RunStatus::ScfNotConverged, "{:?}", failed.message);
    assert!(failed.to_labels().is_none());
    assert!(failed.energy_ev.is_none() && failed.forces_ev_per_a.is_none());
    let raw = std::fs::read_to_string(dir.join("maxscf3/cp2k.out")).unwrap();
    assert!(raw.contains("ENERGY| Total FORCE_EVAL"), "CP2K printed an energy anyway");

    let (fixed, what) = remediate(&bad, 1).expect("the ladder has a first rung");
    eprintln!("remediation: {what}");
    assert!(what.contains("max_scf 3 -> 100"), "{what}");
    assert_eq!(label_params(&fixed), label_params(&bad));
    assert_eq!(label_params(&fixed), label_params(&set));
    let repaired = run(dir, "repaired", &si2([0.0; 3]), &fixed);
    let er = converged_energy(&repaired, "repaired");
    assert!((er - e0).abs() / 2.0 < 1e-5, "repaired {er} vs direct {e0} eV");
    let fr = repaired.to_labels().unwrap().forces_ev_per_a;
    for (a, b) in fr.iter().zip(&f) {
        for k in 0..3 {
            assert!((a[k] - b[k]).abs() < 1e-4, "{fr:?} vs {f:?}");
        }
    }
}

#[test]
fn cp2k_unknown_basis_is_a_crash_with_cp2k_message() {
    require("cp2k.psmp");
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut set = settings();
    set.basis_sets.insert("Si".into(), "NO-SUCH-BASIS".into());
    let p = run(tmp.path(), "crash", &si2([0.0; 3]), &set);
    assert_eq!(p.status, RunStatus::Crashed);
    let msg = p.message.unwrap();
    assert!(msg.contains("NO-SUCH-BASIS"), "{msg}");
}

#[test]
fn run_cp2k_reports_a_missing_program() {
    let tmp = tempfile::tempdir().unwrap();
    let mut set = settings();
    set.command = "/nonexistent/cp2k.psmp".into();
    let err = run_cp2k(tmp.path(), &si2([0.0; 3]), &set).unwrap_err().to_string();
    assert!(err.contains("apt-get install cp2k cp2k-data"), "{err}");
}
