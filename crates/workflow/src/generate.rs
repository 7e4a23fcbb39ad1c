//! Generation 0 from recipes: `[[generate.recipe]]` tables (the options of `autopipe
//! build`), a screened pool, and farthest-point selection of `[generate] structures` of
//! it, seeded with the labels the run already has.
//!
//! ```toml
//! [generate]
//! structures = 12                 # picked from the pool
//! [generate.screen]               # optional; these are the defaults
//! min_distance_fraction = 0.6
//! surrogate = "emt"               # or "model:FILE", "ase:IMPORT.PATH" (none by default)
//! [[generate.recipe]]
//! kind = "sqs"                    # sqs | slab | defects | prototype | file
//! prototype = "fcc"
//! elements = ["Cu,Au"]            # one entry per sublattice; commas mix species (SQS)
//! lattice_constant_a = 3.8
//! supercell = [2, 2, 2]
//! count = 8
//! ```
//!
//! Every recipe is checked at configuration time (the cells are built, SQS problems set
//! up, files read), with errors naming the recipe's key; the structures are made when
//! the loop starts.

use crate::screening::{screen_structures, Surrogate};
use autopipe_atoms::{Element, Structure};
use autopipe_build::defects;
use autopipe_build::screen::ScreenCriteria;
use autopipe_build::sqs::{SqsProblem, Sublattice};
use autopipe_build::{make_supercell, random_strain, rattle, rng_from_seed, strain, Prototype};
use autopipe_potential::{Snap, SnapParams};
use serde::Deserialize;
use std::path::Path;

/// A configuration error of `[generate]`: the key path (`["generate", "recipe", "2",
/// "miller"]`, indices of arrays as numbers) and the message.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateError {
    pub path: Vec<String>,
    pub message: String,
}

/// The recipes of generation 0, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation0 {
    pub recipes: Vec<Recipe>,
    /// How many structures generation 0 labels (picked from the screened pool).
    pub structures: usize,
    pub screen: ScreenCriteria,
    /// `emt`, `model:FILE` or `ase:IMPORT.PATH`, with the bridge's python and kwargs.
    pub surrogate: Option<(String, Option<String>, serde_json::Map<String, serde_json::Value>)>,
}

/// One `[[generate.recipe]]`, as written (validated).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub kind: String,
    /// Structures this recipe adds to the pool.
    #[serde(default = "one")]
    pub count: usize,
    pub prototype: Option<String>,
    /// One entry per sublattice of the prototype; `"Cu,Au"` mixes species (sqs only).
    #[serde(default)]
    pub elements: Vec<String>,
    /// Per sublattice, one fraction per species (sqs; default equal shares).
    pub fractions: Option<Vec<Vec<f64>>>,
    pub lattice_constant_a: Option<f64>,
    pub lattice_constant_c: Option<f64>,
    /// Repetitions of the cell (for slabs: in the surface plane, the third is ignored).
    #[serde(default = "ones")]
    pub supercell: [usize; 3],
    /// `file`: a structure file (extxyz, POSCAR, CIF), relative to the configuration.
    pub path: Option<String>,
    #[serde(default = "three")]
    pub shells: usize,
    #[serde(default = "sqs_steps")]
    pub steps: u64,
    pub miller: Option<[i64; 3]>,
    #[serde(default = "three")]
    pub layers: usize,
    #[serde(default = "vacuum")]
    pub vacuum_a: f64,
    #[serde(default)]
    pub vacancies: bool,
    #[serde(default)]
    pub antisites: bool,
    pub interstitial: Option<String>,
    /// Random strain (Voigt components up to this) and Gaussian rattle (Å) of every
    /// structure; default: `[generate] max_strain` and `rattle_a`.
    pub max_strain: Option<f64>,
    pub rattle_a: Option<f64>,
    /// `file`: the structures read (filled at validation).
    #[serde(skip)]
    pub structures: Vec<Structure>,
}

fn one() -> usize {
    1
}
fn ones() -> [usize; 3] {
    [1, 1, 1]
}
fn three() -> usize {
    3
}
fn sqs_steps() -> u64 {
    20_000
}
fn vacuum() -> f64 {
    8.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScreen {
    min_distance_fraction: Option<f64>,
    surrogate: Option<String>,
    surrogate_python: Option<String>,
    #[serde(default)]
    surrogate_kwargs: serde_json::Map<String, serde_json::Value>,
    max_force_ev_per_a: Option<f64>,
    max_energy_above_median_ev_per_atom: Option<f64>,
}

const KINDS: &str = "sqs, slab, defects, prototype, file";

/// The bases of a recipe: structures the copies are strained and rattled from, with
/// their origin; SQS problems are annealed per copy.
enum Bases {
    Fixed(Vec<(Structure, String)>),
    Sqs(Box<SqsProblem>, u64),
}

fn gerr(index: usize, key: &str, message: String) -> GenerateError {
    let mut path = vec!["generate".to_string(), "recipe".to_string(), index.to_string()];
    if !key.is_empty() {
        path.push(key.to_string());
    }
    GenerateError { path, message }
}

/// Validate `[generate]`'s recipes and screen table (None without recipes). `elements`
/// are the system's; relative `path`s are relative to `config_dir`; `max_strain` and
/// `rattle_a` are the `[generate]` values recipes default to.
pub fn parse_generation0(
    recipes: &[toml::Value],
    screen: Option<&toml::Value>,
    structures: usize,
    elements: &[Element],
    config_dir: &Path,
    defaults: (f64, f64),
) -> Result<Option<Generation0>, GenerateError> {
    if recipes.is_empty() {
        if screen.is_some() {
            return Err(GenerateError {
                path: vec!["generate".into(), "screen".into()],
                message: "screening applies to [[generate.recipe]] pools; there is no recipe".into(),
            });
        }
        return Ok(None);
    }
    let mut out = Vec::new();
    for (i, value) in recipes.iter().enumerate() {
        let mut r: Recipe = value.clone().try_into().map_err(|e: toml::de::Error| {
            let m = e.message().to_string();
            // point at the offending key when serde names it
            let key = m.split('`').nth(1).filter(|_| m.starts_with("unknown field")).unwrap_or("").to_string();
            gerr(i, &key, m)
        })?;
        r.max_strain.get_or_insert(defaults.0);
        r.rattle_a.get_or_insert(defaults.1);
        if let Some(p) = &r.path {
            let path = config_dir.join(p);
            r.structures = read_structure_file(&path).map_err(|m| gerr(i, "path", m))?;
        }
        check_recipe(&r).map_err(|(k, m)| gerr(i, k, m))?;
        let bases = r.bases().map_err(|(k, m)| gerr(i, k, m))?;
        let species: Vec<Element> = match &bases {
            Bases::Fixed(b) => b.iter().flat_map(|(s, _)| s.species.clone()).collect(),
            Bases::Sqs(..) => r.sublattice_species().map_err(|(k, m)| gerr(i, k, m))?.concat(),
        };
        if let Some(e) = species.iter().find(|e| !elements.contains(e)) {
            let key = if r.kind == "file" { "path" } else { "elements" };
            return Err(gerr(i, key, format!("{e} is not one of [system] elements")));
        }
        out.push(r);
    }
    let total: usize = out.iter().map(|r| r.count).sum();
    if total < structures {
        return Err(GenerateError {
            path: vec!["generate".into(), "structures".into()],
            message: format!(
                "{structures} structures are to be picked from a pool of {total} (the recipes' counts); \
                 raise the counts (a pool two or three times larger lets the selection choose)"
            ),
        });
    }
    let mut criteria = ScreenCriteria::default();
    let mut surrogate = None;
    if let Some(v) = screen {
        let s: RawScreen = v.clone().try_into().map_err(|e: toml::de::Error| GenerateError {
            path: vec!["generate".into(), "screen".into()],
            message: e.message().to_string(),
        })?;
        let key = |k: &str| vec!["generate".to_string(), "screen".to_string(), k.to_string()];
        if let Some(x) = s.min_distance_fraction {
            criteria.min_distance_fraction = x;
        }
        if let Some(x) = s.max_force_ev_per_a {
            criteria.max_force_ev_per_a = Some(x);
        }
        if let Some(x) = s.max_energy_above_median_ev_per_atom {
            criteria.max_energy_above_median_ev_per_atom = Some(x);
        }
        criteria.validate().map_err(|(k, m)| GenerateError { path: key(k), message: m })?;
        if let Some(spec) = &s.surrogate {
            if let Some(file) = spec.trim().strip_prefix("model:") {
                if !config_dir.join(file).is_file() {
                    return Err(GenerateError {
                        path: key("surrogate"),
                        message: format!("the model file {} does not exist", config_dir.join(file).display()),
                    });
                }
            } else {
                Surrogate::parse(spec, None, Default::default())
                    .map_err(|m| GenerateError { path: key("surrogate"), message: m })?;
            }
            surrogate = Some((spec.trim().to_string(), s.surrogate_python.clone(), s.surrogate_kwargs.clone()));
        }
    }
    Ok(Some(Generation0 { recipes: out, structures, screen: criteria, surrogate }))
}

fn check_recipe(r: &Recipe) -> Result<(), (&'static str, String)> {
    if !matches!(r.kind.as_str(), "sqs" | "slab" | "defects" | "prototype" | "file") {
        return Err(("kind", format!("unknown kind {:?}; expected one of {KINDS}", r.kind)));
    }
    if r.count == 0 || r.count > autopipe_build::limits::MAX_COUNT {
        return Err(("count", format!("{} is outside 1 ..= {}", r.count, autopipe_build::limits::MAX_COUNT)));
    }
    let m = r.max_strain.unwrap_or(0.0);
    if !(m.is_finite() && (0.0..=autopipe_build::limits::MAX_STRAIN).contains(&m)) {
        return Err(("max_strain", format!("{m} is outside 0 ..= {}", autopipe_build::limits::MAX_STRAIN)));
    }
    let s = r.rattle_a.unwrap_or(0.0);
    if !(s.is_finite() && (0.0..=autopipe_build::limits::MAX_RATTLE_A).contains(&s)) {
        return Err(("rattle_a", format!("{s} Å is outside 0 ..= {} Å", autopipe_build::limits::MAX_RATTLE_A)));
    }
    if let Some(n) = r.supercell.iter().find(|&&n| n == 0 || n > autopipe_build::limits::MAX_SUPERCELL) {
        return Err((
            "supercell",
            format!("{n}: each repetition must be 1 ..= {}", autopipe_build::limits::MAX_SUPERCELL),
        ));
    }
    // keys that belong to other kinds are refused rather than ignored
    let own: &[&str] = match r.kind.as_str() {
        "sqs" => &["prototype", "fractions", "shells", "steps"],
        "slab" => &["prototype", "miller", "layers", "vacuum_a"],
        "defects" => &["prototype", "vacancies", "antisites", "interstitial"],
        "prototype" => &["prototype"],
        _ => &["path"],
    };
    let set: [(&'static str, bool); 11] = [
        ("prototype", r.prototype.is_some()),
        ("path", r.path.is_some()),
        ("fractions", r.fractions.is_some()),
        ("shells", r.shells != 3),
        ("steps", r.steps != sqs_steps()),
        ("miller", r.miller.is_some()),
        ("layers", r.layers != 3),
        ("vacuum_a", r.vacuum_a != vacuum()),
        ("vacancies", r.vacancies),
        ("antisites", r.antisites),
        ("interstitial", r.interstitial.is_some()),
    ];
    if let Some((k, _)) = set.iter().find(|(k, on)| *on && !own.contains(k)) {
        return Err((k, format!("is not a key of kind = {:?}", r.kind)));
    }
    if r.kind == "file" {
        if r.path.is_none() {
            return Err(("path", "kind = \"file\" needs a path".into()));
        }
        if !r.elements.is_empty() || r.lattice_constant_a.is_some() {
            return Err(("elements", "kind = \"file\" takes its atoms from the file".into()));
        }
    } else if r.prototype.is_none() {
        return Err(("prototype", format!("kind = {:?} needs a prototype ({})", r.kind, Prototype::names())));
    }
    if r.kind == "slab" && r.miller.is_none() {
        return Err(("miller", "kind = \"slab\" needs a Miller index, e.g. [1, 1, 1]".into()));
    }
    if r.kind == "defects" && !r.vacancies && !r.antisites && r.interstitial.is_none() {
        return Err((
            "vacancies",
            "kind = \"defects\" needs vacancies = true, antisites = true or interstitial".into(),
        ));
    }
    Ok(())
}

fn parse_element(s: &str) -> Result<Element, (&'static str, String)> {
    Element::from_symbol(s.trim()).ok_or_else(|| ("elements", format!("{s:?} is not a chemical symbol")))
}

impl Recipe {
    fn prototype(&self) -> Result<Prototype, (&'static str, String)> {
        let name = self.prototype.as_deref().unwrap_or_default();
        Prototype::parse(name)
            .ok_or_else(|| ("prototype", format!("unknown prototype {name:?}; expected one of {}", Prototype::names())))
    }

    /// The species of every sublattice.
    fn sublattice_species(&self) -> Result<Vec<Vec<Element>>, (&'static str, String)> {
        let p = self.prototype()?;
        if self.elements.len() != p.n_sublattices() {
            return Err((
                "elements",
                format!(
                    "{} has {} sublattice(s) ({}): give one entry each, not {}",
                    p.name(),
                    p.n_sublattices(),
                    p.sublattice_names(),
                    self.elements.len()
                ),
            ));
        }
        let groups: Vec<Vec<Element>> = self
            .elements
            .iter()
            .map(|g| g.split(',').map(parse_element).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()?;
        if self.kind != "sqs" && groups.iter().any(|g| g.len() != 1) {
            return Err(("elements", "several species on one sublattice need kind = \"sqs\"".into()));
        }
        Ok(groups)
    }

    /// The prototype's cell times the supercell (for slabs: the bare conventional cell).
    fn cell(&self, species: &[Element]) -> Result<Structure, (&'static str, String)> {
        let p = self.prototype()?;
        let a = self.lattice_constant_a.ok_or(("lattice_constant_a", "is needed (Å)".to_string()))?;
        let cell = p.build(species, a, self.lattice_constant_c).map_err(|e| (e.field, e.message))?;
        if self.kind == "slab" {
            return Ok(cell);
        }
        let s = autopipe_build::supercell(&cell, self.supercell);
        if s.len() > autopipe_build::limits::MAX_ATOMS {
            return Err(("supercell", format!("{} atoms, more than {}", s.len(), autopipe_build::limits::MAX_ATOMS)));
        }
        Ok(s)
    }

    fn bases(&self) -> Result<Bases, (&'static str, String)> {
        let fixed = |v: Vec<(Structure, String)>| {
            if v.is_empty() {
                Err(("kind", format!("kind = {:?} gives no structure here", self.kind)))
            } else {
                Ok(Bases::Fixed(v))
            }
        };
        match self.kind.as_str() {
            "file" => {
                let mut out = Vec::new();
                for s in &self.structures {
                    if self.supercell == [1, 1, 1] {
                        // as read (a molecule has no cell to repeat)
                        out.push((s.clone(), "generated:file".to_string()));
                        continue;
                    }
                    let m = [
                        [self.supercell[0] as i64, 0, 0],
                        [0, self.supercell[1] as i64, 0],
                        [0, 0, self.supercell[2] as i64],
                    ];
                    let sc = make_supercell(s, m).map_err(|e| ("supercell", e.message))?.0;
                    out.push((sc, "generated:file".to_string()));
                }
                fixed(out)
            }
            "prototype" => {
                let species: Vec<Element> = self.sublattice_species()?.into_iter().map(|g| g[0]).collect();
                let p = self.prototype()?;
                fixed(vec![(self.cell(&species)?, format!("generated:{}", p.name()))])
            }
            "slab" => {
                let species: Vec<Element> = self.sublattice_species()?.into_iter().map(|g| g[0]).collect();
                let bulk = self.cell(&species)?;
                let hkl = self.miller.expect("checked");
                let slabs = autopipe_build::slab::slabs(&bulk, hkl, self.layers, self.vacuum_a)
                    .map_err(|e| (if e.field == "structure" { "prototype" } else { e.field }, e.message))?;
                let m = [[self.supercell[0] as i64, 0, 0], [0, self.supercell[1] as i64, 0], [0, 0, 1]];
                let mut out = Vec::new();
                for s in slabs {
                    let sc = make_supercell(&s.structure, m).map_err(|e| ("supercell", e.message))?.0;
                    out.push((sc, "generated:slab".to_string()));
                }
                fixed(out)
            }
            "defects" => {
                let species: Vec<Element> = self.sublattice_species()?.into_iter().map(|g| g[0]).collect();
                let s = self.cell(&species)?;
                let sym = defects::symmetry(&s, 1e-3).map_err(|e| ("prototype", e.0))?;
                let mut found = Vec::new();
                if self.vacancies {
                    found.extend(defects::vacancies(&s, &sym));
                }
                if self.antisites {
                    found.extend(defects::antisites(&s, &sym));
                }
                if let Some(e) = &self.interstitial {
                    let e = parse_element(e).map_err(|(_, m)| ("interstitial", m))?;
                    let sites = defects::interstitial_sites(&s, &sym, 0.2, 1.0).map_err(|e| ("interstitial", e.0))?;
                    found.extend(defects::interstitials(&s, &sites, e));
                }
                fixed(found.into_iter().map(|d| (d.structure, format!("generated:{}", d.kind))).collect())
            }
            _ => {
                let groups = self.sublattice_species()?;
                let p = self.prototype()?;
                let placeholder: Vec<Element> = groups.iter().map(|g| g[0]).collect();
                let parent = self.cell(&placeholder)?;
                let fractions = match &self.fractions {
                    Some(f) => f.clone(),
                    None => groups.iter().map(|g| vec![1.0 / g.len() as f64; g.len()]).collect(),
                };
                if fractions.len() != groups.len() || fractions.iter().zip(&groups).any(|(f, g)| f.len() != g.len()) {
                    return Err(("fractions", "one list per sublattice, one fraction per species".into()));
                }
                let sublattices = Sublattice::of_prototype(&parent, p, &groups, &fractions);
                let problem = SqsProblem::new(&parent, &sublattices, self.shells).map_err(|e| (e.field, e.message))?;
                Ok(Bases::Sqs(Box::new(problem), self.steps))
            }
        }
    }
}

/// A per-(recipe, copy) seed.
fn copy_seed(seed: u64, recipe: usize, copy: usize) -> u64 {
    seed ^ ((recipe as u64) << 40 | copy as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The pool: every recipe's `count` structures (strained and rattled copies of its bases,
/// round robin; a fresh SQS per copy), with their origins. Deterministic in `seed`.
pub fn generate_pool(g: &Generation0, seed: u64) -> Result<Vec<(Structure, String)>, String> {
    let mut pool = Vec::new();
    for (i, r) in g.recipes.iter().enumerate() {
        let bases = r.bases().map_err(|(k, m)| format!("generate.recipe[{i}].{k}: {m}"))?;
        for c in 0..r.count {
            let s = copy_seed(seed, i, c);
            let (base, origin) = match &bases {
                Bases::Fixed(b) => b[c % b.len()].clone(),
                Bases::Sqs(problem, steps) => (problem.anneal(*steps, s).structure, "generated:sqs".to_string()),
            };
            let mut rng = rng_from_seed(s.wrapping_add(1));
            let eps = random_strain(&mut rng, r.max_strain.unwrap_or(0.0));
            let strained = strain(&base, eps);
            pool.push((rattle(&strained, r.rattle_a.unwrap_or(0.0), &mut rng), origin));
        }
    }
    Ok(pool)
}

/// Per-structure descriptors for farthest-point selection: the mean SNAP bispectrum per
/// element (zeros for an element a structure lacks), concatenated. Rows of `dim`.
pub fn descriptor_rows(params: &SnapParams, structures: &[&Structure]) -> Result<(Vec<f32>, usize), String> {
    let snap = Snap::new(params).map_err(|e| e.to_string())?;
    let n_el = params.elements.len();
    let mut out = Vec::new();
    let mut dim = 0;
    for (k, s) in structures.iter().enumerate() {
        let d = snap.descriptors(s).map_err(|e| format!("structure {}: {e}", k + 1))?;
        dim = n_el * d.n_columns;
        let mut v = vec![0.0f64; dim];
        let mut n = vec![0usize; n_el];
        for (a, &e) in d.atom_element.iter().enumerate() {
            n[e] += 1;
            for c in 0..d.n_columns {
                v[e * d.n_columns + c] += d.b[a * d.n_columns + c];
            }
        }
        for (e, &ne) in n.iter().enumerate() {
            for x in &mut v[e * d.n_columns..(e + 1) * d.n_columns] {
                *x /= ne.max(1) as f64;
            }
        }
        out.extend(v.iter().map(|&x| x as f32));
    }
    Ok((out, dim))
}

/// What generation 0 chose and how.
#[derive(Clone, Debug)]
pub struct Generation0Outcome {
    /// The picks, with their origins, in pick order.
    pub picked: Vec<(Structure, String)>,
    pub pool: usize,
    /// Rejections by reason (`too_close`, `large_force` ...).
    pub rejected: Vec<(String, usize)>,
}

/// Make the pool, screen it, pick `g.structures` of the kept ones by farthest-point
/// selection on `params`' descriptors, seeded with `labelled`.
pub fn generation0(
    g: &Generation0,
    seed: u64,
    params: &SnapParams,
    labelled: &[Structure],
    config_dir: &Path,
) -> Result<Generation0Outcome, String> {
    let pool = generate_pool(g, seed)?;
    let surrogate = match &g.surrogate {
        None => None,
        Some((spec, python, kwargs)) => {
            let spec = match spec.strip_prefix("model:") {
                Some(file) => format!("model:{}", config_dir.join(file).display()),
                None => spec.clone(),
            };
            Some(Surrogate::parse(&spec, python.as_deref(), kwargs.clone()).map_err(|e| format!("surrogate: {e}"))?)
        }
    };
    let refs: Vec<&Structure> = pool.iter().map(|(s, _)| s).collect();
    let verdicts = screen_structures(&refs, &g.screen, surrogate.as_ref()).map_err(|e| format!("screening: {e}"))?;
    let mut rejected: Vec<(String, usize)> = Vec::new();
    for r in verdicts.iter().filter_map(|v| v.rejection.as_ref()) {
        match rejected.iter_mut().find(|(k, _)| k == r.reason()) {
            Some((_, n)) => *n += 1,
            None => rejected.push((r.reason().to_string(), 1)),
        }
    }
    let kept: Vec<usize> = (0..pool.len()).filter(|&k| verdicts[k].kept()).collect();
    if kept.is_empty() {
        return Err(format!("screening rejected all {} candidates of generation 0 ({rejected:?})", pool.len()));
    }
    let kept_refs: Vec<&Structure> = kept.iter().map(|&k| &pool[k].0).collect();
    let (rows, dim) = descriptor_rows(params, &kept_refs)?;
    let labelled_refs: Vec<&Structure> = labelled.iter().collect();
    let (known, _) = if labelled.is_empty() { (Vec::new(), dim) } else { descriptor_rows(params, &labelled_refs)? };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let picks =
        autopipe_build::select::select_fps(&rows, dim, g.structures, &known, threads).map_err(|e| e.to_string())?;
    let picked = picks.iter().map(|&p| pool[kept[p]].clone()).collect();
    Ok(Generation0Outcome { picked, pool: pool.len(), rejected })
}

/// The span of a key path in the TOML document; a numeric part indexes an array of
/// tables (`[[generate.recipe]]`), whose table is located by its first key.
pub fn span_of_path(doc: &toml_edit::ImDocument<String>, path: &[String]) -> Option<std::ops::Range<usize>> {
    let mut item = doc.as_item();
    let mut best = None;
    let mut rest = path;
    while let Some((key, tail)) = rest.split_first() {
        if let Ok(i) = key.parse::<usize>() {
            let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) else { return best };
            let first = t.iter().next().and_then(|(k, _)| t.get_key_value(k)).and_then(|(k, _)| k.span());
            best = first.or(best);
            if let Some(k) = tail.first() {
                best = t.get_key_value(k).and_then(|(k, _)| k.span()).or(best);
            }
            return best;
        }
        let Some((k, next)) = item.as_table_like().and_then(|t| t.get_key_value(key)) else { break };
        item = next;
        if let Some(span) = k.span().or_else(|| item.span()) {
            best = Some(span);
        }
        rest = tail;
    }
    best
}

/// The structures of a file: CIF (symmetry expanded), POSCAR/CONTCAR (`*.vasp`), or
/// extended XYZ (anything else).
pub fn read_structure_file(path: &Path) -> Result<Vec<Structure>, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let structures = if name.ends_with(".cif") {
        autopipe_atoms::cif::read_cif_file(path).map_err(|e| e.to_string())?.into_iter().map(|(_, s)| s).collect()
    } else if name.contains("poscar") || name.contains("contcar") || name.ends_with(".vasp") {
        vec![autopipe_atoms::poscar::read_poscar_file(path).map_err(|e| e.to_string())?]
    } else {
        let frames = autopipe_atoms::extxyz::read_extxyz_file(path).map_err(|e| e.to_string())?;
        frames.into_iter().map(|f| f.structure).collect::<Vec<_>>()
    };
    if structures.is_empty() {
        return Err(format!("{}: no structures", path.display()));
    }
    for (k, s) in structures.iter().enumerate() {
        s.validate().map_err(|e| format!("{}: structure {}: {e}", path.display(), k + 1))?;
    }
    Ok(structures)
}

/// Generation 0's calculations for the loop: the pool made, screened and selected
/// (seeded with the labels of this run's oracle already in the store), each structure
/// with the origin of its recipe.
pub(crate) fn generation0_calculations(
    g: &Generation0,
    config: &crate::Config,
    store: &autopipe_store::JobStore,
    reporter: &mut dyn crate::LoopReporter,
) -> Result<Vec<autopipe_store::NewCalculation>, crate::RunError> {
    let labelled: Vec<Structure> =
        crate::learn::lineage_labels(config, store)?.iter().map(|l| crate::label_frame(l).structure).collect();
    let config_dir = config.file.parent().unwrap_or(Path::new("."));
    let outcome = generation0(g, config.seed, &config.snap, &labelled, config_dir)
        .map_err(|e| crate::RunError::Input(format!("generation 0: {e}")))?;
    let rejected: Vec<String> = outcome.rejected.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reporter.say(&format!(
        "generation 0: {} candidates from {} recipes, {} rejected by screening{}, {} picked by farthest-point selection",
        outcome.pool,
        g.recipes.len(),
        outcome.rejected.iter().map(|(_, n)| n).sum::<usize>(),
        if rejected.is_empty() { String::new() } else { format!(" ({})", rejected.join(", ")) },
        outcome.picked.len()
    ));
    let mut calcs = Vec::new();
    for (k, (s, origin)) in outcome.picked.into_iter().enumerate() {
        let one =
            crate::new_calculations(vec![s], &origin, 0, &config.oracle, |_| format!("generated structure {}", k + 1))
                .map_err(crate::RunError::Input)?;
        calcs.extend(one);
    }
    Ok(calcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipes(text: &str) -> Vec<toml::Value> {
        let t: toml::Table = toml::from_str(text).unwrap();
        t["recipe"].as_array().unwrap().clone()
    }

    fn cu() -> Vec<Element> {
        vec![Element::from_symbol("Cu").unwrap()]
    }

    #[test]
    fn the_pool_is_screened_then_picked_far_from_the_labelled_set() {
        // strongly rattled fcc Cu: some pairs come closer than 0.6 of the covalent sum
        let r = recipes(
            "[[recipe]]\nkind = \"prototype\"\nprototype = \"fcc\"\nelements = [\"Cu\"]\nlattice_constant_a = 3.61\n\
             supercell = [2, 2, 2]\nrattle_a = 0.25\ncount = 30\n",
        );
        let screen: toml::Value = toml::from_str("surrogate = \"emt\"\nmax_force_ev_per_a = 1e6").unwrap();
        let g = parse_generation0(&r, Some(&screen), 5, &cu(), Path::new("."), (0.0, 0.0)).unwrap().unwrap();
        let cell =
            autopipe_atoms::Frame::from_structure(autopipe_build::bulk(autopipe_build::Lattice::Fcc, cu()[0], 3.61));
        let params = crate::models::default_snap_params(&[cell], 4, 4.0);
        let pool = generate_pool(&g, 7).unwrap();
        assert_eq!(pool.len(), 30);
        let out = generation0(&g, 7, &params, &[], Path::new(".")).unwrap();
        let too_close = pool.iter().filter(|(s, _)| autopipe_build::screen::closest_contact(s, 0.6).is_some()).count();
        assert!(too_close > 0, "the test needs rejections");
        let rejected: usize = out.rejected.iter().map(|(_, n)| n).sum();
        assert!(rejected >= too_close, "{:?} vs {too_close} too close", out.rejected);
        assert_eq!(out.picked.len(), 5);
        for (s, origin) in &out.picked {
            assert_eq!(origin, "generated:fcc");
            assert!(autopipe_build::screen::closest_contact(s, 0.6).is_none(), "a rejected structure was picked");
        }
        // the same again: deterministic; seeded with its own picks, none of them again
        let again = generation0(&g, 7, &params, &[], Path::new(".")).unwrap();
        assert_eq!(
            again.picked.iter().map(|p| &p.0).collect::<Vec<_>>(),
            out.picked.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        let labelled: Vec<Structure> = out.picked.iter().map(|p| p.0.clone()).collect();
        let next = generation0(&g, 7, &params, &labelled, Path::new(".")).unwrap();
        assert!(next.picked.iter().all(|p| !labelled.contains(&p.0)), "a labelled structure was picked again");
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn file_recipes_read_relative_to_the_configuration_and_refuse_foreign_elements() {
        let dir = tempfile::tempdir().unwrap();
        let cu = Element::from_symbol("Cu").unwrap();
        let cell = autopipe_build::bulk(autopipe_build::Lattice::Fcc, cu, 3.61);
        autopipe_atoms::extxyz::write_extxyz_file(
            &dir.path().join("cu.xyz"),
            &[autopipe_atoms::Frame::from_structure(cell.clone())],
        )
        .unwrap();
        let recipe = |text: &str| -> Vec<toml::Value> {
            let t: toml::Table = toml::from_str(text).unwrap();
            t["recipe"].as_array().unwrap().clone()
        };
        let r = recipe(
            "[[recipe]]\nkind = \"file\"\npath = \"cu.xyz\"\nsupercell = [2, 1, 1]\ncount = 3\nrattle_a = 0.02\n",
        );
        let g = parse_generation0(&r, None, 2, &[cu], dir.path(), (0.0, 0.0)).unwrap().unwrap();
        let pool = generate_pool(&g, 1).unwrap();
        assert_eq!(pool.len(), 3);
        assert!(pool.iter().all(|(s, o)| s.len() == 8 && o == "generated:file"));
        assert!((pool[0].0.volume_a3() - 2.0 * cell.volume_a3()).abs() < 1e-9);
        let e =
            parse_generation0(&r, None, 2, &[Element::from_symbol("Au").unwrap()], dir.path(), (0.0, 0.0)).unwrap_err();
        assert_eq!(e.path, ["generate", "recipe", "0", "path"]);
        assert!(e.message.contains("Cu is not one of [system] elements"), "{}", e.message);
        let missing = recipe("[[recipe]]\nkind = \"file\"\npath = \"nope.cif\"\n");
        let e = parse_generation0(&missing, None, 1, &[cu], dir.path(), (0.0, 0.0)).unwrap_err();
        assert_eq!(e.path, ["generate", "recipe", "0", "path"]);
        assert!(e.message.contains("nope.cif"), "{}", e.message);
    }
}
