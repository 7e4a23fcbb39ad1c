//! Extended XYZ compatibility with ASE, both directions, compared bit for bit.
//!
//! (a) we write varied frames, ASE reads them (`ase.io.read(..., index=':')`) and dumps
//!     every number as `repr()`; the numbers must be identical `f64`s.
//! (b) ASE writes frames (SinglePointCalculator labels, info, arrays, constraints, a
//!     molecule), we read the file and compare with what ASE itself reads back.
//! (c) we write what we read in (b), ASE reads it again: still identical.
//!
//! Needs python3 with ASE (`pip install ase`); the test fails without it. Set `PYTHON` to
//! choose the interpreter.

use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_atoms::frame::{ArrayValue, Frame, InfoValue};
use autopipe_atoms::{Element, Structure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("extxyz_ase.py")
}

fn require_ase() {
    let py = python();
    match Command::new(&py).args(["-c", "import ase, numpy"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{py} cannot import ase: this test needs ASE, install it with `pip install ase`\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            panic!("cannot run {py} ({e}): this test needs python3 with ASE (`pip install ase`)")
        }
    }
}

fn run_ase(mode: &str, xyz: &Path, json: &Path) -> Value {
    let out = Command::new(python())
        .arg(script())
        .arg(mode)
        .arg(xyz)
        .arg(json)
        .output()
        .expect("run python3 (pip install ase)");
    assert!(
        out.status.success(),
        "ASE helper failed ({mode} {}):\n{}\n{}",
        xyz.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Comparison of our frames against ASE's dump
// ---------------------------------------------------------------------------------------

fn num(v: &Value, ctx: &str) -> f64 {
    let s = v.as_str().unwrap_or_else(|| panic!("{ctx}: expected a repr string, got {v}"));
    s.parse::<f64>().unwrap_or_else(|_| panic!("{ctx}: cannot parse {s:?}"))
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn check_f(ours: f64, ase: &Value, ctx: &str) {
    let theirs = num(ase, ctx);
    assert!(
        same(ours, theirs),
        "{ctx}: ours {ours:?} ({:#x}) != ASE {theirs:?} ({:#x})",
        ours.to_bits(),
        theirs.to_bits()
    );
}

fn check_fs(ours: &[f64], ase: &Value, ctx: &str) {
    let a = ase.as_array().unwrap_or_else(|| panic!("{ctx}: expected a list, got {ase}"));
    assert_eq!(ours.len(), a.len(), "{ctx}: length");
    for (k, (x, y)) in ours.iter().zip(a).enumerate() {
        check_f(*x, y, &format!("{ctx}[{k}]"));
    }
}

fn check_opt_f(ours: Option<f64>, ase: &Value, ctx: &str) {
    match ours {
        None => assert!(ase.is_null(), "{ctx}: we have none, ASE has {ase}"),
        Some(x) => check_f(x, ase, ctx),
    }
}

fn check_info(key: &str, ours: &InfoValue, ase: &Value, ctx: &str) {
    let ctx = format!("{ctx} info[{key:?}]");
    let ty = ase["type"].as_str().unwrap();
    let v = &ase["value"];
    match ours {
        InfoValue::Bool(b) => assert_eq!((ty, v), ("bool", &Value::Bool(*b)), "{ctx}"),
        InfoValue::Int(i) => assert_eq!((ty, v.as_i64()), ("int", Some(*i)), "{ctx}"),
        InfoValue::Float(x) => {
            assert_eq!(ty, "float", "{ctx}: ASE has {ase}");
            check_f(*x, v, &ctx);
        }
        InfoValue::Str(s) => assert_eq!((ty, v.as_str()), ("str", Some(s.as_str())), "{ctx}"),
        InfoValue::IntArray(a) => {
            assert_eq!(ty, "int_array", "{ctx}: ASE has {ase}");
            let theirs: Vec<i64> = v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(a, &theirs, "{ctx}");
        }
        InfoValue::FloatArray(a) => {
            assert_eq!(ty, "float_array", "{ctx}: ASE has {ase}");
            check_fs(a, v, &ctx);
        }
        InfoValue::BoolArray(a) => {
            assert_eq!(ty, "bool_array", "{ctx}: ASE has {ase}");
            let theirs: Vec<bool> = v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
            assert_eq!(a, &theirs, "{ctx}");
        }
        InfoValue::Json(j) => assert_eq!((ty, v), ("json", j), "{ctx}"),
    }
}

fn check_array(name: &str, ours: &ArrayValue, ase: &Value, ctx: &str) {
    let ctx = format!("{ctx} arrays[{name:?}]");
    assert_eq!(ase["type"].as_str(), Some(ours.type_letter().to_string().as_str()), "{ctx}: ASE has {ase}");
    assert_eq!(ase["columns"].as_u64(), Some(ours.columns() as u64), "{ctx}: columns");
    let v = &ase["values"];
    match ours {
        ArrayValue::Real { values, .. } => check_fs(values, v, &ctx),
        ArrayValue::Int { values, .. } => {
            let theirs: Vec<i64> = v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(values, &theirs, "{ctx}");
        }
        ArrayValue::Bool { values, .. } => {
            let theirs: Vec<bool> = v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
            assert_eq!(values, &theirs, "{ctx}");
        }
        ArrayValue::Str { values, .. } => {
            let theirs: Vec<&str> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
            assert_eq!(values.iter().map(String::as_str).collect::<Vec<_>>(), theirs, "{ctx}");
        }
    }
}

fn check_frame(ours: &Frame, ase: &Value, ctx: &str) {
    let s = &ours.structure;
    let symbols: Vec<&str> = s.species.iter().map(|e| e.symbol()).collect();
    let theirs: Vec<&str> = ase["symbols"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(symbols, theirs, "{ctx}: symbols");
    assert_eq!(ase["positions"].as_array().unwrap().len(), s.len(), "{ctx}: natoms");
    for (a, p) in s.positions_a.iter().enumerate() {
        check_fs(p, &ase["positions"][a], &format!("{ctx} positions[{a}]"));
    }
    for (r, row) in s.cell_a.iter().enumerate() {
        check_fs(row, &ase["cell"][r], &format!("{ctx} cell[{r}]"));
    }
    let pbc: Vec<bool> = ase["pbc"].as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
    assert_eq!(s.pbc.to_vec(), pbc, "{ctx}: pbc");
    check_opt_f(ours.energy_ev, &ase["energy"], &format!("{ctx} energy"));
    check_opt_f(ours.free_energy_ev, &ase["free_energy"], &format!("{ctx} free_energy"));
    match &ours.stress_ev_per_a3 {
        None => assert!(ase["stress"].is_null(), "{ctx}: ASE has stress {}", ase["stress"]),
        Some(v) => check_fs(v, &ase["stress"], &format!("{ctx} stress")),
    }
    match &ours.forces_ev_per_a {
        None => assert!(ase["forces"].is_null(), "{ctx}: ASE has forces"),
        Some(f) => {
            assert_eq!(ase["forces"].as_array().map(|a| a.len()), Some(f.len()), "{ctx}: forces length");
            for (a, v) in f.iter().enumerate() {
                check_fs(v, &ase["forces"][a], &format!("{ctx} forces[{a}]"));
            }
        }
    }
    let ase_info = ase["info"].as_object().unwrap();
    let mut keys: Vec<&String> = ase_info.keys().collect();
    keys.sort();
    assert_eq!(ours.info.keys().collect::<Vec<_>>(), keys, "{ctx}: info keys");
    for (k, v) in &ours.info {
        check_info(k, v, &ase_info[k], ctx);
    }
    let ase_arrays = ase["arrays"].as_object().unwrap();
    let mut keys: Vec<&String> = ase_arrays.keys().collect();
    keys.sort();
    assert_eq!(ours.arrays.keys().collect::<Vec<_>>(), keys, "{ctx}: array names");
    for (k, v) in &ours.arrays {
        check_array(k, v, &ase_arrays[k], ctx);
    }
}

fn check_all(ours: &[Frame], dump: &Value, what: &str) {
    let frames = dump["frames"].as_array().unwrap();
    assert_eq!(ours.len(), frames.len(), "{what}: frame count");
    for (k, (f, d)) in ours.iter().zip(frames).enumerate() {
        check_frame(f, d, &format!("{what}: frame {k}"));
    }
}

// ---------------------------------------------------------------------------------------
// Frames we write
// ---------------------------------------------------------------------------------------

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

fn our_frames() -> Vec<Frame> {
    use InfoValue::*;
    let third = 1.0 / 3.0;
    let mut frames = Vec::new();

    // 1. cubic, all labels, awkward numbers, info of every type, arrays of every type.
    let mut f = Frame::from_structure(Structure {
        cell_a: [[3.61, 0.0, 0.0], [0.0, 3.61, 0.0], [0.0, 0.0, 3.61]],
        positions_a: vec![
            [0.0, 0.0, 0.0],
            [1.805, 1.805, 1e-300],
            [third, 2.0f64.sqrt(), -0.0],
            [5e-324, 1.805 + 1e-15, 3.609_999_999_999_999_6],
        ],
        species: vec![el("Cu"), el("Cu"), el("Au"), el("H")],
        pbc: [true; 3],
    });
    f.energy_ev = Some(-14.123_456_789_012_344);
    f.free_energy_ev = Some(-14.2 - 1e-10);
    f.forces_ev_per_a = Some(vec![[0.1, -0.2, 0.3], [1e-17, -1e-9, third], [0.0, -0.0, 1e5], [-7.25, 6.5e-5, 123.456]]);
    f.stress_ev_per_a3 = Some([0.011, -0.022, 0.033, 1.5e-5, -2.5e-4, third * 1e-3]);
    for (k, v) in [
        ("config_type", Str("bulk_fcc".into())),
        ("note", Str("two words, \"quoted\" {braces} [brackets] back\\slash = equal".into())),
        ("looks_bool", Str("T".into())),
        ("looks_int", Str("42".into())),
        ("looks_floats", Str("1.5 2.5".into())),
        ("empty", Str(String::new())),
        ("step", Int(3)),
        ("big", Int(i64::MAX)),
        ("neg", Int(-17)),
        ("temperature", Float(300.0)),
        ("third", Float(third)),
        ("negzero", Float(-0.0)),
        ("tiny", Float(1.25e-12)),
        ("huge", Float(6.022_140_76e23)),
        ("not_a_number", Float(f64::NAN)),
        ("converged", Bool(true)),
        ("failed", Bool(false)),
        ("kpts", IntArray(vec![4, 4, 4])),
        ("one_int", IntArray(vec![7])),
        ("weights", FloatArray(vec![0.125, third, -1e-20])),
        ("one_float", FloatArray(vec![2.5])),
        ("flags", BoolArray(vec![true, false, true])),
        ("one_flag", BoolArray(vec![false])),
        ("nested", Json(serde_json::json!({"a": 1, "b": [1, 2], "c": "x y"}))),
        ("names", Json(serde_json::json!(["x", "y"]))),
        ("matrix", Json(serde_json::json!([[1, 2], [3, 4]]))),
        ("my key", Int(5)),
    ] {
        f.info.insert(k.into(), v);
    }
    f.arrays.insert("q".into(), ArrayValue::Real { columns: 1, values: vec![0.5, -0.5, third, 1e-30] });
    f.arrays.insert(
        "vel".into(),
        ArrayValue::Real { columns: 3, values: (0..12).map(|k| k as f64 * 0.1 - third).collect() },
    );
    f.arrays.insert("ids".into(), ArrayValue::Int { columns: 2, values: vec![1, -2, 3, 4, 5, 6, 7, 2_000_000_000] });
    f.arrays.insert("fixed".into(), ArrayValue::Bool { columns: 1, values: vec![true, false, false, true] });
    f.arrays.insert("fix3".into(), ArrayValue::Bool { columns: 3, values: (0..12).map(|k| k % 3 == 0).collect() });
    f.arrays.insert(
        "label".into(),
        ArrayValue::Str { columns: 1, values: vec!["a".into(), "bb".into(), "T".into(), "1".into()] },
    );
    f.arrays.insert("move_mask".into(), ArrayValue::Bool { columns: 1, values: vec![false, true, true, true] });
    frames.push(f);

    // 2. triclinic, forces and stress but no energy.
    let mut f = Frame::from_structure(Structure {
        cell_a: [[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [0.7, -0.4, 5.2]],
        positions_a: vec![[0.0, 0.0, 0.0], [1.5, 1.1, 1.3], [2.9, 0.3, 3.1]],
        species: vec![el("Si"), el("C"), el("O")],
        pbc: [true; 3],
    });
    f.forces_ev_per_a = Some(vec![[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]]);
    f.stress_ev_per_a3 = Some([-0.1, -0.2, -0.3, 0.01, 0.02, 0.03]);
    frames.push(f);

    // 3. slab, pbc T T F, energy only.
    let mut f = Frame::from_structure(Structure {
        cell_a: [[2.86, 0.0, 0.0], [1.43, 2.476_832_654_251_8, 0.0], [0.0, 0.0, 22.0]],
        positions_a: vec![[0.0, 0.0, 7.5], [1.43, 0.825_610_884_750_6, 9.835_2]],
        species: vec![el("Al"), el("Al")],
        pbc: [true, true, false],
    });
    f.energy_ev = Some(-7.5);
    f.info.insert("surface".into(), Str("111".into()));
    frames.push(f);

    // 4. a molecule: no cell, no pbc, no labels.
    frames.push(Frame::from_structure(Structure {
        cell_a: [[0.0; 3]; 3],
        positions_a: vec![[0.0, 0.0, 0.119_262], [0.0, 0.763_239, -0.477_047], [0.0, -0.763_239, -0.477_047]],
        species: vec![el("O"), el("H"), el("H")],
        pbc: [false; 3],
    }));

    // 5. a molecule in a box (Lattice written, pbc F), per-config/per-atom results ASE
    //    files under its calculator (dipole, charges), and a virial.
    let mut f = Frame::from_structure(Structure {
        cell_a: [[10.0, 0.0, 0.0], [0.0, 11.0, 0.0], [0.0, 0.0, 12.0]],
        positions_a: vec![[5.0, 5.5, 6.0], [5.6, 6.1, 6.6]],
        species: vec![el("Og"), el("Li")],
        pbc: [false; 3],
    });
    f.energy_ev = Some(-1.0);
    f.info.insert("dipole".into(), FloatArray(vec![0.0, 0.01, -0.02]));
    f.info.insert("virial".into(), FloatArray(vec![1.0, 0.5, 0.25, 0.5, 2.0, 0.125, 0.25, 0.125, 3.0]));
    f.arrays.insert("charge".into(), ArrayValue::Real { columns: 1, values: vec![-0.4, 0.4] });
    frames.push(f);

    // 6. a periodic cell with zero atoms.
    frames.push(Frame::from_structure(Structure {
        cell_a: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        positions_a: vec![],
        species: vec![],
        pbc: [true; 3],
    }));
    frames
}

#[test]
fn ase_reads_what_we_write() {
    require_ase();
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("ours.xyz");
    let frames = our_frames();
    write_extxyz_file(&xyz, &frames).unwrap();
    let dump = run_ase("read", &xyz, &dir.path().join("ours.json"));
    check_all(&frames, &dump, "ASE reading our file");
    // and we read our own file back identically
    let back = read_extxyz_file(&xyz).unwrap();
    assert_eq!(back.len(), frames.len());
    check_all(&back, &dump, "we reading our file");
}

#[test]
fn we_read_what_ase_writes() {
    require_ase();
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("ase.xyz");
    let dump = run_ase("write", &xyz, &dir.path().join("ase.json"));
    let frames = read_extxyz_file(&xyz).unwrap();
    check_all(&frames, &dump, "reading ASE's file");

    // The labels from ASE's SinglePointCalculator land in our label fields.
    let f0 = &frames[0];
    assert!(f0.energy_ev.is_some() && f0.free_energy_ev.is_some());
    assert!(f0.forces_ev_per_a.is_some() && f0.stress_ev_per_a3.is_some());
    // ASE was given Voigt [0.011, -0.022, 0.033, 1.5e-5, -2.5e-4, 7e-3] and writes 3x3.
    assert_eq!(f0.stress_ev_per_a3, Some([0.011, -0.022, 0.033, 1.5e-5, -2.5e-4, 7e-3]));
    assert_eq!(frames[3].structure.pbc, [false; 3]);
    assert!(frames[3].energy_ev.is_none());
    assert_eq!(frames[2].structure.pbc, [true, true, false]);

    // (c) what we write from it, ASE reads back the same.
    let again = dir.path().join("again.xyz");
    write_extxyz_file(&again, &frames).unwrap();
    let dump2 = run_ase("read", &again, &dir.path().join("again.json"));
    check_all(&frames, &dump2, "ASE re-reading our rewrite of ASE's file");
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join("extxyz")
}

/// Hand-written files with the quirks ASE accepts (plain XYZ comment, lower/upper-case
/// symbols, CRLF, `Z` column, `key = value`, braces, bare keys, `uid`, pbc forms, an
/// empty frame): we read exactly what ASE reads.
#[test]
fn fixtures_read_like_ase() {
    require_ase();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".xyz") || name.starts_with("bad_") {
            continue;
        }
        let dump = run_ase("read", &path, &dir.path().join(format!("{name}.json")));
        let frames = read_extxyz_file(&path).unwrap_or_else(|e| panic!("{e}"));
        check_all(&frames, &dump, &name);
        n += 1;
    }
    assert!(n >= 4, "only {n} fixtures found");
}

/// Broken files: ASE refuses them too, and our error names the file, frame and line.
#[test]
fn broken_fixtures_fail_with_located_errors() {
    use autopipe_atoms::extxyz::{ExtxyzError, ExtxyzErrorKind as K};
    let cases = [
        ("bad_count.xyz", K::AtomCount, 0, 1, "expected the number of atoms"),
        ("bad_element.xyz", K::UnknownElement, 0, 3, "unknown element 'Xx'"),
        ("bad_lattice.xyz", K::BadLattice, 0, 2, "Lattice has 8 numbers"),
        ("bad_number.xyz", K::BadNumber, 0, 3, "\"abc\""),
        ("bad_short_line.xyz", K::BadAtomLine, 0, 4, "expected 3 floats for pos, got 2"),
        ("bad_truncated.xyz", K::Truncated, 0, 4, "file ends after 2 of 3 atom lines (truncated?)"),
    ];
    for (name, kind, frame, line, needle) in cases {
        let path = fixtures().join(name);
        let err = read_extxyz_file(&path).expect_err(name);
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(needle), "{name}: {text}");
        match err {
            ExtxyzError::Parse { kind: k, frame: f, line: l, .. } => {
                assert_eq!((k, f, l), (kind, frame, line), "{name}: {text}")
            }
            other => panic!("{name}: {other}"),
        }
    }
    // ASE rejects them as well.
    require_ase();
    let out = Command::new(python())
        .arg(script())
        .arg("reject")
        .args(cases.iter().map(|c| fixtures().join(c.0)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ASE accepted some broken fixtures:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Data sets for GAP/MACE/ACE often carry `virial` (eV) instead of `stress`: ASE computes
/// EMT's stress for a strained triclinic cell and writes it once as `stress` and once as
/// `virial = -stress * volume` (a plain info key, no calculator); the label read from the
/// second file equals the first to rounding.
#[test]
fn virial_from_ase_reads_as_stress() {
    require_ase();
    let dir = tempfile::tempdir().unwrap();
    let code = r#"
import sys, numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
a = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
a.set_cell(a.cell[:] @ np.array([[1.02, 0.01, 0.0], [0.0, 0.97, 0.015], [0.005, 0.0, 1.01]]), scale_atoms=True)
a.rattle(0.05, seed=3)
a.calc = EMT()
a.get_potential_energy(); a.get_forces(); s = a.get_stress(voigt=False)
write(sys.argv[1], a)
b = a.copy()
b.info["virial"] = -s * a.get_volume()
b.info["energy"] = a.get_potential_energy()
write(sys.argv[2], b)
"#;
    let (with_stress, with_virial) = (dir.path().join("stress.xyz"), dir.path().join("virial.xyz"));
    let out = Command::new(python()).args(["-c", code]).arg(&with_stress).arg(&with_virial).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = read_extxyz_file(&with_stress).unwrap()[0].stress_ev_per_a3.expect("ASE wrote a stress");
    let mut f = read_extxyz_file(&with_virial).unwrap().remove(0);
    assert!(f.stress_ev_per_a3.is_none() && f.info.contains_key("virial"), "{:?}", f.info.keys());
    f.take_virial_as_stress().unwrap();
    let v = f.stress_ev_per_a3.unwrap();
    for k in 0..6 {
        assert!((s[k] - v[k]).abs() <= 1e-12 * s[k].abs().max(1e-3), "component {k}: stress {s:?} vs virial {v:?}");
    }
    assert!(s.iter().any(|x| x.abs() > 1e-3), "the strained cell has a stress: {s:?}");
}
