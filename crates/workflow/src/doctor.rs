//! `autopipe doctor`: the full check of a run directory's database, and recovery of the
//! finished labels from the job directories (each holds `job.json` with the structure
//! and engine settings, and `result.json` with the labels) into a fresh database.

use crate::labelling::{new_calculations, RunError};
use autopipe_engines::{EngineOutcome, EngineSpec};
use autopipe_store::{CalcResult, JobStore, RunLock, StoreError, DB_FILE};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What `doctor` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorReport {
    pub database: PathBuf,
    /// There is no database file at all (then `problems` says so too).
    pub missing: bool,
    /// None: sound (integrity_check says ok); Some: what is wrong.
    pub problems: Option<Vec<String>>,
    /// Finished labels the database holds (when it could be read).
    pub labels_in_database: Option<usize>,
    /// Finished labels found in job directories (distinct calculations).
    pub labels_in_job_dirs: usize,
    /// Job directories with a result that could not be read.
    pub unreadable_job_dirs: Vec<PathBuf>,
    /// With `--recover`: labels written into the fresh database, and where the damaged
    /// one was moved.
    pub recovered: Option<usize>,
    pub damaged_moved_to: Option<PathBuf>,
}

/// A finished label found in a job directory.
struct Found {
    engine: EngineSpec,
    structure: autopipe_atoms::Structure,
    result: CalcResult,
}

fn find_results(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => find_results(&path, out),
            Ok(t) if t.is_file() && entry.file_name() == "result.json" => out.push(path),
            _ => {}
        }
    }
}

/// Read a job directory's finished label: `Ok(None)` when its result is not labels.
fn read_found(result_path: &Path) -> Result<Option<Found>, String> {
    let dir = result_path.parent().unwrap_or(Path::new("."));
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result_path).map_err(|e| format!("{}: {e}", result_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", result_path.display()))?;
    let outcome: EngineOutcome =
        serde_json::from_value(result.clone()).map_err(|e| format!("{}: {e}", result_path.display()))?;
    let EngineOutcome::Labels { labels, scf_steps } = outcome else { return Ok(None) };
    let job_path = dir.join("job.json");
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&job_path).map_err(|e| format!("{}: {e}", job_path.display()))?)
            .map_err(|e| format!("{}: {e}", job_path.display()))?;
    let engine: EngineSpec =
        serde_json::from_value(job["engine"].clone()).map_err(|e| format!("{}: engine: {e}", job_path.display()))?;
    let structure: autopipe_atoms::Structure = serde_json::from_value(job["structure"].clone())
        .map_err(|e| format!("{}: structure: {e}", job_path.display()))?;
    if labels.forces_ev_per_a.len() != structure.len() {
        return Err(format!(
            "{}: forces for {} atoms, structure has {}",
            result_path.display(),
            labels.forces_ev_per_a.len(),
            structure.len()
        ));
    }
    let result = CalcResult {
        max_force_ev_per_a: labels.max_force_ev_per_a(),
        energy_ev: labels.energy_ev,
        forces_ev_per_a: labels.forces_ev_per_a,
        stress_ev_per_a3: labels.stress_ev_per_a3,
        scf_steps,
        wall_time_s: result["wall_time_s"].as_f64().unwrap_or(0.0),
    };
    Ok(Some(Found { engine, structure, result }))
}

/// Check `run_dir`; with `recover`, rebuild a damaged (or missing) database from the
/// job directories: the damaged file is moved aside, never deleted.
pub fn doctor(run_dir: &Path, recover: bool) -> Result<DoctorReport, RunError> {
    if !run_dir.is_dir() {
        return Err(RunError::Input(format!("{}: no such run directory", run_dir.display())));
    }
    let database = run_dir.join(DB_FILE);
    let missing = !database.exists();
    let (problems, labels_in_database) = match JobStore::open_read_only(run_dir) {
        Ok(store) => match store.integrity_problems() {
            Ok(p) if p.is_empty() => (None, store.counts().ok().map(|c| c.done as usize)),
            Ok(p) => (Some(p), None),
            Err(e) => (Some(vec![e.to_string()]), None),
        },
        Err(StoreError::Missing { .. }) => (Some(vec!["there is no database".into()]), None),
        Err(e) => (Some(vec![e.to_string()]), None),
    };
    let mut results = Vec::new();
    find_results(&run_dir.join("jobs"), &mut results);
    results.sort();
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let mut keys = BTreeSet::new();
    for path in &results {
        match read_found(path) {
            Ok(Some(f)) => {
                let key = autopipe_store::calculation_key(
                    &f.structure.content_hash(),
                    f.engine.name(),
                    &f.engine.label_params(),
                );
                if keys.insert(key) {
                    found.push(f);
                }
            }
            Ok(None) => {}
            Err(_) => unreadable.push(path.clone()),
        }
    }
    let mut report = DoctorReport {
        database: database.clone(),
        missing,
        problems,
        labels_in_database,
        labels_in_job_dirs: found.len(),
        unreadable_job_dirs: unreadable,
        recovered: None,
        damaged_moved_to: None,
    };
    if !recover || report.problems.is_none() {
        return Ok(report);
    }
    if missing && found.is_empty() {
        return Err(RunError::Input(format!(
            "{}: nothing to recover (no database, and no finished label in its job directories)",
            run_dir.display()
        )));
    }
    let _lock = RunLock::acquire(run_dir)?;
    let fresh_dir = run_dir.join(format!(".recover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh_dir);
    let mut items = Vec::with_capacity(found.len());
    for f in found {
        let calc = new_calculations(vec![f.structure], "recovered", 0, &f.engine, |_| "recovered label".into())
            .map_err(RunError::Input)?
            .remove(0);
        items.push((calc, f.result));
    }
    let added = {
        let mut fresh = JobStore::open_or_create(&fresh_dir)?;
        fresh.import_done(&items)?
    };
    let stamp = autopipe_store::utc(autopipe_store::now_s()).replace(':', "");
    let moved = run_dir.join(format!("{DB_FILE}.damaged-{stamp}"));
    let io = |path: &Path, e: std::io::Error| RunError::Output { path: path.to_path_buf(), message: e.to_string() };
    if database.exists() {
        std::fs::rename(&database, &moved).map_err(|e| io(&database, e))?;
        for suffix in ["-wal", "-shm"] {
            let side = run_dir.join(format!("{DB_FILE}{suffix}"));
            if side.exists() {
                std::fs::rename(&side, run_dir.join(format!("{DB_FILE}.damaged-{stamp}{suffix}")))
                    .map_err(|e| io(&side, e))?;
            }
        }
        report.damaged_moved_to = Some(moved);
    }
    std::fs::rename(fresh_dir.join(DB_FILE), &database).map_err(|e| io(&database, e))?;
    let _ = std::fs::remove_dir_all(&fresh_dir);
    report.recovered = Some(added);
    Ok(report)
}
