//! `autopipe bench` figures of Pacemaker (ACE) as the loop runs it: the fit of a small
//! Cu/EMT set (a task directory through the local executor, as `autopipe run` with
//! `potential.kind = "pace"` does: dataset, `pacemaker`, `pace_activeset`), and MD steps
//! per second with Pacemaker's calculator (energy, forces, stress and γ every step).
//! Skipped (one line on stderr) when Pacemaker is not installed, and with `--smoke` (a
//! Pacemaker fit takes half a minute, mostly TensorFlow's start).

use crate::bench::{figure, Size};
use anyhow::{Context, Result};
use autopipe_build::rng_from_seed;
use autopipe_md::{maxwell_boltzmann, run_md, Ensemble, MdSettings, MdState};
use autopipe_potential::{FitOptions, PaceSettings};
use autopipe_workflow::pace_job::{pace_python, prepare_pace_dir, read_pace_result, PaceEvaluator, PaceForceField};
use std::time::Instant;

pub fn run(size: Size) -> Result<()> {
    let (cells, steps) = match size {
        Size::Full => (8, 400u64),
        Size::Quick => (8, 100),
        Size::Smoke => {
            eprintln!("pace figures skipped with --smoke (a Pacemaker fit takes half a minute)");
            return Ok(());
        }
    };
    if !pace_python().with_file_name("pacemaker").is_file() {
        eprintln!(
            "pace figures skipped: Pacemaker is not installed ({} has no pacemaker beside it)",
            pace_python().display()
        );
        return Ok(());
    }
    // the loop's test settings: 6 functions per element, 10 BFGS iterations, 32-atom cells
    let frames = crate::bench::emt_labelled_cu(cells, 11)?;
    let settings = PaceSettings {
        elements: vec!["Cu".into()],
        functions_per_element: 6,
        max_iterations: 10,
        ..Default::default()
    };
    let dir = crate::bench::tempfile_dir("pace")?.join("fit");
    prepare_pace_dir(&dir, &frames, &FitOptions::default(), &settings).map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let local = autopipe_exec::LocalOptions { workers: 1, ..Default::default() };
    let ends = autopipe_exec::tasks::run_tasks_local(std::slice::from_ref(&dir), &local, &crate::launcher()?)?;
    if let Some(Some(why)) = ends.first() {
        anyhow::bail!("the Pacemaker fit in {} failed: {why}", dir.display());
    }
    figure("pace_fit_8_cells_s", start.elapsed().as_secs_f64(), "s");
    let model = read_pace_result(&dir).map_err(anyhow::Error::msg)?;
    let mut ff = PaceForceField(PaceEvaluator::start(&model).map_err(anyhow::Error::msg)?);
    let cell = frames[0].structure.clone();
    let velocities = maxwell_boltzmann(&cell, 1200.0, &mut rng_from_seed(12));
    let mut state = MdState::new(cell, velocities);
    let ensemble = Ensemble::Nvt { temperature_k: 1200.0, friction_per_fs: 0.02 };
    let settings = MdSettings::new(2.0, steps, ensemble, 13);
    let start = Instant::now();
    run_md(&mut state, &mut ff, &settings, &mut []).context("MD with the pace calculator")?;
    figure("pace_md_32_atoms_steps_per_s", steps as f64 / start.elapsed().as_secs_f64(), "steps/s");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    Ok(())
}
