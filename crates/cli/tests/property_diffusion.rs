//! `autopipe property diffusion`: the MD workflow end to end on EMT copper (liquid, three
//! temperatures: D rises with T, an activation energy with its error), and the analysis
//! of a trajectory file, the same with its positions wrapped into the cell as without.
//! (The accuracy of D and of the Arrhenius fit on data with a known answer is checked in
//! crates/property/tests/diffusion_synthetic.rs.)

mod common;

use common::{ok, run, stderr};
use serde_json::Value;

#[test]
fn emt_liquid_copper_d_rises_with_temperature() {
    let out = ok(&[
        "property",
        "diffusion",
        "--emt",
        "--element",
        "Cu",
        "--temperatures-k",
        "1800,2200,2600",
        "--npt-steps",
        "1500",
        "--nvt-steps",
        "500",
        "--production-steps",
        "4000",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let temps = v["temperatures"].as_array().unwrap();
    assert_eq!(temps.len(), 3);
    let d: Vec<f64> = temps.iter().map(|t| t["species"]["Cu"]["diffusion_cm2_per_s"].as_f64().unwrap()).collect();
    let se: Vec<f64> = temps.iter().map(|t| t["species"]["Cu"]["stderr_cm2_per_s"].as_f64().unwrap()).collect();
    eprintln!("D = {d:?} ± {se:?} cm²/s");
    assert!(d[0] < d[1] && d[1] < d[2], "D(T) should rise with T: {d:?}");
    // A liquid metal: D of order 1e-5 .. 1e-4 cm²/s.
    assert!(d.iter().all(|&x| (5e-6..5e-4).contains(&x)), "{d:?}");
    assert!(se.iter().zip(&d).all(|(s, x)| *s > 0.0 && *s < 0.3 * x), "{se:?}");
    let a = &v["arrhenius"]["Cu"];
    let (ea, ea_err) = (a["ea_ev"].as_f64().unwrap(), a["ea_stderr_ev"].as_f64().unwrap());
    eprintln!("Ea = {ea} ± {ea_err} eV, D0 = {} cm²/s", a["d0_cm2_per_s"]);
    assert!(ea > 0.05 && ea < 2.0, "Ea {ea}");
    assert!(ea_err > 0.0 && ea_err < 0.5 * ea, "Ea error {ea_err}");
    assert!(a["d0_cm2_per_s"].as_f64().unwrap() > 0.0 && a["d0_stderr_cm2_per_s"].as_f64().unwrap() > 0.0);
    // EMT has no extrapolation grade.
    assert!(v["max_gamma"].is_null());
}

#[test]
fn trajectory_file_wrapped_or_not_gives_the_same_d() {
    let dir = tempfile::tempdir().unwrap();
    let traj = dir.path().join("md.xyz");
    ok(&[
        "md",
        "--emt",
        "--elements",
        "Cu",
        "--supercell",
        "3",
        "3",
        "3",
        "--temperature-k",
        "2500",
        "--steps",
        "3000",
        "--every",
        "10",
        "--out",
        traj.to_str().unwrap(),
    ]);
    // The same frames with every atom wrapped into the cell.
    let mut frames = autopipe_atoms::extxyz::read_extxyz_file(&traj).unwrap();
    let mut moved = 0;
    for f in &mut frames {
        let s = &mut f.structure;
        let inv = autopipe_atoms::structure::inverse3(&s.cell_a).unwrap();
        for x in s.positions_a.iter_mut() {
            let frac = autopipe_atoms::structure::vec_mat(x, &inv);
            if frac.iter().any(|v| !(0.0..1.0).contains(v)) {
                moved += 1;
            }
            *x = autopipe_atoms::structure::vec_mat(&frac.map(|v| v - v.floor()), &s.cell_a);
        }
    }
    assert!(moved > 100, "the trajectory should leave the cell ({moved} wrapped positions)");
    let wrapped = dir.path().join("wrapped.xyz");
    autopipe_atoms::extxyz::write_extxyz_file(&wrapped, &frames).unwrap();
    let d = |path: &std::path::Path| {
        let out = ok(&["property", "diffusion", path.to_str().unwrap(), "--frame-interval-fs", "20", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["frames"], 301);
        (
            v["species"]["Cu"]["diffusion_cm2_per_s"].as_f64().unwrap(),
            v["species"]["Cu"]["stderr_cm2_per_s"].as_f64().unwrap(),
        )
    };
    let (d_unwrapped, se) = d(&traj);
    let (d_wrapped, _) = d(&wrapped);
    eprintln!("D = {d_unwrapped:e} ± {se:e} cm²/s; from the wrapped positions {d_wrapped:e}");
    // (A hot crystal at a fixed volume: little diffusion, but atoms cross the cell faces.)
    assert!(d_unwrapped > 0.0 && se > 0.0, "{d_unwrapped}");
    assert!((d_wrapped - d_unwrapped).abs() < 1e-9 * d_unwrapped, "{d_wrapped} vs {d_unwrapped}");
    // The text form names the species.
    let text = common::stdout(&ok(&["property", "diffusion", wrapped.to_str().unwrap(), "--frame-interval-fs", "20"]));
    assert!(text.starts_with("Cu D = "), "{text}");
}

#[test]
fn bad_diffusion_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // No frame interval.
    let traj = dir.path().join("t.xyz");
    std::fs::write(&traj, "1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 0 0\n")
        .unwrap();
    let out = run(&["property", "diffusion", traj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--frame-interval-fs is needed"), "{}", stderr(&out));
    // Too few frames.
    let out = run(&["property", "diffusion", traj.to_str().unwrap(), "--frame-interval-fs", "5"]);
    assert!(stderr(&out).contains("too few"), "{}", stderr(&out));
    // A starting structure with an element EMT does not know.
    let fe = dir.path().join("fe.xyz");
    std::fs::write(
        &fe,
        "1\nLattice=\"2.9 0 0 0 2.9 0 0 0 2.9\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nFe 0 0 0\n",
    )
    .unwrap();
    let out = run(&["property", "diffusion", "--emt", "--structure", fe.to_str().unwrap(), "--temperatures-k", "1000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fe.xyz: atom 1 is Fe"), "{}", stderr(&out));
}
