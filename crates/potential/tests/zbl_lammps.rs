//! The ZBL reference against LAMMPS: our `ZblReference` equals `pair_style zbl INNER OUTER`
//! on close-contact dimers (every distance regime: unswitched, switched, beyond the outer
//! radius) and on mixed-element clusters; and a SNAP model carrying the reference, exported
//! as `pair_style hybrid/overlay zbl INNER OUTER snap`, gives in LAMMPS what our evaluation
//! gives. Agreement: 1e-10 relative to the size of the quantity, with 1 as the floor
//! (eV/atom, eV/Å, eV/Å³): ZBL energies at 0.5 Å reach 10⁴ eV, where an absolute 1e-10 is
//! below double precision.
//!
//! Needs LAMMPS with ML-SNAP in a Python venv (see model_lammps.rs).

mod common;
use autopipe_atoms::{Element, Structure};
use autopipe_potential::{
    pair_coeff_snippet, to_snapcoeff, to_snapparam, SnapElement, SnapModel, SnapParams, ZblReference,
};
use serde_json::{json, Value};

const NKTV2P: f64 = 1.6021765e6;
const TOLERANCE: f64 = 1e-10;
const BOX_A: f64 = 40.0;

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

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

/// Atoms in a large periodic box (no image within the outer radius): a free cluster.
fn cluster(pos: Vec<[f64; 3]>, sp: Vec<Element>) -> Structure {
    let c = BOX_A / 2.0;
    let pos = pos.into_iter().map(|p| [p[0] + c, p[1] + c, p[2] + c]).collect();
    Structure::new([[BOX_A, 0.0, 0.0], [0.0, BOX_A, 0.0], [0.0, 0.0, BOX_A]], pos, sp, [true; 3]).unwrap()
}

/// The LAMMPS lines of a bare `pair_style zbl` over the given elements (types in order).
fn zbl_lines(r: &ZblReference, elements: &[Element]) -> String {
    let mut s = format!("pair_style zbl {} {}\n", r.inner_a, r.outer_a);
    for i in 0..elements.len() {
        for j in i..elements.len() {
            s += &format!("pair_coeff {} {} {} {}\n", i + 1, j + 1, elements[i].z(), elements[j].z());
        }
    }
    s
}

struct Case {
    name: String,
    s: Structure,
    elements: Vec<Element>,
    pair_lines: String,
    coeff: String,
    param: String,
    /// ours: energy (eV), forces (eV/Å), stress (eV/Å³, ASE sign)
    ours: (f64, Vec<[f64; 3]>, [f64; 6]),
}

fn run(cases: &[Case]) -> Vec<Value> {
    let jcases: Vec<Value> = cases
        .iter()
        .map(|c| {
            let types: Vec<usize> =
                c.s.species.iter().map(|e| c.elements.iter().position(|x| x == e).unwrap() + 1).collect();
            json!({"name": c.name, "cell": c.s.cell_a, "positions": c.s.positions_a, "types": types,
                   "snapcoeff": c.coeff, "snapparam": c.param, "pair_coeff": c.pair_lines})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    let output = dir.path().join("lammps.json");
    std::fs::write(&input, serde_json::to_string(&json!({ "cases": jcases })).unwrap()).unwrap();
    let r = common::run_lammps_script("lammps_pair_snap.py", &input, &output, &[dir.path()]);
    r["cases"].as_array().unwrap().clone()
}

fn close(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1.0)
}

fn compare(cases: &[Case], results: &[Value]) {
    assert_eq!(results.len(), cases.len());
    for (c, r) in cases.iter().zip(results) {
        assert_eq!(r["name"].as_str().unwrap(), c.name);
        let n = c.s.len() as f64;
        let e_l = r["energy"].as_f64().unwrap();
        let de = close(c.ours.0 / n, e_l / n);
        let mut df = 0.0f64;
        for (k, fl) in r["forces"].as_array().unwrap().iter().enumerate() {
            for a in 0..3 {
                df = df.max(close(c.ours.1[k][a], fl[a].as_f64().unwrap()));
            }
        }
        let p: Vec<f64> = r["pressure"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        // LAMMPS [pxx pyy pzz pxy pxz pyz] bar -> ASE Voigt [xx yy zz yz xz xy] eV/Å³
        let sl = [-p[0], -p[1], -p[2], -p[5], -p[4], -p[3]].map(|x| x / NKTV2P);
        let ds = (0..6).map(|t| close(c.ours.2[t], sl[t])).fold(0.0, f64::max);
        println!(
            "{}: E = {:.8e} eV (LAMMPS {:.8e}); rel. ΔE/N {de:.1e}, ΔF {df:.1e}, Δσ {ds:.1e}",
            c.name, c.ours.0, e_l
        );
        assert!(de < TOLERANCE && df < TOLERANCE && ds < TOLERANCE, "{}: differs from LAMMPS", c.name);
    }
}

#[test]
fn zbl_equals_lammps_pair_zbl_on_dimers_and_clusters() {
    let zbl = ZblReference { inner_a: 4.0, outer_a: 4.8 };
    let mut cases = Vec::new();
    let mut add = |name: String, s: Structure, elements: Vec<Element>, zbl: &ZblReference| {
        let r = zbl.evaluate(&s);
        let st = r.virial_ev.map(|w| -w / s.volume_a3());
        let pair_lines = zbl_lines(zbl, &elements);
        cases.push(Case {
            name,
            s,
            elements,
            pair_lines,
            coeff: String::new(),
            param: String::new(),
            ours: (r.energy_ev, r.forces_ev_per_a, st),
        });
    };
    // dimers: Ta-Ta, Cu-Ni, H-Ta, along a general direction, from 0.5 Å to past the outer radius
    let dir = [0.48, -0.6, 0.64];
    for (a, b) in [("Ta", "Ta"), ("Cu", "Ni"), ("H", "Ta")] {
        let elements = if a == b { vec![el(a)] } else { vec![el(a), el(b)] };
        for r in [0.5, 1.1, 2.3, 3.999, 4.0, 4.2, 4.6, 4.79, 4.85] {
            let s = cluster(vec![[0.0; 3], dir.map(|x| x * r)], vec![el(a), el(b)]);
            add(format!("dimer_{a}{b}_{r}"), s, elements.clone(), &zbl);
        }
    }
    // clusters of 12 mixed atoms with close contacts, and other radii
    let mut rng = Rng(3);
    for (k, (inner, outer)) in [(4.0, 4.8), (1.5, 2.5), (0.9, 3.1)].into_iter().enumerate() {
        let elements = vec![el("Ta"), el("W"), el("Cu")];
        let pos: Vec<[f64; 3]> = (0..12).map(|_| [rng.next() * 2.4, rng.next() * 2.4, rng.next() * 2.4]).collect();
        let sp: Vec<Element> = (0..12).map(|i| elements[i % 3]).collect();
        let z = ZblReference { inner_a: inner, outer_a: outer };
        add(format!("cluster_{k}"), cluster(pos, sp), elements, &z);
    }
    // a dense periodic cell smaller than the outer radius (images interact)
    let s = Structure::new(
        [[3.1, 0.0, 0.0], [0.4, 3.0, 0.0], [-0.3, 0.5, 3.3]],
        vec![[0.0, 0.0, 0.0], [1.2, 1.4, 1.5], [0.3, 0.9, 0.4]],
        vec![el("Ta"), el("Ta"), el("W")],
        [true; 3],
    )
    .unwrap();
    add("dense_cell".into(), s, vec![el("Ta"), el("W")], &zbl);
    let results = run(&cases);
    compare(&cases, &results);
    // our free cluster (no periodicity at all) equals the one in the big box
    let c = &cases[cases.len() - 2];
    let mut free = c.s.clone();
    free.pbc = [false; 3];
    let r = zbl.evaluate(&free);
    let r2 = ZblReference { inner_a: 0.9, outer_a: 3.1 }.evaluate(&free);
    assert!(close(r2.energy_ev, c.ours.0) < 1e-14, "free cluster {} vs boxed {}", r2.energy_ev, c.ours.0);
    assert!(r.energy_ev != r2.energy_ev, "the radii matter");
}

#[test]
fn hybrid_overlay_export_equals_our_evaluation() {
    let elements = vec![el("Ta"), el("W")];
    let params = SnapParams {
        twojmax: 6,
        rcutfac: 4.67637,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: false,
        quadraticflag: false,
        elements: elements.iter().map(|&e| SnapElement { element: e, radius: 0.5, weight: 1.0 }).collect(),
    };
    let mut model = SnapModel::zeros(params);
    let mut rng = Rng(11);
    for (e, b) in model.beta.iter_mut().enumerate() {
        b[0] = -11.0 - e as f64;
        for x in &mut b[1..] {
            *x = 0.05 * rng.next();
        }
    }
    model.reference = Some(ZblReference { inner_a: 4.0, outer_a: 4.8 });
    // bcc Ta/W 2x2x2 (16 atoms), rattled hard: close contacts down to ~1.7 Å
    let a = 3.3;
    let mut pos = Vec::new();
    let mut sp = Vec::new();
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]] {
                    pos.push([
                        (i as f64 + b[0]) * a + 0.35 * rng.next(),
                        (j as f64 + b[1]) * a + 0.35 * rng.next(),
                        (k as f64 + b[2]) * a + 0.35 * rng.next(),
                    ]);
                    sp.push(elements[(i + j + k) % 2]);
                }
            }
        }
    }
    let s =
        Structure::new([[2.0 * a, 0.0, 0.0], [0.1, 2.0 * a, 0.0], [0.0, -0.2, 2.0 * a]], pos, sp, [true; 3]).unwrap();
    let ours = model.evaluate(&s).unwrap();
    let bare = SnapModel { reference: None, ..model.clone() }.evaluate(&s).unwrap();
    assert!((ours.energy_ev - bare.energy_ev).abs() > 1e-3, "the reference must contribute");
    let case = Case {
        name: "hybrid_tw".into(),
        s,
        elements,
        pair_lines: pair_coeff_snippet(&model, "COEFF", "PARAM"),
        coeff: to_snapcoeff(&model),
        param: to_snapparam(&model),
        ours: (ours.energy_ev, ours.forces_ev_per_a, ours.stress_ev_per_a3.unwrap()),
    };
    assert!(case.pair_lines.starts_with("pair_style hybrid/overlay zbl 4 4.8 snap\n"), "{}", case.pair_lines);
    let results = run(std::slice::from_ref(&case));
    compare(std::slice::from_ref(&case), &results);
}
