//! Exploration in LAMMPS against the native MD and the native γ, the gamma watch's
//! `fix halt`, and local-environment extraction from a 2,048-atom LAMMPS frame.
//!
//! Needs LAMMPS with ML-SNAP: `lmp` on PATH (the README's test command puts
//! /opt/autopipe-venv/bin there; `scripts/install-test-deps.sh` installs it). Without it
//! the tests fail saying so.

use autopipe_atoms::{Element, Frame, Structure};
use autopipe_build::{bulk, rattle, rng_from_seed, supercell, Lattice};
use autopipe_engines::emt::Emt;
use autopipe_md::{maxwell_boltzmann, run_md, Control, Ensemble, Evaluation, MdSettings, MdState};
use autopipe_potential::{fit, FitOptions, SnapElement, SnapModel, SnapParams};
use autopipe_workflow::config::ExploreConfig;
use autopipe_workflow::explore_job::SegmentJob;
use autopipe_workflow::lammps_explore::{
    resolve_lammps, run_lammps_md, run_lammps_segment, ExploreEngine, LammpsCommand, LammpsMd, LOG_FILE,
};
use std::path::PathBuf;

fn cu() -> Element {
    Element::from_symbol("Cu").unwrap()
}

fn lmp() -> LammpsCommand {
    resolve_lammps(None).unwrap_or_else(|e| {
        panic!("{e}\nInstall with ./scripts/install-test-deps.sh and put /opt/autopipe-venv/bin on PATH")
    })
}

/// A small Cu SNAP model with active sets, fitted to EMT labels of rattled 32-atom cells.
fn model() -> SnapModel {
    let params = SnapParams {
        twojmax: 4,
        rcutfac: 4.0,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: cu(), radius: 0.5, weight: 1.0 }],
    };
    let base = supercell(&bulk(Lattice::Fcc, cu(), 3.6), [2, 2, 2]);
    let emt = Emt::new();
    let mut rng = rng_from_seed(7);
    let frames: Vec<Frame> = (0..12)
        .map(|k| {
            let s = rattle(&base, 0.03 + 0.01 * (k % 4) as f64, &mut rng);
            let l = emt.calculate(&s).unwrap();
            let mut f = Frame::from_structure(s);
            f.energy_ev = Some(l.energy_ev);
            f.forces_ev_per_a = Some(l.forces_ev_per_a);
            f
        })
        .collect();
    let opts = FitOptions { test_fraction: 0.0, ..FitOptions::default() };
    let m = fit(&frames, params, &opts).unwrap().model;
    assert_eq!(m.active_sets.len(), 1);
    m
}

/// A tilted, rattled 108-atom cell (the rotation into LAMMPS's frame is exercised).
fn start_cell() -> Structure {
    let mut s = supercell(&bulk(Lattice::Fcc, cu(), 3.6), [3, 3, 3]);
    s.cell_a[1][0] += 0.4;
    s.cell_a[2][1] -= 0.3;
    s.cell_a[0][2] += 0.2;
    rattle(&s, 0.05, &mut rng_from_seed(3))
}

fn min_image(s: &Structure, a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let inv = autopipe_atoms::structure::inverse3(&s.cell_a).unwrap();
    let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let mut f = autopipe_atoms::structure::vec_mat(&d, &inv);
    f.iter_mut().for_each(|x| *x -= x.round());
    autopipe_atoms::structure::norm(&autopipe_atoms::structure::vec_mat(&f, &s.cell_a))
}

#[test]
fn nve_in_lammps_follows_native_md_and_its_gamma() {
    let model = model();
    let start = start_cell();
    let velocities = maxwell_boltzmann(&start, 600.0, &mut rng_from_seed(11));
    let (steps, every, dt) = (100u64, 10u64, 2.0);
    // native
    let ev = model.evaluator().unwrap();
    let mut ff = autopipe_workflow::learn::ModelForceField { evaluator: model.evaluator().unwrap() };
    let mut state = MdState::new(start.clone(), velocities.clone());
    let settings = MdSettings::new(dt, steps, Ensemble::Nve, 1);
    let mut native: Vec<(u64, Structure)> = Vec::new();
    let mut obs = autopipe_md::FnObserver::new(every, |st: &MdState, _: &Evaluation| {
        native.push((st.step, st.structure.clone()));
        Control::Continue
    });
    run_md(&mut state, &mut ff, &settings, &mut [&mut obs]).unwrap();
    drop(obs);
    // LAMMPS
    let dir = tempfile::tempdir().unwrap();
    let md = LammpsMd {
        start: start.clone(),
        velocities_a_per_fs: velocities,
        ensemble: Ensemble::Nve,
        timestep_fs: dt,
        steps,
        sample_every: every,
        gamma_break: Some(1e6),
        seed: 1,
    };
    let run = run_lammps_md(dir.path(), &md, &model, &lmp()).unwrap();
    assert!(!run.halted);
    assert_eq!(run.steps_done, steps);
    assert_eq!(run.frames.len(), (steps / every + 1) as usize);
    let (mut dx_max, mut dg_max) = (0.0f64, 0.0f64);
    for f in &run.frames {
        let (_, ours) = native.iter().find(|(k, _)| *k == f.step).expect("the native run sampled the same steps");
        assert_eq!(f.structure.len(), ours.len());
        for (a, b) in f.structure.positions_a.iter().zip(&ours.positions_a) {
            dx_max = dx_max.max(min_image(ours, a, b));
        }
        let g_native = ev.gamma(ours).unwrap().unwrap();
        let g_lammps = f.gamma.as_ref().unwrap();
        for (a, b) in g_lammps.iter().zip(&g_native) {
            dg_max = dg_max.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    println!("NVE 100 steps: max position difference {dx_max:.3e} Å, max relative gamma difference {dg_max:.3e}");
    assert!(dx_max < 1e-7, "LAMMPS and native trajectories differ by {dx_max} Å");
    assert!(dg_max < 1e-8, "LAMMPS and native gamma differ by {dg_max}");
    // the watch saw something: gamma is not trivially zero
    assert!(run.frames.iter().any(|f| f.gamma.as_ref().unwrap().iter().any(|&g| g > 0.5)));
}

fn job(start: Structure, temperature_k: f64, explore: ExploreConfig) -> SegmentJob {
    SegmentJob {
        generation: 1,
        name: format!("T{temperature_k}"),
        temperature_k,
        pressure_gpa: None,
        seed: 5,
        model: PathBuf::from("unused.json"),
        start,
        explore,
    }
}

#[test]
fn segment_reaching_gamma_break_stops_in_lammps() {
    let model = model();
    let explore = ExploreConfig {
        engine: ExploreEngine::Lammps,
        temperatures_k: vec![900.0],
        steps: 2000,
        sample_every: 10,
        timestep_fs: 2.0,
        gamma_select: 1.2,
        gamma_break: 12.0,
        ..ExploreConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    // an untilted cell near the training cells: gamma starts low and grows with the heat
    let start = rattle(&supercell(&bulk(Lattice::Fcc, cu(), 3.6), [3, 3, 3]), 0.03, &mut rng_from_seed(3));
    let j = job(start, 900.0, explore);
    let out = run_lammps_segment(dir.path(), &j, &model).unwrap();
    let log = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    if std::env::var_os("SHOW_LOG").is_some() {
        println!("{log}");
    }
    println!("stopped after {} steps: {:?}, max gamma {:?}", out.steps_done, out.stop_reason, out.max_gamma);
    assert!(out.steps_done > 10 && out.steps_done < 2000 && out.steps_done % 10 == 0, "{}", out.steps_done);
    assert!(log.contains("Fix halt condition"), "the log does not show fix halt");
    assert!(out.stop_reason.as_deref().unwrap().contains("gamma_break"));
    assert!(out.max_gamma.unwrap() > 12.0);
    assert!(!out.candidates.is_empty());
    assert!(out.candidates.iter().any(|(_, g)| *g >= 1.2));
    // the scores are the frames' max gamma, highest first
    assert!(out.candidates.windows(2).all(|w| w[0].1 >= w[1].1));
}

#[test]
fn large_cell_in_lammps_gives_exact_extracted_environments() {
    let model = model();
    let big = rattle(&supercell(&bulk(Lattice::Fcc, cu(), 3.6), [8, 8, 8]), 0.05, &mut rng_from_seed(9));
    assert_eq!(big.len(), 2048);
    let explore = ExploreConfig {
        engine: ExploreEngine::Lammps,
        temperatures_k: vec![1500.0],
        steps: 20,
        sample_every: 10,
        timestep_fs: 2.0,
        gamma_select: 1.05,
        gamma_break: 1e6,
        max_frames_per_segment: 6,
        extract_above_atoms: Some(500),
        extract_buffer_a: 2.0,
        ..ExploreConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let j = job(big.clone(), 1500.0, explore);
    let md = LammpsMd {
        start: big.clone(),
        velocities_a_per_fs: maxwell_boltzmann(&big, 1500.0, &mut rng_from_seed(5)),
        ensemble: autopipe_workflow::explore_job::segment_ensemble(&j),
        timestep_fs: 2.0,
        steps: 20,
        sample_every: 10,
        gamma_break: Some(1e6),
        seed: 5,
    };
    // the frames themselves, to compare with
    let run = run_lammps_md(dir.path(), &md, &model, &lmp()).unwrap();
    let out = run_lammps_segment(dir.path(), &j, &model).unwrap();
    assert_eq!(out.extracted.len(), out.candidates.len());
    assert!(!out.candidates.is_empty(), "no uncertain atom in the 2,048-atom frames");
    let cutoff = model.params.max_cutoff();
    let snap = autopipe_potential::Snap::new(&model.params).unwrap();
    for ((cell, g), origin) in out.candidates.iter().zip(&out.extracted) {
        assert!(*g >= 1.05);
        assert!(cell.len() < 400, "{} atoms", cell.len());
        assert_eq!(cell.content_hash(), origin.hash);
        let frame = &run.frames.iter().find(|f| f.step == origin.step).unwrap().structure;
        // same neighbours at the same distances within the cutoff
        let env = |s: &Structure, i: usize| {
            let nl = autopipe_atoms::NeighborList::build(s, cutoff);
            let mut d: Vec<f64> = nl.neighbors(i).iter().map(|n| n.distance_a).collect();
            d.sort_by(f64::total_cmp);
            d
        };
        let (a, b) = (env(frame, origin.atom), env(cell, 0));
        assert_eq!(a.len(), b.len(), "atom {} of step {}: neighbour counts differ", origin.atom, origin.step);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-10, "{x} vs {y}");
        }
        // same descriptors of the core atom
        let (da, db) = (snap.descriptors(frame).unwrap(), snap.descriptors(cell).unwrap());
        for (x, y) in da.b_row(origin.atom).iter().zip(db.b_row(0)) {
            assert!((x - y).abs() < 1e-10 * x.abs().max(1.0), "descriptor {x} vs {y}");
        }
        // the core's gamma is the one LAMMPS dumped for it
        let gl = run.frames.iter().find(|f| f.step == origin.step).unwrap().gamma.as_ref().unwrap()[origin.atom];
        assert!((gl - g).abs() < 1e-12);
    }
    // no two cells around the same neighbourhood of one frame
    println!("{} extracted cells from 2,048-atom frames", out.candidates.len());
}

/// The `[explore]` keys of the LAMMPS engine are checked before any work, with the
/// file, line and key of the mistake.
#[test]
fn lammps_explore_keys_are_checked() {
    let base = autopipe_workflow::examples::example("cu-emt").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    let with = |extra: &str| base.replace("[explore]", &format!("[explore]\n{extra}"));
    let line_of = |text: &str, key: &str| text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
    // a missing executable
    let text = with("engine = \"lammps\"\nlammps_command = \"/nonexistent/lmp\"");
    let e = autopipe_workflow::parse_config(&text, &file).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("explore.lammps_command"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "lammps_command")));
    assert!(e.message.contains("not found"), "{e}");
    // an unknown engine
    let text = with("engine = \"gromacs\"");
    let e = autopipe_workflow::parse_config(&text, &file).unwrap_err();
    assert_eq!(e.line, Some(line_of(&text, "engine = \"gromacs\"")), "{e}");
    // a start file that is not there, or holds another element
    let text = with("start_file = \"big.xyz\"");
    let e = autopipe_workflow::parse_config(&text, &file).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("explore.start_file"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "start_file")));
    std::fs::write(dir.path().join("big.xyz"), "1\nLattice=\"3 0 0 0 3 0 0 0 3\" pbc=\"T T T\"\nNi 0 0 0\n").unwrap();
    let e = autopipe_workflow::parse_config(&text, &file).unwrap_err();
    assert!(e.message.contains("atom 1 is Ni"), "{e}");
    // a good one: the path becomes absolute
    std::fs::write(dir.path().join("big.xyz"), "1\nLattice=\"3 0 0 0 3 0 0 0 3\" pbc=\"T T T\"\nCu 0 0 0\n").unwrap();
    let c =
        autopipe_workflow::parse_config(&with("start_file = \"big.xyz\"\nextract_above_atoms = 500"), &file).unwrap();
    assert_eq!(c.explore.start_file.as_deref(), Some(dir.path().join("big.xyz").as_path()));
    assert_eq!(c.explore.extract_above_atoms, Some(500));
    let e = autopipe_workflow::parse_config(&with("extract_above_atoms = 0"), &file).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("explore.extract_above_atoms"), "{e}");
}
