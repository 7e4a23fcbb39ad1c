//! ORCA and VASP: every fixture parses to the values written beside it
//! (tests/data/{orca,vasp}/expected.json, sources in SOURCES.md there); empty, binary and
//! random bytes are ParseErrors, never panics; the input writers produce what VASP/ORCA
//! (and ASE) read.

use autopipe_atoms::{Element, Structure};
use autopipe_engines::orca::{
    parse_engrad, parse_orca_output, read_orca_output, write_orca_input, ElementBasis, OrcaSettings,
};
use autopipe_engines::output::{ParseError, ParsedOutput, RunError, RunStatus};
use autopipe_engines::vasp::{
    assemble_potcar, parse_outcar, parse_poscar, parse_vasprun, read_vasprun, write_incar, write_kpoints, write_poscar,
    VaspSettings,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

type Parser = fn(&str, &str) -> Result<ParsedOutput, ParseError>;

fn data(engine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(engine)
}

fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-8 * b.abs().max(1e-3);
    assert!((a - b).abs() <= tol, "{what}: parsed {a}, expected {b}");
}

fn opt_close(parsed: Option<f64>, expected: &Value, what: &str) {
    match (parsed, expected.as_f64()) {
        (Some(a), Some(b)) => close(a, b, what),
        (None, None) => {}
        (a, _) => panic!("{what}: parsed {a:?}, expected {expected}"),
    }
}

fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

fn check(p: &ParsedOutput, exp: &Value, ctx: &str) {
    let status: RunStatus = serde_json::from_value(exp["status"].clone()).unwrap();
    assert_eq!(p.status, status, "{ctx}: status (message {:?})", p.message);
    opt_close(p.energy_ev, &exp["energy_ev"], &format!("{ctx} energy"));
    opt_close(p.max_force_ev_per_a, &exp["max_force_ev_per_a"], &format!("{ctx} max force"));
    opt_close(p.wall_time_s, &exp["wall_time_s"], &format!("{ctx} wall time"));
    assert_eq!(p.scf_steps.map(u64::from), exp["scf_steps"].as_u64(), "{ctx}: scf steps");
    match (&p.forces_ev_per_a, exp["forces_ev_per_a"].as_array()) {
        (Some(f), Some(e)) => {
            assert_eq!(f.len(), e.len(), "{ctx}: number of forces");
            for (i, (a, b)) in f.iter().zip(e).enumerate() {
                for k in 0..3 {
                    let b = b[k].as_f64().unwrap();
                    assert!((a[k] - b).abs() <= 1e-8 * b.abs().max(1e-3), "{ctx} force {i}/{k}: {} vs {b}", a[k]);
                }
            }
        }
        (None, None) => {}
        (a, b) => panic!("{ctx}: forces parsed {a:?}, expected {b:?}"),
    }
    match (&p.stress_ev_per_a3, exp["stress_ev_per_a3"].as_array()) {
        (Some(s), Some(e)) => {
            for k in 0..6 {
                let b = e[k].as_f64().unwrap();
                assert!((s[k] - b).abs() <= 1e-9 * b.abs().max(1e-3), "{ctx} stress {k}: {} vs {b}", s[k]);
            }
        }
        (None, None) => {}
        (a, b) => panic!("{ctx}: stress parsed {a:?}, expected {b:?}"),
    }
    if let Some(m) = exp.get("message_contains").and_then(Value::as_str) {
        let msg = p.message.clone().unwrap_or_default();
        assert!(msg.contains(m), "{ctx}: message {msg:?} should contain {m:?}");
    }
    assert_eq!(p.to_labels().is_some(), status == RunStatus::Converged && p.forces_ev_per_a.is_some(), "{ctx}: labels");
    let back: ParsedOutput = serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap();
    assert_eq!(back.status, p.status);
}

fn check_dir(engine: &str, pick: fn(&str) -> Parser, min: usize) {
    let dir = data(engine);
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let map = expected.as_object().unwrap();
    assert!(map.len() >= min, "{engine}: too few fixtures");
    for (file, exp) in map {
        let text = read_text(&dir.join(file));
        let ctx = format!("{engine}/{file}");
        let p = pick(file)(&text, file).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        check(&p, exp, &ctx);
    }
}

#[test]
fn orca_fixtures_parse_to_expected_values() {
    check_dir("orca", |_| parse_orca_output, 7);
}

#[test]
fn vasp_fixtures_parse_to_expected_values() {
    check_dir("vasp", |f| if f.contains("OUTCAR") { parse_outcar } else { parse_vasprun }, 7);
}

#[test]
fn orca_gzip_is_read_transparently() {
    let dir = data("orca");
    let gz = read_orca_output(&dir.join("water_engrad.out.gz")).unwrap();
    let plain = read_orca_output(&dir.join("water_engrad.out")).unwrap();
    assert_eq!(gz, plain);
    assert_eq!(gz.status, RunStatus::Converged);
    assert!(matches!(read_orca_output(&dir.join("no-such-file.out")), Err(ParseError::Io { .. })));
}

#[test]
fn engrad_fixture() {
    let dir = data("orca");
    let e = parse_engrad(&std::fs::read_to_string(dir.join("water.engrad")).unwrap()).unwrap();
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("water.engrad.expected.json")).unwrap()).unwrap();
    assert_eq!(e.natoms, 3);
    close(e.energy_ev, exp["energy_ev"].as_f64().unwrap(), "engrad energy");
    assert_eq!(e.atomic_numbers, vec![8, 1, 1]);
    for i in 0..3 {
        for k in 0..3 {
            let b = exp["forces_ev_per_a"][i][k].as_f64().unwrap();
            assert!((e.forces_ev_per_a[i][k] - b).abs() < 1e-9, "force {i}/{k}");
            let b = exp["positions_a"][i][k].as_f64().unwrap();
            assert!((e.positions_a[i][k] - b).abs() < 1e-12, "position {i}/{k}");
        }
    }
    // the .engrad and the text output of the same run agree (gradients to 1e-9 Eh/bohr)
    let out = read_orca_output(&dir.join("water_engrad.out")).unwrap();
    let f = out.forces_ev_per_a.unwrap();
    for i in 0..3 {
        for k in 0..3 {
            assert!((f[i][k] - e.forces_ev_per_a[i][k]).abs() < 1e-7, "{i}/{k}");
        }
    }
    // the .engrad gradient points uphill: force on O along +x,+y
    assert!(e.forces_ev_per_a[0][0] > 2.0 && e.forces_ev_per_a[0][1] > 2.0);
    // truncated engrad files are errors
    let t = std::fs::read_to_string(dir.join("water.engrad")).unwrap();
    assert!(parse_engrad(&t[..t.find("0.021510428527").unwrap()]).is_err());
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn empty_binary_and_random_inputs_are_errors() {
    let parsers: [(&str, Parser); 3] =
        [("orca", parse_orca_output), ("vasprun", parse_vasprun), ("outcar", parse_outcar)];
    let binary = String::from_utf8_lossy(&[0u8, 1, 2, 3, 0xff, 0xfe, 7, 0, 0, 9]).into_owned();
    for (name, parse) in parsers {
        for (what, input) in [("empty", String::new()), ("blank", " \n\n\t\n".into()), ("binary", binary.clone())] {
            assert!(matches!(parse(&input, what), Err(ParseError::NotAnOutput { .. })), "{name}: {what}");
        }
        for seed in 1..50u64 {
            let text = String::from_utf8_lossy(&random_bytes(seed, 4096)).into_owned();
            assert!(parse(&text, "random").is_err(), "{name}: random bytes {seed} parsed");
            // printable unrelated text
            let printable: String = random_bytes(seed, 2000).iter().map(|b| (b' ' + b % 90) as char).collect();
            assert!(parse(&printable, "printable").is_err(), "{name}: printable noise {seed} parsed");
        }
    }
    assert!(parse_engrad("").is_err());
    assert!(parse_engrad(&binary).is_err());
    assert!(parse_engrad("hello world\n").is_err());
    for seed in 1..50u64 {
        let text = String::from_utf8_lossy(&random_bytes(seed, 1000)).into_owned();
        assert!(parse_engrad(&text).is_err());
    }
}

#[test]
fn truncating_real_outputs_anywhere_never_panics() {
    for (engine, file, parse, end_marker) in [
        ("orca", "dvb_gopt_orca6_excerpt.out", parse_orca_output as Parser, "ORCA TERMINATED NORMALLY"),
        ("vasp", "vasprun_relax_cdte.xml", parse_vasprun as Parser, "</modeling>"),
        ("vasp", "OUTCAR_example_1", parse_outcar as Parser, "General timing"),
    ] {
        let text = std::fs::read_to_string(data(engine).join(file)).unwrap();
        let end = text.find(end_marker).unwrap();
        let step = (end / 97).max(1);
        for cut in (0..end).step_by(step) {
            if !text.is_char_boundary(cut) {
                continue;
            }
            if let Ok(p) = parse(&text[..cut], file) {
                // a file cut before its end-of-run marker never claims to be converged
                assert_ne!(p.status, RunStatus::Converged, "{file} cut at {cut}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Input writers
// ---------------------------------------------------------------------------------

fn cu_au_cell() -> Structure {
    let cu = Element::from_symbol("Cu").unwrap();
    let au = Element::from_symbol("Au").unwrap();
    Structure::new(
        [[3.9, 0.0, 0.0], [0.3, 3.8, 0.0], [0.2, -0.1, 4.1]],
        vec![[0.123456789012, 0.2, 0.3], [2.1, 1.9876543210987, 2.05]],
        vec![au, cu],
        [true; 3],
    )
    .unwrap()
}

#[test]
fn poscar_snapshot_and_round_trip() {
    let s = cu_au_cell();
    let text = write_poscar(&s, false).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "AuCu");
    assert_eq!(lines[1], "1.0");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["3.9", "0", "0"]);
    assert_eq!(lines[5].trim(), "Au Cu");
    assert_eq!(lines[6].trim(), "1 1");
    assert_eq!(lines[7], "Cartesian");
    assert_eq!(lines.len(), 10);
    for direct in [false, true] {
        let text = write_poscar(&s, direct).unwrap();
        let back = parse_poscar(&text).unwrap();
        assert_eq!(back.species, s.species);
        for i in 0..2 {
            for k in 0..3 {
                assert!((back.positions_a[i][k] - s.positions_a[i][k]).abs() < 1e-10, "direct={direct} {i}/{k}");
                assert!((back.cell_a[i][k] - s.cell_a[i][k]).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn poscar_is_read_by_ase() {
    // Without ASE this comparison fails, like every other comparison with a reference program.
    let ok = std::process::Command::new("python3")
        .args(["-c", "import ase.io"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "this test needs `python3` with ASE (`pip install ase`, or ./scripts/install-test-deps.sh)");
    let s = cu_au_cell();
    let dir = tempfile::tempdir().unwrap();
    for direct in [false, true] {
        let path = dir.path().join("POSCAR");
        std::fs::write(&path, write_poscar(&s, direct).unwrap()).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, ase.io\na = ase.io.read(sys.argv[1], format='vasp')\nprint(' '.join(a.get_chemical_symbols()))\nfor p in a.positions: print('%.15f %.15f %.15f' % tuple(p))\nfor c in a.cell: print('%.15f %.15f %.15f' % tuple(c))",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "Au Cu");
        let rows: Vec<Vec<f64>> = lines.map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect();
        assert_eq!(rows.iter().map(Vec::len).collect::<Vec<_>>(), [3; 5], "2 positions and 3 cell rows from ASE");
        for k in 0..3 {
            for i in 0..2 {
                assert!((rows[i][k] - s.positions_a[i][k]).abs() < 1e-8, "ASE position {i}/{k} direct={direct}");
            }
            for i in 0..3 {
                assert!((rows[2 + i][k] - s.cell_a[i][k]).abs() < 1e-8, "ASE cell {i}/{k}");
            }
        }
    }
}

#[test]
fn incar_and_kpoints_contents() {
    let mut st = VaspSettings {
        encut: Some(450.0),
        ediff: Some(1e-5),
        ibrion: Some(2),
        nsw: Some(50),
        isif: Some(3),
        ..Default::default()
    };
    st.incar.insert("PREC".into(), serde_json::json!("Accurate"));
    st.incar.insert("LWAVE".into(), serde_json::json!(false));
    let incar = write_incar(&st).unwrap();
    assert_eq!(
        incar,
        "ENCUT = 450\nEDIFF = 1E-5\nISMEAR = 0\nSIGMA = 0.05\nNELM = 100\nIBRION = 2\nNSW = 50\nISIF = 3\nLWAVE = .FALSE.\nPREC = Accurate\n"
    );
    st.incar.insert("nsw".into(), serde_json::json!(10));
    assert!(matches!(write_incar(&st), Err(RunError::Settings(m)) if m.contains("NSW")));

    // fcc Cu primitive cell, a = 3.6 Å: |b| = 2π√3/a = 3.0230 1/Å -> ceil(3.0230/0.25) = 13
    let cu = Element::from_symbol("Cu").unwrap();
    let fcc = Structure::new([[0.0, 1.8, 1.8], [1.8, 0.0, 1.8], [1.8, 1.8, 0.0]], vec![[0.0; 3]], vec![cu], [true; 3])
        .unwrap();
    let k = write_kpoints(&fcc, &VaspSettings::default()).unwrap();
    assert_eq!(k, "Automatic mesh\n0\nGamma\n13 13 13\n0 0 0\n");
    let mp = VaspSettings { kpoints: Some([4, 4, 2]), gamma_centered: false, ..Default::default() };
    assert_eq!(write_kpoints(&fcc, &mp).unwrap(), "Automatic mesh\n0\nMonkhorst-Pack\n4 4 2\n0 0 0\n");
    let bad = VaspSettings { kpoints: None, kspacing_per_a: None, ..Default::default() };
    assert!(write_kpoints(&fcc, &bad).is_err());
}

#[test]
fn potcar_in_species_order_from_a_fake_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("Au", "PAW_PBE Au 04Oct2007\nfake Au\nEnd of Dataset\n"),
        ("Cu_pv", "PAW_PBE Cu_pv 06Sep2000\nfake Cu\nEnd of Dataset"),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("POTCAR"), body).unwrap();
    }
    let mut st = VaspSettings { potcar_dir: dir.path().display().to_string(), ..Default::default() };
    st.potcars.insert("Cu".into(), "Cu_pv".into());
    let potcar = assemble_potcar(&cu_au_cell(), &st, |p| std::fs::read_to_string(p)).unwrap();
    assert_eq!(
        potcar,
        "PAW_PBE Au 04Oct2007\nfake Au\nEnd of Dataset\nPAW_PBE Cu_pv 06Sep2000\nfake Cu\nEnd of Dataset\n"
    );
    // species order follows the POSCAR element line
    let poscar = write_poscar(&cu_au_cell(), true).unwrap();
    let order: Vec<&str> = poscar.lines().nth(5).unwrap().split_whitespace().collect();
    let titles: Vec<&str> =
        potcar.lines().filter(|l| l.starts_with("PAW_PBE")).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(order, ["Au", "Cu"]);
    assert_eq!(titles, ["Au", "Cu_pv"]);
    // a missing POTCAR names its path
    st.potcars.insert("Cu".into(), "Cu_missing".into());
    match assemble_potcar(&cu_au_cell(), &st, |p| std::fs::read_to_string(p)) {
        Err(RunError::Io { path, .. }) => assert!(path.ends_with("Cu_missing/POTCAR"), "{path}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn orca_input_contents() {
    let pt = Element::from_symbol("Pt").unwrap();
    let cl = Element::from_symbol("Cl").unwrap();
    let mol = Structure::new([[0.0; 3]; 3], vec![[0.0, 0.0, 0.0], [2.3, 0.0, 0.0]], vec![pt, cl], [false; 3]).unwrap();
    let mut s = OrcaSettings {
        charge: 0,
        multiplicity: 2,
        cores: 8,
        maxcore_mb: 3000,
        scf_max_iter: Some(500),
        ..Default::default()
    };
    s.element_basis.insert("Pt".into(), ElementBasis { basis: Some("def2-TZVP".into()), ecp: Some("def2-ECP".into()) });
    s.element_basis.insert("Au".into(), ElementBasis { basis: Some("def2-SVP".into()), ecp: None });
    let inp = write_orca_input(&mol, &s).unwrap();
    assert_eq!(
        inp,
        "! PBE0 def2-TZVP EnGrad\n%maxcore 3000\n%pal nprocs 8 end\n%scf MaxIter 500 end\n%basis\n  NewGTO Pt \"def2-TZVP\" end\n  NewECP Pt \"def2-ECP\" end\nend\n* xyz 0 2\n  Pt     0.0000000000     0.0000000000     0.0000000000\n  Cl     2.3000000000     0.0000000000     0.0000000000\n*\n"
    );
    let opt =
        OrcaSettings { optimize: true, opt_max_cycles: Some(80), nbo: true, multiplicity: 2, ..Default::default() };
    let inp = write_orca_input(&mol, &opt).unwrap();
    assert!(inp.starts_with("! PBE0 def2-TZVP Opt NBO\n"));
    assert!(inp.contains("%geom MaxIter 80 end\n"));
    assert!(!inp.contains("EnGrad"));
    // Pt (78) + Cl (17) = 95 electrons: a singlet is impossible
    assert!(write_orca_input(&mol, &OrcaSettings::default()).is_err());
    // the vasprun reader is also reachable through the file helper
    assert!(read_vasprun(&data("vasp").join("vasprun_pstress.xml")).is_ok());
}
