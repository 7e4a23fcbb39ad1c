//! Labelling: structures in, calculations in the job database, labels out.
//! Shared by `autopipe jobs ...` and `autopipe run`.

use crate::config::ExecutionConfig;
use autopipe_atoms::{Frame, InfoValue, Structure};
use autopipe_engines::EngineSpec;
use autopipe_exec::{ExecError, LocalOptions};
use autopipe_store::{Label, NewCalculation, StoreError};
use std::time::Duration;

/// Calculations of `structures` with `engine`; fails on the first structure the engine
/// cannot label, naming it by `describe(index)`.
pub fn new_calculations(
    structures: Vec<Structure>,
    origin: &str,
    generation: i64,
    engine: &EngineSpec,
    describe: impl Fn(usize) -> String,
) -> Result<Vec<NewCalculation>, String> {
    let label_params = engine.label_params();
    let run_spec = serde_json::to_value(engine).expect("engine settings serialise");
    structures
        .into_iter()
        .enumerate()
        .map(|(i, structure)| {
            engine.check_structure(&structure).map_err(|m| format!("{}: {m}", describe(i)))?;
            Ok(NewCalculation {
                structure,
                origin: origin.to_string(),
                generation,
                engine: engine.name().to_string(),
                label_params: label_params.clone(),
                run_spec: run_spec.clone(),
            })
        })
        .collect()
}

impl ExecutionConfig {
    pub fn local_options(&self) -> LocalOptions {
        LocalOptions {
            workers: self.workers,
            walltime: Duration::from_secs_f64(self.walltime_s),
            max_physics_retries: self.max_physics_retries,
            max_infra_retries: self.max_infra_retries,
            failure_tolerance: self.failure_tolerance,
            cores_per_worker: None,
        }
    }
}

/// A finished label as an extended XYZ frame (energy, forces, stress, and where it
/// came from in the info keys).
pub fn label_frame(label: &Label) -> Frame {
    let mut frame = Frame::from_structure(label.structure.clone());
    frame.energy_ev = Some(label.result.energy_ev);
    frame.forces_ev_per_a = Some(label.result.forces_ev_per_a.clone());
    frame.stress_ev_per_a3 = label.result.stress_ev_per_a3;
    frame.info.insert("calculation_id".into(), InfoValue::Int(label.calculation_id));
    frame.info.insert("engine".into(), InfoValue::Str(label.engine.clone()));
    // the fit's group: the kind of origin ("generated", "md", ...); the full origin beside it
    let kind = label.origin.split(':').next().unwrap_or(&label.origin);
    frame.info.insert("config_type".into(), InfoValue::Str(kind.to_string()));
    frame.info.insert("origin".into(), InfoValue::Str(label.origin.clone()));
    frame.info.insert("generation".into(), InfoValue::Int(label.generation));
    // MD candidates are "md:GENERATION:SEGMENT".
    if let Some(segment) = label.origin.strip_prefix("md:").and_then(|r| r.split_once(':')).map(|(_, s)| s) {
        frame.info.insert("segment".into(), InfoValue::Str(segment.to_string()));
    }
    frame
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Input(String),
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    #[error("{0}")]
    Stopped(String),
    /// The configuration differs from the run's in a way that is refused.
    #[error("{0}")]
    ConfigDrift(String),
    #[error("cannot write {path}: {message}")]
    Output { path: std::path::PathBuf, message: String },
}
