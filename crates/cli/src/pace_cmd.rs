//! `potential fit --kind pace` and `potential eval` on a pace model: Pacemaker (ACE) as the
//! training engine (the fit runs as a job through the executor, see
//! `autopipe_workflow::pace_job`).

use anyhow::{bail, Context, Result};
use autopipe_atoms::Frame;
use autopipe_potential::{ErrorMetrics, FitOptions, PaceModel, PaceSettings};
use autopipe_workflow::pace_job;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `potential fit --kind pace` takes from the command line.
pub struct PaceFitArgs {
    pub settings: PaceSettings,
    pub opts: FitOptions,
}

/// The settings of a fit: the configuration's `[potential.pace]` or the defaults for the
/// frames' elements, then the flags.
pub fn settings_for(frames: &[Frame], base: Option<PaceSettings>) -> PaceSettings {
    let mut s = base.unwrap_or_default();
    if s.elements.is_empty() {
        let mut els: Vec<String> =
            frames.iter().flat_map(|f| f.structure.species.iter().map(|e| e.symbol().to_string())).collect();
        els.sort();
        els.dedup();
        s.elements = els;
    }
    s
}

/// Errors of a pace model on frames (energy, forces, stress, max γ), overall and per group.
pub fn pace_errors(model: &PaceModel, frames: &[Frame]) -> Result<(ErrorMetrics, BTreeMap<String, ErrorMetrics>)> {
    pace_job::pace_errors(model, frames).map_err(anyhow::Error::msg)
}

/// `potential fit --kind pace FILE --out MODEL`: the held-out split of the fit options,
/// Pacemaker on the training frames (a job in `MODEL.pace-fit/`), then the train and test
/// errors evaluated with Pacemaker's calculator.
pub fn fit(file: &Path, frames: &[Frame], out: &Path, args: PaceFitArgs) -> Result<()> {
    let PaceFitArgs { settings, opts } = args;
    let split = autopipe_potential::split_frames(frames, &opts);
    if split.train.is_empty() {
        bail!("{}: no frame to train on (all held out or without labels)", file.display());
    }
    let pick = |idx: &[usize]| -> Vec<Frame> { idx.iter().map(|&k| frames[k].clone()).collect() };
    let (train, test) = (pick(&split.train), pick(&split.test));
    let dir = task_dir(out);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    pace_job::prepare_pace_dir(&dir, &train, &opts, &settings)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let start = std::time::Instant::now();
    let local = autopipe_exec::LocalOptions { workers: 1, ..Default::default() };
    let ends = autopipe_exec::tasks::run_tasks_local(std::slice::from_ref(&dir), &local, &crate::launcher()?)?;
    if let Some(Some(why)) = ends.first() {
        bail!("the Pacemaker fit in {} failed: {why}", dir.display());
    }
    let model = pace_job::read_pace_result(&dir).map_err(anyhow::Error::msg)?;
    let fit_s = start.elapsed().as_secs_f64();
    autopipe_atoms::output::write_output(out, &serde_json::to_vec_pretty(&model)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let (train_m, train_g) = pace_errors(&model, &train)?;
    crate::print_metrics("train_", &train_m);
    crate::print_group_metrics("train_", &train_g);
    if !test.is_empty() {
        let (test_m, test_g) = pace_errors(&model, &test)?;
        crate::print_metrics("test_", &test_m);
        crate::print_group_metrics("test_", &test_g);
    }
    eprintln!("fit_s {fit_s:.3} s");
    eprintln!(
        "model (Pacemaker ACE, {} functions per element, cutoff {} Å) written to {} (Pacemaker's files in {})",
        model.settings.functions_per_element,
        model.settings.cutoff_a,
        out.display(),
        dir.display()
    );
    Ok(())
}

/// `potential eval` on a pace model.
pub fn eval(model_path: &Path, frames: &[Frame], file: &Path) -> Result<()> {
    let model = pace_job::read_pace_model(model_path).map_err(anyhow::Error::msg)?;
    for (i, f) in frames.iter().enumerate() {
        if let Some(e) = f.structure.species.iter().find(|e| !model.settings.elements.iter().any(|s| s == e.symbol())) {
            bail!(
                "{}: frame {}: {e} is not one of the elements of the model {} ({})",
                file.display(),
                i + 1,
                model_path.display(),
                model.settings.elements.join(", ")
            );
        }
    }
    let (m, g) = pace_errors(&model, frames).with_context(|| format!("evaluating {}", model_path.display()))?;
    crate::print_metrics("", &m);
    crate::print_group_metrics("", &g);
    Ok(())
}

/// Whether a model file is a pace model.
pub fn is_pace_model(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| autopipe_potential::is_pace_model_json(&t))
}

/// The fit's task directory beside the model file: `MODEL.pace-fit/`.
fn task_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "model".into());
    name.push(".pace-fit");
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(parent.join(name)).unwrap_or_else(|_| parent.join("model.pace-fit"))
}
