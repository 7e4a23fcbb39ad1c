//! The run configuration: TOML, strict (unknown keys are errors), read in two stages —
//! raw (what the file says) and validated (what the program runs with). Every error
//! names the file, the line and the key.

use autopipe_atoms::Element;
use autopipe_build::{BulkRecipe, Lattice};
use autopipe_engines::EngineSpec;
use autopipe_potential::{FitOptions, SnapElement, SnapParams};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration error, pointing at the file, line and key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key, e.g. `execution.workers`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------- raw stage

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    run: RawRun,
    system: RawSystem,
    #[serde(default)]
    generate: RawGenerate,
    oracle: toml::Value,
    #[serde(default)]
    execution: RawExecution,
    #[serde(default)]
    potential: RawPotential,
    /// Passed to the fitter's own options (validated there).
    #[serde(default)]
    fit: Option<toml::Value>,
    #[serde(default)]
    explore: RawExplore,
    #[serde(default, rename = "loop")]
    loop_: RawLoop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPotential {
    twojmax: usize,
    cutoff_a: f64,
    rfac0: f64,
    rmin0_a: f64,
    quadratic: bool,
    /// Relative radii per element (the pair cutoff is cutoff_a * (r_i + r_j)); 0.5 each by default.
    radii: BTreeMap<String, f64>,
    /// Neighbour weights per element; 1 each by default.
    weights: BTreeMap<String, f64>,
}

impl Default for RawPotential {
    fn default() -> Self {
        RawPotential {
            twojmax: 8,
            cutoff_a: 4.7,
            rfac0: 0.99363,
            rmin0_a: 0.0,
            quadratic: false,
            radii: BTreeMap::new(),
            weights: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawExplore {
    temperatures_k: Vec<f64>,
    pressures_gpa: Vec<f64>,
    steps: u64,
    timestep_fs: f64,
    friction_per_fs: f64,
    sample_every: u64,
    gamma_select: f64,
    gamma_break: f64,
    max_frames_per_segment: usize,
}

impl Default for RawExplore {
    fn default() -> Self {
        let e = ExploreConfig::default();
        RawExplore {
            temperatures_k: e.temperatures_k,
            pressures_gpa: e.pressures_gpa,
            steps: e.steps,
            timestep_fs: e.timestep_fs,
            friction_per_fs: e.friction_per_fs,
            sample_every: e.sample_every,
            gamma_select: e.gamma_select,
            gamma_break: e.gamma_break,
            max_frames_per_segment: e.max_frames_per_segment,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLoop {
    max_generations: u32,
    per_generation: usize,
    target_force_rmse_ev_per_a: Option<f64>,
    target_energy_rmse_mev_per_atom: Option<f64>,
}

impl Default for RawLoop {
    fn default() -> Self {
        let l = LoopConfig::default();
        RawLoop {
            max_generations: l.max_generations,
            per_generation: l.per_generation,
            target_force_rmse_ev_per_a: l.target_force_rmse_ev_per_a,
            target_energy_rmse_mev_per_atom: l.target_energy_rmse_mev_per_atom,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: Option<String>,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    elements: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGenerate {
    lattice: String,
    lattice_constant_a: Option<f64>,
    supercell: [usize; 3],
    structures: usize,
    max_strain: f64,
    rattle_a: f64,
    vacancy_fraction: f64,
}

impl Default for RawGenerate {
    fn default() -> Self {
        RawGenerate {
            lattice: "fcc".into(),
            lattice_constant_a: None,
            supercell: [2, 2, 2],
            structures: 20,
            max_strain: 0.02,
            rattle_a: 0.05,
            vacancy_fraction: 0.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawExecution {
    backend: String,
    workers: usize,
    walltime_s: f64,
    max_physics_retries: u32,
    max_infra_retries: u32,
    failure_tolerance: f64,
}

impl Default for RawExecution {
    fn default() -> Self {
        let e = ExecutionConfig::default();
        RawExecution {
            backend: "local".into(),
            workers: e.workers,
            walltime_s: e.walltime_s,
            max_physics_retries: e.max_physics_retries,
            max_infra_retries: e.max_infra_retries,
            failure_tolerance: e.failure_tolerance,
        }
    }
}

// ---------------------------------------------------------------- validated stage

/// Where and how calculations run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionConfig {
    pub workers: usize,
    pub walltime_s: f64,
    pub max_physics_retries: u32,
    pub max_infra_retries: u32,
    pub failure_tolerance: f64,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            workers: 2,
            walltime_s: 3600.0,
            max_physics_retries: 2,
            max_infra_retries: 2,
            failure_tolerance: 0.5,
        }
    }
}

/// Exploration: molecular dynamics with the current model, watching its extrapolation grade.
#[derive(Debug, Clone, PartialEq)]
pub struct ExploreConfig {
    /// One NVT segment per temperature (per pressure too, when pressures are given: NPT).
    pub temperatures_k: Vec<f64>,
    pub pressures_gpa: Vec<f64>,
    pub steps: u64,
    pub timestep_fs: f64,
    pub friction_per_fs: f64,
    /// Every how many steps a frame is a candidate.
    pub sample_every: u64,
    /// Frames with an atom above this grade become candidates.
    pub gamma_select: f64,
    /// A segment stops when any atom exceeds this grade (the model is extrapolating wildly).
    pub gamma_break: f64,
    pub max_frames_per_segment: usize,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            temperatures_k: vec![300.0, 900.0, 1500.0],
            pressures_gpa: vec![],
            steps: 2000,
            timestep_fs: 2.0,
            friction_per_fs: 0.02,
            sample_every: 10,
            gamma_select: 2.0,
            gamma_break: 10.0,
            max_frames_per_segment: 50,
        }
    }
}

/// When the loop stops.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    pub max_generations: u32,
    /// At most this many new structures labelled per generation.
    pub per_generation: usize,
    /// Converged when exploration finds nothing above gamma_select and the test errors
    /// are at most these.
    pub target_force_rmse_ev_per_a: Option<f64>,
    pub target_energy_rmse_mev_per_atom: Option<f64>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_generations: 8,
            per_generation: 20,
            target_force_rmse_ev_per_a: Some(0.045),
            target_energy_rmse_mev_per_atom: Some(2.0),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub name: String,
    pub seed: u64,
    pub elements: Vec<Element>,
    pub generate: BulkRecipe,
    pub oracle: EngineSpec,
    pub execution: ExecutionConfig,
    pub snap: SnapParams,
    /// The `[fit]` table: the fitter's options.
    pub fit: FitOptions,
    pub explore: ExploreConfig,
    pub loop_: LoopConfig,
}

/// Read and validate a configuration file.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    parse_config(&text, path)
}

/// Parse and validate configuration text; `file` names it in errors.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| from_toml_error(text, file, &e))?;
    let doc = toml_edit::ImDocument::parse(text.to_string()).ok();
    let err = |path: &[&str], message: String| {
        let span = doc.as_ref().and_then(|d| span_of(d, path));
        let (line, column) = span.map(|s| line_col(text, s.start)).unzip();
        ConfigError { file: file.to_path_buf(), line, column, key: Some(path.join(".")), message }
    };

    let mut elements = Vec::new();
    if raw.system.elements.is_empty() {
        return Err(err(&["system", "elements"], "needs at least one chemical symbol, e.g. [\"Cu\"]".into()));
    }
    for s in &raw.system.elements {
        let e = Element::from_symbol(s)
            .ok_or_else(|| err(&["system", "elements"], format!("{s:?} is not a chemical symbol")))?;
        if elements.contains(&e) {
            return Err(err(&["system", "elements"], format!("{s} is listed twice")));
        }
        elements.push(e);
    }

    let g = &raw.generate;
    let lattice = Lattice::parse(&g.lattice).ok_or_else(|| {
        err(
            &["generate", "lattice"],
            format!("unknown lattice {:?}; expected one of sc, fcc, bcc, hcp, diamond", g.lattice),
        )
    })?;
    let lattice_constant_a = match g.lattice_constant_a {
        Some(a) if a.is_finite() && a > 0.5 && a < 50.0 => a,
        Some(a) => {
            return Err(err(&["generate", "lattice_constant_a"], format!("{a} Å is not a plausible lattice constant")))
        }
        None => default_lattice_constant_a(elements[0], lattice).ok_or_else(|| {
            err(
                &["generate", "lattice_constant_a"],
                format!("no default for {} {}; set it in Å", elements[0], lattice.name()),
            )
        })?,
    };
    if g.supercell.iter().any(|&n| n == 0 || n > 50) {
        return Err(err(&["generate", "supercell"], "each repetition must be between 1 and 50".into()));
    }
    if g.structures == 0 {
        return Err(err(&["generate", "structures"], "must be at least 1".into()));
    }
    if !(0.0..=0.2).contains(&g.max_strain) {
        return Err(err(&["generate", "max_strain"], format!("{} is outside 0 ..= 0.2", g.max_strain)));
    }
    if !(0.0..=0.5).contains(&g.rattle_a) {
        return Err(err(&["generate", "rattle_a"], format!("{} Å is outside 0 ..= 0.5 Å", g.rattle_a)));
    }
    if !(0.0..=1.0).contains(&g.vacancy_fraction) {
        return Err(err(&["generate", "vacancy_fraction"], format!("{} is outside 0 ..= 1", g.vacancy_fraction)));
    }
    let seed = raw.run.seed.unwrap_or(42);
    let generate = BulkRecipe {
        lattice,
        elements: elements.clone(),
        lattice_constant_a,
        supercell: g.supercell,
        count: g.structures,
        max_strain: g.max_strain,
        rattle_a: g.rattle_a,
        vacancy_fraction: g.vacancy_fraction,
        seed,
    };

    let oracle: EngineSpec = raw.oracle.clone().try_into().map_err(|e: toml::de::Error| {
        let mut message = e.message().to_string();
        if message.contains("missing field `engine`") {
            message = "missing key `engine` (one of \"emt\", \"command\", \"qe\", \"cp2k\", \"orca\", \"vasp\")".into();
        }
        err(&["oracle"], message)
    })?;
    for e in &elements {
        let probe = autopipe_atoms::Structure {
            cell_a: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            positions_a: vec![[0.0; 3]],
            species: vec![*e],
            pbc: [true; 3],
        };
        oracle.check_structure(&probe).map_err(|m| err(&["oracle", "engine"], m))?;
    }

    let x = &raw.execution;
    if x.backend != "local" {
        return Err(err(
            &["execution", "backend"],
            format!("unknown backend {:?}; this version runs \"local\"", x.backend),
        ));
    }
    if x.workers == 0 || x.workers > 4096 {
        return Err(err(&["execution", "workers"], format!("{} is not between 1 and 4096", x.workers)));
    }
    if !(x.walltime_s.is_finite() && x.walltime_s > 0.0) {
        return Err(err(&["execution", "walltime_s"], format!("{} s is not a positive time", x.walltime_s)));
    }
    if !(0.0..=1.0).contains(&x.failure_tolerance) {
        return Err(err(&["execution", "failure_tolerance"], format!("{} is outside 0 ..= 1", x.failure_tolerance)));
    }
    let execution = ExecutionConfig {
        workers: x.workers,
        walltime_s: x.walltime_s,
        max_physics_retries: x.max_physics_retries,
        max_infra_retries: x.max_infra_retries,
        failure_tolerance: x.failure_tolerance,
    };
    let p = &raw.potential;
    for (key, map) in [("radii", &p.radii), ("weights", &p.weights)] {
        if let Some(bad) = map.keys().find(|k| !raw.system.elements.contains(k)) {
            return Err(err(&["potential", key], format!("{bad} is not one of system.elements")));
        }
        if let Some((k, v)) = map.iter().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
            return Err(err(&["potential", key], format!("{k} = {v} must be positive")));
        }
    }
    let snap = SnapParams {
        twojmax: p.twojmax,
        rcutfac: p.cutoff_a,
        rfac0: p.rfac0,
        rmin0: p.rmin0_a,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: p.quadratic,
        elements: elements
            .iter()
            .map(|e| SnapElement {
                element: *e,
                radius: p.radii.get(e.symbol()).copied().unwrap_or(0.5),
                weight: p.weights.get(e.symbol()).copied().unwrap_or(1.0),
            })
            .collect(),
    };
    if !(2..=12).contains(&p.twojmax) {
        return Err(err(&["potential", "twojmax"], format!("{} is outside 2 ..= 12", p.twojmax)));
    }
    if !(p.cutoff_a.is_finite() && p.cutoff_a > 1.0 && p.cutoff_a < 15.0) {
        return Err(err(&["potential", "cutoff_a"], format!("{} Å is outside 1 .. 15 Å", p.cutoff_a)));
    }
    snap.validate().map_err(|e| err(&["potential"], e.to_string()))?;

    let ex = &raw.explore;
    if ex.temperatures_k.is_empty() || ex.temperatures_k.iter().any(|t| !(t.is_finite() && *t > 0.0 && *t < 1e5)) {
        return Err(err(&["explore", "temperatures_k"], "needs one or more positive temperatures in K".into()));
    }
    if ex.pressures_gpa.iter().any(|p| !p.is_finite()) {
        return Err(err(&["explore", "pressures_gpa"], "pressures must be finite numbers in GPa".into()));
    }
    if !(ex.timestep_fs.is_finite() && ex.timestep_fs > 0.0 && ex.timestep_fs <= 20.0) {
        return Err(err(&["explore", "timestep_fs"], format!("{} fs is outside 0 .. 20 fs", ex.timestep_fs)));
    }
    if ex.steps == 0 || ex.sample_every == 0 {
        return Err(err(&["explore", "steps"], "steps and sample_every must be at least 1".into()));
    }
    if !(ex.friction_per_fs.is_finite() && ex.friction_per_fs > 0.0) {
        return Err(err(&["explore", "friction_per_fs"], "must be positive (1/fs)".into()));
    }
    if !(ex.gamma_select >= 1.0 && ex.gamma_break > ex.gamma_select) {
        return Err(err(&["explore", "gamma_select"], "needs 1 <= gamma_select < gamma_break".into()));
    }
    let explore = ExploreConfig {
        temperatures_k: ex.temperatures_k.clone(),
        pressures_gpa: ex.pressures_gpa.clone(),
        steps: ex.steps,
        timestep_fs: ex.timestep_fs,
        friction_per_fs: ex.friction_per_fs,
        sample_every: ex.sample_every,
        gamma_select: ex.gamma_select,
        gamma_break: ex.gamma_break,
        max_frames_per_segment: ex.max_frames_per_segment.max(1),
    };
    let l = &raw.loop_;
    if l.per_generation == 0 {
        return Err(err(&["loop", "per_generation"], "must be at least 1".into()));
    }
    let loop_ = LoopConfig {
        max_generations: l.max_generations,
        per_generation: l.per_generation,
        target_force_rmse_ev_per_a: l.target_force_rmse_ev_per_a,
        target_energy_rmse_mev_per_atom: l.target_energy_rmse_mev_per_atom,
    };
    let fit: FitOptions = match raw.fit.clone() {
        None => FitOptions::default(),
        Some(v) => v.try_into().map_err(|e: toml::de::Error| err(&["fit"], e.message().to_string()))?,
    };
    if !(0.0..1.0).contains(&fit.test_fraction) {
        return Err(err(&["fit", "test_fraction"], format!("{} is outside 0 .. 1", fit.test_fraction)));
    }

    let name =
        raw.run.name.clone().unwrap_or_else(|| {
            file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into())
        });
    Ok(Config {
        file: file.to_path_buf(),
        name,
        seed,
        elements,
        generate,
        oracle,
        execution,
        snap,
        fit,
        explore,
        loop_,
    })
}

/// Experimental lattice constants (Å) for the elements EMT knows, in their ground-state
/// lattice (and the same value for other lattices of these elements as a start).
fn default_lattice_constant_a(e: Element, lattice: Lattice) -> Option<f64> {
    let a = match e.symbol() {
        "Cu" => 3.61,
        "Ag" => 4.09,
        "Au" => 4.08,
        "Ni" => 3.52,
        "Pd" => 3.89,
        "Pt" => 3.92,
        "Al" => 4.05,
        "Si" => 5.43,
        "C" => 3.57,
        "W" => 3.165,
        "Ta" => 3.30,
        "Fe" => 2.87,
        "Mo" => 3.15,
        _ => return None,
    };
    // Same atomic volume in another lattice: a_bcc = a_fcc * (1/2)^(1/3), etc.
    let atoms_per_cubic_cell = |l: Lattice| match l {
        Lattice::Sc => 1.0f64,
        Lattice::Bcc => 2.0,
        Lattice::Fcc => 4.0,
        Lattice::Diamond => 8.0,
        Lattice::Hcp => 4.0,
    };
    let natural = match e.symbol() {
        "W" | "Ta" | "Fe" | "Mo" => Lattice::Bcc,
        "Si" | "C" => Lattice::Diamond,
        _ => Lattice::Fcc,
    };
    let ratio = (atoms_per_cubic_cell(lattice) / atoms_per_cubic_cell(natural)).cbrt();
    let a = a * ratio;
    // hcp's a is the nearest-neighbour distance of the close-packed layers.
    Some(if lattice == Lattice::Hcp { a / 2f64.sqrt() } else { a })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The span of the value at a dotted path (or of the deepest table found).
fn span_of(doc: &toml_edit::ImDocument<String>, path: &[&str]) -> Option<Range<usize>> {
    let mut item = doc.as_item();
    let mut best = None;
    for key in path {
        match item.get(key) {
            Some(next) => {
                item = next;
                if let Some(span) = item.span() {
                    best = Some(span);
                }
            }
            None => break,
        }
    }
    best
}

fn from_toml_error(text: &str, file: &Path, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let (line, column) = span.clone().map(|s| line_col(text, s.start)).unzip();
    let message = e.message().trim().to_string();
    let key = span
        .and_then(|s| key_at(text, s.start, &message))
        .or_else(|| message.strip_prefix("missing field `").and_then(|m| m.split('`').next()).map(str::to_string));
    ConfigError { file: file.to_path_buf(), line, column, key, message }
}

/// The dotted key an error at `offset` is about: the table header above it, and the key
/// on its line (or the field a "missing field" message names).
fn key_at(text: &str, offset: usize, message: &str) -> Option<String> {
    let line_start = text[..offset.min(text.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let header = |upto: usize| {
        text[..upto]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && !l.starts_with("[["))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    let named = |prefix: &str| message.split('`').nth(1).filter(|_| message.starts_with(prefix)).map(str::to_string);
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        let table = trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        return Some(match named("missing field") {
            Some(field) => format!("{table}.{field}"),
            None => table,
        });
    }
    let table = header(line_start);
    let field = named("unknown field")
        .or_else(|| named("missing field"))
        .or_else(|| trimmed.split_once('=').map(|(k, _)| k.trim().to_string()))?;
    Some(match table {
        Some(t) => format!("{t}.{field}"),
        None => field,
    })
}
