//! An exploration segment as a job: MD with the generation's model at one temperature
//! (and pressure), watching the extrapolation grade, collecting candidate frames.
//!
//! The orchestrator writes `segment.json` into the segment's task directory
//! (`RUN/explore/gen-NNN/SEGMENT/`) and runs it on the execution backend with the
//! labels' jobs (`autopipe job-exec DIR`; in parallel on the local workers, or as a
//! Slurm/Flux job array); the job writes `result.json` (steps, stop reason, max γ, the
//! candidates with their γ) atomically, and the orchestrator harvests it and records the
//! segment in one transaction. A segment is seeded by (run seed, generation, segment),
//! so running it again gives the same result.

use crate::config::ExploreConfig;
use autopipe_atoms::Structure;
use autopipe_build::rng_from_seed;
use autopipe_md::{maxwell_boltzmann, run_md, Control, Ensemble, Evaluation, GammaWatchdog, MdSettings, MdState};
use autopipe_potential::SnapModel;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The input file of a segment's task directory.
pub const SEGMENT_FILE: &str = "segment.json";

/// Closest approach (Å) allowed in a frame sent for labelling.
pub const MIN_LABEL_DISTANCE_A: f64 = 0.5;

/// Everything one segment needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentJob {
    pub generation: i64,
    pub name: String,
    pub temperature_k: f64,
    pub pressure_gpa: Option<f64>,
    pub seed: u64,
    /// The generation's model file (absolute path).
    pub model: PathBuf,
    pub start: Structure,
    pub explore: ExploreConfig,
}

/// What a segment found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentOutcome {
    pub steps_done: u64,
    pub stop_reason: Option<String>,
    pub max_gamma: Option<f64>,
    /// Candidate frames with their max γ, highest first, deduplicated, sane.
    pub candidates: Vec<(Structure, f64)>,
    /// Set when the dynamics could not even start with this model.
    pub error: Option<String>,
    pub wall_time_s: f64,
    /// Candidates that are cells cut around uncertain atoms of a large frame (LAMMPS
    /// engine, `explore.extract_above_atoms`): where they came from, their core atoms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extracted: Vec<crate::lammps_explore::ExtractedOrigin>,
}

/// The ensemble of a segment: NVT Langevin at its temperature, NPT when it has a pressure.
pub fn segment_ensemble(job: &SegmentJob) -> Ensemble {
    let e = &job.explore;
    match job.pressure_gpa {
        None => Ensemble::Nvt { temperature_k: job.temperature_k, friction_per_fs: e.friction_per_fs },
        Some(pressure_gpa) => Ensemble::Npt {
            temperature_k: job.temperature_k,
            friction_per_fs: e.friction_per_fs,
            pressure_gpa,
            barostat_time_fs: 500.0,
            compressibility_per_gpa: 0.01,
            isotropic: true,
        },
    }
}

/// Keeps the `capacity` sampled states of highest max γ (every `every` steps).
struct TopGamma {
    every: u64,
    capacity: usize,
    frames: Vec<(f64, u64, Structure)>,
}

impl autopipe_md::Observer for TopGamma {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        if state.step > 0 && state.step.is_multiple_of(self.every) {
            if let Some(g) = eval.max_gamma().filter(|g| g.is_finite()) {
                self.frames.push((g, state.step, state.structure.clone()));
                self.frames.sort_by(|a, b| b.0.total_cmp(&a.0));
                self.frames.truncate(self.capacity);
            }
        }
        Control::Continue
    }
}

/// Run one segment with `model` (pure computation: no files).
pub fn run_segment(job: &SegmentJob, model: &SnapModel) -> Result<SegmentOutcome, String> {
    let evaluator = model.evaluator().map_err(|e| format!("{}: {e}", job.model.display()))?;
    run_segment_with(job, &mut crate::learn::ModelForceField { evaluator })
}

/// Run one segment with a force field that gives per-atom γ (pure computation: no files).
pub fn run_segment_with(job: &SegmentJob, ff: &mut dyn autopipe_md::ForceField) -> Result<SegmentOutcome, String> {
    let start_time = std::time::Instant::now();
    let e = &job.explore;
    let velocities = maxwell_boltzmann(&job.start, job.temperature_k, &mut rng_from_seed(job.seed));
    let mut state = MdState::new(job.start.clone(), velocities);
    let ensemble = segment_ensemble(job);
    let settings = MdSettings::new(e.timestep_fs, e.steps, ensemble, job.seed);
    let mut watchdog = GammaWatchdog::new(e.gamma_select, e.gamma_break).with_min_separation(e.sample_every);
    let mut top = TopGamma { every: e.sample_every, capacity: e.max_frames_per_segment, frames: Vec::new() };
    let outcome = run_md(&mut state, ff, &settings, &mut [&mut watchdog, &mut top]);
    // After a blow-up, the frames sampled just before it may already be hot: only
    // those older than one sampling interval before the unstable step are kept.
    let keep_before = match &outcome {
        Err(err) => err.unstable_step().map(|s| s.saturating_sub(e.sample_every)),
        Ok(_) => None,
    };
    let (steps_done, stop_reason) = match &outcome {
        Ok(o) => (o.steps_done, (o.reason != autopipe_md::StopReason::Completed).then(|| o.reason.to_string())),
        // A model far outside its training domain can blow the dynamics up: what was
        // collected until then is exactly what the next generation needs.
        Err(err) if state.step == 0 => {
            return Ok(SegmentOutcome {
                steps_done: 0,
                stop_reason: None,
                max_gamma: None,
                candidates: Vec::new(),
                error: Some(err.to_string()),
                wall_time_s: start_time.elapsed().as_secs_f64(),
                extracted: Vec::new(),
            })
        }
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
            let step = match f.info.get("md_step") {
                Some(autopipe_atoms::InfoValue::Int(k)) => *k as u64,
                _ => u64::MAX,
            };
            (f.structure, g, step)
        })
        .chain(top.frames.into_iter().map(|(g, step, s)| (s, g, step)))
        .filter(|(_, g, step)| g.is_finite() && keep_before.is_none_or(|k| *step < k))
        .map(|(s, g, _)| (s, g))
        .collect();
    // An oracle never sees a frame with atoms on top of each other.
    candidates.retain(|(s, _)| autopipe_md::check_frame_sane(s, MIN_LABEL_DISTANCE_A).is_ok());
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    candidates.dedup_by(|a, b| a.0.content_hash() == b.0.content_hash());
    candidates.truncate(e.max_frames_per_segment);
    Ok(SegmentOutcome {
        steps_done,
        stop_reason,
        max_gamma: watchdog.max_gamma_seen(),
        candidates,
        error: None,
        wall_time_s: start_time.elapsed().as_secs_f64(),
        extracted: Vec::new(),
    })
}

/// The body of a segment's job (`autopipe job-exec DIR` on a directory holding
/// `segment.json`): take the directory's lock, run the segment, write `result.json`.
pub fn execute_segment_dir(dir: &Path) -> Result<(), String> {
    let _lock = autopipe_exec::job::lock(dir, true).map_err(|e| e.to_string())?;
    let result_path = dir.join(autopipe_exec::job::RESULT_FILE);
    if result_path.is_file() {
        return Ok(()); // run twice: the first run's result stands (the same, by its seed)
    }
    let path = dir.join(SEGMENT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let job: SegmentJob = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let outcome = if crate::pace_loop::is_pace_model_file(&job.model) {
        crate::pace_loop::run_pace_segment(&job)?
    } else {
        let model = crate::learn::load_model(&job.model).map_err(|e| e.to_string())?;
        match job.explore.engine {
            crate::lammps_explore::ExploreEngine::Native => run_segment(&job, &model)?,
            crate::lammps_explore::ExploreEngine::Lammps => {
                crate::lammps_explore::run_lammps_segment(dir, &job, &model)?
            }
        }
    };
    autopipe_exec::job::write_atomic(&result_path, &serde_json::to_vec(&outcome).expect("outcomes serialise"))
        .map_err(|e| e.to_string())
}

/// Whether `dir` is a segment's task directory (rather than a calculation's attempt).
pub fn is_segment_dir(dir: &Path) -> bool {
    dir.join(SEGMENT_FILE).is_file()
}
