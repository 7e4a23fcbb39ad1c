//! The run configuration: TOML, strict (unknown keys are errors), read in two stages —
//! raw (what the file says) and validated (what the program runs with). Every error
//! names the file, the line and the key.

use autopipe_atoms::Element;
use autopipe_build::{BulkRecipe, Lattice};
use autopipe_engines::EngineSpec;
use serde::Deserialize;
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
        err(&["generate", "lattice"], format!("unknown lattice {:?}; expected one of sc, fcc, bcc, hcp, diamond", g.lattice))
    })?;
    let lattice_constant_a = match g.lattice_constant_a {
        Some(a) if a.is_finite() && a > 0.5 && a < 50.0 => a,
        Some(a) => return Err(err(&["generate", "lattice_constant_a"], format!("{a} Å is not a plausible lattice constant"))),
        None => default_lattice_constant_a(elements[0], lattice).ok_or_else(|| {
            err(&["generate", "lattice_constant_a"], format!("no default for {} {}; set it in Å", elements[0], lattice.name()))
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
            message = "missing key `engine` (one of \"emt\", \"command\", \"qe\", \"cp2k\")".into();
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
        return Err(err(&["execution", "backend"], format!("unknown backend {:?}; this version runs \"local\"", x.backend)));
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
    let name = raw
        .run
        .name
        .clone()
        .unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into()));
    Ok(Config { file: file.to_path_buf(), name, seed, elements, generate, oracle, execution })
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
    let key = span.and_then(|s| key_at(text, s.start, &message)).or_else(|| {
        message.strip_prefix("missing field `").and_then(|m| m.split('`').next()).map(str::to_string)
    });
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
    let named = |prefix: &str| {
        message.split('`').nth(1).filter(|_| message.starts_with(prefix)).map(str::to_string)
    };
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
