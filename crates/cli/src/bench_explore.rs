//! `autopipe bench`: exploration at scale — a 2,000-atom SNAP segment in LAMMPS with and
//! without the gamma watch (1 core, and 2 MPI ranks with the venv's `mpirun`), native MD
//! on the same cell, and local-environment extraction from a 100,000-atom frame.

use crate::bench::{figure, Size};
use anyhow::Result;
use autopipe_atoms::{Element, Frame};
use autopipe_build::extract::Extractor;
use autopipe_build::{bulk, rattle, rng_from_seed, supercell, Lattice};
use autopipe_potential::{fit, FitOptions, SnapElement, SnapParams};
use autopipe_workflow::lammps_explore::{resolve_lammps, run_lammps_md, LammpsCommand, LammpsMd};
use std::time::Instant;

pub fn run(size: Size) -> Result<()> {
    let (lammps_steps, native_steps, cells) = match size {
        Size::Full => (100u64, 10u64, 2000usize),
        Size::Quick => (50, 3, 300),
        Size::Smoke => (4, 1, 10),
    };
    let cu = Element::from_symbol("Cu").unwrap();
    // a Cu SNAP 2J=8 model with active sets, fitted to EMT labels of rattled 32-atom cells
    let emt = autopipe_engines::emt::Emt::new();
    let base = supercell(&bulk(Lattice::Fcc, cu, 3.61), [2, 2, 2]);
    let mut rng = rng_from_seed(3);
    let mut frames = Vec::new();
    for k in 0..if size == Size::Smoke { 6 } else { 30 } {
        let s = rattle(&base, 0.05 + 0.1 * (k % 3) as f64, &mut rng);
        let l = emt.calculate(&s)?;
        let mut f = Frame::from_structure(s);
        f.energy_ev = Some(l.energy_ev);
        f.forces_ev_per_a = Some(l.forces_ev_per_a);
        frames.push(f);
    }
    let params = SnapParams {
        twojmax: 8,
        rcutfac: 4.7,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: cu, radius: 0.5, weight: 1.0 }],
    };
    let model = fit(&frames, params, &FitOptions { test_fraction: 0.0, ..FitOptions::default() })?.model;
    // 5 x 5 x 20 conventional fcc cells: 2,000 atoms
    let cell = rattle(&supercell(&bulk(Lattice::Fcc, cu, 3.61), [5, 5, 20]), 0.05, &mut rng_from_seed(4));
    let velocities = autopipe_md::maxwell_boltzmann(&cell, 600.0, &mut rng_from_seed(5));
    let ensemble = autopipe_md::Ensemble::Nvt { temperature_k: 600.0, friction_per_fs: 0.02 };
    match resolve_lammps(None) {
        Err(e) => eprintln!("LAMMPS exploration figures skipped: {e}"),
        Ok(lmp) => {
            let mpirun = lmp.program.parent().map(|b| b.join("mpirun")).filter(|m| m.is_file());
            for watch in [true, false] {
                let md = LammpsMd {
                    start: cell.clone(),
                    velocities_a_per_fs: velocities.clone(),
                    ensemble: ensemble.clone(),
                    timestep_fs: 2.0,
                    steps: lammps_steps,
                    sample_every: 10.min(lammps_steps),
                    gamma_break: watch.then_some(1e6),
                    seed: 7,
                };
                let name =
                    if watch { "lammps_explore_atom_steps_per_s" } else { "lammps_explore_nowatch_atom_steps_per_s" };
                let mut commands = vec![("1core", lmp.clone())];
                if let Some(m) = &mpirun {
                    let args = ["-np", "2", lmp.program.to_str().unwrap_or("lmp")].map(String::from).to_vec();
                    commands.push(("2core", LammpsCommand { program: m.clone(), args }));
                }
                for (cores, command) in commands {
                    let dir = crate::bench::tempfile_dir(&format!("explore-{cores}"))?;
                    let run = run_lammps_md(&dir, &md, &model, &command).map_err(anyhow::Error::msg);
                    std::fs::remove_dir_all(&dir).ok();
                    let run = run?;
                    let loop_s = run.log.runs.last().and_then(|r| r.loop_time_s).unwrap_or(f64::NAN);
                    figure(
                        &format!("{name}_{cores}"),
                        cell.len() as f64 * lammps_steps as f64 / loop_s,
                        "atom-steps/s",
                    );
                }
            }
        }
    }
    // native MD on the same cell (γ evaluated every step, as the native watch does)
    let mut ff = autopipe_workflow::learn::ModelForceField { evaluator: model.evaluator()? };
    let mut state = autopipe_md::MdState::new(cell.clone(), velocities);
    let settings = autopipe_md::MdSettings::new(2.0, native_steps, ensemble, 7);
    let start = Instant::now();
    autopipe_md::run_md(&mut state, &mut ff, &settings, &mut [])?;
    figure(
        "native_md_atom_steps_per_s",
        cell.len() as f64 * native_steps as f64 / start.elapsed().as_secs_f64(),
        "atom-steps/s",
    );
    // extraction: cells around atoms of a 100,000-atom frame (25 x 25 x 40 fcc cells)
    let big = rattle(&supercell(&bulk(Lattice::Fcc, cu, 3.61), [25, 25, 40]), 0.05, &mut rng_from_seed(6));
    let start = Instant::now();
    let ex = Extractor::new(&big, model.params.max_cutoff(), 2.0, 2.0).map_err(anyhow::Error::msg)?;
    let mut atoms = 0usize;
    for k in 0..cells {
        atoms += ex.extract(k * 97 % big.len()).map_err(anyhow::Error::msg)?.structure.len();
    }
    figure("extract_cells_per_s", cells as f64 / start.elapsed().as_secs_f64(), "cells/s");
    eprintln!("extraction: {} atoms per cell on average", atoms / cells.max(1));
    Ok(())
}
