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
    /// The fitter's own options (unknown keys refused by its `deny_unknown_fields`).
    #[serde(default)]
    fit: Option<FitOptions>,
    #[serde(default)]
    explore: RawExplore,
    #[serde(default, rename = "loop")]
    loop_: RawLoop,
    /// Property goals, validated by `goals::parse_goals`.
    #[serde(default)]
    goals: Option<toml::Value>,
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
    /// `[potential.reference]`: the ZBL reference and isolated-atom energies.
    reference: Option<RawReference>,
    /// `snap` (native) or `pace` (Pacemaker's ACE).
    kind: String,
    /// `[potential.pace]`: Pacemaker's settings.
    pace: Option<autopipe_potential::PaceSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReference {
    zbl_inner_a: Option<f64>,
    zbl_outer_a: Option<f64>,
    /// Isolated-atom energies (eV) by element: the constant term of the model.
    #[serde(default)]
    atom_energies_ev: BTreeMap<String, f64>,
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
            reference: None,
            kind: "snap".into(),
            pace: None,
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
    engine: ExploreEngine,
    lammps_command: Option<String>,
    start_file: Option<PathBuf>,
    extract_above_atoms: Option<usize>,
    extract_buffer_a: f64,
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
            engine: e.engine,
            lammps_command: e.lammps_command,
            start_file: e.start_file,
            extract_above_atoms: e.extract_above_atoms,
            extract_buffer_a: e.extract_buffer_a,
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
    /// Small unrattled strained cells of the conventional cell (group `elastic`).
    elastic_cells: usize,
    elastic_max_strain: f64,
    /// `[[generate.recipe]]` and `[generate.screen]`: see `crate::generate`.
    recipe: Vec<toml::Value>,
    screen: Option<toml::Value>,
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
            elastic_cells: 0,
            elastic_max_strain: 0.01,
            recipe: Vec::new(),
            screen: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawExecution {
    backend: String,
    /// Seconds between two looks at a scheduler's queue.
    poll_s: Option<f64>,
    slurm: autopipe_exec::SlurmSettings,
    flux: autopipe_exec::FluxSettings,
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
            poll_s: None,
            slurm: Default::default(),
            flux: Default::default(),
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
    /// Where calculations run: `backend = "local" | "slurm" | "flux"`, `poll_s`, and the
    /// `[execution.slurm]` / `[execution.flux]` tables.
    pub backend: autopipe_exec::BackendSettings,
    pub workers: usize,
    pub walltime_s: f64,
    pub max_physics_retries: u32,
    pub max_infra_retries: u32,
    pub failure_tolerance: f64,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            backend: Default::default(),
            workers: 2,
            walltime_s: 3600.0,
            max_physics_retries: 2,
            max_infra_retries: 2,
            failure_tolerance: 0.5,
        }
    }
}

/// Exploration: molecular dynamics with the current model, watching its extrapolation grade.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
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
    /// Where the MD runs: in process (`native`) or in LAMMPS (`lammps`, γ watched inside LAMMPS).
    #[serde(default)]
    pub engine: ExploreEngine,
    /// The LAMMPS command line, e.g. `mpirun -np 4 lmp` (`lmp` on PATH when not set).
    #[serde(default)]
    pub lammps_command: Option<String>,
    /// A structure file to explore from instead of the generated supercell (absolute
    /// once validated; relative to the configuration file in the TOML).
    #[serde(default)]
    pub start_file: Option<PathBuf>,
    /// Frames of more atoms than this are not labelled whole: a periodic cell around
    /// each uncertain atom is cut out (None: never).
    #[serde(default)]
    pub extract_above_atoms: Option<usize>,
    /// The buffer (Å) around an extracted atom's cutoff sphere.
    #[serde(default = "default_extract_buffer_a")]
    pub extract_buffer_a: f64,
}

fn default_extract_buffer_a() -> f64 {
    2.0
}

pub use crate::lammps_explore::ExploreEngine;

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
            engine: ExploreEngine::Native,
            lammps_command: None,
            start_file: None,
            extract_above_atoms: None,
            extract_buffer_a: default_extract_buffer_a(),
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
    /// Generation 0 from `[[generate.recipe]]`s (None: the bulk recipe above).
    pub recipes: Option<crate::generate::Generation0>,
    /// `generate.elastic_cells`: generation 0 also labels this many conventional cells
    /// (one repetition), strained up to `generate.elastic_max_strain`, not rattled, as
    /// the fit group `elastic` (None: none).
    pub elastic_cells: Option<BulkRecipe>,
    pub oracle: EngineSpec,
    pub execution: ExecutionConfig,
    pub snap: SnapParams,
    /// `potential.kind`: `snap` or `pace`.
    pub potential_kind: String,
    /// `[potential.pace]` (elements from `system.elements` when not given).
    pub pace: autopipe_potential::PaceSettings,
    /// The `[fit]` table: the fitter's options.
    pub fit: FitOptions,
    pub explore: ExploreConfig,
    pub loop_: LoopConfig,
    /// The `[goals]` table: properties computed when the loop ends.
    pub goals: crate::goals::GoalsConfig,
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

/// The `[oracle]` table of a TOML file on its own, checked as in a configuration (the
/// engine and its settings; other tables are not read). For `autopipe jobs import
/// --oracle`: a campaign on molecules needs no loop settings (and ORCA cannot label the
/// loop's periodic cells).
pub fn load_oracle(path: &Path) -> Result<EngineSpec, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    let doc = toml_edit::ImDocument::parse(text.clone()).ok();
    let raw: toml::Value = toml::from_str(&text).map_err(|e| from_toml_error(&text, path, doc.as_ref(), &e))?;
    let err = |keys: &[&str], message: String| {
        let span = doc.as_ref().and_then(|d| span_of(d, keys));
        let (line, column) = span.map(|s| line_col(&text, s.start)).unzip();
        ConfigError { file: path.to_path_buf(), line, column, key: Some(keys.join(".")), message }
    };
    let Some(oracle) = raw.get("oracle") else {
        return Err(ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: Some("oracle".into()),
            message: "no [oracle] table (the engine and its settings)".into(),
        });
    };
    parse_oracle(&text, path, doc.as_ref(), oracle, &err)
}

/// Limits of the configuration that are not limits of the parts it configures (those
/// live with the parts: `autopipe_build::limits`, `autopipe_md::stability::limits`).
pub mod limits {
    /// `run.name`: at most this many characters.
    pub const MAX_NAME_CHARS: usize = 100;
    /// `explore.temperatures_k`: `1 ..= autopipe_md::stability::limits::MAX_TEMPERATURE_K`.
    pub const MIN_EXPLORE_TEMPERATURE_K: f64 = 1.0;
    /// `explore.steps` per segment.
    pub const MAX_EXPLORE_STEPS: u64 = 10_000_000;
    /// `explore.max_frames_per_segment`.
    pub const MAX_FRAMES_PER_SEGMENT: usize = 100_000;
    /// `explore.gamma_select`, `explore.gamma_break`: finite, `1 <= select < break <= 1e6`.
    pub const MAX_GAMMA: f64 = 1e6;
    /// `loop.max_generations`.
    pub const MAX_GENERATIONS: u32 = 1000;
    /// `loop.per_generation`.
    pub const MAX_PER_GENERATION: usize = 100_000;
    /// `execution.workers`.
    pub const MAX_WORKERS: usize = 4096;
    /// `execution.walltime_s`: 30 days.
    pub const MAX_WALLTIME_S: f64 = 30.0 * 86400.0;
    /// `execution.max_physics_retries`, `execution.max_infra_retries`.
    pub const MAX_RETRIES: u32 = 100;
    /// `potential.twojmax`.
    pub const TWOJMAX: (usize, usize) = (2, 12);
    /// `potential.cutoff_a`, exclusive.
    pub const CUTOFF_A: (f64, f64) = (1.0, 15.0);
    /// `potential.radii.*`: `0 < r <= 1` (the pair cutoff is `cutoff_a * (r_i + r_j)`).
    pub const MAX_RADIUS: f64 = 1.0;
    /// `potential.weights.*`: `0 < w <= 1000`.
    pub const MAX_WEIGHT: f64 = 1000.0;
    /// `fit.alpha`: `0 ..= 1`.
    pub const MAX_ALPHA: f64 = 1.0;
    /// `fit.threads`.
    pub const MAX_THREADS: usize = 4096;
    /// `fit.batch_frames`.
    pub const MAX_BATCH_FRAMES: usize = 100_000;
}

/// Parse and validate configuration text; `file` names it in errors. Every value is
/// checked here, before any work starts; an error names the key (dotted path), its
/// 1-based line and column, and the limit it broke.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).ok();
    let raw: RawConfig = toml::from_str(text).map_err(|e| from_toml_error(text, file, doc.as_ref(), &e))?;
    let err = |path: &[&str], message: String| {
        let span = doc.as_ref().and_then(|d| span_of(d, path));
        let (line, column) = span.map(|s| line_col(text, s.start)).unzip();
        ConfigError { file: file.to_path_buf(), line, column, key: Some(path.join(".")), message }
    };
    use autopipe_md::stability::limits as md;

    // ---- [run]
    let name = match &raw.run.name {
        Some(n) => {
            check_name(n).map_err(|m| err(&["run", "name"], m))?;
            n.clone()
        }
        None => {
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
            check_name(&stem).map_err(|m| {
                err(&["run", "name"], format!("not set, and the file name {stem:?} is no run name ({m}); set it"))
            })?;
            stem
        }
    };
    let seed = raw.run.seed.unwrap_or(42);

    // ---- [system]
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

    // ---- [generate]: the limits are BulkRecipe::validate's.
    let g = &raw.generate;
    let lattice = Lattice::parse(&g.lattice).ok_or_else(|| {
        err(
            &["generate", "lattice"],
            format!("unknown lattice {:?}; expected one of sc, fcc, bcc, hcp, diamond", g.lattice),
        )
    })?;
    let lattice_constant_a = match g.lattice_constant_a {
        Some(a) => a,
        None => default_lattice_constant_a(elements[0], lattice).ok_or_else(|| {
            err(
                &["generate", "lattice_constant_a"],
                format!("no default for {} {}; set it in Å", elements[0], lattice.name()),
            )
        })?,
    };
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
    generate.validate().map_err(|e| match e.field {
        "elements" => err(&["system", "elements"], e.message),
        "count" => err(&["generate", "structures"], e.message),
        field => err(&["generate", field], e.message),
    })?;
    let elastic_cells = match g.elastic_cells {
        0 => None,
        n if n > 1000 => {
            return Err(err(&["generate", "elastic_cells"], format!("{n} is more than 1000 cells")));
        }
        n => {
            let e = g.elastic_max_strain;
            if !(e.is_finite() && e > 0.0 && e <= 0.05) {
                return Err(err(
                    &["generate", "elastic_max_strain"],
                    format!("{e} is outside (0, 0.05]: elastic strains are small"),
                ));
            }
            Some(BulkRecipe {
                supercell: [1, 1, 1],
                count: n,
                max_strain: e,
                rattle_a: 0.0,
                vacancy_fraction: 0.0,
                seed: seed ^ 0x0065_6c61_7374_6963, // "elastic" in ASCII: a stream of its own
                ..generate.clone()
            })
        }
    };
    let config_dir = file.parent().unwrap_or(Path::new("."));
    let recipes = crate::generate::parse_generation0(
        &g.recipe,
        g.screen.as_ref(),
        g.structures,
        &elements,
        config_dir,
        (g.max_strain, g.rattle_a),
    )
    .map_err(|e| {
        let span = doc.as_ref().and_then(|d| crate::generate::span_of_path(d, &e.path));
        let (line, column) = span.map(|s| line_col(text, s.start)).unzip();
        let key = e.path.iter().map(|p| if p.parse::<usize>().is_ok() { format!("[{p}]") } else { format!(".{p}") });
        let key = key.collect::<String>().trim_start_matches('.').to_string();
        ConfigError { file: file.to_path_buf(), line, column, key: Some(key), message: e.message }
    })?;

    // ---- [oracle]
    let oracle = parse_oracle(text, file, doc.as_ref(), &raw.oracle, &err)?;
    for e in &elements {
        let probe = autopipe_atoms::Structure {
            cell_a: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            positions_a: vec![[0.0; 3]],
            species: vec![*e],
            pbc: [true; 3],
        };
        oracle.check_structure(&probe).map_err(|m| err(&["oracle", "engine"], m))?;
    }

    // ---- [execution]
    let x = &raw.execution;
    let Some(kind) = autopipe_exec::BackendKind::parse(&x.backend) else {
        return Err(err(
            &["execution", "backend"],
            format!("unknown backend {:?}; one of \"local\", \"slurm\", \"flux\"", x.backend),
        ));
    };
    let backend =
        autopipe_exec::BackendSettings { kind, slurm: x.slurm.clone(), flux: x.flux.clone(), poll_s: x.poll_s };
    if let Err(message) = backend.validate() {
        // "slurm.partition = ...": the key is the first word.
        let key = message.split([' ', ':']).next().unwrap_or("").to_string();
        let path: Vec<&str> = std::iter::once("execution").chain(key.split('.')).collect();
        return Err(err(&path, message));
    }
    if x.workers == 0 || x.workers > limits::MAX_WORKERS {
        return Err(err(
            &["execution", "workers"],
            format!("{} is not between 1 and {}", x.workers, limits::MAX_WORKERS),
        ));
    }
    if !(x.walltime_s.is_finite() && x.walltime_s > 0.0 && x.walltime_s <= limits::MAX_WALLTIME_S) {
        return Err(err(
            &["execution", "walltime_s"],
            format!("{} s: must be > 0 and <= {} s (30 days)", x.walltime_s, limits::MAX_WALLTIME_S),
        ));
    }
    for (key, n) in [("max_physics_retries", x.max_physics_retries), ("max_infra_retries", x.max_infra_retries)] {
        if n > limits::MAX_RETRIES {
            return Err(err(&["execution", key], format!("{n} is outside 0 ..= {}", limits::MAX_RETRIES)));
        }
    }
    if !(x.failure_tolerance.is_finite() && (0.0..=1.0).contains(&x.failure_tolerance)) {
        return Err(err(&["execution", "failure_tolerance"], format!("{} is outside 0 ..= 1", x.failure_tolerance)));
    }
    let execution = ExecutionConfig {
        backend,
        workers: x.workers,
        walltime_s: x.walltime_s,
        max_physics_retries: x.max_physics_retries,
        max_infra_retries: x.max_infra_retries,
        failure_tolerance: x.failure_tolerance,
    };

    // ---- [potential]
    let p = &raw.potential;
    let (j_lo, j_hi) = limits::TWOJMAX;
    if !(j_lo..=j_hi).contains(&p.twojmax) {
        return Err(err(&["potential", "twojmax"], format!("{} is outside {j_lo} ..= {j_hi}", p.twojmax)));
    }
    let (c_lo, c_hi) = limits::CUTOFF_A;
    if !(p.cutoff_a.is_finite() && p.cutoff_a > c_lo && p.cutoff_a < c_hi) {
        return Err(err(&["potential", "cutoff_a"], format!("{} Å is outside {c_lo} .. {c_hi} Å", p.cutoff_a)));
    }
    if !(p.rfac0.is_finite() && p.rfac0 > 0.0 && p.rfac0 <= 1.0) {
        return Err(err(&["potential", "rfac0"], format!("{} must be > 0 and <= 1", p.rfac0)));
    }
    for (key, map, max) in [("radii", &p.radii, limits::MAX_RADIUS), ("weights", &p.weights, limits::MAX_WEIGHT)] {
        if let Some(bad) = map.keys().find(|k| !raw.system.elements.contains(k)) {
            return Err(err(&["potential", key, bad], format!("{bad} is not one of system.elements")));
        }
        if let Some((k, v)) = map.iter().find(|(_, v)| !(v.is_finite() && **v > 0.0 && **v <= max)) {
            return Err(err(&["potential", key, k], format!("{v} must be > 0 and <= {max}")));
        }
    }
    let radius = |e: &Element| p.radii.get(e.symbol()).copied().unwrap_or(0.5);
    let min_pair_cutoff_a = elements.iter().map(radius).fold(f64::INFINITY, f64::min) * 2.0 * p.cutoff_a;
    if !(p.rmin0_a.is_finite() && p.rmin0_a >= 0.0 && p.rmin0_a < min_pair_cutoff_a) {
        return Err(err(
            &["potential", "rmin0_a"],
            format!("{} Å must be >= 0 and below the smallest pair cutoff, {min_pair_cutoff_a} Å", p.rmin0_a),
        ));
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
                radius: radius(e),
                weight: p.weights.get(e.symbol()).copied().unwrap_or(1.0),
            })
            .collect(),
    };
    snap.validate().map_err(|e| err(&["potential"], e.to_string()))?;
    let pace = crate::pace_job::pace_config(&p.kind, p.pace.clone(), &elements)
        .map_err(|(keys, m)| err(&keys.iter().map(String::as_str).collect::<Vec<_>>(), m))?;

    // ---- [fit]
    let mut fit = raw.fit.clone().unwrap_or_default();
    check_fit(&fit).map_err(|(key, m)| err(&["fit", key], m))?;
    for (name, g) in &fit.groups {
        for (key, w) in
            [("energy_weight", g.energy_weight), ("force_weight", g.force_weight), ("stress_weight", g.stress_weight)]
        {
            if let Some(w) = w {
                if !(w.is_finite() && w >= 0.0) {
                    return Err(err(&["fit", "groups", name, key], format!("{w}: a weight must be >= 0 and finite")));
                }
            }
        }
        if let Some(t) = g.test_fraction {
            if !(t.is_finite() && (0.0..1.0).contains(&t)) {
                return Err(err(&["fit", "groups", name, "test_fraction"], format!("{t} is outside 0 ..< 1")));
            }
        }
    }
    // ---- [potential.reference]
    if let Some(r) = &p.reference {
        match (r.zbl_inner_a, r.zbl_outer_a) {
            (None, None) => {}
            (Some(inner), Some(outer)) => {
                let z = autopipe_potential::ZblReference { inner_a: inner, outer_a: outer };
                z.validate().map_err(|m| err(&["potential", "reference", "zbl_outer_a"], m))?;
                if outer > 20.0 {
                    return Err(err(&["potential", "reference", "zbl_outer_a"], format!("{outer} Å is above 20 Å")));
                }
                fit.reference = Some(z);
            }
            (Some(_), None) => {
                return Err(err(&["potential", "reference", "zbl_inner_a"], "zbl_outer_a is missing".into()))
            }
            (None, Some(_)) => {
                return Err(err(&["potential", "reference", "zbl_outer_a"], "zbl_inner_a is missing".into()))
            }
        }
        for (el, e) in &r.atom_energies_ev {
            if !raw.system.elements.contains(el) {
                return Err(err(
                    &["potential", "reference", "atom_energies_ev", el],
                    format!("{el} is not one of system.elements"),
                ));
            }
            if !e.is_finite() {
                return Err(err(&["potential", "reference", "atom_energies_ev", el], format!("{e} is not finite")));
            }
        }
        fit.reference_energies_ev = r.atom_energies_ev.clone();
    }

    // ---- [explore]: the MD limits are autopipe_md's.
    let ex = &raw.explore;
    let t_lo = limits::MIN_EXPLORE_TEMPERATURE_K;
    let t_hi = md::MAX_TEMPERATURE_K;
    if ex.temperatures_k.is_empty() {
        return Err(err(&["explore", "temperatures_k"], "needs one or more temperatures in K".into()));
    }
    if let Some((i, t)) =
        ex.temperatures_k.iter().enumerate().find(|(_, t)| !(t.is_finite() && (t_lo..=t_hi).contains(*t)))
    {
        return Err(err(
            &["explore", "temperatures_k"],
            format!("{t} K (number {}) is outside {t_lo} ..= {t_hi} K", i + 1),
        ));
    }
    let (p_lo, p_hi) = md::PRESSURE_GPA;
    if let Some((i, p)) =
        ex.pressures_gpa.iter().enumerate().find(|(_, p)| !(p.is_finite() && (p_lo..=p_hi).contains(*p)))
    {
        return Err(err(
            &["explore", "pressures_gpa"],
            format!("{p} GPa (number {}) is outside {p_lo} ..= {p_hi} GPa", i + 1),
        ));
    }
    let dt_hi = md::MAX_TIMESTEP_FS;
    if !(ex.timestep_fs.is_finite() && ex.timestep_fs > 0.0 && ex.timestep_fs <= dt_hi) {
        return Err(err(&["explore", "timestep_fs"], format!("{} fs: must be > 0 and <= {dt_hi} fs", ex.timestep_fs)));
    }
    if ex.steps == 0 || ex.steps > limits::MAX_EXPLORE_STEPS {
        return Err(err(&["explore", "steps"], format!("{} is outside 1 ..= {}", ex.steps, limits::MAX_EXPLORE_STEPS)));
    }
    if ex.sample_every == 0 || ex.sample_every > ex.steps {
        return Err(err(
            &["explore", "sample_every"],
            format!("{} is outside 1 ..= explore.steps ({})", ex.sample_every, ex.steps),
        ));
    }
    let f_hi = md::MAX_FRICTION_PER_FS;
    if !(ex.friction_per_fs.is_finite() && ex.friction_per_fs > 0.0 && ex.friction_per_fs <= f_hi) {
        return Err(err(
            &["explore", "friction_per_fs"],
            format!("{} /fs: must be > 0 and <= {f_hi} /fs", ex.friction_per_fs),
        ));
    }
    let g_hi = limits::MAX_GAMMA;
    if !(ex.gamma_select.is_finite() && ex.gamma_select >= 1.0 && ex.gamma_select < g_hi) {
        return Err(err(&["explore", "gamma_select"], format!("{} is outside 1 .. {g_hi}", ex.gamma_select)));
    }
    if !(ex.gamma_break.is_finite() && ex.gamma_break > ex.gamma_select && ex.gamma_break <= g_hi) {
        return Err(err(
            &["explore", "gamma_break"],
            format!("{} must be above explore.gamma_select ({}) and <= {g_hi}", ex.gamma_break, ex.gamma_select),
        ));
    }
    if ex.max_frames_per_segment == 0 || ex.max_frames_per_segment > limits::MAX_FRAMES_PER_SEGMENT {
        return Err(err(
            &["explore", "max_frames_per_segment"],
            format!("{} is outside 1 ..= {}", ex.max_frames_per_segment, limits::MAX_FRAMES_PER_SEGMENT),
        ));
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
        max_frames_per_segment: ex.max_frames_per_segment,
        engine: ex.engine,
        lammps_command: ex.lammps_command.clone(),
        start_file: None,
        extract_above_atoms: ex.extract_above_atoms,
        extract_buffer_a: ex.extract_buffer_a,
    };
    let explore = crate::lammps_explore::check_explore_extras(explore, ex.start_file.as_deref(), file, &elements)
        .map_err(|(key, m)| err(&["explore", key], m))?;

    // ---- [loop]
    let l = &raw.loop_;
    if l.max_generations == 0 || l.max_generations > limits::MAX_GENERATIONS {
        return Err(err(
            &["loop", "max_generations"],
            format!("{} is outside 1 ..= {}", l.max_generations, limits::MAX_GENERATIONS),
        ));
    }
    if l.per_generation == 0 || l.per_generation > limits::MAX_PER_GENERATION {
        return Err(err(
            &["loop", "per_generation"],
            format!("{} is outside 1 ..= {}", l.per_generation, limits::MAX_PER_GENERATION),
        ));
    }
    for (key, v, unit) in [
        ("target_force_rmse_ev_per_a", l.target_force_rmse_ev_per_a, "eV/Å"),
        ("target_energy_rmse_mev_per_atom", l.target_energy_rmse_mev_per_atom, "meV/atom"),
    ] {
        if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(err(&["loop", key], format!("{v} {unit}: a target must be a positive number of {unit}")));
        }
    }
    let loop_ = LoopConfig {
        max_generations: l.max_generations,
        per_generation: l.per_generation,
        target_force_rmse_ev_per_a: l.target_force_rmse_ev_per_a,
        target_energy_rmse_mev_per_atom: l.target_energy_rmse_mev_per_atom,
    };

    let goals = crate::goals::parse_goals(raw.goals.as_ref(), &generate, seed, explore.timestep_fs, &err)?;
    if p.kind == "pace" {
        crate::pace_loop::check_pace_config(&fit, &explore, &goals).map_err(|(keys, m)| err(&keys, m))?;
    }

    Ok(Config {
        file: file.to_path_buf(),
        name,
        seed,
        elements,
        generate,
        recipes,
        elastic_cells,
        oracle,
        execution,
        snap,
        potential_kind: p.kind.clone(),
        pace,
        fit,
        explore,
        loop_,
        goals,
    })
}

/// A run name: the name of its directory and of its database rows.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > limits::MAX_NAME_CHARS {
        return Err(format!("{} characters: at most {}", name.chars().count(), limits::MAX_NAME_CHARS));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '/' || *c == '\\') {
        return Err(format!("{name:?} contains {c:?}; a name has no '/', '\\' or control characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a name"));
    }
    Ok(())
}

/// The `[fit]` options: `(key, message)` of the first bad one.
fn check_fit(fit: &FitOptions) -> Result<(), (&'static str, String)> {
    for (key, w) in
        [("energy_weight", fit.energy_weight), ("force_weight", fit.force_weight), ("stress_weight", fit.stress_weight)]
    {
        if !(w.is_finite() && w >= 0.0) {
            return Err((key, format!("{w}: a weight must be >= 0 and finite")));
        }
    }
    if fit.energy_weight == 0.0 && fit.force_weight == 0.0 {
        return Err((
            "force_weight",
            "energy_weight and force_weight are both 0: nothing to fit (stresses alone do not determine a potential)"
                .into(),
        ));
    }
    if !(fit.alpha.is_finite() && (0.0..=limits::MAX_ALPHA).contains(&fit.alpha)) {
        return Err(("alpha", format!("{} is outside 0 ..= {}", fit.alpha, limits::MAX_ALPHA)));
    }
    if !(fit.test_fraction.is_finite() && (0.0..1.0).contains(&fit.test_fraction)) {
        return Err(("test_fraction", format!("{} is outside 0 ..< 1", fit.test_fraction)));
    }
    if !fit.active_set {
        return Err((
            "active_set",
            "must be true: the loop selects frames by their extrapolation grade, which needs the active set".into(),
        ));
    }
    if !(fit.rank_rtol.is_finite() && fit.rank_rtol > 0.0 && fit.rank_rtol < 1.0) {
        return Err(("rank_rtol", format!("{} is outside 0 .. 1 (exclusive)", fit.rank_rtol)));
    }
    if fit.threads > limits::MAX_THREADS {
        return Err(("threads", format!("{} is outside 0 ..= {} (0: all cores)", fit.threads, limits::MAX_THREADS)));
    }
    if fit.folds == 1 || fit.folds > 100 {
        return Err(("folds", format!("{} is outside 2 ..= 100 (0: no cross-validation)", fit.folds)));
    }
    if fit.batch_frames == 0 || fit.batch_frames > limits::MAX_BATCH_FRAMES {
        return Err(("batch_frames", format!("{} is outside 1 ..= {}", fit.batch_frames, limits::MAX_BATCH_FRAMES)));
    }
    let m = &fit.maxvol;
    if !(m.coarse_tol.is_finite() && m.coarse_tol >= 1.0) {
        return Err(("maxvol", format!("coarse_tol = {} must be >= 1 and finite", m.coarse_tol)));
    }
    if !(m.fine_tol.is_finite() && m.fine_tol >= 1.0 && m.fine_tol <= m.coarse_tol) {
        return Err(("maxvol", format!("fine_tol = {} must be >= 1 and <= coarse_tol ({})", m.fine_tol, m.coarse_tol)));
    }
    if m.max_swaps_per_column == 0 {
        return Err(("maxvol", "max_swaps_per_column must be at least 1".into()));
    }
    if !(m.rank_rtol.is_finite() && m.rank_rtol > 0.0 && m.rank_rtol < 1.0) {
        return Err(("maxvol", format!("rank_rtol = {} is outside 0 .. 1 (exclusive)", m.rank_rtol)));
    }
    if !(m.residual_tol.is_finite() && m.residual_tol > 0.0) {
        return Err(("maxvol", format!("residual_tol = {} must be > 0 and finite", m.residual_tol)));
    }
    Ok(())
}

const ENGINES: [&str; 7] = ["emt", "command", "qe", "cp2k", "orca", "vasp", "ase"];

/// The `[oracle]` table as an engine. Keys that are not settings of the chosen engine
/// are errors at their line (serde alone does not refuse them for `engine = "emt"`, and
/// reports errors inside a tagged enum without a place); the settings of each engine are
/// first read on their own from the file text, so an error points at its key.
fn parse_oracle(
    text: &str,
    file: &Path,
    doc: Option<&toml_edit::ImDocument<String>>,
    raw: &toml::Value,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<EngineSpec, ConfigError> {
    let Some(table) = raw.as_table() else {
        return Err(err(&["oracle"], "must be a table with a key `engine`".into()));
    };
    let engine = match table.get("engine") {
        None => {
            return Err(err(
                &["oracle"],
                "missing key `engine` (one of \"emt\", \"command\", \"qe\", \"cp2k\", \"orca\", \"vasp\", \"ase\")".into(),
            ))
        }
        Some(toml::Value::String(e)) if ENGINES.contains(&e.as_str()) => e.as_str(),
        Some(other) => {
            return Err(err(
                &["oracle", "engine"],
                format!(
                "unknown engine {other}; expected one of \"emt\", \"command\", \"qe\", \"cp2k\", \"orca\", \"vasp\", \"ase\""
            ),
            ))
        }
    };
    // Keys in the file's order (the first stray one is reported).
    let keys: Vec<String> = match doc.and_then(|d| d.get("oracle")).and_then(|i| i.as_table_like()) {
        Some(t) => t.iter().map(|(k, _)| k.to_string()).collect(),
        None => table.keys().cloned().collect(),
    };
    if engine == "emt" {
        if let Some(k) = keys.iter().find(|k| *k != "engine") {
            let owners: Vec<String> = ENGINES[1..]
                .iter()
                .filter(|e| {
                    let Some(value) = table.get(k.as_str()) else { return false };
                    let mut probe = toml::Table::new();
                    probe.insert("engine".into(), toml::Value::String(e.to_string()));
                    probe.insert(k.clone(), value.clone());
                    let r: Result<EngineSpec, _> = toml::Value::Table(probe).try_into();
                    r.err().is_none_or(|e| !e.message().contains("unknown field"))
                })
                .map(|e| format!("{e:?}"))
                .collect();
            let hint = match owners.is_empty() {
                true => String::new(),
                false => format!("; it is a setting of engine {}", owners.join(", ")),
            };
            return Err(err(
                &["oracle", k],
                format!("`{k}` is not a setting of engine \"emt\", which takes none (remove it){hint}"),
            ));
        }
    } else if let Some(blanked) = doc.and_then(|d| without_engine_key(text, d)) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct CommandSettings {
            command: String,
            #[serde(default)]
            label_params: serde_json::Map<String, serde_json::Value>,
        }
        let checked = match engine {
            "command" => check_oracle_section::<CommandSettings>(&blanked),
            "qe" => check_oracle_section::<autopipe_engines::qe::QeSettings>(&blanked),
            "cp2k" => check_oracle_section::<autopipe_engines::cp2k::Cp2kSettings>(&blanked),
            "orca" => check_oracle_section::<autopipe_engines::orca::OrcaSettings>(&blanked),
            "ase" => check_oracle_section::<autopipe_engines::ase_bridge::AseSettings>(&blanked),
            _ => check_oracle_section::<autopipe_engines::vasp::VaspSettings>(&blanked),
        };
        if let Err(e) = checked {
            let mut e = from_toml_error(text, file, doc, &e);
            if e.key.as_deref().is_none_or(|k| !k.starts_with("oracle")) {
                e.key = Some("oracle".into());
            }
            if e.message.starts_with("unknown field") {
                let k = e.key.clone().unwrap_or_default();
                e.message = format!("not a setting of engine {engine:?} ({})", e.message);
                e.key = Some(k);
            }
            return Err(e);
        }
    }
    raw.clone().try_into().map_err(|e: toml::de::Error| err(&["oracle"], e.message().to_string()))
}

/// Deserialize `T` from the `[oracle]` table of `text` (other tables ignored).
fn check_oracle_section<T: serde::de::DeserializeOwned>(text: &str) -> Result<(), toml::de::Error> {
    #[derive(Deserialize)]
    struct Section<T> {
        #[allow(dead_code)]
        oracle: T,
    }
    toml::from_str::<Section<T>>(text).map(|_| ())
}

/// The text with `engine = "..."` of a standard `[oracle]` table blanked out (spaces,
/// so that every other offset stays), for reading the engine's settings on their own.
fn without_engine_key(text: &str, doc: &toml_edit::ImDocument<String>) -> Option<String> {
    let table = doc.get("oracle")?.as_table()?;
    let (key, value) = table.get_key_value("engine")?;
    let (start, end) = (key.span()?.start, value.span()?.end);
    if start > end || end > text.len() || text[start..end].contains('\n') {
        return None;
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes[start..end].fill(b' ');
    String::from_utf8(bytes).ok()
}

/// The ground-state lattice of the elements [`default_lattice_constant_a`] knows.
pub fn natural_lattice(e: Element) -> Option<Lattice> {
    default_lattice_constant_a(e, Lattice::Fcc)?;
    Some(lattice_of(e))
}

fn lattice_of(e: Element) -> Lattice {
    match e.symbol() {
        "W" | "Ta" | "Fe" | "Mo" => Lattice::Bcc,
        "Si" | "C" => Lattice::Diamond,
        _ => Lattice::Fcc,
    }
}

/// Experimental lattice constants (Å) for the elements EMT knows, in their ground-state
/// lattice (and the same value for other lattices of these elements as a start).
pub fn default_lattice_constant_a(e: Element, lattice: Lattice) -> Option<f64> {
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
    let natural = lattice_of(e);
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

/// The span of the key at a dotted path (or of the deepest table found): the line of
/// the key is the line of the error.
fn span_of(doc: &toml_edit::ImDocument<String>, path: &[&str]) -> Option<Range<usize>> {
    let mut item = doc.as_item();
    let mut best = None;
    for key in path {
        let Some((k, next)) = item.as_table_like().and_then(|t| t.get_key_value(key)) else { break };
        item = next;
        if let Some(span) = k.span().or_else(|| item.span()) {
            best = Some(span);
        }
    }
    best
}

/// The dotted path of the deepest key whose key or value contains `offset`.
fn path_at(doc: &toml_edit::ImDocument<String>, offset: usize) -> Vec<String> {
    fn visit(item: &toml_edit::Item, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
        let Some(table) = item.as_table_like() else { return };
        for (name, _) in table.iter() {
            let Some((key, value)) = table.get_key_value(name) else { continue };
            path.push(name.to_string());
            let inside =
                |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1));
            if (inside(key.span()) || inside(value.span())) && path.len() > best.len() {
                *best = path.clone();
            }
            visit(value, offset, path, best);
            path.pop();
        }
    }
    let mut best = Vec::new();
    visit(doc.as_item(), offset, &mut Vec::new(), &mut best);
    best
}

fn from_toml_error(
    text: &str,
    file: &Path,
    doc: Option<&toml_edit::ImDocument<String>>,
    e: &toml::de::Error,
) -> ConfigError {
    let span = e.span();
    let (mut line, mut column) = span.clone().map(|s| line_col(text, s.start)).unzip();
    let message = e.message().trim().to_string();
    let named = |prefix: &str| message.split('`').nth(1).filter(|_| message.starts_with(prefix)).map(str::to_string);
    let mut key = match (doc, &span) {
        (Some(d), Some(s)) => {
            let mut path = path_at(d, s.start);
            if let Some(field) = named("missing field").or_else(|| named("unknown field")) {
                if path.last() != Some(&field) {
                    path.push(field);
                }
            }
            (!path.is_empty()).then(|| path.join("."))
        }
        _ => None,
    };
    if key.is_none() {
        key = span.and_then(|s| key_at(text, s.start, &message)).or_else(|| named("missing field"));
    }
    // An unknown key: point at the key itself.
    if let (Some(d), Some(k), true) = (doc, &key, message.starts_with("unknown field")) {
        let path: Vec<&str> = k.split('.').collect();
        if let Some(s) = span_of(d, &path) {
            (line, column) = Some(line_col(text, s.start)).unzip();
        }
    }
    ConfigError { file: file.to_path_buf(), line, column, key, message }
}

/// The name of a table header line (`[a.b]   # comment` -> `a.b`).
fn header_name(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix('[')?;
    if rest.starts_with('[') {
        return None;
    }
    let end = rest.find(']')?;
    Some(rest[..end].trim().to_string())
}

/// The dotted key an error at `offset` is about, from the text alone (when the file is
/// not valid TOML): the table header above it, and the key on its line (or the field a
/// "missing field" message names).
fn key_at(text: &str, offset: usize, message: &str) -> Option<String> {
    let line_start = text[..offset.min(text.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let named = |prefix: &str| message.split('`').nth(1).filter(|_| message.starts_with(prefix)).map(str::to_string);
    if let Some(table) = header_name(line) {
        return Some(match named("missing field") {
            Some(field) => format!("{table}.{field}"),
            None => table,
        });
    }
    let table = text[..line_start].lines().rev().find_map(header_name);
    let field = named("unknown field")
        .or_else(|| named("missing field"))
        .or_else(|| line.split('#').next().and_then(|l| l.split_once('=')).map(|(k, _)| k.trim().to_string()))?;
    Some(match table {
        Some(t) => format!("{t}.{field}"),
        None => field,
    })
}
