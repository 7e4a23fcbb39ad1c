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
use autopipe_atoms::{Element, Structure};
use autopipe_build::{generate_bulk, BulkRecipe, Lattice};
use autopipe_md::ForceField;
use autopipe_potential::SnapModel;
use autopipe_property::diffusion::{diffusion_workflow, DiffusionMd};
use autopipe_property::elastic::{elastic_constants_with_cells, Elastic, ElasticSettings, StrainedCell};
use autopipe_property::guard::{Uncertain, Watched};
use autopipe_property::hull::candidates::{
    prototype_candidates, relax_candidates, Candidate, CandidateKind, RelaxedCandidate,
};
use autopipe_property::hull::{HullError, PhaseDiagram};
use autopipe_store::{JobStore, PropertyOutcome, PropertyRecord};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

/// The validated `[goals]` table.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GoalsConfig {
    pub elastic: Option<ElasticGoal>,
    pub diffusion: Option<DiffusionGoal>,
    pub hull: Option<HullGoal>,
    /// Label-refit-recompute rounds at most (0: compute once, never relabel).
    pub max_rounds: usize,
}

impl GoalsConfig {
    pub fn is_empty(&self) -> bool {
        self.elastic.is_none() && self.diffusion.is_none() && self.hull.is_none()
    }

    /// The names of the configured goals.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.elastic.is_some() {
            out.push("elastic");
        }
        if self.diffusion.is_some() {
            out.push("diffusion");
        }
        if self.hull.is_some() {
            out.push("hull");
        }
        out
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

/// The recipe's crystal, unstrained, unrattled, without vacancies (a random alloy drawn
/// with the recipe's seed for several elements).
fn perfect_crystal(recipe: &BulkRecipe) -> Structure {
    let recipe = BulkRecipe { count: 1, max_strain: 0.0, rattle_a: 0.0, vacancy_fraction: 0.0, ..recipe.clone() };
    generate_bulk(&recipe).remove(0)
}

impl ElasticGoal {
    /// The structure of the goal.
    pub fn structure(&self, generate: &BulkRecipe) -> Structure {
        perfect_crystal(&BulkRecipe {
            lattice: self.lattice,
            lattice_constant_a: self.lattice_constant_a,
            supercell: self.supercell,
            ..generate.clone()
        })
    }

    pub fn settings(&self) -> ElasticSettings {
        let base = if self.relax { ElasticSettings::default() } else { ElasticSettings::unrelaxed() };
        ElasticSettings { amplitudes: self.amplitudes.clone(), ..base }
    }
}

/// `[goals.diffusion]`: D per species at each temperature (NPT, NVT, production MD with
/// the MSD), and the Arrhenius fit, on a supercell of the `[generate]` crystal.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionGoal {
    pub temperatures_k: Vec<f64>,
    pub supercell: [usize; 3],
    /// Atoms removed from the supercell (a solid diffuses by its vacancies).
    pub vacancies: usize,
    pub md: DiffusionMd,
}

impl DiffusionGoal {
    /// The supercell, less `vacancies` atoms (the last ones), for `generate`'s elements.
    pub fn structure(&self, generate: &BulkRecipe) -> Structure {
        let mut s = perfect_crystal(&BulkRecipe { supercell: self.supercell, ..generate.clone() });
        let keep = s.len() - self.vacancies;
        s.positions_a.truncate(keep);
        s.species.truncate(keep);
        s
    }
}

/// `[goals] hull = true` (alias `phase_diagram`) or `[goals.hull] ...`: formation
/// energies and the convex hull of candidates of the run's elements (each element in fcc,
/// bcc and hcp; L1_2, B2 and L1_0 and SQS at 25/50/75 % of every pair), each relaxed
/// (positions and cell) with the model, as `autopipe property hull --dir RUN --elements`.
#[derive(Clone, Debug, PartialEq)]
pub struct HullGoal {
    pub elements: Vec<Element>,
    /// Seed of the SQS.
    pub seed: u64,
    /// Relax each candidate until every force is below this.
    pub fmax_ev_per_a: f64,
    /// Include the ordered prototypes (L1_2, B2, L1_0).
    pub ordered: bool,
    /// Include the SQS (32-atom fcc cells; the costliest candidates).
    pub sqs: bool,
}

/// `autopipe property hull`'s defaults, which the goal shares.
pub const HULL_SEED: u64 = 1;
pub const HULL_FMAX_EV_PER_A: f64 = 0.01;

impl HullGoal {
    /// The candidates: each element's fcc-equivalent lattice constant from element
    /// data, mixtures by Vegard's law.
    pub fn candidates(&self) -> Result<Vec<Candidate>, RunError> {
        let fcc_a = |e: Element| crate::config::default_lattice_constant_a(e, Lattice::Fcc);
        let all =
            prototype_candidates(&self.elements, &fcc_a, self.seed).map_err(|e| RunError::Input(e.to_string()))?;
        Ok(all
            .into_iter()
            .filter(|c| match c.kind {
                CandidateKind::Element => true,
                CandidateKind::Ordered => self.ordered,
                CandidateKind::Sqs => self.sqs,
            })
            .collect())
    }
}

/// Relaxes the candidates with `ff` and computes their hull: the JSON stored for the goal
/// and printed by `autopipe property hull --json` (`elements`, `entries` with formation
/// energy, energy above hull, stability and decomposition, `stable`,
/// `max_e_above_hull_ev_per_atom`, `relaxations`).
pub fn hull_of_candidates<F: ForceField + ?Sized>(
    ff: &mut F,
    candidates: &[Candidate],
    fmax_ev_per_a: f64,
    progress: &mut dyn FnMut(&RelaxedCandidate),
) -> Result<serde_json::Value, HullError> {
    let (entries, relaxed) = relax_candidates(ff, candidates, fmax_ev_per_a, progress)?;
    let pd = PhaseDiagram::new(entries)?;
    hull_json(&pd, Some(&relaxed))
}

/// The JSON of a phase diagram (with the relaxations when it was made from candidates).
pub fn hull_json(pd: &PhaseDiagram, relaxed: Option<&[RelaxedCandidate]>) -> Result<serde_json::Value, HullError> {
    let results = pd.results()?;
    let max_e_above_hull = results.iter().map(|r| r.e_above_hull_ev_per_atom).fold(0.0, f64::max);
    let mut out = json!({
        "elements": pd.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>(),
        "entries": results,
        "stable": pd.stable_indices().iter().map(|&i| &pd.entries[i].name).collect::<Vec<_>>(),
        "max_e_above_hull_ev_per_atom": max_e_above_hull,
    });
    if let Some(r) = relaxed {
        out["relaxations"] = serde_json::to_value(r).expect("relaxations serialise");
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHullGoal {
    seed: Option<u64>,
    fmax_ev_per_a: Option<f64>,
    ordered: Option<bool>,
    sqs: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiffusionGoal {
    temperatures_k: Vec<f64>,
    supercell: Option<[usize; 3]>,
    vacancies: Option<usize>,
    timestep_fs: Option<f64>,
    npt_steps: Option<u64>,
    nvt_steps: Option<u64>,
    production_steps: Option<u64>,
    sample_every: Option<u64>,
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
    seed: u64,
    timestep_fs: f64,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<GoalsConfig, ConfigError> {
    let Some(raw) = raw else { return Ok(GoalsConfig::default()) };
    let table = raw.as_table().ok_or_else(|| err(&["goals"], "must be a table".into()))?;
    let mut goals = GoalsConfig { elastic: None, diffusion: None, hull: None, max_rounds: 2 };
    for (key, value) in table {
        match key.as_str() {
            "max_rounds" => {
                let n = value.as_integer().filter(|n| (0..=20).contains(n)).ok_or_else(|| {
                    err(&["goals", "max_rounds"], format!("{value} is not a whole number of rounds in 0 ..= 20"))
                })?;
                goals.max_rounds = n as usize;
            }
            "elastic" => goals.elastic = parse_elastic(value, generate, err)?,
            "diffusion" => goals.diffusion = Some(parse_diffusion(value, generate, seed, timestep_fs, err)?),
            "hull" | "phase_diagram" => {
                if goals.hull.is_some() {
                    return Err(err(&["goals", key], "the hull goal is given twice (hull and phase_diagram)".into()));
                }
                goals.hull = parse_hull(key, value, generate, err)?;
            }
            other => {
                return Err(err(
                    &["goals", other],
                    format!(
                        "unknown goal or key {other:?}; expected elastic, diffusion, hull (or phase_diagram) or \
                         max_rounds"
                    ),
                ))
            }
        }
    }
    Ok(goals)
}

/// A goal's table deserialised, an unknown or missing key pointing at itself.
fn goal_table<T: serde::de::DeserializeOwned>(
    goal: &str,
    value: &toml::Value,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<T, ConfigError> {
    value.clone().try_into().map_err(|e: toml::de::Error| {
        let message = e.message().trim().to_string();
        let key = message.split('`').nth(1).unwrap_or("").to_string();
        let path: Vec<&str> = ["goals", goal].into_iter().chain((!key.is_empty()).then_some(key.as_str())).collect();
        err(&path, message)
    })
}

fn parse_diffusion(
    value: &toml::Value,
    generate: &BulkRecipe,
    seed: u64,
    timestep_fs: f64,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<DiffusionGoal, ConfigError> {
    let at = |k: &'static str| move |m: String| err(&["goals", "diffusion", k], m);
    if !value.is_table() {
        return Err(err(&["goals", "diffusion"], "must be a table, e.g. { temperatures_k = [1200, 1400] }".into()));
    }
    let raw: RawDiffusionGoal = goal_table("diffusion", value, err)?;
    if raw.temperatures_k.is_empty() {
        return Err(at("temperatures_k")("give at least one temperature (two or more for the Arrhenius fit)".into()));
    }
    if let Some(t) = raw.temperatures_k.iter().find(|t| !(t.is_finite() && (1.0..=20000.0).contains(*t))) {
        return Err(at("temperatures_k")(format!("{t} K is not a temperature in 1 ..= 20000 K")));
    }
    let supercell = raw.supercell.unwrap_or(generate.supercell);
    if supercell.iter().any(|&n| n == 0 || n > 20) {
        return Err(at("supercell")(format!("{supercell:?}: each repetition must be in 1 ..= 20")));
    }
    let atoms = BulkRecipe { supercell, ..generate.clone() }.atoms_per_structure();
    let vacancies = raw.vacancies.unwrap_or(0);
    if vacancies + 2 > atoms {
        return Err(at("vacancies")(format!("{vacancies} of {atoms} atoms: at least two must stay")));
    }
    let d = DiffusionMd::default();
    let md = DiffusionMd {
        timestep_fs: raw.timestep_fs.unwrap_or(timestep_fs),
        npt_steps: raw.npt_steps.unwrap_or(d.npt_steps),
        nvt_steps: raw.nvt_steps.unwrap_or(d.nvt_steps),
        production_steps: raw.production_steps.unwrap_or(d.production_steps),
        sample_every: raw.sample_every.unwrap_or(d.sample_every),
        seed,
        ..d
    };
    if !(md.timestep_fs > 0.0 && md.timestep_fs <= 20.0) {
        return Err(at("timestep_fs")(format!("{} fs is not in (0, 20]", md.timestep_fs)));
    }
    if md.sample_every == 0 {
        return Err(at("sample_every")("must be at least 1".into()));
    }
    let samples = md.production_steps / md.sample_every;
    let needed = 20 * md.window.blocks.max(1) as u64;
    if samples < needed {
        return Err(at("production_steps")(format!(
            "production_steps / sample_every = {samples} samples; the fit needs at least {needed}"
        )));
    }
    Ok(DiffusionGoal { temperatures_k: raw.temperatures_k, supercell, vacancies, md })
}

fn parse_hull(
    key: &str,
    value: &toml::Value,
    generate: &BulkRecipe,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<Option<HullGoal>, ConfigError> {
    let raw: RawHullGoal = match value {
        toml::Value::Boolean(false) => return Ok(None),
        toml::Value::Boolean(true) => RawHullGoal { seed: None, fmax_ev_per_a: None, ordered: None, sqs: None },
        toml::Value::Table(_) => goal_table(key, value, err)?,
        _ => return Err(err(&["goals", key], "must be true, false or a table of settings".into())),
    };
    let elements = generate.elements.clone();
    if elements.len() < 2 {
        return Err(err(
            &["goals", key],
            format!(
                "a phase diagram needs two elements or more; the run has {} only ([generate] elements)",
                elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(e) = elements.iter().find(|e| crate::config::default_lattice_constant_a(**e, Lattice::Fcc).is_none()) {
        return Err(err(&["goals", key], format!("no lattice constant known for {e}: its candidates cannot be built")));
    }
    let fmax_ev_per_a = raw.fmax_ev_per_a.unwrap_or(HULL_FMAX_EV_PER_A);
    if !(fmax_ev_per_a.is_finite() && fmax_ev_per_a > 0.0 && fmax_ev_per_a <= 1.0) {
        return Err(err(&["goals", key, "fmax_ev_per_a"], format!("{fmax_ev_per_a} eV/Å is not in (0, 1]")));
    }
    Ok(Some(HullGoal {
        elements,
        seed: raw.seed.unwrap_or(HULL_SEED),
        fmax_ev_per_a,
        ordered: raw.ordered.unwrap_or(true),
        sqs: raw.sqs.unwrap_or(true),
    }))
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
        toml::Value::Table(_) => goal_table("elastic", value, err)?,
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
    /// The cells of the fit as the model evaluated them (the unstrained one first).
    pub cells: Vec<StrainedCell>,
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
    let (elastic, relaxed, cells) = elastic_constants_with_cells(&mut watched, structure, settings)
        .map_err(|e| RunError::Input(format!("elastic constants: {e}")))?;
    Ok(GuardedElastic {
        max_gamma: watched.max_gamma(),
        n_uncertain: watched.n_uncertain(),
        uncertain: most_uncertain(watched.take_uncertain(), max_kept),
        elastic,
        structure: relaxed,
        cells,
    })
}

/// At most `n` structures, the most uncertain first, without repeats of one structure.
pub fn most_uncertain(mut kept: Vec<Uncertain>, n: usize) -> Vec<Uncertain> {
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
            "diffusion" => {
                let goal = goals.diffusion.as_ref().expect("configured");
                reporter.say(&format!(
                    "generation {g}: goal diffusion at {} K with the model of generation {g}",
                    goal.temperatures_k.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                ));
                let start = goal.structure(&config.generate);
                let evaluator = model.evaluator().map_err(|e| RunError::Input(e.to_string()))?;
                let mut watched = Watched::new(ModelForceField { evaluator }, gamma_select, 100_000);
                let say = &mut *reporter;
                let result = diffusion_workflow(&mut watched, &start, &goal.temperatures_k, &goal.md, &mut |line| {
                    say.say(&format!("generation {g}: goal diffusion: {line}"))
                })
                .map(|r| serde_json::to_value(&r).expect("diffusion results serialise"))
                .map_err(|e| e.to_string());
                watched_outcome(&mut watched, result, config.loop_.per_generation, &mut |e| {
                    reporter.say(&format!("generation {g}: goal {name} failed: {e}"))
                })
            }
            "hull" => {
                let goal = goals.hull.as_ref().expect("configured");
                let candidates = goal.candidates()?;
                reporter.say(&format!(
                    "generation {g}: goal hull: relaxing {} candidates of {} with the model of generation {g}",
                    candidates.len(),
                    goal.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join("-")
                ));
                let evaluator = model.evaluator().map_err(|e| RunError::Input(e.to_string()))?;
                let mut watched = Watched::new(ModelForceField { evaluator }, gamma_select, 100_000);
                let result = hull_of_candidates(&mut watched, &candidates, goal.fmax_ev_per_a, &mut |_| {})
                    .map_err(|e| e.to_string());
                watched_outcome(&mut watched, result, config.loop_.per_generation, &mut |e| {
                    reporter.say(&format!("generation {g}: goal {name} failed: {e}"))
                })
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

/// A goal's value with what its guard saw: the largest grade, the evaluations above
/// gamma_select and the most uncertain structures (at most `max_kept`). A computation
/// that failed is recorded as failed (`{"error": ...}`, told to `failed`), with no
/// structures to label: the run stands.
fn watched_outcome<F: ForceField>(
    watched: &mut Watched<F>,
    result: Result<serde_json::Value, String>,
    max_kept: usize,
    failed: &mut dyn FnMut(&str),
) -> (serde_json::Value, Option<f64>, u64, Vec<Uncertain>) {
    match result {
        Ok(v) => (v, watched.max_gamma(), watched.n_uncertain(), most_uncertain(watched.take_uncertain(), max_kept)),
        Err(e) => {
            failed(&e);
            (json!({ "error": e }), watched.max_gamma(), watched.n_uncertain(), Vec::new())
        }
    }
}

/// What is stored and printed of an elastic result.
pub fn elastic_json(e: &Elastic, structure: &Structure) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("elastic results serialise");
    v["cell_a"] = json!(structure.cell_a);
    v["formula"] = json!(structure.formula());
    v
}

/// One line of a hull: the stable set and the largest energy above the hull.
pub fn hull_summary(value: &serde_json::Value) -> String {
    let stable: Vec<&str> = value["stable"].as_array().into_iter().flatten().filter_map(|s| s.as_str()).collect();
    let worst = value["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .max_by(|a, b| {
            let e = |x: &serde_json::Value| x["e_above_hull_ev_per_atom"].as_f64().unwrap_or(f64::NAN);
            e(a).total_cmp(&e(b))
        })
        .map(|w| {
            format!(
                "{:.4} eV/atom ({})",
                w["e_above_hull_ev_per_atom"].as_f64().unwrap_or(f64::NAN),
                w["name"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "-".into());
    format!("stable {}; largest e_above_hull {worst}", stable.join(", "))
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
            "diffusion" => {
                let arrhenius: Vec<String> = p.value["arrhenius"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        format!(
                            "{}: Ea {:.3} ± {:.3} eV, D0 {:.2e} cm²/s",
                            a["element"].as_str().unwrap_or("?"),
                            a["ea_ev"].as_f64().unwrap_or(f64::NAN),
                            a["ea_stderr_ev"].as_f64().unwrap_or(f64::NAN),
                            a["d0_cm2_per_s"].as_f64().unwrap_or(f64::NAN)
                        )
                    })
                    .collect();
                let d: Vec<String> = p.value["temperatures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|t| {
                        t["species"].as_array().into_iter().flatten().map(move |s| {
                            format!(
                                "D({}, {} K) {:.2e} cm²/s",
                                s["element"].as_str().unwrap_or("?"),
                                t["temperature_k"].as_f64().unwrap_or(f64::NAN),
                                s["diffusion_cm2_per_s"].as_f64().unwrap_or(f64::NAN)
                            )
                        })
                    })
                    .collect();
                format!(
                    "{}{}",
                    d.join(", "),
                    if arrhenius.is_empty() { String::new() } else { format!("; {}", arrhenius.join(", ")) }
                )
            }
            "hull" => hull_summary(&p.value),
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
