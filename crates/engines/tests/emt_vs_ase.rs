//! Our EMT against ASE's `ase.calculators.emt.EMT`, the reference implementation.
//!
//! Structures are generated here (deterministic seeds), exchanged with
//! `tests/ase_emt_reference.py` as plain JSON, and every energy, force and stress
//! component is compared to `TOLERANCE` (the README's "same numbers as ASE to 1e-10"; the
//! differences measured are ~1e-13). Needs `python3` with ASE (`pip install ase`); without
//! it the test fails, it does not skip.

use autopipe_atoms::structure::{vec_mat, Mat3, Vec3};
use autopipe_atoms::{Element, Structure};
use autopipe_engines::emt::Emt;
use std::process::Command;

/// The agreement asserted: eV/atom for energies, eV/Å for forces, eV/Å³ for stresses.
const TOLERANCE: f64 = 1e-10;

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

/// A cubic fcc supercell of `reps` conventional cells.
fn fcc(symbol: &str, a: f64, reps: [usize; 3]) -> Structure {
    let mut positions = Vec::new();
    for x in 0..reps[0] {
        for y in 0..reps[1] {
            for z in 0..reps[2] {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                    positions.push([(x as f64 + b[0]) * a, (y as f64 + b[1]) * a, (z as f64 + b[2]) * a]);
                }
            }
        }
    }
    let n = positions.len();
    let cell = [[reps[0] as f64 * a, 0.0, 0.0], [0.0, reps[1] as f64 * a, 0.0], [0.0, 0.0, reps[2] as f64 * a]];
    Structure::new(cell, positions, vec![el(symbol); n], [true; 3]).unwrap()
}

/// The one-atom primitive fcc cell.
fn fcc_primitive(symbol: &str, a: f64) -> Structure {
    let h = a / 2.0;
    Structure::new([[0.0, h, h], [h, 0.0, h], [h, h, 0.0]], vec![[0.0; 3]], vec![el(symbol)], [true; 3]).unwrap()
}

fn rattle(s: &mut Structure, rng: &mut Rng, amplitude: f64) {
    for p in &mut s.positions_a {
        for x in p.iter_mut() {
            *x += rng.uniform(-amplitude, amplitude);
        }
    }
}

/// Deform cell and positions by `I + eps` (rows: r' = r (I + eps)).
fn deform(s: &mut Structure, eps: Mat3) {
    let f = [
        [1.0 + eps[0][0], eps[0][1], eps[0][2]],
        [eps[1][0], 1.0 + eps[1][1], eps[1][2]],
        [eps[2][0], eps[2][1], 1.0 + eps[2][2]],
    ];
    for row in &mut s.cell_a {
        *row = vec_mat(row, &f);
    }
    for p in &mut s.positions_a {
        *p = vec_mat(p, &f);
    }
}

fn random_strain(rng: &mut Rng, max: f64) -> Mat3 {
    let mut e = [[0.0; 3]; 3];
    for row in &mut e {
        for x in row.iter_mut() {
            *x = rng.uniform(-max, max);
        }
    }
    e
}

fn supercell(s: &Structure, reps: [usize; 3]) -> Structure {
    let mut positions = Vec::new();
    let mut species = Vec::new();
    for x in 0..reps[0] {
        for y in 0..reps[1] {
            for z in 0..reps[2] {
                let t = vec_mat(&[x as f64, y as f64, z as f64], &s.cell_a);
                for (p, e) in s.positions_a.iter().zip(&s.species) {
                    positions.push([p[0] + t[0], p[1] + t[1], p[2] + t[2]]);
                    species.push(*e);
                }
            }
        }
    }
    let mut cell = s.cell_a;
    for (k, row) in cell.iter_mut().enumerate() {
        for x in row.iter_mut() {
            *x *= reps[k] as f64;
        }
    }
    Structure::new(cell, positions, species, s.pbc).unwrap()
}

fn randomize_species(s: &mut Structure, rng: &mut Rng, symbols: &[&str]) {
    for e in &mut s.species {
        *e = el(symbols[rng.below(symbols.len())]);
    }
}

struct Case {
    name: String,
    structure: Structure,
    asap_cutoff: bool,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(20240611);
    let mut out = Vec::new();
    let mut push = |name: String, structure: Structure, asap_cutoff: bool| {
        out.push(Case { name, structure, asap_cutoff });
    };
    // Rattled fcc Cu supercells.
    for (k, (reps, amp)) in [
        ([1, 1, 1], 0.0),
        ([1, 1, 1], 0.1),
        ([2, 2, 2], 0.0),
        ([2, 2, 2], 0.05),
        ([2, 2, 2], 0.15),
        ([3, 3, 3], 0.1),
        ([2, 3, 4], 0.2),
        ([3, 3, 3], 0.3),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = fcc("Cu", 3.61, reps);
        rattle(&mut s, &mut rng, amp);
        push(format!("Cu fcc {reps:?} rattle {amp} #{k}"), s, false);
    }
    // Strained and sheared cells.
    for k in 0..8 {
        let mut s = fcc("Cu", 3.61, [2, 2, 2]);
        let e = random_strain(&mut rng, 0.06);
        deform(&mut s, e);
        rattle(&mut s, &mut rng, 0.05);
        push(format!("Cu strained #{k}"), s, false);
    }
    for (k, metal) in ["Au", "Ni", "Al"].into_iter().enumerate() {
        let a = match metal {
            "Au" => 4.08,
            "Ni" => 3.52,
            _ => 4.05,
        };
        let mut s = fcc(metal, a, [2, 2, 2]);
        deform(&mut s, [[0.0, 0.08, 0.0], [0.0, -0.03, 0.05], [0.02, 0.0, 0.04]]);
        rattle(&mut s, &mut rng, 0.08);
        push(format!("{metal} sheared #{k}"), s, false);
    }
    // Vacancies.
    for k in 0..5 {
        let mut s = fcc("Cu", 3.61, [3, 3, 3]);
        for _ in 0..=k {
            let v = rng.below(s.len());
            s.positions_a.remove(v);
            s.species.remove(v);
        }
        rattle(&mut s, &mut rng, 0.05);
        push(format!("Cu with {} vacancies", k + 1), s, false);
    }
    // Alloys.
    let groups: [&[&str]; 4] =
        [&["Cu", "Au", "Ni", "Al"], &["Ag", "Pd", "Pt"], &["Cu", "Au"], &["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]];
    for k in 0..10 {
        let mut s = fcc("Cu", rng.uniform(3.6, 4.0), [2, 2, 2]);
        randomize_species(&mut s, &mut rng, groups[k % groups.len()]);
        if k % 3 == 1 {
            let e = random_strain(&mut rng, 0.04);
            deform(&mut s, e);
        }
        rattle(&mut s, &mut rng, 0.1);
        push(format!("alloy {:?} #{k}", groups[k % groups.len()]), s, false);
    }
    // Triclinic cells: primitive cells of every metal (smaller than the cutoff), distorted.
    for (k, (metal, a)) in
        [("Al", 4.05), ("Cu", 3.61), ("Ag", 4.09), ("Au", 4.08), ("Ni", 3.52), ("Pd", 3.89), ("Pt", 3.92)]
            .into_iter()
            .enumerate()
    {
        let mut s = fcc_primitive(metal, a);
        let e = random_strain(&mut rng, 0.05);
        deform(&mut s, e);
        push(format!("{metal} primitive triclinic #{k}"), s, false);
    }
    for k in 0..3 {
        let mut s = supercell(&fcc_primitive("Cu", 3.61), [2, 2, 3]);
        let e = random_strain(&mut rng, 0.08);
        deform(&mut s, e);
        randomize_species(&mut s, &mut rng, &["Cu", "Ni", "Pd"]);
        rattle(&mut s, &mut rng, 0.1);
        push(format!("triclinic 12-atom alloy #{k}"), s, false);
    }
    // Cells much smaller than the cutoff.
    push(
        "simple cubic 1 atom".into(),
        Structure::new(
            [[2.6, 0.0, 0.0], [0.0, 2.6, 0.0], [0.0, 0.0, 2.6]],
            vec![[0.3, 0.1, 0.2]],
            vec![el("Cu")],
            [true; 3],
        )
        .unwrap(),
        false,
    );
    push(
        "bcc 2 atoms".into(),
        Structure::new(
            [[2.9, 0.0, 0.0], [0.0, 2.9, 0.0], [0.0, 0.0, 2.9]],
            vec![[0.0; 3], [1.45, 1.45, 1.5]],
            vec![el("Ni"), el("Al")],
            [true; 3],
        )
        .unwrap(),
        false,
    );
    push(
        "thin triclinic 2 atoms".into(),
        Structure::new(
            [[2.5, 0.0, 0.0], [1.2, 2.3, 0.0], [0.4, 0.7, 4.9]],
            vec![[0.1, 0.0, 0.0], [1.9, 1.1, 2.4]],
            vec![el("Pt"), el("Pt")],
            [true; 3],
        )
        .unwrap(),
        false,
    );
    // Positions far outside the cell.
    for k in 0..2 {
        let mut s = fcc("Cu", 3.61, [2, 2, 2]);
        rattle(&mut s, &mut rng, 0.1);
        let cell = s.cell_a;
        for p in &mut s.positions_a {
            let t = vec_mat(&[rng.below(7) as f64 - 3.0, rng.below(7) as f64 - 3.0, rng.below(7) as f64 - 3.0], &cell);
            for c in 0..3 {
                p[c] += t[c];
            }
        }
        push(format!("Cu positions outside the cell #{k}"), s, false);
    }
    // Non-periodic clusters: no cell (no stress), and inside a box (ASE gives a stress).
    let mut cluster = fcc("Cu", 3.61, [2, 2, 2]);
    cluster.pbc = [false; 3];
    rattle(&mut cluster, &mut rng, 0.1);
    let mut bare = cluster.clone();
    bare.cell_a = [[0.0; 3]; 3];
    push("Cu cluster without cell".into(), bare, false);
    push("Cu cluster in a box".into(), cluster.clone(), false);
    let mut mixed = cluster.clone();
    randomize_species(&mut mixed, &mut rng, &["Au", "Ag", "Cu"]);
    mixed.cell_a = [[0.0; 3]; 3];
    push("AuAgCu cluster".into(), mixed, false);
    // Slabs.
    for (k, metal) in ["Cu", "Pt", "Ni"].into_iter().enumerate() {
        let a = match metal {
            "Cu" => 3.61,
            "Pt" => 3.92,
            _ => 3.52,
        };
        let mut s = fcc(metal, a, [2, 2, 3]);
        s.cell_a[2][2] += 12.0;
        s.pbc = [true, true, false];
        rattle(&mut s, &mut rng, 0.05);
        push(format!("{metal}(100) slab #{k}"), s, false);
    }
    // Light elements (not meant for serious use, but in ASE's table).
    for (k, extra) in [["O", "C"], ["N", "H"], ["O", "H"]].into_iter().enumerate() {
        let mut s = fcc("Ni", 3.52, [2, 2, 2]);
        for sym in extra {
            let i = rng.below(s.len());
            s.species[i] = el(sym);
        }
        // An interstitial in an octahedral site.
        s.positions_a.push([1.76, 0.0, 0.0]);
        s.species.push(el(extra[0]));
        rattle(&mut s, &mut rng, 0.05);
        push(format!("Ni with {extra:?} #{k}"), s, false);
    }
    // ASAP-style cutoff (the cutoff follows the atoms present).
    for (k, group) in [&["Cu"][..], &["Au", "Ni"][..], &["Al"][..], &["Ni", "O"][..]].into_iter().enumerate() {
        let mut s = fcc("Cu", 3.7, [2, 2, 2]);
        randomize_species(&mut s, &mut rng, group);
        rattle(&mut s, &mut rng, 0.1);
        push(format!("asap_cutoff {group:?} #{k}"), s, true);
    }
    // An isolated atom and a dimer.
    push(
        "isolated Cu in a box".into(),
        Structure::new(
            [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]],
            vec![[1.0, 2.0, 3.0]],
            vec![el("Cu")],
            [true; 3],
        )
        .unwrap(),
        false,
    );
    push(
        "AuPd dimer".into(),
        Structure::new([[0.0; 3]; 3], vec![[0.0; 3], [0.3, 0.2, 2.5]], vec![el("Au"), el("Pd")], [false; 3]).unwrap(),
        false,
    );
    out
}

#[derive(serde::Deserialize)]
struct Reference {
    energy: f64,
    forces: Vec<Vec3>,
    stress: Option<[f64; 6]>,
}

/// One entry of ASE's parameter table multiplied by `1 + relative` (index: E0, s0, V0,
/// eta2, kappa, lambda, n0), to test the comparison itself.
#[derive(serde::Serialize)]
struct Perturbation {
    element: &'static str,
    index: usize,
    relative: f64,
}

fn ase_reference(cases: &[Case], perturbation: Option<&Perturbation>) -> Vec<Reference> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("structures.json");
    let payload: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "symbols": c.structure.species.iter().map(|e| e.symbol()).collect::<Vec<_>>(),
                "positions": c.structure.positions_a,
                "cell": c.structure.cell_a,
                "pbc": c.structure.pbc,
                "asap_cutoff": c.asap_cutoff,
            })
        })
        .collect();
    std::fs::write(&input, serde_json::to_string(&payload).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ase_emt_reference.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(&input);
    if let Some(p) = perturbation {
        let path = dir.path().join("perturbation.json");
        std::fs::write(&path, serde_json::to_string(p).unwrap()).unwrap();
        command.arg(path);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): this test needs Python 3 with ASE, `pip install ase`"));
    if !output.status.success() {
        panic!(
            "{script} failed ({}); this test needs ASE: `pip install ase`\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let reference: Vec<Reference> =
        serde_json::from_slice(&output.stdout).expect("ASE reference output is not the expected JSON");
    assert_eq!(reference.len(), cases.len(), "ASE returned {} results for {} structures", reference.len(), cases.len());
    reference
}

/// `x <= TOLERANCE`, false for NaN.
fn within_tolerance(x: f64) -> bool {
    x <= TOLERANCE
}

/// The largest differences from ASE (energy per atom, force component, stress component).
#[derive(Default)]
struct Deviations {
    energy_ev_per_atom: f64,
    force_ev_per_a: f64,
    stress_ev_per_a3: f64,
}

/// Our EMT against `reference`, case by case: the disagreements beyond `TOLERANCE`
/// (one line each) and the largest deviations.
fn compare(cases: &[Case], reference: &[Reference]) -> (Vec<String>, Deviations) {
    assert_eq!(reference.len(), cases.len());
    let mut max = Deviations::default();
    let mut failures = Vec::new();
    for (case, r) in cases.iter().zip(reference) {
        let emt = Emt::with_asap_cutoff(case.asap_cutoff);
        let ours = emt.calculate(&case.structure).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let n = case.structure.len() as f64;
        let de = (ours.energy_ev - r.energy).abs() / n;
        max.energy_ev_per_atom = max.energy_ev_per_atom.max(de);
        if !within_tolerance(de) {
            failures.push(format!("{}: energy {} vs ASE {} ({de:e} eV/atom)", case.name, ours.energy_ev, r.energy));
        }
        assert_eq!(ours.forces_ev_per_a.len(), r.forces.len(), "{}", case.name);
        let mut df = 0.0f64;
        for (f, g) in ours.forces_ev_per_a.iter().zip(&r.forces) {
            for k in 0..3 {
                df = df.max((f[k] - g[k]).abs());
            }
        }
        max.force_ev_per_a = max.force_ev_per_a.max(df);
        if !within_tolerance(df) {
            failures.push(format!("{}: forces differ by up to {df:e} eV/Å", case.name));
        }
        match (&ours.stress_ev_per_a3, &r.stress) {
            (Some(s), Some(t)) => {
                let ds = (0..6).map(|k| (s[k] - t[k]).abs()).fold(0.0, f64::max);
                max.stress_ev_per_a3 = max.stress_ev_per_a3.max(ds);
                if !within_tolerance(ds) {
                    failures.push(format!("{}: stress {s:?} vs ASE {t:?} ({ds:e} eV/Å³)", case.name));
                }
            }
            (None, None) => {}
            (a, b) => failures.push(format!("{}: stress {a:?} vs ASE {b:?}", case.name)),
        }
    }
    (failures, max)
}

#[test]
fn emt_matches_ase() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} structures", cases.len());
    let reference = ase_reference(&cases, None);
    let (failures, max) = compare(&cases, &reference);
    eprintln!(
        "EMT vs ASE over {} structures: max |dE| {:.2e} eV/atom, max |dF| {:.2e} eV/Å, max |dS| {:.2e} eV/Å³",
        cases.len(),
        max.energy_ev_per_atom,
        max.force_ev_per_a,
        max.stress_ev_per_a3
    );
    assert!(failures.is_empty(), "{} disagreements with ASE:\n{}", failures.len(), failures.join("\n"));
}

/// The comparison is sensitive: ASE with one parameter changed by a relative 1e-7 (Cu's
/// V0, the pair-repulsion strength) disagrees with our EMT in every Cu structure.
#[test]
fn comparison_detects_a_changed_parameter() {
    let mut cases = cases();
    cases.truncate(8); // the rattled Cu supercells
    assert!(cases.iter().all(|c| c.structure.species.iter().all(|e| e.symbol() == "Cu")));
    let changed = ase_reference(&cases, Some(&Perturbation { element: "Cu", index: 2, relative: 1e-7 }));
    let (failures, max) = compare(&cases, &changed);
    eprintln!(
        "against ASE with Cu V0 x (1 + 1e-7): {} disagreements, max |dE| {:.2e} eV/atom, max |dF| {:.2e} eV/Å, \
         max |dS| {:.2e} eV/Å³",
        failures.len(),
        max.energy_ev_per_atom,
        max.force_ev_per_a,
        max.stress_ev_per_a3
    );
    for case in &cases {
        assert!(
            failures.iter().any(|f| f.starts_with(&format!("{}:", case.name))),
            "{}: a changed parameter went unnoticed\n{}",
            case.name,
            failures.join("\n")
        );
    }
    // The unchanged table agrees on the same structures: the perturbation made the difference.
    let (failures, _) = compare(&cases, &ase_reference(&cases, None));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
