//! POSCAR and CIF reading against ASE's readers (`ase.io.read`) on real files
//! (`tests/data/{cif,poscar}`, from pymatgen's test files; see the README there):
//! the same cell and the same atoms at the same places, up to ordering. Files that must
//! be refused (a partial occupancy; `.` for a coordinate) give an error naming the file,
//! the line and the field.
//!
//! Needs python3 with ASE (`PYTHON` chooses the interpreter); the test fails without it.

use autopipe_atoms::cif::read_cif_file;
use autopipe_atoms::poscar::read_poscar_file;
use autopipe_atoms::structure::{inverse3, vec_mat, Mat3, Vec3};
use autopipe_atoms::Structure;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join(rel)
}

fn ase(args: &[&str]) -> Value {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("readers_ase.py"))
        .args(args)
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): this test needs python3 with ASE (pip install ase)"));
    assert!(
        out.status.success(),
        "ASE helper failed ({args:?}); this test needs python3 with ASE:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// Same cell (to `tol` Å) and a one-to-one matching of atoms, same symbol, same place
/// modulo the lattice.
fn assert_same(ours: &Structure, theirs: &Value, tol: f64, ctx: &str) {
    let m = |v: &Value| -> Mat3 { [0, 1, 2].map(|i| [0, 1, 2].map(|k| v[i][k].as_f64().unwrap())) };
    let cell = m(&theirs["cell"]);
    for i in 0..3 {
        for k in 0..3 {
            assert!((ours.cell_a[i][k] - cell[i][k]).abs() < tol, "{ctx}: cell {:?} != ASE {cell:?}", ours.cell_a);
        }
    }
    let symbols: Vec<&str> = theirs["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let positions: Vec<Vec3> =
        theirs["positions"].as_array().unwrap().iter().map(|p| [0, 1, 2].map(|k| p[k].as_f64().unwrap())).collect();
    assert_eq!(ours.len(), symbols.len(), "{ctx}: atom count");
    let inv = inverse3(&ours.cell_a).unwrap();
    let mut used = vec![false; symbols.len()];
    for (p, e) in ours.positions_a.iter().zip(&ours.species) {
        let j = (0..symbols.len()).find(|&j| {
            if used[j] || symbols[j] != e.symbol() {
                return false;
            }
            let mut f = vec_mat(&[p[0] - positions[j][0], p[1] - positions[j][1], p[2] - positions[j][2]], &inv);
            for x in &mut f {
                *x -= x.round();
            }
            let c = vec_mat(&f, &ours.cell_a);
            (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt() < tol
        });
        match j {
            Some(j) => used[j] = true,
            None => panic!("{ctx}: our {e} at {p:?} has no partner in ASE's structure"),
        }
    }
}

#[test]
fn cifs_equal_ase() {
    for (file, n) in [("garnet.cif", 160), ("V2O3.cif", 10), ("MgNiF6.cif", 8)] {
        let ours = read_cif_file(&data(&format!("cif/{file}"))).unwrap();
        assert_eq!(ours.len(), 1, "{file}: one data block");
        let s = &ours[0].1;
        assert_eq!(s.len(), n, "{file}");
        let theirs = ase(&["read", "cif", data(&format!("cif/{file}")).to_str().unwrap()]);
        assert_same(s, &theirs, 1e-8, file);
    }
}

#[test]
fn poscars_equal_ase() {
    for file in ["POSCAR_Fe3O4", "POSCAR_fcc"] {
        let ours = read_poscar_file(&data(&format!("poscar/{file}"))).unwrap();
        let theirs = ase(&["read", "vasp", data(&format!("poscar/{file}")).to_str().unwrap()]);
        assert_same(&ours, &theirs, 1e-10, file);
    }
    // A CONTCAR-like file ASE writes: selective dynamics, Cartesian coordinates.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("CONTCAR");
    let theirs = ase(&["contcar", path.to_str().unwrap()]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Selective dynamics") && text.contains("Cartesian"), "{text}");
    assert_same(&read_poscar_file(&path).unwrap(), &theirs, 1e-10, "ASE's CONTCAR");
}

#[test]
fn partial_occupancy_and_missing_coordinates_are_refused() {
    let path = data("cif/Cu7Te5.cif");
    let e = read_cif_file(&path).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (109, "_atom_site_occupancy"), "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&format!("{}:109: _atom_site_occupancy: site Cu2", path.display())), "{text}");
    assert!(text.contains("0.4") && text.contains("partial occupanc"), "{text}");

    let e = read_cif_file(&data("cif/ICSD59959.cif")).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (112, "_atom_site_fract_y"), "{e}");
    assert!(e.message.contains("\".\""), "{e}");
}
