//! Running ASE's side of the comparisons (`tests/build_ase.py`). Needs python3 with ASE
//! (`PYTHON` chooses the interpreter); without it the tests fail, they do not skip.
#![allow(dead_code)]

use autopipe_atoms::structure::{inverse3, vec_mat, Mat3, Vec3};
use autopipe_atoms::Structure;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("build_ase.py")
}

/// Run `build_ase.py ARGS... OUT.json` and return the JSON it wrote.
pub fn ase(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.json");
    let out = Command::new(python()).arg(script()).args(args).arg(&out_path).output().unwrap_or_else(|e| {
        panic!("cannot run {} ({e}): these tests need python3 with ASE (pip install ase)", python())
    });
    assert!(
        out.status.success(),
        "ASE helper failed ({args:?}); these tests need python3 with ASE (pip install ase):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap()
}

pub fn mat(v: &Value) -> Mat3 {
    let r = |i: usize| -> Vec3 { [0, 1, 2].map(|k| v[i][k].as_f64().unwrap()) };
    [r(0), r(1), r(2)]
}

/// Assert that `ours` and ASE's dump (`cell`, `positions`, `symbols`) are the same
/// structure: the same cell to `tol` Å, and a one-to-one matching of atoms with the same
/// symbol at the same place modulo the lattice (to `tol` Å).
pub fn assert_same_structure(ours: &Structure, theirs: &Value, tol: f64, ctx: &str) {
    let cell = mat(&theirs["cell"]);
    for i in 0..3 {
        for k in 0..3 {
            assert!((ours.cell_a[i][k] - cell[i][k]).abs() < tol, "{ctx}: cell {:?} != ASE {:?}", ours.cell_a, cell);
        }
    }
    let symbols: Vec<&str> = theirs["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let positions: Vec<Vec3> =
        theirs["positions"].as_array().unwrap().iter().map(|p| [0, 1, 2].map(|k| p[k].as_f64().unwrap())).collect();
    assert_eq!(ours.len(), symbols.len(), "{ctx}: atom count");
    let inv = inverse3(&ours.cell_a).unwrap();
    let mut used = vec![false; symbols.len()];
    for (p, e) in ours.positions_a.iter().zip(&ours.species) {
        let found = (0..symbols.len()).find(|&j| {
            if used[j] || symbols[j] != e.symbol() {
                return false;
            }
            let d = [p[0] - positions[j][0], p[1] - positions[j][1], p[2] - positions[j][2]];
            let mut f = vec_mat(&d, &inv);
            for (x, periodic) in f.iter_mut().zip(ours.pbc) {
                if periodic {
                    *x -= x.round();
                }
            }
            let c = vec_mat(&f, &ours.cell_a);
            (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt() < tol
        });
        match found {
            Some(j) => used[j] = true,
            None => panic!("{ctx}: our {e} at {p:?} has no partner in ASE's structure {theirs}"),
        }
    }
}
