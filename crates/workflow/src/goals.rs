//! Property goals: the `[goals]` table of the run configuration, and what the loop does
//! with it once it ends (converged, or at `max_generations`).
//!
//! Each configured goal is computed with the final model through the uncertainty guard
//! ([`autopipe_property::guard::Watched`]). When the calculation met structures at or
//! above `explore.gamma_select`, up to `loop.per_generation` of them (the most uncertain)
//! go to the oracle as the next generation's labels, the model is refitted, explored as
//! in any generation, and the goal is computed again when the loop ends again, up to
//! `goals.max_rounds` rounds. Every computation is a row of `property_results`; a value
//! computed where the model extrapolates is recorded as not trusted.

use crate::config::{Config, ConfigError};
use crate::labelling::{new_calculations, RunError};
use crate::learn::{load_model, LoopReporter, ModelForceField};
use autopipe_atoms::Structure;
use autopipe_build::{generate_bulk, BulkRecipe, Lattice};
use autopipe_potential::SnapModel;
use autopipe_property::elastic::{elastic_constants, Elastic, ElasticSettings};
use autopipe_property::guard::{Uncertain, Watched};
use autopipe_store::{JobStore, PropertyOutcome, PropertyRecord};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

/// The validated `[goals]` table.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GoalsConfig {
    pub elastic: Option<ElasticGoal>,
    /// Label-refit-recompute rounds at most (0: compute once, never relabel).
    pub max_rounds: usize,
}

impl GoalsConfig {
    pub fn is_empty(&self) -> bool {
        self.elastic.is_none()
    }

    /// The names of the configured goals.
    pub fn names(&self) -> Vec<&'static str> {
        self.elastic.iter().map(|_| "elastic").collect()
    }
}

/// `[goals] elastic = true` or `[goals.elastic] ...`: the crystal whose constants are
/// computed (by default the `[generate]` lattice, its conventional cell, unstrained).
#[derive(Clone, Debug, PartialEq)]
pub struct ElasticGoal {
    pub lattice: Lattice,
    pub lattice_constant_a: f64,
    pub supercell: [usize; 3],
    pub amplitudes: Vec<f64>,
    /// Relax positions and cell first, and positions at each strain.
    pub relax: bool,
}

impl ElasticGoal {
    /// The structure of the goal (a random alloy drawn with `seed` for several elements).
    pub fn structure(&self, generate: &BulkRecipe) -> Structure {
        let recipe = BulkRecipe {
            lattice: self.lattice,
            lattice_constant_a: self.lattice_constant_a,
            supercell: self.supercell,
            count: 1,
            max_strain: 0.0,
            rattle_a: 0.0,
            vacancy_fraction: 0.0,
            ..generate.clone()
        };
        generate_bulk(&recipe).remove(0)
    }

    pub fn settings(&self) -> ElasticSettings {
        let base = if self.relax { ElasticSettings::default() } else { ElasticSettings::unrelaxed() };
        ElasticSettings { amplitudes: self.amplitudes.clone(), ..base }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElasticGoal {
    lattice: Option<String>,
    lattice_constant_a: Option<f64>,
    supercell: Option<[usize; 3]>,
    strains: Option<Vec<f64>>,
    relax: Option<bool>,
}

/// Validate the `[goals]` table (absent: no goals). `err` points at a dotted key.
pub(crate) fn parse_goals(
    raw: Option<&toml::Value>,
    generate: &BulkRecipe,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<GoalsConfig, ConfigError> {
    let Some(raw) = raw else { return Ok(GoalsConfig::default()) };
    let table = raw.as_table().ok_or_else(|| err(&["goals"], "must be a table".into()))?;
    let mut goals = GoalsConfig { elastic: None, max_rounds: 2 };
    for (key, value) in table {
        match key.as_str() {
            "max_rounds" => {
                let n = value.as_integer().filter(|n| (0..=20).contains(n)).ok_or_else(|| {
                    err(&["goals", "max_rounds"], format!("{value} is not a whole number of rounds in 0 ..= 20"))
                })?;
                goals.max_rounds = n as usize;
            }
            "elastic" => goals.elastic = parse_elastic(value, generate, err)?,
            "diffusion" | "hull" | "phase_diagram" => {
                return Err(err(
                    &["goals", key],
                    format!(
                        "the {key} goal is not available in this build (use `autopipe property {}` on the \
                         trained model); available goals: elastic",
                        if key == "diffusion" { "diffusion" } else { "hull" }
                    ),
                ))
            }
            other => {
                return Err(err(
                    &["goals", other],
                    format!("unknown goal or key {other:?}; expected elastic, diffusion, hull or max_rounds"),
                ))
            }
        }
    }
    Ok(goals)
}

fn parse_elastic(
    value: &toml::Value,
    generate: &BulkRecipe,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<Option<ElasticGoal>, ConfigError> {
    let at = |k: &'static str| move |m: String| err(&["goals", "elastic", k], m);
    let raw: RawElasticGoal = match value {
        toml::Value::Boolean(false) => return Ok(None),
        toml::Value::Boolean(true) => {
            RawElasticGoal { lattice: None, lattice_constant_a: None, supercell: None, strains: None, relax: None }
        }
        toml::Value::Table(_) => value.clone().try_into().map_err(|e: toml::de::Error| {
            let message = e.message().trim().to_string();
            let key = message.split('`').nth(1).unwrap_or("").to_string();
            let path: Vec<&str> =
                ["goals", "elastic"].into_iter().chain((!key.is_empty()).then_some(key.as_str())).collect();
            err(&path, message)
        })?,
        _ => return Err(err(&["goals", "elastic"], "must be true, false or a table of settings".into())),
    };
    let lattice = match &raw.lattice {
        None => generate.lattice,
        Some(name) => Lattice::parse(name).ok_or_else(|| {
            at("lattice")(format!("unknown lattice {name:?}; expected one of sc, fcc, bcc, hcp, diamond"))
        })?,
    };
    let lattice_constant_a = match raw.lattice_constant_a {
        Some(a) if a.is_finite() && (1.0..=20.0).contains(&a) => a,
        Some(a) => return Err(at("lattice_constant_a")(format!("{a} Å is not a lattice constant in 1 ..= 20 Å"))),
        None if lattice == generate.lattice => generate.lattice_constant_a,
        None => {
            return Err(at("lattice_constant_a")(format!(
                "needed: the lattice {} differs from [generate]'s {}",
                lattice.name(),
                generate.lattice.name()
            )))
        }
    };
    let supercell = raw.supercell.unwrap_or([1, 1, 1]);
    if supercell.iter().any(|&n| n == 0 || n > 6) {
        return Err(at("supercell")(format!("{supercell:?}: each repetition must be in 1 ..= 6")));
    }
    let amplitudes = raw.strains.unwrap_or_else(|| vec![0.005, 0.01]);
    let goal = ElasticGoal { lattice, lattice_constant_a, supercell, amplitudes, relax: raw.relax.unwrap_or(true) };
    goal.settings().validate().map_err(|e| at("strains")(e.to_string()))?;
    if goal.amplitudes.len() < 2 {
        return Err(at("strains")("give at least two amplitudes (each is used with both signs)".into()));
    }
    Ok(Some(goal))
}

/// Elastic constants with a model, through the guard.
pub struct GuardedElastic {
    pub elastic: Elastic,
    /// The relaxed structure the constants belong to.
    pub structure: Structure,
    /// The largest per-atom grade met (None: the model has no active set).
    pub max_gamma: Option<f64>,
    /// Evaluations at or above `gamma_select`.
    pub n_uncertain: u64,
    /// The most uncertain structures met, at most `max_kept`, most uncertain first.
    pub uncertain: Vec<Uncertain>,
}

impl GuardedElastic {
    /// Computed inside the trusted domain: the model has a grade and it stayed below
    /// `gamma_select` everywhere.
    pub fn trusted(&self, gamma_select: f64) -> bool {
        self.max_gamma.is_some_and(|g| g < gamma_select)
    }
}

/// Elastic constants of `structure` with `model`, every evaluation watched.
pub fn elastic_with_model(
    model: &SnapModel,
    structure: &Structure,
    settings: &ElasticSettings,
    gamma_select: f64,
    max_kept: usize,
) -> Result<GuardedElastic, RunError> {
    let evaluator = model.evaluator().map_err(|e| RunError::Input(e.to_string()))?;
    // Keep many, report the most uncertain: the first ones met come from the relaxation.
    let mut watched = Watched::new(ModelForceField { evaluator }, gamma_select, 100_000);
    let (elastic, relaxed) = elastic_constants(&mut watched, structure, settings)
        .map_err(|e| RunError::Input(format!("elastic constants: {e}")))?;
    Ok(GuardedElastic {
        max_gamma: watched.max_gamma(),
        n_uncertain: watched.n_uncertain(),
        uncertain: most_uncertain(watched.take_uncertain(), max_kept),
        elastic,
        structure: relaxed,
    })
}

/// At most `n` structures, the most uncertain first, without repeats of one structure.
fn most_uncertain(mut kept: Vec<Uncertain>, n: usize) -> Vec<Uncertain> {
    kept.sort_by(|a, b| b.max_gamma.total_cmp(&a.max_gamma));
    let mut seen = std::collections::HashSet::new();
    kept.retain(|u| seen.insert(u.structure.content_hash()));
    kept.truncate(n);
    kept
}

/// Run the configured goals with the model of the loop's last generation, unless they
/// were computed with it already. Returns true when their uncertain structures opened a
/// new generation (the loop goes on labelling), false when the goals are done.
pub fn run_goals(
    config: &Config,
    run_dir: &Path,
    store: &mut JobStore,
    reporter: &mut dyn LoopReporter,
) -> Result<bool, RunError> {
    let goals = &config.goals;
    if goals.is_empty() {
        return Ok(false);
    }
    let Some(model_record) = store.model(None)? else { return Ok(false) };
    let g = model_record.generation;
    let state = store.loop_state()?.ok_or_else(|| RunError::Input("the loop state vanished".into()))?;
    if state.generation != g {
        return Ok(false);
    }
    let previous = store.properties()?;
    let todo: Vec<&str> =
        goals.names().into_iter().filter(|n| !previous.iter().any(|p| p.goal == *n && p.generation == g)).collect();
    if todo.is_empty() {
        return Ok(false);
    }
    let model = load_model(&run_dir.join(&model_record.path))?;
    let gamma_select = config.explore.gamma_select;
    let mut records = Vec::new();
    let mut to_label: Vec<(String, Structure)> = Vec::new();
    for name in todo {
        let round = previous.iter().filter(|p| p.goal == name && p.outcome == PropertyOutcome::Relabel).count();
        let (value, max_gamma, n_uncertain, uncertain) = match name {
            "elastic" => {
                let goal = goals.elastic.as_ref().expect("configured");
                reporter.say(&format!(
                    "generation {g}: goal elastic: {} {} a = {} Å with the model of generation {g}",
                    config.generate.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join(""),
                    goal.lattice.name(),
                    goal.lattice_constant_a
                ));
                let start = goal.structure(&config.generate);
                match elastic_with_model(&model, &start, &goal.settings(), gamma_select, config.loop_.per_generation) {
                    Ok(r) => (elastic_json(&r.elastic, &r.structure), r.max_gamma, r.n_uncertain, r.uncertain),
                    // A goal that cannot be computed (e.g. the relaxation does not converge
                    // on an unstable crystal) is recorded as failed; the run stands.
                    Err(e) => {
                        reporter.say(&format!("generation {g}: goal {name} failed: {e}"));
                        (json!({ "error": e.to_string() }), None, 0, Vec::new())
                    }
                }
            }
            other => unreachable!("goal {other} is refused by the configuration"),
        };
        let trusted = max_gamma.is_some_and(|m| m < gamma_select);
        let outcome = if uncertain.is_empty() {
            PropertyOutcome::Final
        } else if round < goals.max_rounds {
            PropertyOutcome::Relabel
        } else {
            PropertyOutcome::Limit
        };
        reporter.say(&format!(
            "generation {g}: goal {name}: max gamma {}, {n_uncertain} evaluations above gamma_select {gamma_select}: {}",
            max_gamma.map(|m| format!("{m:.3}")).unwrap_or_else(|| "n/a".into()),
            match outcome {
                PropertyOutcome::Final if trusted => "trusted".to_string(),
                PropertyOutcome::Final if value["error"].is_string() => "failed".to_string(),
                PropertyOutcome::Final => "not trusted (the model has no extrapolation grade)".to_string(),
                PropertyOutcome::Relabel => format!(
                    "not trusted; {} structures go to labelling (round {} of {})",
                    uncertain.len(),
                    round + 1,
                    goals.max_rounds
                ),
                PropertyOutcome::Limit => format!("NOT TRUSTED: goals.max_rounds = {} reached", goals.max_rounds),
            }
        ));
        if outcome == PropertyOutcome::Relabel {
            to_label.extend(uncertain.into_iter().map(|u| (name.to_string(), u.structure)));
        }
        records.push(PropertyRecord {
            goal: name.to_string(),
            generation: g,
            round: round as i64,
            model_path: model_record.path.clone(),
            value,
            max_gamma,
            n_uncertain: n_uncertain as i64,
            trusted,
            outcome,
            created_at_s: 0.0,
        });
    }
    if to_label.is_empty() {
        store.record_properties(g, &records, None)?;
        return Ok(false);
    }
    let mut calcs = Vec::new();
    for (goal, s) in to_label {
        let mut c = new_calculations(vec![s], &format!("goal:{goal}"), g + 1, &config.oracle, |_| {
            format!("a structure of the {goal} goal")
        })
        .map_err(RunError::Input)?;
        calcs.append(&mut c);
    }
    store.record_properties(g, &records, Some(&calcs))?;
    Ok(true)
}

/// What is stored and printed of an elastic result.
pub fn elastic_json(e: &Elastic, structure: &Structure) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("elastic results serialise");
    v["cell_a"] = json!(structure.cell_a);
    v["formula"] = json!(structure.formula());
    v
}

/// `autopipe status --json`'s `properties`: the latest computation of every goal, and
/// the history.
pub fn status_json(store: &JobStore) -> Result<serde_json::Value, RunError> {
    let all = store.properties()?;
    let mut latest = serde_json::Map::new();
    for p in &all {
        latest.insert(p.goal.clone(), serde_json::to_value(p).expect("records serialise"));
    }
    let history: Vec<serde_json::Value> = all
        .iter()
        .map(|p| {
            json!({
                "goal": p.goal, "generation": p.generation, "round": p.round, "max_gamma": p.max_gamma,
                "n_uncertain": p.n_uncertain, "trusted": p.trusted, "outcome": p.outcome,
            })
        })
        .collect();
    Ok(json!({ "latest": latest, "history": history }))
}

/// One line per goal for `autopipe status`.
pub fn status_lines(store: &JobStore) -> Result<Vec<String>, RunError> {
    let all = store.properties()?;
    let mut names: Vec<&str> = all.iter().map(|p| p.goal.as_str()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let p = all.iter().rev().find(|p| p.goal == name).expect("present");
        let rounds = all.iter().filter(|q| q.goal == name && q.outcome == PropertyOutcome::Relabel).count();
        let value = match name {
            _ if p.value["error"].is_string() => format!("FAILED: {}", p.value["error"].as_str().unwrap_or("")),
            "elastic" => {
                let c = |i: usize, j: usize| p.value["c_ij_gpa"][i][j].as_f64().unwrap_or(f64::NAN);
                format!(
                    "C11 {:.1} C12 {:.1} C44 {:.1} GPa, B {:.1} GPa, G {:.1} GPa, Born {}",
                    c(0, 0),
                    c(0, 1),
                    c(3, 3),
                    p.value["bulk_modulus_gpa"]["hill"].as_f64().unwrap_or(f64::NAN),
                    p.value["shear_modulus_gpa"]["hill"].as_f64().unwrap_or(f64::NAN),
                    if p.value["born_stable"] == true { "stable" } else { "UNSTABLE" }
                )
            }
            _ => p.value.to_string(),
        };
        out.push(format!(
            "goal {name}: {value}; generation {}, {rounds} label-refit round(s), max gamma {}, {}",
            p.generation,
            p.max_gamma.map(|m| format!("{m:.2}")).unwrap_or_else(|| "n/a".into()),
            match (p.trusted, p.outcome) {
                (true, _) => "trusted",
                (false, PropertyOutcome::Relabel) => "not trusted yet (its uncertain structures are being labelled)",
                (false, _) => "NOT TRUSTED (computed where the model extrapolates)",
            }
        ));
    }
    Ok(out)
}
