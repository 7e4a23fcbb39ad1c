//! `potential.kind = "pace"` in the loop: each generation's fit is a Pacemaker job and
//! its exploration runs with Pacemaker's calculator (γ from its active set).
//!
//! The fit's task directory is `RUN/fits/gen-NNN/` (see [`crate::pace_job`]); it runs on the
//! execution backend like an exploration segment (locally, or as a Slurm/Flux job), so a
//! fit survives the orchestrator's death: a rerun finds `result.json` and does not refit
//! (or waits for a fit whose lock is still held). The model file `RUN/models/gen-NNN.json`
//! is a [`PaceModel`] (`"kind": "pace"`) with the run's provenance. The convergence
//! figures are the errors on the test split (labels never trained on), evaluated with
//! Pacemaker's calculator: k-fold cross-validation would be K Pacemaker fits per
//! generation and is not done (`fit.folds` is refused with pace).

use crate::config::{Config, ExploreConfig};
use crate::drift::{config_hash, label_hash};
use crate::explore_job::{run_segment_with, SegmentJob, SegmentOutcome};
use crate::labelling::RunError;
use crate::learn::LoopReporter;
use crate::pace_job::{
    pace_errors, prepare_pace_dir, read_pace_model, read_pace_result, PaceEvaluator, PaceForceField,
};
use autopipe_atoms::Frame;
use autopipe_exec::Launcher;
use autopipe_potential::{FitOptions, PaceModel};
use autopipe_store::{JobStore, ModelRecord};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What a configuration with `potential.kind = "pace"` cannot have: the dotted key and why.
pub(crate) fn check_pace_config(
    fit: &FitOptions,
    explore: &ExploreConfig,
    goals: &crate::goals::GoalsConfig,
) -> Result<(), (Vec<&'static str>, String)> {
    if fit.reference.is_some() {
        return Err((
            vec!["potential", "reference", "zbl_inner_a"],
            "a ZBL reference is for SNAP fits; with potential.kind = \"pace\" leave it out \
             (Pacemaker's ACE has its own core repulsion)"
                .into(),
        ));
    }
    if fit.folds >= 2 {
        return Err((
            vec!["fit", "folds"],
            "k-fold cross-validation with Pacemaker would be that many Pacemaker fits per generation and is not \
             done; with potential.kind = \"pace\" the loop judges a model on its test split (fit.test_fraction)"
                .into(),
        ));
    }
    if explore.engine == crate::lammps_explore::ExploreEngine::Lammps {
        return Err((
            vec!["explore", "engine"],
            "exploration with LAMMPS is for SNAP models; with potential.kind = \"pace\" use engine = \"native\" \
             (MD with Pacemaker's own calculator and its extrapolation grade)"
                .into(),
        ));
    }
    if !goals.is_empty() {
        return Err((vec!["goals"], "property goals work with SNAP models, not with potential.kind = \"pace\"".into()));
    }
    Ok(())
}

/// The potential a configuration trains, in a few words (`autopipe run`, `validate`).
pub fn potential_summary(config: &Config) -> String {
    if config.potential_kind == "pace" {
        let p = &config.pace;
        format!("Pacemaker ACE ({} functions per element, cutoff {} Å)", p.functions_per_element, p.cutoff_a)
    } else {
        format!("SNAP 2J={} cutoff {} Å", config.snap.twojmax, config.snap.rcutfac)
    }
}

/// Whether a model file is a pace model (`"kind": "pace"`).
pub fn is_pace_model_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| autopipe_potential::is_pace_model_json(&t))
}

/// The fit's task directory of a generation, relative to the run directory.
pub fn fit_rel_dir(generation: i64) -> String {
    format!("fits/gen-{generation:03}")
}

/// The files of a fit's task directory that define the fit: the same files mean the same
/// fit, whose result stands.
const INPUTS: [&str; 6] =
    ["pace.json", "labels.xyz", "weights.json", "references.json", "input.yaml", "pace_dataset.py"];

/// Write the fit's task directory, keeping an earlier one (and its result) when it holds
/// the same fit: the inputs are written into `DIR.new` and compared.
fn stage_fit_dir(dir: &Path, train: &[Frame], config: &Config, g: i64) -> Result<(), RunError> {
    let staging = PathBuf::from(format!("{}.new", dir.display()));
    let out = |p: &Path, e: std::io::Error| RunError::Output { path: p.to_path_buf(), message: e.to_string() };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| out(&staging, e))?;
    }
    prepare_pace_dir(&staging, train, &config.fit, &config.pace)
        .map_err(|e| RunError::Input(format!("generation {g}: {e}")))?;
    let same = |name: &str| {
        let a = std::fs::read(staging.join(name));
        a.is_ok() && a.ok() == std::fs::read(dir.join(name)).ok()
    };
    if dir.exists() && INPUTS.iter().all(|n| same(n)) {
        return std::fs::remove_dir_all(&staging).map_err(|e| out(&staging, e));
    }
    if dir.exists() {
        if autopipe_exec::job::lock_is_held(dir) {
            return Err(RunError::Input(format!(
                "generation {g}: a Pacemaker fit of other inputs still runs in {}; wait for it to end",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir).map_err(|e| out(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| out(dir, e))
}

/// Phase::Fit with Pacemaker: the split of the fit options, Pacemaker on the training
/// labels as a job, the errors with Pacemaker's calculator, the model file and its record.
pub(crate) fn fit_generation(
    config: &Config,
    run_dir: &Path,
    store: &mut JobStore,
    g: i64,
    frames: &[Frame],
    launcher: &Launcher,
    reporter: &mut dyn LoopReporter,
) -> Result<(), RunError> {
    let split = autopipe_potential::split_frames(frames, &config.fit);
    if split.train.is_empty() {
        return Err(RunError::Input(format!(
            "generation {g}: every label is held out for testing (fit.test_fraction); nothing to train Pacemaker on"
        )));
    }
    let pick = |idx: &[usize]| -> Vec<Frame> { idx.iter().map(|&k| frames[k].clone()).collect() };
    let (train, test) = (pick(&split.train), pick(&split.test));
    let dir = run_dir.join(fit_rel_dir(g));
    stage_fit_dir(&dir, &train, config, g)?;
    let backend = config.execution.backend.backend(false, None, None);
    reporter.say(&format!(
        "generation {g}: fitting Pacemaker ACE on {} labels ({} train, {} test) as a job ({} backend)",
        frames.len(),
        train.len(),
        test.len(),
        backend.name()
    ));
    let opts = config.execution.local_options();
    let run = |launcher: &Launcher| -> Result<Option<String>, RunError> {
        match backend.run_tasks(run_dir, &format!("f{g}"), std::slice::from_ref(&dir), &opts, launcher) {
            Err(autopipe_exec::ExecError::Interrupted) => Err(RunError::Interrupted),
            Err(e) => Err(e.into()),
            Ok(ends) => Ok(ends.into_iter().next().flatten()),
        }
    };
    // A fit lost to the infrastructure (killed, timed out) runs again, within the budget.
    let mut end = run(launcher)?;
    for _ in 0..config.execution.max_infra_retries {
        if end.is_none() {
            break;
        }
        end = run(launcher)?;
    }
    if let Some(why) = end {
        return Err(RunError::Input(format!("generation {g}: the Pacemaker fit in {} failed: {why}", dir.display())));
    }
    let mut model: PaceModel = read_pace_result(&dir).map_err(RunError::Input)?;
    let errors = |set: &[Frame]| {
        if set.is_empty() {
            return Ok(autopipe_potential::errors_of_evaluations(&[], &[], &Default::default()));
        }
        pace_errors(&model, set).map_err(|e| RunError::Input(format!("generation {g}: evaluating the pace model: {e}")))
    };
    let (train_m, train_groups) = errors(&train)?;
    let (test_m, test_groups) = errors(&test)?;
    let rel = crate::learn::model_rel_path(g);
    model.provenance = json!({
        "program": concat!("autopipe ", env!("CARGO_PKG_VERSION")),
        "run": config.name,
        "generation": g,
        "labels": frames.len(),
        "train_frames": train.len(),
        "test_frames": test.len(),
        "oracle": config.oracle.name(),
        "oracle_label_params": config.oracle.label_params(),
        "config_hash": config_hash(config),
        "label_hash": label_hash(config),
        "fit_dir": fit_rel_dir(g),
        "test": test_m,
        "train": train_m,
    });
    crate::learn::write_atomic(&run_dir.join(&rel), &serde_json::to_vec_pretty(&model).expect("models serialise"))?;
    let metrics = json!({
        "kind": PaceModel::KIND,
        "train": train_m,
        "test": test_m,
        "cv": null,
        "validation": "test split (k-fold cross-validation is not run for Pacemaker fits)",
        "train_groups": train_groups,
        "test_groups": test_groups,
        "fit_s": model.fit_s,
        "functions_per_element": model.settings.functions_per_element,
    });
    reporter.say(&format!(
        "generation {g}: Pacemaker fitted {} labels in {:.1} s: test force RMSE {}, energy RMSE {}",
        train.len(),
        model.fit_s,
        crate::learn::fmt_stat(test_m.forces_ev_per_a.as_ref().map(|s| s.rmse), 1.0, "eV/Å"),
        crate::learn::fmt_stat(test_m.energy_ev_per_atom.as_ref().map(|s| s.rmse), 1e3, "meV/atom"),
    ));
    store.record_model(&ModelRecord {
        generation: g,
        path: rel,
        n_train: train.len() as i64,
        n_test: test.len() as i64,
        metrics,
    })?;
    Ok(())
}

/// An exploration segment with a pace model: MD with Pacemaker's calculator, its γ driving
/// the watchdog and the candidates.
pub fn run_pace_segment(job: &SegmentJob) -> Result<SegmentOutcome, String> {
    if job.explore.engine != crate::lammps_explore::ExploreEngine::Native {
        return Err("a pace model explores with explore.engine = \"native\" only".into());
    }
    let model = read_pace_model(&job.model)?;
    let ev = PaceEvaluator::start(&model).map_err(|e| format!("{}: {e}", job.model.display()))?;
    run_segment_with(job, &mut PaceForceField(ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;

    fn config(max_iterations: usize) -> Config {
        let text = crate::examples::example("cu-emt").unwrap().replace("[potential]", "[potential]\nkind = \"pace\"");
        let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("folds")).collect();
        let text = format!("{}\n[potential.pace]\nmax_iterations = {max_iterations}\n", text.join("\n"));
        parse_config(&text, Path::new("cu.toml")).unwrap()
    }

    #[test]
    fn a_fit_directory_and_its_result_are_kept_only_for_the_same_inputs() {
        let tmp = tempfile::tempdir().unwrap();
        // A stand-in for the installation: writing a task directory only checks that
        // Pacemaker's tools exist (nothing runs here).
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["python", "pacemaker", "pace_activeset"] {
            std::fs::write(bin.join(tool), "").unwrap();
        }
        std::env::set_var("AUTOPIPE_PACE_PYTHON", bin.join("python"));
        let c = config(10);
        let emt = autopipe_engines::emt::Emt::new();
        let frames: Vec<Frame> = autopipe_build::generate_bulk(&c.generate)
            .into_iter()
            .take(5)
            .map(|s| {
                let mut f = Frame::from_structure(s);
                crate::models::label_with_emt(&emt, &mut f).unwrap();
                f
            })
            .collect();
        let dir = tmp.path().join("fits").join("gen-000");
        let result = dir.join(autopipe_exec::job::RESULT_FILE);
        let n_labels = || std::fs::read_to_string(dir.join("labels.xyz")).unwrap().matches("Lattice=").count();
        stage_fit_dir(&dir, &frames[..4], &c, 0).unwrap();
        std::fs::write(&result, "{}").unwrap();
        // the same fit: its result stands
        stage_fit_dir(&dir, &frames[..4], &c, 0).unwrap();
        assert!(result.is_file());
        // one more label: a new fit
        stage_fit_dir(&dir, &frames, &c, 0).unwrap();
        assert!(!result.exists());
        assert_eq!(n_labels(), 5);
        // other Pacemaker settings: a new fit
        std::fs::write(&result, "{}").unwrap();
        stage_fit_dir(&dir, &frames, &config(20), 0).unwrap();
        assert!(!result.exists());
        assert!(std::fs::read_to_string(dir.join("input.yaml")).unwrap().contains("maxiter: 20"));
        assert!(!tmp.path().join("fits").join("gen-000.new").exists());
    }
}
