//! What the report shows, gathered from a run directory: the database (read-only), the
//! configuration the run goes by (as recorded in the database) and the current model,
//! evaluated on its held-out test split for the parity plots. `autopipe report --format
//! json` prints this structure as it is.

use crate::svg::Histogram;
use crate::ReportError;
use autopipe_store::{
    AttemptGroup, CandidatePoint, Counts, FailureSummary, JobStore, LoopEvent, RemediationGroup, SegmentRecord,
    StatusGroup,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the JSON layout below.
pub const SCHEMA: u32 = 1;
/// At most this many test frames are evaluated for the parity plots (evenly spread).
pub const MAX_PARITY_FRAMES: usize = 400;
/// At most this many force components per element are drawn (all count in the errors).
pub const MAX_FORCE_POINTS: usize = 3000;

/// Everything the report shows.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub program: String,
    pub run_dir: String,
    pub generated_at_s: f64,
    /// `loop` (a learning loop), `jobs` (a plain `jobs` campaign) or `empty`.
    pub kind: String,
    pub headline: Headline,
    pub config: Option<ConfigSummary>,
    pub generations: Vec<GenerationRow>,
    pub segments: Vec<SegmentRecord>,
    pub candidates: Vec<CandidatePoint>,
    pub parity: Option<Parity>,
    /// Why there is no parity plot, when there is none.
    pub parity_note: Option<String>,
    pub status_groups: Vec<StatusGroup>,
    pub attempt_groups: Vec<AttemptGroup>,
    pub remediation: Vec<RemediationGroup>,
    pub failures: Vec<FailureSummary>,
    pub phase_times: Vec<PhaseTime>,
    pub jobs: JobsMetrics,
    /// Every computation of a property goal (elastic, diffusion, hull), oldest first:
    /// `autopipe_store::PropertyRecord` as JSON.
    pub properties: Vec<serde_json::Value>,
    /// A marker that changes when the database changes (the live page compares it).
    pub marker: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Headline {
    pub generation: Option<i64>,
    pub phase: Option<String>,
    pub converged: bool,
    /// Whether the loop has ended (converged or finished).
    pub ended: bool,
    /// Why it ended or what it is doing.
    pub message: Option<String>,
    pub labels: u64,
    pub executions: u64,
    pub counts: Counts,
    pub model: Option<ModelSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    pub generation: i64,
    /// Relative to the run directory.
    pub path: String,
    pub n_train: i64,
    pub n_test: i64,
    pub test_energy_rmse_ev_per_atom: Option<f64>,
    pub test_force_rmse_ev_per_a: Option<f64>,
    pub test_stress_rmse_gpa: Option<f64>,
    pub train_energy_rmse_ev_per_atom: Option<f64>,
    pub train_force_rmse_ev_per_a: Option<f64>,
}

/// The parts of the configuration the report draws with.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigSummary {
    pub name: String,
    pub file: String,
    pub oracle: String,
    pub elements: Vec<String>,
    pub gamma_select: f64,
    pub gamma_break: f64,
    pub target_force_rmse_ev_per_a: Option<f64>,
    pub target_energy_rmse_mev_per_atom: Option<f64>,
    pub max_generations: u32,
    pub per_generation: usize,
    pub test_fraction: f64,
    #[serde(skip)]
    pub split_salt: u64,
}

/// One generation: what it labelled, the model fitted after it, what its exploration found.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationRow {
    pub generation: i64,
    pub n_candidates: i64,
    pub n_selected: i64,
    pub n_labelled: i64,
    pub n_failed: i64,
    /// Labels the model of this generation was fitted on (train + test), when fitted.
    pub n_fit_labels: Option<i64>,
    pub train_energy_rmse_ev_per_atom: Option<f64>,
    pub test_energy_rmse_ev_per_atom: Option<f64>,
    pub train_force_rmse_ev_per_a: Option<f64>,
    pub test_force_rmse_ev_per_a: Option<f64>,
    pub train_stress_rmse_gpa: Option<f64>,
    pub test_stress_rmse_gpa: Option<f64>,
    pub max_gamma: Option<f64>,
    pub n_uncertain: Option<u64>,
    pub core_hours: f64,
    pub started_at_s: f64,
    pub finished_at_s: Option<f64>,
}

/// The current model against the oracle on its test split.
#[derive(Clone, Debug, Serialize)]
pub struct Parity {
    pub model_generation: i64,
    pub model_path: String,
    /// Test frames evaluated (at most [`MAX_PARITY_FRAMES`]) and in the split.
    pub n_frames: usize,
    pub n_test_frames: usize,
    /// (oracle, model) energy per atom, eV/atom.
    pub energy_ev_per_atom: Vec<[f64; 2]>,
    pub forces: Vec<ElementForces>,
}

/// Force components on the atoms of one element.
#[derive(Clone, Debug, Serialize)]
pub struct ElementForces {
    pub element: String,
    pub n_components: usize,
    pub rmse_ev_per_a: f64,
    /// (oracle, model) components, eV/Å; at most [`MAX_FORCE_POINTS`] (evenly spread).
    pub points: Vec<[f64; 2]>,
    /// |model - oracle| of every component, eV/Å.
    pub abs_error: Histogram,
}

/// Wall time spent in one phase of one generation (from the loop's history).
#[derive(Clone, Debug, Serialize)]
pub struct PhaseTime {
    pub generation: i64,
    pub phase: String,
    pub wall_s: f64,
}

/// Distributions over finished calculations (`jobs status --metrics`).
#[derive(Clone, Debug, Serialize)]
pub struct JobsMetrics {
    pub n_done: usize,
    pub wall_time_s: Histogram,
    pub scf_steps: Histogram,
    pub max_force_ev_per_a: Histogram,
}

/// Caches the evaluation behind the parity plots: it changes only with the model.
#[derive(Default)]
pub struct ParityCache {
    key: Option<(String, usize)>,
    value: Option<Result<Parity, String>>,
}

/// Gather the report of `run_dir`. A directory without a database gives an empty
/// report (a run that has not started); a damaged database is an error.
pub fn collect(run_dir: &Path, cache: &mut ParityCache) -> Result<Report, ReportError> {
    if !run_dir.is_dir() {
        return Err(ReportError::NoRunDir(run_dir.to_path_buf()));
    }
    let mut report = Report {
        schema: SCHEMA,
        program: concat!("autopipe ", env!("CARGO_PKG_VERSION")).into(),
        run_dir: run_dir.display().to_string(),
        generated_at_s: autopipe_store::now_s(),
        kind: "empty".into(),
        headline: Headline::default(),
        config: None,
        generations: Vec::new(),
        segments: Vec::new(),
        candidates: Vec::new(),
        parity: None,
        parity_note: Some("no database in this directory yet".into()),
        status_groups: Vec::new(),
        attempt_groups: Vec::new(),
        remediation: Vec::new(),
        failures: Vec::new(),
        phase_times: Vec::new(),
        jobs: JobsMetrics {
            n_done: 0,
            wall_time_s: Histogram::of(&[], 1),
            scf_steps: Histogram::of(&[], 1),
            max_force_ev_per_a: Histogram::of(&[], 1),
        },
        properties: Vec::new(),
        marker: "none".into(),
    };
    if !run_dir.join(autopipe_store::DB_FILE).is_file() {
        return Ok(report);
    }
    let store = JobStore::open_read_only(run_dir)?;
    report.marker = store.change_marker()?;
    let state = store.loop_state()?;
    let counts = store.counts()?;
    report.kind = if state.is_some() {
        "loop"
    } else if counts.total() > 0 {
        "jobs"
    } else {
        "empty"
    }
    .into();
    report.config = config_summary(&store);
    let latest = store.model(None)?;
    report.headline = Headline {
        generation: state.as_ref().map(|s| s.generation),
        phase: state.as_ref().map(|s| s.phase.as_str().to_string()),
        converged: state.as_ref().is_some_and(|s| s.phase == autopipe_store::Phase::Converged),
        ended: state.as_ref().is_some_and(|s| s.phase.is_final()),
        message: state.as_ref().and_then(|s| s.message.clone()),
        labels: counts.done,
        executions: store.executions()?,
        counts,
        model: latest.as_ref().map(|m| ModelSummary {
            generation: m.generation,
            path: m.path.clone(),
            n_train: m.n_train,
            n_test: m.n_test,
            test_energy_rmse_ev_per_atom: rmse(&m.metrics, "test", "energy_ev_per_atom"),
            test_force_rmse_ev_per_a: rmse(&m.metrics, "test", "forces_ev_per_a"),
            test_stress_rmse_gpa: rmse(&m.metrics, "test", "stress_gpa"),
            train_energy_rmse_ev_per_atom: rmse(&m.metrics, "train", "energy_ev_per_atom"),
            train_force_rmse_ev_per_a: rmse(&m.metrics, "train", "forces_ev_per_a"),
        }),
    };
    for g in store.generations()? {
        let model = store.model(Some(g.generation))?.filter(|m| m.generation == g.generation);
        let metrics = model.as_ref().map(|m| m.metrics.clone()).or(g.metrics.clone()).unwrap_or_default();
        let gamma = g.gamma.clone().unwrap_or_default();
        report.generations.push(GenerationRow {
            generation: g.generation,
            n_candidates: g.n_candidates,
            n_selected: g.n_selected,
            n_labelled: g.n_labelled,
            n_failed: g.n_failed,
            n_fit_labels: model.as_ref().map(|m| m.n_train + m.n_test),
            train_energy_rmse_ev_per_atom: rmse(&metrics, "train", "energy_ev_per_atom"),
            test_energy_rmse_ev_per_atom: rmse(&metrics, "test", "energy_ev_per_atom"),
            train_force_rmse_ev_per_a: rmse(&metrics, "train", "forces_ev_per_a"),
            test_force_rmse_ev_per_a: rmse(&metrics, "test", "forces_ev_per_a"),
            train_stress_rmse_gpa: rmse(&metrics, "train", "stress_gpa"),
            test_stress_rmse_gpa: rmse(&metrics, "test", "stress_gpa"),
            max_gamma: gamma["max"].as_f64().filter(|x| x.is_finite() && *x < 1e300),
            n_uncertain: gamma["n_uncertain"].as_u64(),
            core_hours: g.core_hours,
            started_at_s: g.started_at_s,
            finished_at_s: g.finished_at_s,
        });
    }
    report.segments = store.all_segments()?;
    report.properties =
        store.properties()?.iter().map(|p| serde_json::to_value(p).expect("records serialise")).collect();
    report.candidates = store.exploration_candidates()?;
    report.status_groups = store.status_groups()?;
    report.attempt_groups = store.attempt_groups()?;
    report.remediation = store.remediation_groups(30)?;
    report.failures = store.failures(20)?;
    report.phase_times = phase_times(&store.loop_events()?, report.headline.ended, report.generated_at_s);
    let figures = store.done_figures()?;
    let pick = |f: &dyn Fn(&autopipe_store::DoneFigures) -> Option<f64>| -> Vec<f64> {
        figures.iter().filter_map(f).collect::<Vec<f64>>()
    };
    report.jobs = JobsMetrics {
        n_done: figures.len(),
        wall_time_s: Histogram::of(&pick(&|f| f.wall_time_s), 30),
        scf_steps: Histogram::of(&pick(&|f| f.scf_steps.map(f64::from)), 30),
        max_force_ev_per_a: Histogram::of(&pick(&|f| f.max_force_ev_per_a), 30),
    };
    match &latest {
        None => {
            report.parity_note = Some(match report.kind.as_str() {
                "loop" => "no model fitted yet".into(),
                _ => "no learning loop in this run directory (a `jobs` campaign fits no model)".into(),
            })
        }
        Some(m) => {
            // The test split of a model is fixed once it is fitted (later labels are not
            // part of it), so its evaluation changes only with the model.
            let key = (m.path.clone(), (m.n_train + m.n_test) as usize);
            if cache.key.as_ref() != Some(&key) {
                cache.value = Some(parity(&store, run_dir, m, report.config.as_ref()));
                cache.key = Some(key);
            }
            match cache.value.clone() {
                Some(Ok(p)) => {
                    report.parity_note = None;
                    report.parity = Some(p);
                }
                Some(Err(why)) => report.parity_note = Some(why),
                None => {}
            }
        }
    }
    Ok(report)
}

fn rmse(metrics: &serde_json::Value, set: &str, key: &str) -> Option<f64> {
    metrics[set][key]["rmse"].as_f64().filter(|x| x.is_finite())
}

/// The configuration the run goes by, when one was recorded and still parses.
fn config_summary(store: &JobStore) -> Option<ConfigSummary> {
    let record = store.current_config().ok()??;
    let c = autopipe_workflow::parse_config(&record.text, Path::new(&record.file)).ok()?;
    Some(ConfigSummary {
        name: c.name.clone(),
        file: record.file,
        oracle: c.oracle.name().to_string(),
        elements: c.elements.iter().map(|e| e.symbol().to_string()).collect(),
        gamma_select: c.explore.gamma_select,
        gamma_break: c.explore.gamma_break,
        target_force_rmse_ev_per_a: c.loop_.target_force_rmse_ev_per_a,
        target_energy_rmse_mev_per_atom: c.loop_.target_energy_rmse_mev_per_atom,
        max_generations: c.loop_.max_generations,
        per_generation: c.loop_.per_generation,
        test_fraction: c.fit.test_fraction,
        split_salt: c.fit.split_salt,
    })
}

/// Wall time per (generation, phase): from each loop event to the next (the phase in
/// progress counts until `now`).
fn phase_times(events: &[LoopEvent], ended: bool, now: f64) -> Vec<PhaseTime> {
    // "generation G: PHASE" or "generation G: PHASE (message)".
    let parse = |m: &str| -> Option<(i64, String)> {
        let rest = m.strip_prefix("generation ")?;
        let (g, phase) = rest.split_once(": ")?;
        let phase = phase.split([' ', '(']).next()?.to_string();
        Some((g.parse().ok()?, phase))
    };
    let mut sums: BTreeMap<(i64, String), f64> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some((g, phase)) = parse(&e.message) else { continue };
        if matches!(phase.as_str(), "converged" | "finished") {
            continue;
        }
        let end = match events.get(i + 1) {
            Some(next) => next.at_s,
            None if !ended => now,
            None => continue,
        };
        *sums.entry((g, phase)).or_default() += (end - e.at_s).max(0.0);
    }
    sums.into_iter().map(|((generation, phase), wall_s)| PhaseTime { generation, phase, wall_s }).collect()
}

/// The current model on (up to [`MAX_PARITY_FRAMES`] of) its test split: the labels of
/// its oracle settings, up to its generation, held out by the fit's split.
fn parity(
    store: &JobStore,
    run_dir: &Path,
    record: &autopipe_store::ModelRecord,
    config: Option<&ConfigSummary>,
) -> Result<Parity, String> {
    let path = run_dir.join(&record.path);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read the model {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a model file: {e}", path.display()))?;
    let model: autopipe_potential::SnapModel =
        serde_json::from_value(json.clone()).map_err(|e| format!("{}: not a SNAP model file: {e}", path.display()))?;
    let prov = &json["provenance"];
    let (Some(oracle), params) = (prov["oracle"].as_str(), &prov["oracle_label_params"]) else {
        return Err(format!("{}: the model does not say which oracle labelled its data", path.display()));
    };
    let defaults = autopipe_potential::FitOptions::default();
    let (fraction, salt) =
        config.map(|c| (c.test_fraction, c.split_salt)).unwrap_or((defaults.test_fraction, defaults.split_salt));
    let keys = store.label_keys(oracle, params).map_err(|e| e.to_string())?;
    let test: Vec<i64> = keys
        .iter()
        .filter(|(_, hash, g)| *g <= record.generation && autopipe_potential::is_test_hash(hash, fraction, salt))
        .map(|(id, _, _)| *id)
        .collect();
    if test.is_empty() {
        return Err(format!(
            "the test split of the model of generation {} is empty (fit.test_fraction = {fraction})",
            record.generation
        ));
    }
    let chosen = spread(&test, MAX_PARITY_FRAMES);
    let labels = store.label_data(&chosen).map_err(|e| e.to_string())?;
    let ev = model.evaluator().map_err(|e| format!("{}: {e}", path.display()))?;
    let mut energy = Vec::new();
    let mut by_element: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
    for (id, s, e_ev, forces) in &labels {
        let r = ev.evaluate(s).map_err(|e| format!("evaluating the model on calculation {id}: {e}"))?;
        let n = s.len().max(1) as f64;
        energy.push([e_ev / n, r.energy_ev / n]);
        for ((el, f_ref), f_model) in s.species.iter().zip(forces).zip(&r.forces_ev_per_a) {
            let v = by_element.entry(el.symbol().to_string()).or_default();
            for c in 0..3 {
                v.push([f_ref[c], f_model[c]]);
            }
        }
    }
    let forces = by_element
        .into_iter()
        .map(|(element, pts)| {
            let errors: Vec<f64> = pts.iter().map(|p| (p[1] - p[0]).abs()).collect();
            let rmse = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len().max(1) as f64).sqrt();
            ElementForces {
                element,
                n_components: pts.len(),
                rmse_ev_per_a: rmse,
                points: spread(&pts, MAX_FORCE_POINTS),
                abs_error: Histogram::of(&errors, 30),
            }
        })
        .collect();
    Ok(Parity {
        model_generation: record.generation,
        model_path: record.path.clone(),
        n_frames: labels.len(),
        n_test_frames: test.len(),
        energy_ev_per_atom: energy,
        forces,
    })
}

/// At most `max` items of `v`, evenly spread, in order.
fn spread<T: Clone>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max {
        return v.to_vec();
    }
    (0..max).map(|k| v[k * v.len() / max].clone()).collect()
}

/// Where the report of a run directory goes by default.
pub fn default_out_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_times_run_from_one_loop_event_to_the_next() {
        let ev = |at_s: f64, m: &str| LoopEvent { at_s, message: m.into() };
        let events = [
            ev(0.0, "generation 0: label"),
            ev(10.0, "generation 0: fit"),
            ev(12.0, "generation 0: explore"),
            ev(20.0, "generation 0: select"),
            ev(21.0, "generation 1: label"),
            ev(30.0, "generation 1: label (labelling lineage 1: oracle)"),
            ev(31.0, "generation 1: finished (max_generations = 2 reached without converging)"),
        ];
        let t = phase_times(&events, true, 100.0);
        let get = |g: i64, p: &str| t.iter().find(|x| x.generation == g && x.phase == p).map(|x| x.wall_s);
        assert_eq!(get(0, "label"), Some(10.0));
        assert_eq!(get(0, "explore"), Some(8.0));
        assert_eq!(get(1, "label"), Some(10.0));
        assert_eq!(get(1, "finished"), None);
        // In progress: the open phase counts until now.
        let t = phase_times(&events[..3], false, 15.0);
        assert_eq!(t.iter().find(|x| x.phase == "explore").map(|x| x.wall_s), Some(3.0));
    }

    #[test]
    fn spread_keeps_order_and_bounds() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&v, 20), v);
        assert_eq!(spread(&v, 5), vec![0, 2, 4, 6, 8]);
    }
}
