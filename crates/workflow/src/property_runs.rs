//! What the property commands do to a run directory (`--dir RUN`): label cells with the
//! run's own oracle through its execution backend (`property elastic --with-oracle`),
//! and queue the structures a property calculation was unsure of as the next
//! generation's labels (`--feed`), for `autopipe run` to label and refit.

use crate::config::{parse_config, Config};
use crate::labelling::{new_calculations, RunError};
use autopipe_atoms::Structure;
use autopipe_exec::{Launcher, Observer};
use autopipe_property::guard::Uncertain;
use autopipe_store::{CalcResult, JobStore, LoopState, RunLock};
use std::collections::HashMap;
use std::path::Path;

/// The configuration `RUN` goes by (the one recorded by its last `autopipe run`).
pub fn run_config(run_dir: &Path) -> Result<Config, RunError> {
    let store = JobStore::open_read_only(run_dir)?;
    let c = store.current_config()?.ok_or_else(|| {
        RunError::Input(format!("{}: no configuration recorded (has `autopipe run` run here?)", run_dir.display()))
    })?;
    parse_config(&c.text, Path::new(&c.file))
        .map_err(|e| RunError::Input(format!("{}: the run's recorded configuration: {e}", run_dir.display())))
}

/// Labels of structures by the run's oracle.
pub struct OracleLabels {
    /// One per structure, in order.
    pub results: Vec<CalcResult>,
    /// Calculations added (the others were in the database already, done or pending).
    pub added: usize,
    /// Engine executions the batch made.
    pub executed: usize,
}

/// Label `structures` with the run's oracle (`config.oracle`) through its backend
/// (`config.execution`), as calculations of `RUN`'s database with `origin`: a structure
/// labelled before (same content and label parameters) is not computed again. The
/// batch also runs any other pending calculation of the run. Holds the run lock.
pub fn label_with_run_oracle(
    config: &Config,
    run_dir: &Path,
    structures: Vec<Structure>,
    origin: &str,
    launcher: &Launcher,
    observer: &mut dyn Observer,
) -> Result<OracleLabels, RunError> {
    let _lock = RunLock::acquire(run_dir)?;
    let mut store = JobStore::open_existing(run_dir)?;
    let generation = store.loop_state()?.map_or(0, |s| s.generation);
    let hashes: Vec<String> = structures.iter().map(|s| s.content_hash()).collect();
    let calcs = new_calculations(structures, origin, generation, &config.oracle, |i| format!("cell {}", i + 1))
        .map_err(RunError::Input)?;
    let imported = store.import(&calcs)?;
    let before = store.executions()?;
    let backend = config.execution.backend.backend(false, None, None);
    let summary = backend.run_batch(&mut store, run_dir, &config.execution.local_options(), launcher, observer)?;
    if summary.interrupted {
        return Err(RunError::Interrupted);
    }
    if let Some(message) = summary.stopped {
        return Err(RunError::Stopped(message));
    }
    let executed = (store.executions()? - before) as usize;
    let labels: HashMap<String, CalcResult> = store
        .labels_of(config.oracle.name(), &config.oracle.label_params())?
        .into_iter()
        .map(|l| (l.structure.content_hash(), l.result))
        .collect();
    let results = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            labels.get(h).cloned().ok_or_else(|| {
                RunError::Input(format!(
                    "cell {} of {origin}: the oracle gave no label (see `autopipe jobs list --dir {}`)",
                    i + 1,
                    run_dir.display()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OracleLabels { results, added: imported.added, executed })
}

/// Whether `RUN` can take uncertain structures now (its loop has ended), checked before
/// a property calculation starts; returns the run's configuration and the generation of
/// its last model (the one `--dir RUN` computes with).
pub fn check_feedable(run_dir: &Path) -> Result<(Config, i64), RunError> {
    let config = run_config(run_dir)?;
    let store = JobStore::open_read_only(run_dir)?;
    let state = store
        .loop_state()?
        .ok_or_else(|| RunError::Input(format!("{}: the loop has not started; nothing to feed", run_dir.display())))?;
    let model = store.model(None)?.map(|m| m.generation);
    check_ended(run_dir, &state, model)?;
    Ok((config, state.generation))
}

fn check_ended(run_dir: &Path, state: &LoopState, model_generation: Option<i64>) -> Result<(), RunError> {
    if !state.phase.is_final() {
        return Err(RunError::Input(format!(
            "--feed: the loop of {} is in generation {} ({}), not ended: run `autopipe run` to finish it, then \
             compute the property again to feed its uncertain structures",
            run_dir.display(),
            state.generation,
            state.phase.as_str()
        )));
    }
    if model_generation != Some(state.generation) {
        return Err(RunError::Input(format!(
            "--feed: the loop of {} ended at generation {} but its last model is of generation {}",
            run_dir.display(),
            state.generation,
            model_generation.map_or("none".to_string(), |g| g.to_string())
        )));
    }
    Ok(())
}

/// Queue the most uncertain of `uncertain` (at most `loop.per_generation`, one per
/// structure) into `RUN` as the calculations of its next generation, labelled by its
/// oracle, with `origin`: the next `autopipe run` labels them, refits and explores as
/// in any generation, even when the loop had converged. Refused unless the loop has
/// ended with the model of `model_generation` (see [`check_feedable`]). Returns how many
/// were queued.
pub fn queue_uncertain(
    config: &Config,
    run_dir: &Path,
    uncertain: Vec<Uncertain>,
    origin: &str,
    model_generation: i64,
) -> Result<usize, RunError> {
    let kept = crate::goals::most_uncertain(uncertain, config.loop_.per_generation);
    if kept.is_empty() {
        return Ok(0);
    }
    let _lock = RunLock::acquire(run_dir)?;
    let mut store = JobStore::open_existing(run_dir)?;
    let state = store
        .loop_state()?
        .ok_or_else(|| RunError::Input(format!("{}: the loop state vanished", run_dir.display())))?;
    check_ended(run_dir, &state, Some(model_generation))?;
    let structures: Vec<Structure> = kept.into_iter().map(|u| u.structure).collect();
    let calcs = new_calculations(structures, origin, state.generation + 1, &config.oracle, |i| {
        format!("uncertain structure {} of {origin}", i + 1)
    })
    .map_err(RunError::Input)?;
    let n = calcs.len();
    store.record_properties(state.generation, &[], Some(&calcs))?;
    Ok(n)
}
