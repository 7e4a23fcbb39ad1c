//! `autopipe build prototype|read|supercell|sqs|rattle|strain`: the command-line
//! contract, pipes, and clear errors for bad options. The physics (prototypes, readers,
//! SQS correlations) is checked against ASE in crates/build and crates/atoms.
mod common;

use autopipe_atoms::extxyz::read_extxyz_file;
use autopipe_atoms::{Element, InfoValue};
use common::{ok, run, stderr, stdout};
use std::path::Path;
use std::process::{Command, Stdio};

fn cif(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../atoms/tests/data/cif").join(name).display().to_string()
}

const SQS: [&str; 14] = [
    "build",
    "sqs",
    "--lattice",
    "fcc",
    "--elements",
    "Cu,Au",
    "--fractions",
    "0.5,0.5",
    "--lattice-constant-a",
    "3.8",
    "--supercell",
    "2",
    "2",
    "4",
];

#[test]
fn sqs_contract_table_on_stderr_json_on_stdout_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.xyz");
    let b = dir.path().join("b.xyz");
    let mut args = SQS.to_vec();
    args.extend(["--shells", "3", "--steps", "50000", "--seed", "7", "--out", a.to_str().unwrap()]);
    let out = ok(&args);
    assert!(stdout(&out).is_empty(), "the table goes to stderr: {}", stdout(&out));
    let table = stderr(&out);
    assert!(table.contains("objective") && table.contains("Cu-Au"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("A-A")).count(), 3, "three shells: {table}");

    *args.last_mut().unwrap() = b.to_str().unwrap();
    args.push("--json");
    let out = ok(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    assert_eq!(v["atoms"], 64);
    assert_eq!(v["seed"], 7);
    assert_eq!(v["shells"].as_array().unwrap().len(), 3);
    assert!(v["shells"][0]["alpha"]["Cu-Au"].as_f64().unwrap().abs() <= 0.01, "{v}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same seed, same structure");
    let frames = read_extxyz_file(&a).unwrap();
    let s = &frames[0].structure;
    assert_eq!(s.len(), 64);
    assert_eq!(s.species.iter().filter(|e| **e == Element::from_symbol("Au").unwrap()).count(), 32);
    assert_eq!(frames[0].info.get("sqs_seed"), Some(&InfoValue::Int(7)));
    assert!((s.volume_a3() - 3.8f64.powi(3) * 16.0).abs() < 1e-9);
}

#[test]
fn sqs_bad_options_are_named() {
    let o = "/tmp/never-written.xyz";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--fractions", "0.5,0.6", "--supercell", "2", "2", "4"], "sum to"),
        (vec!["--fractions", "0.3,0.7", "--supercell", "2", "2", "4"], "not a whole number"),
        (vec!["--fractions", "0.5", "--supercell", "2", "2", "4"], "--fractions"),
        (vec!["--fractions", "0.5,0.5", "--supercell", "0", "2", "4"], "--supercell"),
    ];
    for (extra, wanted) in cases {
        let mut args = vec!["build", "sqs", "--lattice", "fcc", "--elements", "Cu,Au", "--lattice-constant-a", "3.8"];
        args.extend(extra);
        args.extend(["--out", o]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(wanted), "{args:?}: {}", stderr(&out));
    }
    let out = run(&[
        "build",
        "sqs",
        "--lattice",
        "bct",
        "--elements",
        "Cu,Au",
        "--lattice-constant-a",
        "3.8",
        "--supercell",
        "2",
        "2",
        "2",
        "--out",
        o,
    ]);
    assert!(stderr(&out).contains("unknown prototype \"bct\""), "{}", stderr(&out));
    let out = run(&[
        "build",
        "sqs",
        "--lattice",
        "rocksalt",
        "--elements",
        "Mg,Ni",
        "--lattice-constant-a",
        "4.2",
        "--supercell",
        "2",
        "2",
        "2",
        "--out",
        o,
    ]);
    assert!(stderr(&out).contains("2 sublattices"), "{}", stderr(&out));
    assert!(!Path::new(o).exists());
}

#[test]
fn prototype_supercell_rattle_strain_compose_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("pipe.xyz");
    let bin = env!("CARGO_BIN_EXE_autopipe");
    let script = format!(
        "set -e; '{bin}' build prototype --prototype fcc --elements Cu --lattice-constant-a 3.6 --out - \
         | '{bin}' build supercell --in - --atoms 32 --out - \
         | '{bin}' build strain --in - --volumetric 0.03 --out - \
         | '{bin}' build rattle --in - --sigma-a 0.05 --count 4 --seed 3 --out '{}'",
        out_path.display()
    );
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frames = read_extxyz_file(&out_path).unwrap();
    assert_eq!(frames.len(), 4);
    for f in &frames {
        assert_eq!(f.structure.len(), 32);
        assert!((f.structure.volume_a3() / (3.6f64.powi(3) * 8.0) - 1.03).abs() < 1e-9);
        // a 2x2x2 cube of the conventional cell
        let c = f.structure.cell_a;
        assert!((c[0][0] - c[1][1]).abs() < 1e-9 && c[0][1].abs() < 1e-9, "{c:?}");
    }
    assert_ne!(frames[0].structure.positions_a, frames[1].structure.positions_a);
}

#[test]
fn read_cif_and_refuse_partial_occupancy() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("garnet.xyz");
    ok(&["build", "read", &cif("garnet.cif"), "--out", o.to_str().unwrap()]);
    let frames = read_extxyz_file(&o).unwrap();
    assert_eq!(frames[0].structure.formula(), "Ca24Al16Si24O96");
    let out = run(&["build", "read", &cif("Cu7Te5.cif"), "--out", o.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("Cu7Te5.cif:109: _atom_site_occupancy: site Cu2"), "{e}");
    // the earlier output is untouched
    assert_eq!(read_extxyz_file(&o).unwrap().len(), 1);
}

#[test]
fn supercell_matrix_and_impossible_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.xyz");
    let s = dir.path().join("s.xyz");
    ok(&[
        "build",
        "prototype",
        "--prototype",
        "hcp",
        "--elements",
        "Mg",
        "--lattice-constant-a",
        "3.2",
        "--out",
        p.to_str().unwrap(),
    ]);
    ok(&[
        "build",
        "supercell",
        "--in",
        p.to_str().unwrap(),
        "--matrix",
        "1",
        "-1",
        "0",
        "1",
        "1",
        "0",
        "0",
        "0",
        "2",
        "--out",
        s.to_str().unwrap(),
    ]);
    let (a, b) = (&read_extxyz_file(&p).unwrap()[0].structure, &read_extxyz_file(&s).unwrap()[0].structure);
    assert_eq!(b.len(), 8);
    assert!((b.volume_a3().abs() - 4.0 * a.volume_a3()).abs() < 1e-9);
    let out = run(&[
        "build",
        "supercell",
        "--in",
        p.to_str().unwrap(),
        "--matrix",
        "1",
        "0",
        "0",
        "2",
        "0",
        "0",
        "0",
        "0",
        "1",
        "--out",
        s.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("singular"), "{}", stderr(&out));
    let out = run(&["build", "supercell", "--in", p.to_str().unwrap(), "--atoms", "7", "--out", s.to_str().unwrap()]);
    assert!(stderr(&out).contains("--atoms: 7 is not a multiple of the 2 atoms"), "{}", stderr(&out));
}

#[test]
fn slab_terminations_through_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("slabs.xyz");
    let bin = env!("CARGO_BIN_EXE_autopipe");
    let script = format!(
        "set -e; '{bin}' build prototype --prototype rocksalt --elements Na,Cl --lattice-constant-a 5.64 --out - \
         | '{bin}' build slab --in - --miller 1 1 1 --layers 2 --vacuum-a 8 --out '{}'",
        o.display()
    );
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frames = read_extxyz_file(&o).unwrap();
    assert_eq!(frames.len(), 2, "Na- and Cl-terminated NaCl(111)");
    let bottoms: Vec<_> = frames.iter().map(|f| f.info.get("bottom_plane").cloned()).collect();
    assert_ne!(bottoms[0], bottoms[1]);
    let p = dir.path().join("p.xyz");
    ok(&[
        "build",
        "prototype",
        "--prototype",
        "fcc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "3.6",
        "--out",
        p.to_str().unwrap(),
    ]);
    let out = run(&[
        "build",
        "slab",
        "--in",
        p.to_str().unwrap(),
        "--miller",
        "1",
        "1",
        "1",
        "--termination",
        "1",
        "--out",
        o.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("--termination 1") && stderr(&out).contains("1 distinct termination"),
        "{}",
        stderr(&out)
    );
    let out =
        run(&["build", "slab", "--in", p.to_str().unwrap(), "--miller", "0", "0", "0", "--out", o.to_str().unwrap()]);
    assert!(stderr(&out).contains("--miller"), "{}", stderr(&out));
}

#[test]
fn select_is_deterministic_and_avoids_labelled_structures() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    ok(&[
        "build",
        "bulk",
        "--lattice-constant-a",
        "3.6",
        "--count",
        "12",
        "--max-strain",
        "0.04",
        "--rattle-a",
        "0.1",
        "--out",
        &p("pool.xyz"),
    ]);
    // The labelled set: the first four structures of the pool itself.
    let pool = read_extxyz_file(Path::new(&p("pool.xyz"))).unwrap();
    autopipe_atoms::extxyz::write_extxyz_file(Path::new(&p("labelled.xyz")), &pool[..4]).unwrap();
    for name in ["a.xyz", "b.xyz"] {
        ok(&[
            "build",
            "select",
            "--in",
            &p("pool.xyz"),
            "--labelled",
            &p("labelled.xyz"),
            "--count",
            "10",
            "--out",
            &p(name),
        ]);
    }
    assert_eq!(std::fs::read(p("a.xyz")).unwrap(), std::fs::read(p("b.xyz")).unwrap(), "deterministic");
    let picked = read_extxyz_file(Path::new(&p("a.xyz"))).unwrap();
    assert_eq!(picked.len(), 8, "the 8 structures that are not labelled");
    let labelled: Vec<String> = pool[..4].iter().map(|f| f.structure.content_hash()).collect();
    let mut hashes: Vec<String> = picked.iter().map(|f| f.structure.content_hash()).collect();
    assert!(hashes.iter().all(|h| !labelled.contains(h)));
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 8, "no repeats");
}

#[test]
fn defects_at_symmetry_distinct_sites() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("d.xyz");
    let bin = env!("CARGO_BIN_EXE_autopipe");
    let script = format!(
        "set -e; '{bin}' build prototype --prototype perovskite --elements Sr,Ti,O --lattice-constant-a 3.9 \
         --supercell 2 2 2 --out - | '{bin}' build defects --in - --vacancies --out '{}'",
        o.display()
    );
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("space group P m -3 m (221), 3 distinct sites"));
    let frames = read_extxyz_file(&o).unwrap();
    assert_eq!(frames.len(), 3, "one vacancy each of Sr, Ti, O");
    assert!(frames.iter().all(|f| f.structure.len() == 39));
    let out = run(&["build", "defects", "--in", &cif("garnet.cif"), "--out", o.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 4 orbits: 4 vacancies and 4 x 3 antisites
    assert_eq!(read_extxyz_file(&o).unwrap().len(), 16);
    // fcc: octahedral and tetrahedral interstitials
    let p = dir.path().join("cu.xyz");
    ok(&[
        "build",
        "prototype",
        "--prototype",
        "fcc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "3.6",
        "--supercell",
        "2",
        "2",
        "2",
        "--out",
        p.to_str().unwrap(),
    ]);
    ok(&["build", "defects", "--in", p.to_str().unwrap(), "--interstitial", "H", "--out", o.to_str().unwrap()]);
    let frames = read_extxyz_file(&o).unwrap();
    assert_eq!(frames.len(), 2);
    assert!(frames
        .iter()
        .all(|f| f.structure.len() == 33 && f.structure.species[32] == Element::from_symbol("H").unwrap()));
}

/// A pool of 2x2x2 Cu cells: five rattled ones, one with two atoms 0.5 Å apart, one
/// compressed by 40 % in volume (far above the median energy).
fn screen_pool(dir: &Path) -> std::path::PathBuf {
    let pool = dir.join("pool.xyz");
    let p = pool.to_str().unwrap();
    ok(&[
        "build",
        "bulk",
        "--lattice",
        "fcc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "3.61",
        "--count",
        "7",
        "--max-strain",
        "0.01",
        "--rattle-a",
        "0.03",
        "--out",
        p,
    ]);
    let mut frames = read_extxyz_file(&pool).unwrap();
    let p0 = frames[5].structure.positions_a[0];
    frames[5].structure.positions_a[1] = [p0[0] + 0.5, p0[1], p0[2]];
    let s = &mut frames[6].structure;
    let f = 0.6f64.cbrt();
    s.cell_a.iter_mut().flatten().for_each(|x| *x *= f);
    s.positions_a.iter_mut().flatten().for_each(|x| *x *= f);
    autopipe_atoms::extxyz::write_extxyz_file(&pool, &frames).unwrap();
    pool
}

#[test]
fn screen_rejects_close_contacts_and_surrogate_outliers_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let pool = screen_pool(dir.path());
    let (kept, rejected) = (dir.path().join("kept.xyz"), dir.path().join("rejected.xyz"));
    let args = |extra: &[&str]| {
        let mut a = vec!["build", "screen", "--in", pool.to_str().unwrap(), "--out", kept.to_str().unwrap()];
        a.extend(["--rejected", rejected.to_str().unwrap()]);
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run_args = |extra: &[&str]| {
        let a = args(extra);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // distances only: the close pair goes, the compressed cell (no contact below 0.6) stays
    let out = run_args(&[]);
    assert!(
        stderr(&out).contains("frame 6: rejected (too_close): atoms 1 and 2 (Cu-Cu) are 0.500 Å apart"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_extxyz_file(&kept).unwrap().len(), 6);
    let refused = read_extxyz_file(&rejected).unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].info.get("screen_reason"), Some(&InfoValue::Str("too_close".into())));

    // with EMT as the surrogate, the compressed cell goes too (energy far above the median)
    let out = run_args(&["--surrogate", "emt", "--json"]);
    let emt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    assert_eq!((emt["kept"].as_u64(), emt["rejected"].as_u64()), (Some(5), Some(2)), "{emt}");
    assert_eq!(emt["frames"][5]["rejection"]["reason"], "too_close");
    assert_eq!(emt["frames"][6]["rejection"]["reason"], "high_energy");
    assert!(emt["frames"][6]["rejection"]["above_median_ev_per_atom"].as_f64().unwrap() > 1.0, "{emt}");
    let refused = read_extxyz_file(&rejected).unwrap();
    assert_eq!(refused[1].info.get("screen_reason"), Some(&InfoValue::Str("high_energy".into())));
    // a tight force limit rejects the rattled cells on their forces
    let out = run_args(&["--surrogate", "emt", "--max-force-ev-per-a", "0.01", "--json"]);
    let tight: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tight["frames"][0]["rejection"]["reason"], "large_force", "{tight}");

    // ASE's EMT through the bridge says the same, to the last digits
    let out = run_args(&["--surrogate", "ase:ase.calculators.emt.EMT", "--json"]);
    let ase: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in 0..7 {
        assert_eq!(ase["frames"][k]["kept"], emt["frames"][k]["kept"], "frame {k}");
        if let Some(e) = emt["frames"][k]["surrogate_energy_ev_per_atom"].as_f64() {
            let a = ase["frames"][k]["surrogate_energy_ev_per_atom"].as_f64().unwrap();
            assert!((a - e).abs() < 1e-10, "frame {k}: {a} vs {e}");
        }
    }

    // bad surrogates and criteria are named before any work
    for (extra, wanted) in [
        (vec!["--surrogate", "dft"], "--surrogate `dft`: expected emt"),
        (vec!["--surrogate", "ase:no_such_module.Calc"], "cannot import module `no_such_module`"),
        (vec!["--surrogate", "model:/nonexistent/model.json"], "/nonexistent/model.json"),
        (vec!["--min-distance-fraction", "3"], "--min-distance-fraction"),
    ] {
        let a = args(&extra);
        let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(wanted), "{extra:?}: {}", stderr(&out));
    }
}
