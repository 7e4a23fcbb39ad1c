//! Working with potentials outside the loop: the loop's status, LAMMPS export, fits and
//! evaluations from extended XYZ files, and MD with a model or with EMT.

use crate::labelling::RunError;
use crate::learn::{load_model, ModelForceField};
use autopipe_atoms::{Element, Frame, Structure};
use autopipe_engines::emt::Emt;
use autopipe_md::{
    maxwell_boltzmann, run_md, Control, Ensemble, Evaluation, ExtxyzTrajectory, FnObserver, ForceField, MdSettings,
    MdState, ThermoLog,
};
use autopipe_potential::{pair_coeff_snippet, to_snapcoeff, to_snapparam, SnapElement, SnapModel, SnapParams};
use autopipe_store::JobStore;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `autopipe status --json`: where the loop stands.
pub fn loop_status(store: &JobStore) -> Result<serde_json::Value, RunError> {
    let state = store.loop_state()?;
    let counts = store.counts()?;
    let records = store.generations()?;
    // Each row is one generation's story: what it labelled (selected by the previous
    // exploration), the model fitted on everything so far, and what that model's
    // exploration found and selected for the next generation.
    let generations: Vec<serde_json::Value> = records
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let metric = |set: &str, key: &str| g.metrics.as_ref().and_then(|m| m[set][key]["rmse"].as_f64());
            let next = records.get(i + 1);
            let gamma = g.gamma.as_ref();
            let max_gamma = gamma.and_then(|x| x["max"].as_f64()).filter(|x| x.is_finite() && *x < 1e300);
            json!({
                "generation": g.generation,
                "n_selected": g.n_selected,
                "n_labelled": g.n_labelled,
                "n_failed": g.n_failed,
                "core_hours": g.core_hours,
                "train_force_rmse_ev_per_a": metric("train", "forces_ev_per_a"),
                "test_force_rmse_ev_per_a": metric("test", "forces_ev_per_a"),
                "train_energy_rmse_ev_per_atom": metric("train", "energy_ev_per_atom"),
                "test_energy_rmse_ev_per_atom": metric("test", "energy_ev_per_atom"),
                "test_stress_rmse_gpa": metric("test", "stress_gpa"),
                "metrics": g.metrics,
                "explore": {
                    "max_gamma": max_gamma,
                    "n_uncertain": gamma.and_then(|x| x["n_uncertain"].as_u64()),
                    "n_candidates": gamma.and_then(|x| x["n_candidates"].as_u64()).or(next.map(|n| n.n_candidates as u64)),
                    "n_selected_for_next": next.map(|n| n.n_selected),
                    "filled_below_gamma_select": gamma.and_then(|x| x["filled_below_gamma_select"].as_bool()),
                },
                "gamma": g.gamma,
                "started_at_s": g.started_at_s,
                "finished_at_s": g.finished_at_s,
            })
        })
        .collect();
    Ok(json!({
        "generation": state.as_ref().map(|s| s.generation),
        "phase": state.as_ref().map(|s| s.phase.as_str()),
        "message": state.as_ref().and_then(|s| s.message.clone()),
        "converged": state.as_ref().map(|s| s.phase == autopipe_store::Phase::Converged).unwrap_or(false),
        "labels": counts.done,
        "counts": counts,
        "executions": store.executions()?,
        "model": store.model(None)?.map(|m| m.path),
        "generations": generations,
        "properties": crate::goals::status_json(store)?,
    }))
}

/// The model of a run directory (latest generation, or the given one).
pub fn run_model_path(run_dir: &Path, generation: Option<i64>) -> Result<PathBuf, RunError> {
    let store = JobStore::open_read_only(run_dir)?;
    let record = store.model(generation)?.ok_or_else(|| {
        RunError::Input(format!(
            "{}: no fitted model yet{}",
            run_dir.display(),
            generation.map(|g| format!(" for generation {g}")).unwrap_or_default()
        ))
    })?;
    Ok(run_dir.join(record.path))
}

/// Write `ELEMENTS.snapcoeff`, `ELEMENTS.snapparam`, `pair_coeff.lammps` (the lines for
/// a LAMMPS input) and the model JSON into `out_dir`. Returns the files written.
pub fn export_lammps(model: &SnapModel, out_dir: &Path) -> Result<Vec<PathBuf>, RunError> {
    export_with_provenance(model, &serde_json::Value::Null, out_dir)
}

/// [`export_lammps`] of a model file, carrying its provenance (generation, errors,
/// labels, program version, configuration hash) into every file written.
pub fn export_lammps_file(model_path: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, RunError> {
    let text = std::fs::read_to_string(model_path)
        .map_err(|e| RunError::Input(format!("{}: cannot read the model: {e}", model_path.display())))?;
    if autopipe_potential::is_pace_model_json(&text) {
        return Err(RunError::Input(format!(
            "{}: a Pacemaker ACE model (potential.kind = \"pace\"): only SNAP models are exported for LAMMPS \
             (Pacemaker's own potential file is the model's potential_yaml)",
            model_path.display()
        )));
    }
    let not_a_model =
        |e: serde_json::Error| RunError::Input(format!("{}: not a SNAP model file: {e}", model_path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).map_err(not_a_model)?;
    let model: SnapModel = serde_json::from_value(json.clone()).map_err(not_a_model)?;
    let mut provenance = json.get("provenance").cloned().unwrap_or(serde_json::Value::Null);
    if provenance.is_object() {
        provenance["model_file"] = json!(std::fs::canonicalize(model_path).unwrap_or(model_path.to_path_buf()));
    }
    export_with_provenance(&model, &provenance, out_dir)
}

fn export_with_provenance(
    model: &SnapModel,
    provenance: &serde_json::Value,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, RunError> {
    let out = |p: &Path, e: std::io::Error| RunError::Output { path: p.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(out_dir).map_err(|e| out(out_dir, e))?;
    let abs_dir = std::fs::canonicalize(out_dir).map_err(|e| out(out_dir, e))?;
    let stem: String = model.params.elements.iter().map(|e| e.element.symbol()).collect();
    let coeff = format!("{stem}.snapcoeff");
    let param = format!("{stem}.snapparam");
    // Comment lines saying where the potential comes from (LAMMPS skips `#` lines in
    // all three files).
    let mut header = String::from("# SNAP potential exported by autopipe ");
    header.push_str(env!("CARGO_PKG_VERSION"));
    header.push('\n');
    if let Some(p) = provenance.as_object() {
        let get = |k: &str| p.get(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        header.push_str(&format!(
            "# run {}, generation {}, fitted by {} on {} labels ({} train, {} test) of oracle {}\n",
            get("run"),
            get("generation"),
            get("program").trim_matches('"'),
            get("labels"),
            get("train_frames"),
            get("test_frames"),
            get("oracle"),
        ));
        let rmse = |set: &str, key: &str, scale: f64| {
            p.get(set).and_then(|t| t[key]["rmse"].as_f64()).map(|x| format!("{:.4}", x * scale)).unwrap_or("-".into())
        };
        header.push_str(&format!(
            "# test RMSE: forces {} eV/Å, energy {} meV/atom; configuration hash {}\n",
            rmse("test", "forces_ev_per_a", 1.0),
            rmse("test", "energy_ev_per_atom", 1e3),
            get("config_hash").trim_matches('"'),
        ));
    }
    let masses: String = model
        .params
        .elements
        .iter()
        .enumerate()
        .map(|(i, e)| format!("mass {} {}   # {}\n", i + 1, e.element.mass_amu(), e.element.symbol()))
        .collect();
    let names: Vec<&str> = model.params.elements.iter().map(|e| e.element.symbol()).collect();
    let include = format!(
        "{header}# Include after the box exists (read_data / create_box), with `units metal` and\n\
         # atom_style atomic; atom types 1..{n} are {names}. The files are named by absolute path,\n\
         # so this works from any directory.\n{masses}{pair}",
        n = names.len(),
        names = names.join(", "),
        pair = pair_coeff_snippet(model, &quote(&abs_dir.join(&coeff)), &quote(&abs_dir.join(&param))),
    );
    let mut model_json = serde_json::to_value(model).expect("models serialise");
    if !provenance.is_null() {
        model_json["provenance"] = provenance.clone();
    }
    let files = [
        (coeff.clone(), format!("{header}{}", to_snapcoeff(model))),
        (param.clone(), format!("{header}{}", to_snapparam(model))),
        ("pair_coeff.lammps".to_string(), include),
        (format!("{stem}.model.json"), serde_json::to_string_pretty(&model_json).expect("models serialise")),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out_dir.join(name);
        autopipe_atoms::output::write_output(&path, text.as_bytes()).map_err(|e| out(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// A path for a LAMMPS command line: quoted when it has spaces.
fn quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s
    }
}

/// SNAP parameters for the elements of `frames` (in order of first appearance).
pub fn default_snap_params(frames: &[Frame], twojmax: usize, cutoff_a: f64) -> SnapParams {
    let mut elements: Vec<Element> = Vec::new();
    for f in frames {
        for e in &f.structure.species {
            if !elements.contains(e) {
                elements.push(*e);
            }
        }
    }
    SnapParams {
        twojmax,
        rcutfac: cutoff_a,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: elements.into_iter().map(|element| SnapElement { element, radius: 0.5, weight: 1.0 }).collect(),
    }
}

pub fn read_model(path: &Path) -> Result<SnapModel, RunError> {
    load_model(path)
}

/// Put EMT's energy, forces and stress on a frame.
pub fn label_with_emt(emt: &Emt, frame: &mut Frame) -> Result<(), autopipe_engines::emt::EmtError> {
    let l = emt.calculate(&frame.structure)?;
    frame.energy_ev = Some(l.energy_ev);
    frame.forces_ev_per_a = Some(l.forces_ev_per_a);
    frame.stress_ev_per_a3 = l.stress_ev_per_a3;
    Ok(())
}

/// EMT as an MD force field.
pub struct EmtForceField(pub Emt);

impl ForceField for EmtForceField {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let l = self.0.calculate(s).map_err(|e| e.to_string())?;
        Ok(Evaluation {
            energy_ev: l.energy_ev,
            forces_ev_per_a: l.forces_ev_per_a,
            stress_ev_per_a3: l.stress_ev_per_a3,
            gamma: None,
        })
    }
}

/// What drives an MD run of `autopipe md`.
pub enum MdDriver {
    Emt,
    Model(SnapModel),
}

/// Options of `autopipe md`.
pub struct MdRun {
    pub temperature_k: f64,
    pub pressure_gpa: Option<f64>,
    pub steps: u64,
    pub timestep_fs: f64,
    pub every: u64,
    pub seed: u64,
    pub friction_per_fs: f64,
}

/// MD from `structure`, writing an extended XYZ trajectory (energy, forces, stress of
/// the driver: labelled frames when the driver is EMT) and a thermo log.
pub fn run_md_to_files(
    driver: &MdDriver,
    structure: Structure,
    run: &MdRun,
    trajectory: &Path,
    thermo: Option<&Path>,
    progress: &mut dyn FnMut(u64, f64),
) -> Result<u64, RunError> {
    let ensemble = match run.pressure_gpa {
        None => Ensemble::Nvt { temperature_k: run.temperature_k, friction_per_fs: run.friction_per_fs },
        Some(pressure_gpa) => Ensemble::Npt {
            temperature_k: run.temperature_k,
            friction_per_fs: run.friction_per_fs,
            pressure_gpa,
            barostat_time_fs: 500.0,
            compressibility_per_gpa: 0.01,
            isotropic: true,
        },
    };
    let settings = MdSettings::new(run.timestep_fs, run.steps, ensemble, run.seed);
    // Every setting checked before any file is created.
    settings.validate().map_err(|e| RunError::Input(e.to_string()))?;
    let out = |p: &Path, e: std::io::Error| RunError::Output { path: p.to_path_buf(), message: e.to_string() };
    let traj_file = std::fs::File::create(trajectory).map_err(|e| out(trajectory, e))?;
    let mut traj = ExtxyzTrajectory::new(std::io::BufWriter::new(traj_file), run.every);
    let thermo_sink: Box<dyn std::io::Write> = match thermo {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| out(p, e))?)),
        None => Box::new(std::io::sink()),
    };
    let mut log = ThermoLog::new(thermo_sink, run.every);
    let velocities = maxwell_boltzmann(&structure, run.temperature_k, &mut autopipe_build::rng_from_seed(run.seed));
    let mut state = MdState::new(structure, velocities);
    let mut bar = FnObserver::new(10, |s: &MdState, _: &Evaluation| {
        progress(s.step, s.temperature_k());
        Control::Continue
    });
    let outcome = match driver {
        MdDriver::Emt => {
            run_md(&mut state, &mut EmtForceField(Emt::new()), &settings, &mut [&mut traj, &mut log, &mut bar])
        }
        MdDriver::Model(model) => {
            let evaluator = model.evaluator().map_err(|e| RunError::Input(e.to_string()))?;
            run_md(&mut state, &mut ModelForceField { evaluator }, &settings, &mut [&mut traj, &mut log, &mut bar])
        }
    };
    let outcome = outcome.map_err(|e| RunError::Input(format!("MD: {e}")))?;
    Ok(outcome.steps_done)
}
