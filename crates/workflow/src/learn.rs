//! The active-learning loop: label -> fit -> explore -> select -> label ...
//!
//! Every phase ends with one transaction that records its results and the next phase
//! (see `autopipe_store::learning`), and every phase is idempotent or deterministic:
//! labelling is resumable by the job database, a fit is recomputed from the labels and
//! its file written atomically before it is recorded, an MD segment is seeded by
//! (run seed, generation, segment) and recorded with its candidates at once. So
//! `kill -9` at any instant and `autopipe run` again repeats at most the phase step
//! that was in flight, and ends with the same labels.

use crate::config::{parse_config, Config};
use crate::drift::{classify, config_hash, label_hash, Drift};
use crate::labelling::{label_frame, new_calculations, RunError};
use crate::select::select_diverse;
use autopipe_atoms::{Frame, Structure};
use autopipe_build::{generate_bulk, BulkRecipe};
use autopipe_exec::{Launcher, Observer};
use autopipe_md::{Evaluation, ForceField};
use autopipe_potential::{fit, ModelEvaluator, Snap, SnapModel};
use autopipe_store::{JobStore, Label, LoopState, ModelRecord, Phase, RunLock, SegmentRecord};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What `autopipe run` reports at the end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoopOutcome {
    pub state: LoopState,
    pub labels: usize,
    pub model: Option<PathBuf>,
}

/// How `autopipe run` treats a configuration that differs from the run's.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Accept label-defining changes: the run's structures are labelled again with the
    /// new settings (a new labelling lineage); the old labels stay, unused.
    pub accept_changes: bool,
}

/// The loop's messages to a person (one line each).
pub trait LoopReporter: Observer {
    fn say(&mut self, line: &str);

    /// A phase of `generation` ended and its results are committed (the CLI writes the
    /// report here; `Phase::Select` ends a generation).
    fn phase_done(&mut self, _generation: i64, _phase: Phase) {}
}

/// The model file of a generation, relative to the run directory.
pub fn model_rel_path(generation: i64) -> String {
    format!("models/gen-{generation:03}.json")
}

pub fn load_model(path: &Path) -> Result<SnapModel, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Input(format!("{}: cannot read the model: {e}", path.display())))?;
    if autopipe_potential::is_pace_model_json(&text) {
        return Err(RunError::Input(format!(
            "{}: a Pacemaker ACE model (potential.kind = \"pace\"): this needs a SNAP model \
             (pace models work with `potential eval` and in the loop)",
            path.display()
        )));
    }
    serde_json::from_str(&text).map_err(|e| RunError::Input(format!("{}: not a SNAP model file: {e}", path.display())))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let out = |message: String| RunError::Output { path: path.to_path_buf(), message };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| out(e.to_string()))?;
    }
    autopipe_exec::job::write_atomic(path, bytes).map_err(|e| out(e.to_string()))
}

/// A SNAP model as a force field for MD.
pub struct ModelForceField<'a> {
    pub evaluator: ModelEvaluator<'a>,
}

impl ForceField for ModelForceField<'_> {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let e = self.evaluator.evaluate(s).map_err(|e| e.to_string())?;
        Ok(Evaluation {
            energy_ev: e.energy_ev,
            forces_ev_per_a: e.forces_ev_per_a,
            stress_ev_per_a3: e.stress_ev_per_a3,
            gamma: e.gamma,
        })
    }
}

/// The exploration segments of a configuration: (name, temperature K, pressure GPa).
pub fn segments(config: &Config) -> Vec<(String, f64, Option<f64>)> {
    let e = &config.explore;
    let mut out = Vec::new();
    for &t in &e.temperatures_k {
        if e.pressures_gpa.is_empty() {
            out.push((format!("T{t}"), t, None));
        } else {
            for &p in &e.pressures_gpa {
                out.push((format!("T{t}_P{p}"), t, Some(p)));
            }
        }
    }
    out
}

use crate::explore_job::{SegmentJob, SegmentOutcome, SEGMENT_FILE};

fn segment_seed(run_seed: u64, generation: i64, index: usize) -> u64 {
    run_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add((generation as u64) << 32).wrapping_add(index as u64 + 1)
}

/// Run (or resume) the loop of `config` in `run_dir` until it converges, reaches
/// `max_generations`, or a labelling batch stops. Takes the run directory's lock for
/// its whole life; compares `config` with the configuration the run goes by first.
pub fn run_loop(
    config: &Config,
    run_dir: &Path,
    launcher: &Launcher,
    reporter: &mut dyn LoopReporter,
    options: RunOptions,
) -> Result<LoopOutcome, RunError> {
    let _lock = RunLock::acquire(run_dir)?;
    let mut store = JobStore::open_or_create(run_dir)?;
    reconcile_config(config, run_dir, &mut store, options, reporter)?;
    let fit_options = &config.fit;
    if store.loop_state()?.is_none() {
        let mut calcs = match &config.recipes {
            Some(g0) => crate::generate::generation0_calculations(g0, config, &store, reporter)?,
            None => {
                let structures = generate_bulk(&config.generate);
                let origin = format!("generated:{}", config.generate.lattice.name());
                new_calculations(structures, &origin, 0, &config.oracle, |i| format!("generated structure {}", i + 1))
                    .map_err(RunError::Input)?
            }
        };
        if let Some(recipe) = &config.elastic_cells {
            // origin kind `elastic`: the fit group of `[fit.groups.elastic]`
            let origin = format!("elastic:{}", recipe.lattice.name());
            let cells = generate_bulk(recipe);
            calcs.extend(
                new_calculations(cells, &origin, 0, &config.oracle, |i| format!("elastic cell {}", i + 1))
                    .map_err(RunError::Input)?,
            );
        }
        store.start_loop(&calcs)?;
    }
    loop {
        let state = store.loop_state()?.ok_or_else(|| RunError::Input("the loop state vanished".into()))?;
        let g = state.generation;
        match state.phase {
            Phase::Label => {
                let backend = config.execution.backend.backend(false, None, None);
                reporter.say(&format!(
                    "generation {g}: labelling with {} ({} backend)",
                    config.oracle.name(),
                    backend.name()
                ));
                let summary =
                    backend.run_batch(&mut store, run_dir, &config.execution.local_options(), launcher, reporter)?;
                if summary.interrupted {
                    return Err(RunError::Interrupted);
                }
                if let Some(message) = summary.stopped {
                    return Err(RunError::Stopped(message));
                }
                store.finish_labelling(g)?;
                write_labels_file(config, run_dir, &store)?;
            }
            Phase::Fit => {
                let labels = lineage_labels(config, &store)?;
                let others = store.counts()?.done as usize - labels.len();
                if others > 0 {
                    reporter.say(&format!(
                        "generation {g}: {others} labels of other engine settings in this run directory are not used \
                         (the loop fits only labels of its own oracle settings)"
                    ));
                }
                let mut frames: Vec<Frame> = labels.iter().map(label_frame).collect();
                crate::lammps_explore::apply_force_weights(
                    &mut frames,
                    &crate::lammps_explore::extracted_cores(run_dir),
                );
                if frames.is_empty() {
                    return Err(RunError::Input(format!(
                        "generation {g}: no label of this run's oracle settings to fit on (all its calculations failed?)"
                    )));
                }
                if config.potential_kind == "pace" {
                    crate::pace_loop::fit_generation(config, run_dir, &mut store, g, &frames, launcher, reporter)?;
                    reporter.phase_done(g, state.phase);
                    continue;
                }
                let start = std::time::Instant::now();
                let report = fit(&frames, config.snap.clone(), fit_options)
                    .map_err(|e| RunError::Input(format!("fitting generation {g}: {e}")))?;
                let rel = model_rel_path(g);
                let mut model_json = serde_json::to_value(&report.model).expect("models serialise");
                model_json["provenance"] = json!({
                    "program": concat!("autopipe ", env!("CARGO_PKG_VERSION")),
                    "run": config.name,
                    "generation": g,
                    "labels": frames.len(),
                    "train_frames": report.train_frames.len(),
                    "test_frames": report.test_frames.len(),
                    "oracle": config.oracle.name(),
                    "oracle_label_params": config.oracle.label_params(),
                    "config_hash": config_hash(config),
                    "label_hash": label_hash(config),
                    "test": report.test,
                    "train": report.train,
                });
                write_atomic(&run_dir.join(&rel), &serde_json::to_vec(&model_json).expect("models serialise"))?;
                // k-fold cross-validation over every label: the error estimate convergence
                // is judged on (a few held-out frames are not enough)
                let cv = if config.fit.folds >= 2 && frames.len() >= config.fit.folds {
                    let cv = autopipe_potential::cross_validate(&frames, &config.snap, fit_options, config.fit.folds)
                        .map_err(|e| RunError::Input(format!("cross-validating generation {g}: {e}")))?;
                    Some(cv)
                } else {
                    None
                };
                let metrics = json!({
                    "train": report.train,
                    "test": report.test,
                    "cv": cv,
                    "train_groups": report.train_groups,
                    "test_groups": report.test_groups,
                    "rank": report.rank,
                    "n_coefficients": report.n_coefficients,
                    "fit_s": start.elapsed().as_secs_f64(),
                    "warnings": report.warnings,
                });
                reporter.say(&format!(
                    "generation {g}: fitted on {} labels ({} train, {} test) in {:.1} s: test force RMSE {}, energy RMSE {}",
                    frames.len(),
                    report.train_frames.len(),
                    report.test_frames.len(),
                    start.elapsed().as_secs_f64(),
                    fmt_stat(report.test.forces_ev_per_a.map(|s| s.rmse), 1.0, "eV/Å"),
                    fmt_stat(report.test.energy_ev_per_atom.map(|s| s.rmse), 1e3, "meV/atom"),
                ));
                store.record_model(&ModelRecord {
                    generation: g,
                    path: rel,
                    n_train: report.train_frames.len() as i64,
                    n_test: report.test_frames.len() as i64,
                    metrics,
                })?;
            }
            Phase::Explore => explore(config, run_dir, &mut store, g, launcher, reporter)?,
            Phase::Select => select(config, &mut store, g, reporter)?,
            Phase::Converged | Phase::Finished => {
                // The property goals, with the final model; their uncertain structures
                // open a new generation (labelling), and the loop goes on.
                if crate::goals::run_goals(config, run_dir, &mut store, reporter)? {
                    continue;
                }
                // Written again on each call: the database stays the source of truth.
                let n = write_labels_file(config, run_dir, &store)?;
                let model = store.model(None)?.map(|m| run_dir.join(m.path));
                return Ok(LoopOutcome { state, labels: n, model });
            }
        }
        reporter.phase_done(g, state.phase);
    }
}

/// The labels the loop fits on: those of its oracle's engine and label-defining settings.
pub(crate) fn lineage_labels(config: &Config, store: &JobStore) -> Result<Vec<Label>, RunError> {
    Ok(store.labels_of(config.oracle.name(), &config.oracle.label_params())?)
}

/// `RUN/labels.xyz`: every label the loop fits on, each frame with where it came from
/// (`config_type` = the kind of origin, the fit's group; `origin`, `generation`, `segment`
/// for MD frames, `calculation_id`)
/// and whether the fit holds it out (`in_test_split`). Returns how many were written.
fn write_labels_file(config: &Config, run_dir: &Path, store: &JobStore) -> Result<usize, RunError> {
    let labels = lineage_labels(config, store)?;
    let mut frames: Vec<Frame> = labels
        .iter()
        .map(|l| {
            let mut f = label_frame(l);
            let share = config.fit.group_weights(autopipe_potential::frame_group(&f)).1;
            let test = autopipe_potential::is_test_structure(&l.structure, share, config.fit.split_salt);
            f.info.insert("in_test_split".into(), autopipe_atoms::InfoValue::Bool(test));
            f
        })
        .collect();
    crate::lammps_explore::apply_force_weights(&mut frames, &crate::lammps_explore::extracted_cores(run_dir));
    let path = run_dir.join("labels.xyz");
    autopipe_atoms::extxyz::write_extxyz_file(&path, &frames)
        .map_err(|e| RunError::Output { path: path.clone(), message: e.to_string() })?;
    Ok(frames.len())
}

/// Compare `config` with the configuration the run goes by, and act on the differences:
/// label-defining changes are refused (or, with `accept_changes`, start a new labelling
/// lineage); model, exploration and execution changes are taken from their next use;
/// changed loop limits reopen a finished or converged run. The accepted configuration is
/// recorded (text, hashes, what changed) and copied to `RUN/configs/NNN.toml`.
fn reconcile_config(
    config: &Config,
    run_dir: &Path,
    store: &mut JobStore,
    options: RunOptions,
    reporter: &mut dyn LoopReporter,
) -> Result<(), RunError> {
    let text = std::fs::read_to_string(&config.file)
        .map_err(|e| RunError::Input(format!("{}: cannot read: {e}", config.file.display())))?;
    let file = config.file.display().to_string();
    let (hash, lhash) = (config_hash(config), label_hash(config));
    let current = store.current_config()?;
    let Some(previous) = current else {
        let note = store.loop_state()?.map(|_| {
            "configuration recorded on resume (the run began before configurations were recorded)".to_string()
        });
        let id = store.record_config(&file, &text, &hash, &lhash, 0, note.as_deref())?;
        return copy_config(run_dir, id, &text);
    };
    if previous.hash == hash {
        return Ok(());
    }
    let old = parse_config(&previous.text, Path::new(&previous.file));
    let drift = match &old {
        Ok(old) => classify(old, config),
        // The recorded text no longer validates (a stricter program): compare by hash.
        Err(e) if previous.label_hash == lhash => {
            Drift { model: vec![format!("(the recorded configuration no longer validates: {e})")], ..Drift::default() }
        }
        Err(_) => Drift { label: vec!["label-defining settings (by hash)".into()], ..Drift::default() },
    };
    let label_changed = !drift.label.is_empty() || previous.label_hash != lhash;
    if label_changed && !options.accept_changes {
        return Err(RunError::ConfigDrift(format!(
            "{file}: label-defining settings differ from those this run started with ({}; recorded from {}): \
             labels computed with different settings cannot be fitted together. Use a new run directory (--dir), \
             or run again with --accept-changes to label this run's structures again with the new settings \
             (a new labelling lineage; the old labels stay in the database, unused). Other changes: {}",
            drift.label.join(", "),
            previous.file,
            or(Drift { label: vec![], ..drift.clone() }.summary(), "none"),
        )));
    }
    let state = store.loop_state()?;
    let mut lineage = previous.lineage;
    let mut effects = Vec::new();
    if label_changed {
        lineage += 1;
        if let Some(state) = &state {
            // Every structure labelled in the previous lineage (all labelled ones when its
            // configuration can no longer be read) gets a label with the new settings.
            let labelled = match &old {
                Ok(old) => lineage_labels(old, store)?,
                Err(_) => store.labels()?,
            };
            let structures: Vec<Structure> = labelled
                .into_iter()
                .map(|l| l.structure)
                .filter(|s| s.species.iter().all(|e| config.elements.contains(e)))
                .filter(|s| config.oracle.check_structure(s).is_ok())
                .collect();
            let n_structures = structures.len();
            let calcs = new_calculations(structures, "relabel", state.generation, &config.oracle, |i| {
                format!("labelled structure {}", i + 1)
            })
            .map_err(RunError::Input)?;
            let why = format!("labelling lineage {lineage}: {}", drift.label.join(", "));
            let added = store.restart_generation(state.generation, &calcs, &why)?;
            effects.push(format!(
                "new labelling lineage {lineage}: {added} of {n_structures} labelled structures to label again \
                 with the new settings; generation {} starts over from labelling",
                state.generation
            ));
        }
    } else if let Some(state) = state.as_ref().filter(|s| s.phase.is_final()) {
        if !drift.limits.is_empty() {
            store.set_phase(state.generation, Phase::Select, Some("reopened: the configuration changed"))?;
            effects.push(format!(
                "the {} run is reopened at generation {} (selection) under the new limits",
                state.phase.as_str(),
                state.generation
            ));
        }
    }
    if !drift.model.is_empty() {
        effects.push("model settings apply from the next fit".into());
    }
    if !drift.explore.is_empty() {
        effects.push("exploration settings apply from the next exploration".into());
    }
    let note = format!(
        "configuration changed: {} ({})",
        or(drift.summary(), "nothing that changes the run"),
        or(effects.join("; "), "recorded")
    );
    reporter.say(&note);
    let id = store.record_config(&file, &text, &hash, &lhash, lineage, Some(&note))?;
    copy_config(run_dir, id, &text)
}

/// `text`, or `other` when it is empty.
fn or(text: String, other: &str) -> String {
    if text.is_empty() {
        other.to_string()
    } else {
        text
    }
}

/// `RUN/configs/NNN.toml`: the configuration text the run accepted as its NNN-th.
fn copy_config(run_dir: &Path, id: i64, text: &str) -> Result<(), RunError> {
    write_atomic(&run_dir.join("configs").join(format!("{id:03}.toml")), text.as_bytes())
}

pub(crate) fn fmt_stat(v: Option<f64>, scale: f64, unit: &str) -> String {
    v.map(|v| format!("{:.4} {unit}", v * scale)).unwrap_or_else(|| "n/a".into())
}

/// The starting cell of an exploration segment: `explore.start_file`, or the configured supercell, unstrained
/// and unrattled (a random alloy drawn with the segment's seed).
fn start_structure(config: &Config, seed: u64) -> Result<Structure, RunError> {
    if let Some(f) = &config.explore.start_file {
        return crate::lammps_explore::read_start_file(f).map_err(RunError::Input);
    }
    let recipe =
        BulkRecipe { count: 1, max_strain: 0.0, rattle_a: 0.0, vacancy_fraction: 0.0, seed, ..config.generate.clone() };
    Ok(generate_bulk(&recipe).remove(0))
}

fn explore(
    config: &Config,
    run_dir: &Path,
    store: &mut JobStore,
    g: i64,
    launcher: &Launcher,
    reporter: &mut dyn LoopReporter,
) -> Result<(), RunError> {
    let record = store.model(Some(g))?.ok_or_else(|| RunError::Input(format!("generation {g} has no model")))?;
    let model_path = std::fs::canonicalize(run_dir.join(&record.path))
        .map_err(|e| RunError::Input(format!("{}: {e}", run_dir.join(&record.path).display())))?;
    // The model is read here once: a damaged file is an error before any job starts.
    if crate::pace_loop::is_pace_model_file(&model_path) {
        crate::pace_job::read_pace_model(&model_path).map_err(RunError::Input)?;
    } else {
        load_model(&model_path)?.evaluator().map_err(|e| RunError::Input(format!("{}: {e}", record.path)))?;
    }
    let base = run_dir.join("explore").join(format!("gen-{g:03}"));
    let mut pending = Vec::new();
    for (index, (name, temperature_k, pressure_gpa)) in segments(config).into_iter().enumerate() {
        if store.segment_done(g, &name)? {
            continue;
        }
        let seed = segment_seed(config.seed, g, index);
        let job = SegmentJob {
            generation: g,
            name: name.clone(),
            temperature_k,
            pressure_gpa,
            seed,
            model: model_path.clone(),
            start: start_structure(config, seed)?,
            explore: config.explore.clone(),
        };
        let dir = base.join(&name);
        let file = dir.join(SEGMENT_FILE);
        let text = serde_json::to_vec_pretty(&job).expect("segments serialise");
        // A directory left by an earlier try of the same segment keeps its result only
        // when it is the same job (same model, seed and settings).
        if std::fs::read(&file).ok().as_deref() != Some(text.as_slice()) {
            let stale = dir.join(autopipe_exec::job::RESULT_FILE);
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RunError::Output { path: stale, message: e.to_string() })
                }
                _ => {}
            }
            write_atomic(&file, &text)?;
        }
        pending.push((job, dir));
    }
    if !pending.is_empty() {
        let backend = config.execution.backend.backend(false, None, None);
        reporter.say(&format!(
            "generation {g}: exploring {} as jobs ({} backend)",
            autopipe_exec::plural(pending.len() as u64, "MD segment", "MD segments"),
            backend.name()
        ));
        let dirs: Vec<PathBuf> = pending.iter().map(|(_, d)| d.clone()).collect();
        let opts = config.execution.local_options();
        let mut ends = run_segments(backend.as_ref(), run_dir, g, &dirs, &opts, launcher)?;
        // A segment lost to the infrastructure (killed, timed out) runs again, within the
        // infrastructure budget: it is deterministic, so nothing changes but the cost.
        for _ in 0..config.execution.max_infra_retries {
            if ends.iter().all(Option::is_none) {
                break;
            }
            ends = run_segments(backend.as_ref(), run_dir, g, &dirs, &opts, launcher)?;
        }
        for ((job, dir), end) in pending.into_iter().zip(ends) {
            if let Some(why) = end {
                return Err(RunError::Input(format!("generation {g}: MD segment {} failed: {why}", job.name)));
            }
            let path = dir.join(autopipe_exec::job::RESULT_FILE);
            let outcome: SegmentOutcome = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .ok_or_else(|| RunError::Input(format!("{}: not a readable segment result", path.display())))?;
            record_segment(config, store, &job, outcome, &record.path, reporter)?;
        }
    }
    store.set_phase(g, Phase::Select, None)?;
    Ok(())
}

/// Run the segments' task directories on the backend (label `x{g}`: generation g's
/// exploration, so that a restarted orchestrator finds the jobs it left).
fn run_segments(
    backend: &dyn autopipe_exec::Backend,
    run_dir: &Path,
    g: i64,
    dirs: &[PathBuf],
    opts: &autopipe_exec::LocalOptions,
    launcher: &Launcher,
) -> Result<Vec<autopipe_exec::tasks::TaskEnd>, RunError> {
    match backend.run_tasks(run_dir, &format!("x{g}"), dirs, opts, launcher) {
        Err(autopipe_exec::ExecError::Interrupted) => Err(RunError::Interrupted),
        other => Ok(other?),
    }
}

/// Record a harvested segment and its candidates (one transaction) and say what it found.
fn record_segment(
    config: &Config,
    store: &mut JobStore,
    job: &SegmentJob,
    outcome: SegmentOutcome,
    model: &str,
    reporter: &mut dyn LoopReporter,
) -> Result<(), RunError> {
    let g = job.generation;
    if let Some(err) = outcome.error {
        return Err(RunError::Input(format!(
            "generation {g}: MD {} could not start with the model {model}: {err}",
            job.name
        )));
    }
    let n_uncertain = outcome.candidates.iter().filter(|(_, x)| *x > config.explore.gamma_select).count() as u64;
    let segment = SegmentRecord {
        generation: g,
        name: job.name.clone(),
        temperature_k: job.temperature_k,
        pressure_gpa: job.pressure_gpa,
        seed: job.seed,
        steps_done: outcome.steps_done,
        stop_reason: outcome.stop_reason.clone(),
        max_gamma: outcome.max_gamma,
        n_uncertain,
    };
    store.record_segment(&segment, &outcome.candidates)?;
    reporter.say(&format!(
        "generation {g}: MD {}: {} steps, max gamma {}, {n_uncertain} uncertain frames{}",
        job.name,
        outcome.steps_done,
        outcome.max_gamma.map(|x| format!("{x:.2}")).unwrap_or_else(|| "n/a".into()),
        outcome.stop_reason.map(|r| format!(" ({r})")).unwrap_or_default()
    ));
    Ok(())
}

fn select(config: &Config, store: &mut JobStore, g: i64, reporter: &mut dyn LoopReporter) -> Result<(), RunError> {
    let e = &config.explore;
    let candidates = store.candidates(g + 1)?;
    let segs = store.segments(g)?;
    let n_uncertain = candidates.iter().filter(|c| c.2 > e.gamma_select).count();
    let max_gamma = segs.iter().filter_map(|s| s.max_gamma).fold(f64::NAN, f64::max);
    let mut gamma_stats = json!({
        "max": if max_gamma.is_finite() { json!(max_gamma) } else { json!(null) },
        "n_uncertain": n_uncertain,
        "n_candidates": candidates.len(),
        "segments": segs,
    });
    let model = store.model(Some(g))?;
    // the cross-validated errors when the fit has folds, else the test split's
    let test =
        model.as_ref().map(|m| if m.metrics["cv"].is_object() { &m.metrics["cv"]["all"] } else { &m.metrics["test"] });
    let test_rmse = |key: &str| test.and_then(|t| t[key]["rmse"].as_f64());
    let force_ok = match (config.loop_.target_force_rmse_ev_per_a, test_rmse("forces_ev_per_a")) {
        (None, _) => true,
        (Some(target), Some(v)) => v <= target,
        (Some(_), None) => false,
    };
    let energy_ok = match (config.loop_.target_energy_rmse_mev_per_atom, test_rmse("energy_ev_per_atom")) {
        (None, _) => true,
        (Some(target), Some(v)) => v * 1e3 <= target,
        (Some(_), None) => false,
    };
    // Converged only when the dynamics themselves stayed inside the trusted domain (an
    // uncertain frame already labelled, e.g. held out for testing, is not a new
    // candidate but still means the model extrapolates there).
    let explored_in_domain = segs.iter().all(|s| s.max_gamma.is_some_and(|g| g <= e.gamma_select));
    if n_uncertain == 0 && explored_in_domain && force_ok && energy_ok {
        let message = "exploration found nothing above gamma_select and the test errors meet the targets";
        reporter.say(&format!("generation {g}: converged: {message}"));
        store.conclude(g, Phase::Converged, &gamma_stats, message)?;
        return Ok(());
    }
    if g + 1 >= config.loop_.max_generations as i64 {
        let message = format!("max_generations = {} reached without converging", config.loop_.max_generations);
        reporter.say(&format!("generation {g}: {message}"));
        store.conclude(g, Phase::Finished, &gamma_stats, &message)?;
        return Ok(());
    }
    // The pool: the uncertain candidates; when there are none (the errors are what keeps
    // the loop going), the most uncertain of the rest.
    let pool: Vec<&(i64, Structure, f64)> = if n_uncertain > 0 {
        candidates.iter().filter(|c| c.2 > e.gamma_select).collect()
    } else {
        candidates.iter().collect()
    };
    let snap = Snap::new(&config.snap).map_err(|e| RunError::Input(e.to_string()))?;
    let mut features = Vec::with_capacity(pool.len());
    for (_, s, _) in &pool {
        let d = snap.descriptors(s).map_err(|e| RunError::Input(e.to_string()))?;
        let n = d.n_linear;
        let mut mean = vec![0.0; n];
        for i in 0..d.n_atoms {
            for (m, b) in mean.iter_mut().zip(&d.b_row(i)[..n]) {
                *m += b / d.n_atoms as f64;
            }
        }
        features.push(mean);
    }
    let scores: Vec<f64> = pool.iter().map(|c| c.2).collect();
    let chosen = select_diverse(&scores, &features, config.loop_.per_generation, 3);
    let structures: Vec<Structure> = chosen.iter().map(|&k| pool[k].1.clone()).collect();
    let calcs =
        new_calculations(structures, "md", g + 1, &config.oracle, |k| format!("candidate {}", pool[chosen[k]].0))
            .map_err(RunError::Input)?;
    let selected: Vec<(i64, autopipe_store::NewCalculation)> = chosen.iter().map(|&k| pool[k].0).zip(calcs).collect();
    let below = n_uncertain == 0 && !selected.is_empty();
    gamma_stats["n_selected"] = json!(selected.len());
    gamma_stats["filled_below_gamma_select"] = json!(below);
    reporter.say(&format!(
        "generation {g}: selected {} of {} candidates ({n_uncertain} above gamma_select {}) for generation {}{}",
        selected.len(),
        candidates.len(),
        e.gamma_select,
        g + 1,
        if below {
            ": nothing was uncertain, the quota was filled with the most uncertain frames below gamma_select \
             because the test errors miss their targets"
        } else {
            ""
        }
    ));
    store.advance(g, &selected, &gamma_stats)?;
    Ok(())
}
