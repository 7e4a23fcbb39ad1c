//! The active-learning loop: label -> fit -> explore -> select -> label ...
//!
//! Every phase ends with one transaction that records its results and the next phase
//! (see `autopipe_store::learning`), and every phase is idempotent or deterministic:
//! labelling is resumable by the job database, a fit is recomputed from the labels and
//! its file written atomically before it is recorded, an MD segment is seeded by
//! (run seed, generation, segment) and recorded with its candidates at once. So
//! `kill -9` at any instant and `autopipe run` again repeats at most the phase step
//! that was in flight, and ends with the same labels.

use crate::config::Config;
use crate::labelling::{label_frame, new_calculations, RunError};
use crate::select::select_diverse;
use autopipe_atoms::{Frame, Structure};
use autopipe_build::{generate_bulk, rng_from_seed, BulkRecipe};
use autopipe_exec::{run_local, Launcher, Observer};
use autopipe_md::{
    maxwell_boltzmann, run_md, Control, Ensemble, Evaluation, ForceField, GammaWatchdog, MdSettings, MdState,
};
use autopipe_potential::{fit, ModelEvaluator, Snap, SnapModel};
use autopipe_store::{JobStore, LoopState, ModelRecord, Phase, SegmentRecord};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What `autopipe run` reports at the end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoopOutcome {
    pub state: LoopState,
    pub labels: usize,
    pub model: Option<PathBuf>,
}

/// The loop's messages to a person (one line each).
pub trait LoopReporter: Observer {
    fn say(&mut self, line: &str);
}

/// The model file of a generation, relative to the run directory.
pub fn model_rel_path(generation: i64) -> String {
    format!("models/gen-{generation:03}.json")
}

pub fn load_model(path: &Path) -> Result<SnapModel, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Input(format!("{}: cannot read the model: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| RunError::Input(format!("{}: not a SNAP model file: {e}", path.display())))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
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

/// Keeps the `capacity` sampled states of highest max γ (every `every` steps).
struct TopGamma {
    every: u64,
    capacity: usize,
    frames: Vec<(f64, Structure)>,
}

impl autopipe_md::Observer for TopGamma {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        if state.step > 0 && state.step % self.every == 0 {
            if let Some(g) = eval.max_gamma().filter(|g| g.is_finite()) {
                self.frames.push((g, state.structure.clone()));
                self.frames.sort_by(|a, b| b.0.total_cmp(&a.0));
                self.frames.truncate(self.capacity);
            }
        }
        Control::Continue
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

fn segment_seed(run_seed: u64, generation: i64, index: usize) -> u64 {
    run_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add((generation as u64) << 32).wrapping_add(index as u64 + 1)
}

/// Run (or resume) the loop of `config` in `run_dir` until it converges, reaches
/// `max_generations`, or a labelling batch stops.
pub fn run_loop(
    config: &Config,
    run_dir: &Path,
    launcher: &Launcher,
    reporter: &mut dyn LoopReporter,
) -> Result<LoopOutcome, RunError> {
    let mut store = JobStore::open_or_create(run_dir)?;
    let fit_options = &config.fit;
    if store.loop_state()?.is_none() {
        let structures = generate_bulk(&config.generate);
        let origin = format!("generated:{}", config.generate.lattice.name());
        let calcs = new_calculations(structures, &origin, 0, &config.oracle, |i| format!("generated structure {i}"))
            .map_err(RunError::Input)?;
        store.start_loop(&calcs)?;
    }
    loop {
        let state = store.loop_state()?.expect("the loop was started");
        let g = state.generation;
        match state.phase {
            Phase::Label => {
                reporter.say(&format!("generation {g}: labelling with {}", config.oracle.name()));
                let summary = run_local(&mut store, run_dir, &config.execution.local_options(), launcher, reporter)?;
                if summary.interrupted {
                    return Err(RunError::Interrupted);
                }
                if let Some(message) = summary.stopped {
                    return Err(RunError::Stopped(message));
                }
                store.finish_labelling(g)?;
            }
            Phase::Fit => {
                let frames: Vec<Frame> = store.labels()?.iter().map(label_frame).collect();
                let start = std::time::Instant::now();
                let report = fit(&frames, config.snap.clone(), fit_options)
                    .map_err(|e| RunError::Input(format!("fitting generation {g}: {e}")))?;
                let rel = model_rel_path(g);
                write_atomic(&run_dir.join(&rel), &serde_json::to_vec(&report.model).expect("models serialise"))?;
                let metrics = json!({
                    "train": report.train,
                    "test": report.test,
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
            Phase::Explore => explore(config, run_dir, &mut store, g, reporter)?,
            Phase::Select => select(config, &mut store, g, reporter)?,
            Phase::Converged | Phase::Finished => {
                // Every label of the run, for other fitting codes (written again on each
                // call: the database stays the source of truth).
                let frames: Vec<Frame> = store.labels()?.iter().map(label_frame).collect();
                let labels_file = run_dir.join("labels.xyz");
                autopipe_atoms::extxyz::write_extxyz_file(&labels_file, &frames)
                    .map_err(|e| RunError::Output { path: labels_file.clone(), message: e.to_string() })?;
                let model = store.model(None)?.map(|m| run_dir.join(m.path));
                return Ok(LoopOutcome { state, labels: frames.len(), model });
            }
        }
    }
}

fn fmt_stat(v: Option<f64>, scale: f64, unit: &str) -> String {
    v.map(|v| format!("{:.4} {unit}", v * scale)).unwrap_or_else(|| "n/a".into())
}

/// The starting cell of an exploration segment: the configured supercell, unstrained
/// and unrattled (a random alloy drawn with the segment's seed).
fn start_structure(config: &Config, seed: u64) -> Structure {
    let recipe =
        BulkRecipe { count: 1, max_strain: 0.0, rattle_a: 0.0, vacancy_fraction: 0.0, seed, ..config.generate.clone() };
    generate_bulk(&recipe).remove(0)
}

fn explore(
    config: &Config,
    run_dir: &Path,
    store: &mut JobStore,
    g: i64,
    reporter: &mut dyn LoopReporter,
) -> Result<(), RunError> {
    let record = store.model(Some(g))?.ok_or_else(|| RunError::Input(format!("generation {g} has no model")))?;
    let model = load_model(&run_dir.join(&record.path))?;
    let evaluator = model.evaluator().map_err(|e| RunError::Input(format!("{}: {e}", record.path)))?;
    let mut ff = ModelForceField { evaluator };
    let e = &config.explore;
    for (index, (name, temperature_k, pressure_gpa)) in segments(config).into_iter().enumerate() {
        if store.segment_done(g, &name)? {
            continue;
        }
        let seed = segment_seed(config.seed, g, index);
        let structure = start_structure(config, seed);
        let velocities = maxwell_boltzmann(&structure, temperature_k, &mut rng_from_seed(seed));
        let mut state = MdState::new(structure, velocities);
        let ensemble = match pressure_gpa {
            None => Ensemble::Nvt { temperature_k, friction_per_fs: e.friction_per_fs },
            Some(pressure_gpa) => Ensemble::Npt {
                temperature_k,
                friction_per_fs: e.friction_per_fs,
                pressure_gpa,
                barostat_time_fs: 500.0,
                compressibility_per_gpa: 0.01,
                isotropic: true,
            },
        };
        let settings = MdSettings::new(e.timestep_fs, e.steps, ensemble, seed);
        let mut watchdog = GammaWatchdog::new(e.gamma_select, e.gamma_break).with_min_separation(e.sample_every);
        let mut top = TopGamma { every: e.sample_every, capacity: e.max_frames_per_segment, frames: Vec::new() };
        let outcome = run_md(&mut state, &mut ff, &settings, &mut [&mut watchdog, &mut top]);
        let (steps_done, stop_reason) = match &outcome {
            Ok(o) => (o.steps_done, (o.reason != autopipe_md::StopReason::Completed).then(|| o.reason.to_string())),
            // A model far outside its training domain can blow the dynamics up: what was
            // collected until then is exactly what the next generation needs.
            Err(err) => (state.step, Some(format!("MD error: {err}"))),
        };
        // Candidates: every collected frame above gamma_select (the watchdog), plus the
        // highest-γ samples (used only when nothing is above the threshold), deduplicated.
        let mut candidates: Vec<(Structure, f64)> = watchdog
            .take_collected()
            .into_iter()
            .map(|f| {
                let g = match f.info.get("max_gamma") {
                    Some(autopipe_atoms::InfoValue::Float(x)) => *x,
                    _ => f64::INFINITY,
                };
                (f.structure, g)
            })
            .filter(|(_, g)| g.is_finite())
            .collect();
        candidates.extend(top.frames.into_iter().map(|(g, s)| (s, g)));
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        candidates.dedup_by(|a, b| a.0.content_hash() == b.0.content_hash());
        candidates.truncate(e.max_frames_per_segment);
        let n_uncertain = candidates.iter().filter(|(_, g)| *g > e.gamma_select).count() as u64;
        let max_gamma = watchdog.max_gamma_seen();
        let segment = SegmentRecord {
            generation: g,
            name: name.clone(),
            temperature_k,
            pressure_gpa,
            seed,
            steps_done,
            stop_reason: stop_reason.clone(),
            max_gamma,
            n_uncertain,
        };
        store.record_segment(&segment, &candidates)?;
        reporter.say(&format!(
            "generation {g}: MD {name}: {steps_done} steps, max gamma {}, {n_uncertain} uncertain frames{}",
            max_gamma.map(|x| format!("{x:.2}")).unwrap_or_else(|| "n/a".into()),
            stop_reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ));
    }
    store.set_phase(g, Phase::Select, None)?;
    Ok(())
}

fn select(config: &Config, store: &mut JobStore, g: i64, reporter: &mut dyn LoopReporter) -> Result<(), RunError> {
    let e = &config.explore;
    let candidates = store.candidates(g + 1)?;
    let segs = store.segments(g)?;
    let n_uncertain = candidates.iter().filter(|c| c.2 > e.gamma_select).count();
    let max_gamma = segs.iter().filter_map(|s| s.max_gamma).fold(f64::NAN, f64::max);
    let gamma_stats = json!({
        "max": if max_gamma.is_finite() { json!(max_gamma) } else { json!(null) },
        "n_uncertain": n_uncertain,
        "n_candidates": candidates.len(),
        "segments": segs,
    });
    let model = store.model(Some(g))?;
    let test = model.as_ref().map(|m| &m.metrics["test"]);
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
    reporter.say(&format!(
        "generation {g}: selected {} of {} candidates ({n_uncertain} above gamma_select {}) for generation {}",
        selected.len(),
        candidates.len(),
        e.gamma_select,
        g + 1
    ));
    store.advance(g, &selected, &gamma_stats)?;
    Ok(())
}
