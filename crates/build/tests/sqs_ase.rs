//! SQS against an independent count: the structures are written as extended XYZ and
//! ASE's neighbour list counts the pairs of every shell (tests/build_ase.py `sro`).
mod common;

use autopipe_atoms::extxyz::write_extxyz_file;
use autopipe_atoms::{Element, Frame};
use autopipe_build::sqs::{SqsProblem, SqsResult, Sublattice};
use autopipe_build::{supercell, Prototype};
use serde_json::Value;

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

/// ASE's SRO table of `r.structure` over the atoms of `species`.
fn ase_sro(r: &SqsResult, shells: usize, species: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sqs.xyz");
    write_extxyz_file(&path, &[Frame::from_structure(r.structure.clone())]).unwrap();
    let v = common::ase(&["sro", path.to_str().unwrap(), &shells.to_string(), &species.join(",")]);
    v.as_array().unwrap().clone()
}

/// Our SRO of sublattice pair (0, 0) equals ASE's count, shell by shell and pair by pair;
/// returns ASE's alpha per shell.
fn compare(r: &SqsResult, ase: &[Value], ctx: &str) -> Vec<Vec<f64>> {
    let ours: Vec<_> = r.sro.iter().filter(|s| s.sublattices == [0, 0]).collect();
    assert_eq!(ours.len(), ase.len(), "{ctx}: shells");
    let mut out = Vec::new();
    for (o, a) in ours.iter().zip(ase) {
        assert!((o.distance_a - a["distance"].as_f64().unwrap()).abs() < 1e-6, "{ctx}: shell distance");
        assert_eq!(o.ordered_pairs, a["pairs"].as_u64().unwrap(), "{ctx}: shell {} pairs", o.shell);
        let mut alphas = Vec::new();
        for (x, y, alpha) in &o.alpha {
            let theirs = a["alpha"][format!("{x}-{y}")].as_f64().unwrap_or_else(|| panic!("{ctx}: {x}-{y} in {a}"));
            assert!((alpha - theirs).abs() < 1e-9, "{ctx}: shell {} {x}-{y}: ours {alpha}, ASE {theirs}", o.shell);
            alphas.push(theirs);
        }
        out.push(alphas);
    }
    out
}

#[test]
fn fcc_a50b50_64_atoms_is_random_in_three_shells() {
    let parent = supercell(&Prototype::Fcc.build(&[el("Cu")], 3.8, None).unwrap(), [2, 2, 4]);
    let sub = Sublattice { sites: (0..64).collect(), species: vec![el("Cu"), el("Au")], fractions: vec![0.5, 0.5] };
    let problem = SqsProblem::new(&parent, &[sub], 3).unwrap();
    let r = problem.anneal(200_000, 1);
    let alphas = compare(&r, &ase_sro(&r, 3, &["Cu", "Au"]), "fcc A50B50");
    for (s, limit) in [(0, 0.01), (1, 0.01), (2, 0.02)] {
        for a in &alphas[s] {
            assert!(a.abs() <= limit, "shell {}: |alpha| = {} > {limit} ({alphas:?})", s + 1, a.abs());
        }
    }
    assert_eq!(r.structure.species.iter().filter(|e| **e == el("Au")).count(), 32);
}

#[test]
fn ternary_fcc_is_closer_to_random_than_random_occupations() {
    let parent = supercell(&Prototype::Fcc.build(&[el("Cu")], 3.8, None).unwrap(), [2, 2, 3]);
    let third = 1.0 / 3.0;
    let sub = Sublattice {
        sites: (0..48).collect(),
        species: vec![el("Cu"), el("Ag"), el("Au")],
        fractions: vec![third, third, third],
    };
    let problem = SqsProblem::new(&parent, &[sub], 2).unwrap();
    let r = problem.anneal(100_000, 2);
    let alphas = compare(&r, &ase_sro(&r, 2, &["Cu", "Ag", "Au"]), "ternary");
    // 6 species pairs per shell; a random occupation of 48 sites has |alpha| ~ 0.1.
    let worst = alphas.iter().flatten().fold(0.0f64, |m, a| m.max(a.abs()));
    // Zero steps: the shuffled start, for scale.
    let start = problem.anneal(0, 2);
    assert!(r.objective < start.objective / 4.0, "SQS {} vs random {}", r.objective, start.objective);
    assert!(worst < 0.05, "worst |alpha| {worst}: {alphas:?}");
    for e in ["Cu", "Ag", "Au"] {
        assert_eq!(r.structure.species.iter().filter(|x| **x == el(e)).count(), 16, "{e}");
    }
}

#[test]
fn rocksalt_two_sublattices_mixes_cations_only() {
    let proto = Prototype::Rocksalt;
    let parent = supercell(&proto.build(&[el("Mg"), el("O")], 4.2, None).unwrap(), [2, 2, 2]);
    let subl = proto.sublattices();
    let sites = |k: usize| (0..parent.len()).filter(|i| subl[i % subl.len()] == k).collect::<Vec<_>>();
    let cations = Sublattice { sites: sites(0), species: vec![el("Mg"), el("Ni")], fractions: vec![0.5, 0.5] };
    let anions = Sublattice { sites: sites(1), species: vec![el("O")], fractions: vec![1.0] };
    let problem = SqsProblem::new(&parent, &[cations.clone(), anions.clone()], 2).unwrap();
    let r = problem.anneal(100_000, 3);
    for &i in &anions.sites {
        assert_eq!(r.structure.species[i], el("O"));
    }
    for &i in &cations.sites {
        assert!(r.structure.species[i] == el("Mg") || r.structure.species[i] == el("Ni"));
    }
    let alphas = compare(&r, &ase_sro(&r, 2, &["Mg", "Ni"]), "rocksalt");
    for a in alphas.iter().flatten() {
        assert!(a.abs() <= 0.011, "{alphas:?}");
    }
}
