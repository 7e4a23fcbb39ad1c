//! Our SNAP descriptors, their gradients and virial contributions against LAMMPS's
//! `compute sna/atom`, `snad/atom` and `snav/atom` on the same cells, with both code paths
//! of the kernels: the AVX2/FMA ones this CPU may have and the portable ones (what aarch64
//! runs), chosen with `Snap::with_kernels`.
//!
//! Needs LAMMPS with ML-SNAP in a Python venv (default `/opt/autopipe-venv/bin/python`,
//! override with `AUTOPIPE_LAMMPS_PYTHON`). Without it the test fails, saying how to
//! install it.

mod common;
use autopipe_atoms::{Element, Structure};
use autopipe_potential::{Snap, SnapElement, SnapKernels, SnapParams, PORTABLE_ENV};
use serde_json::{json, Value};
use std::path::Path;

struct Case {
    name: &'static str,
    structure: Structure,
    params: SnapParams,
}

/// A small deterministic generator (splitmix64) for rattling.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

/// Fractional sites times a lower-triangular cell, rattled, then wrapped into the cell.
fn make(cell: [[f64; 3]; 3], frac: &[[f64; 3]], species: Vec<Element>, rattle: f64, seed: u64) -> Structure {
    let mut rng = Rng(seed);
    let mut s = Structure::new(cell, vec![], vec![], [true; 3]).unwrap();
    for f in frac {
        let mut p = [0.0; 3];
        for k in 0..3 {
            for r in 0..3 {
                p[k] += f[r] * cell[r][k];
            }
            p[k] += rattle * rng.next();
        }
        s.positions_a.push(p);
    }
    s.species = species;
    // wrap into [0, 1) fractional so that LAMMPS keeps the very same positions
    let fr = s.fractional_positions();
    for (p, f) in s.positions_a.iter_mut().zip(fr) {
        let w = [f[0] - f[0].floor(), f[1] - f[1].floor(), f[2] - f[2].floor()];
        let mut q = [0.0; 3];
        for k in 0..3 {
            for r in 0..3 {
                q[k] += w[r] * cell[r][k];
            }
        }
        *p = q;
    }
    s.validate().unwrap();
    s
}

fn bcc_sites(n: usize) -> Vec<[f64; 3]> {
    let mut v = Vec::new();
    let nf = n as f64;
    for i in 0..n {
        for j in 0..n {
            for k in 0..n {
                let (a, b, c) = (i as f64, j as f64, k as f64);
                v.push([a / nf, b / nf, c / nf]);
                v.push([(a + 0.5) / nf, (b + 0.5) / nf, (c + 0.5) / nf]);
            }
        }
    }
    v
}

fn w_params(twojmax: usize) -> SnapParams {
    SnapParams {
        twojmax,
        rcutfac: 4.73442,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: el("W"), radius: 0.5, weight: 1.0 }],
    }
}

fn cases() -> Vec<Case> {
    let a = 3.1652;
    let mut out = Vec::new();

    // 1. periodic cubic bcc W, 2x2x2 conventional cells, rattled; the LAMMPS W example's parameters
    let sites = bcc_sites(2);
    let n = sites.len();
    out.push(Case {
        name: "bcc_w_cubic",
        structure: make(
            [[2.0 * a, 0.0, 0.0], [0.0, 2.0 * a, 0.0], [0.0, 0.0, 2.0 * a]],
            &sites,
            vec![el("W"); n],
            0.15,
            1,
        ),
        params: w_params(8),
    });

    // 2. triclinic cell (lower-triangular, small tilts), rmin0 > 0, no bzero, quadratic terms
    let sites = bcc_sites(2);
    let n = sites.len();
    let cell = [[2.0 * a, 0.0, 0.0], [0.45, 2.0 * a * 1.03, 0.0], [-0.3, 0.6, 2.0 * a * 0.97]];
    let mut p = w_params(6);
    p.rmin0 = 0.3;
    p.bzeroflag = false;
    p.quadraticflag = true;
    p.rfac0 = 0.95;
    out.push(Case {
        name: "triclinic_w_quadratic",
        structure: make(cell, &sites, vec![el("W"); n], 0.2, 2),
        params: p,
    });

    // 3. two elements with different radius and weight (CsCl-like NiAl on a bcc lattice)
    let sites = bcc_sites(2);
    let species: Vec<Element> = (0..sites.len()).map(|k| if k % 2 == 0 { el("Ni") } else { el("Al") }).collect();
    let b = 2.0 * 2.88;
    let cell = [[b, 0.0, 0.0], [0.0, b * 1.05, 0.0], [0.2, -0.25, b]];
    let p = SnapParams {
        twojmax: 6,
        rcutfac: 4.1,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![
            SnapElement { element: el("Ni"), radius: 0.5, weight: 1.0 },
            SnapElement { element: el("Al"), radius: 0.42, weight: 0.63 },
        ],
    };
    out.push(Case { name: "two_elements_nial", structure: make(cell, &sites, species, 0.12, 3), params: p });

    // 4. a cell smaller than the cutoff: the 2-atom bcc cell, several images of every neighbour
    let sites = bcc_sites(1);
    let cell = [[a, 0.0, 0.0], [0.1, a * 0.98, 0.0], [0.05, -0.1, a * 1.02]];
    let mut p = w_params(6);
    p.switchflag = false;
    out.push(Case { name: "small_cell", structure: make(cell, &sites, vec![el("W"); 2], 0.1, 4), params: p });

    out
}

/// Model coefficients for the pair_style snap comparison (no constant term).
fn beta_for(c: &Case) -> Vec<Vec<f64>> {
    let mut rng = Rng(77);
    let nl = c.params.n_linear();
    (0..c.params.elements.len())
        .map(|_| (0..c.params.n_columns()).map(|k| rng.next() * if k < nl { 0.1 } else { 0.002 }).collect())
        .collect()
}

fn run_lammps(cases: &[Case], dir: &Path) -> Value {
    let mut jcases = Vec::new();
    for c in cases {
        let types: Vec<usize> = c.structure.species.iter().map(|&e| c.params.element_index(e).unwrap() + 1).collect();
        jcases.push(json!({
            "name": c.name,
            "cell": c.structure.cell_a,
            "positions": c.structure.positions_a,
            "types": types,
            "beta": beta_for(c),
            "params": {
                "twojmax": c.params.twojmax, "rcutfac": c.params.rcutfac, "rfac0": c.params.rfac0,
                "rmin0": c.params.rmin0, "switchflag": c.params.switchflag, "bzeroflag": c.params.bzeroflag,
                "quadraticflag": c.params.quadraticflag,
                "radii": c.params.elements.iter().map(|e| e.radius).collect::<Vec<_>>(),
                "weights": c.params.elements.iter().map(|e| e.weight).collect::<Vec<_>>(),
            }
        }));
    }
    let input = dir.join("cells.json");
    let output = dir.join("lammps.json");
    std::fs::write(&input, serde_json::to_string(&json!({ "cases": jcases })).unwrap()).unwrap();
    common::run_lammps_script("lammps_snap_reference.py", &input, &output, &[])
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

/// Largest relative deviation, with an absolute floor of 1e-10 of the array's scale for
/// near-zero components; panics beyond 1e-8.
fn compare(what: &str, ours: &[f64], theirs: &[Vec<f64>], width: usize) -> f64 {
    let flat: Vec<f64> = theirs.iter().flatten().copied().collect();
    assert_eq!(theirs.iter().map(|r| r.len()).collect::<Vec<_>>(), vec![width; theirs.len()], "{what}: row width");
    assert_eq!(ours.len(), flat.len(), "{what}: sizes differ");
    let scale = flat.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: LAMMPS returned all zeros");
    let floor = 1e-10 * scale;
    let mut worst = 0.0f64;
    for (k, (a, b)) in ours.iter().zip(&flat).enumerate() {
        let dev = (a - b).abs() / (a.abs().max(b.abs()) + floor);
        if dev > 1e-8 {
            panic!("{what}: element {k} (atom {}, column {}): ours {a:e}, LAMMPS {b:e}", k / width, k % width);
        }
        worst = worst.max(dev);
    }
    worst
}

#[test]
fn descriptors_gradients_and_virials_agree_with_lammps() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let reference = run_lammps(&cases, dir.path());
    println!("LAMMPS version {}", reference["lammps_version"]);
    let results = reference["cases"].as_array().unwrap();
    assert_eq!(results.len(), cases.len(), "LAMMPS returned {} results for {} cases", results.len(), cases.len());
    for kernels in [SnapKernels::Native, SnapKernels::Portable] {
        println!("{kernels:?} kernels (SIMD: {})", kernels.uses_simd());
        let worst = compare_with_lammps(&cases, results, kernels);
        println!("{kernels:?} kernels: max relative deviation from LAMMPS over all cases: {worst:.3e}");
    }
}

/// The portable kernels really are another code path where the CPU has AVX2 and FMA: FMA
/// rounds differently, so some descriptor differs in its last bits (and by no more).
#[test]
fn the_portable_switch_runs_other_code_with_the_same_numbers() {
    let c = &cases()[0];
    let native = Snap::new(&c.params).unwrap().with_kernels(SnapKernels::Native);
    let portable = Snap::new(&c.params).unwrap().with_kernels(SnapKernels::Portable);
    assert!(!SnapKernels::Portable.uses_simd());
    let a = native.descriptors_with_gradients(&c.structure).unwrap();
    let b = portable.descriptors_with_gradients(&c.structure).unwrap();
    let (fa, fb) = (a.force_rows(), b.force_rows());
    assert_eq!(fa.len(), fb.len());
    let scale = fa.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let worst = fa.iter().zip(&fb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale;
    let differing = a.b.iter().zip(&b.b).chain(fa.iter().zip(&fb)).filter(|(x, y)| x != y).count();
    println!(
        "native (SIMD: {}) vs portable: {differing} values differ, by up to {worst:.2e} relative",
        native.kernels().uses_simd()
    );
    assert!(worst < 1e-12, "the two code paths disagree by {worst:e}");
    if SnapKernels::Native.uses_simd() {
        assert!(differing > 0, "with AVX2/FMA available, the portable switch changed nothing: it is not switching");
    } else {
        assert_eq!(differing, 0, "without AVX2/FMA both choices run the same code");
    }
}

/// `AUTOPIPE_SNAP_PORTABLE=1` makes the portable kernels the default of every `Snap`: this
/// test runs itself again in a child process with the variable set.
#[test]
fn the_environment_variable_makes_the_portable_kernels_the_default() {
    let c = &cases()[3];
    let default = Snap::new(&c.params).unwrap().kernels();
    if std::env::var_os("AUTOPIPE_TEST_CHILD").is_some() {
        assert_eq!(default, SnapKernels::Portable, "{PORTABLE_ENV} is set in this child");
        return;
    }
    assert_eq!(default, SnapKernels::from_env_value(std::env::var_os(PORTABLE_ENV).as_deref()));
    for (value, expected) in [
        ("1", SnapKernels::Portable),
        ("yes", SnapKernels::Portable),
        ("0", SnapKernels::Native),
        ("", SnapKernels::Native),
    ] {
        assert_eq!(
            SnapKernels::from_env_value(Some(std::ffi::OsStr::new(value))),
            expected,
            "{PORTABLE_ENV}={value:?}"
        );
    }
    assert_eq!(SnapKernels::from_env_value(None), SnapKernels::Native);
    let name = "the_environment_variable_makes_the_portable_kernels_the_default";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture"])
        .env(PORTABLE_ENV, "1")
        .env("AUTOPIPE_TEST_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Every case against LAMMPS's results with the given kernels; the largest relative
/// deviation (`compare` panics beyond 1e-8).
fn compare_with_lammps(cases: &[Case], results: &[Value], kernels: SnapKernels) -> f64 {
    let mut worst_all = 0.0f64;
    for (c, r) in cases.iter().zip(results) {
        assert_eq!(r["name"], c.name);
        let tag = format!("{} ({kernels:?})", c.name);
        // LAMMPS kept our positions
        let positions = rows(&r["positions"]);
        assert_eq!(positions.len(), c.structure.len(), "{}: LAMMPS has another number of atoms", tag);
        for (p, q) in c.structure.positions_a.iter().zip(positions) {
            for k in 0..3 {
                assert!((p[k] - q[k]).abs() < 1e-10, "{}: LAMMPS moved an atom: {p:?} vs {q:?}", tag);
            }
        }
        let snap = Snap::new(&c.params).unwrap().with_kernels(kernels);
        let d = snap.descriptors_with_gradients(&c.structure).unwrap();
        let d0 = snap.descriptors(&c.structure).unwrap();
        assert_eq!(d.b, d0.b);
        let nc = d.n_columns;
        let ne = d.n_elements;
        let w1 = compare(&format!("{} sna/atom", tag), &d.b, &rows(&r["sna"]), nc);
        let w2 = compare(&format!("{} snad/atom", tag), &d.force_rows(), &rows(&r["snad"]), 3 * ne * nc);
        let snav = rows(&r["snav"]);
        let w3 = compare(&format!("{} snav/atom", tag), &d.per_atom_virial(), &snav, 6 * ne * nc);
        // the origin-free total equals the sum of LAMMPS's per-atom rows
        let mut total = vec![0.0; 6 * ne * nc];
        for row in &snav {
            for (t, x) in total.iter_mut().zip(row) {
                *t += x;
            }
        }
        let w4 = compare(&format!("{} Σ snav/atom", tag), &d.virial_row(), &[total], 6 * ne * nc);
        // the adjoint energy/forces/virial path against pair_style snap
        let efv = snap.energy_forces_virial(&c.structure, &beta_for(c)).unwrap();
        let w5 =
            compare(&format!("{} pair snap energy", tag), &[efv.energy], &[vec![r["energy"].as_f64().unwrap()]], 1);
        let f: Vec<f64> = efv.forces.iter().flatten().copied().collect();
        let w6 = compare(&format!("{} pair snap forces", tag), &f, &rows(&r["forces"]), 3);
        let vir = rows(&json!([r["virial"]]));
        let w7 = compare(&format!("{} pair snap virial", tag), &efv.virial, &vir, 6);
        println!(
            "{}: pair snap energy {:.6} eV, deviations energy {w5:.2e} forces {w6:.2e} virial {w7:.2e}",
            tag, efv.energy
        );
        let worst = w1.max(w2).max(w3).max(w4).max(w5).max(w6).max(w7);
        println!(
            "{}: {} atoms, {} pairs, max relative deviation sna {w1:.2e} snad {w2:.2e} snav {w3:.2e} Σsnav {w4:.2e}",
            tag,
            d.n_atoms,
            d.gradients.as_ref().unwrap().pair_j.len()
        );
        worst_all = worst_all.max(worst);
    }
    worst_all
}
