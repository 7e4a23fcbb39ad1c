//! VASP: settings, input writers (POSCAR, INCAR, KPOINTS, POTCAR assembly) and output
//! parsers (`vasprun.xml`, `OUTCAR`).
//!
//! Everything here is pure: text in, values out. The only file access, reading POTCARs,
//! is injected into [`assemble_potcar`] as a closure.
//!
//! Units: VASP prints eV, eV/Å and the stress in kbar. Stress sign: VASP's stress tensor
//! (vasprun `<varray name="stress">`, OUTCAR `in kB`) is positive for a compressed cell
//! (positive pressure), while ASE's stress is positive for a cell under tension. ASE's
//! readers (`ase.io.vasp.read_vasp_xml`: `stress *= -0.1 * GPa`, Voigt order
//! `[0, 4, 8, 5, 2, 1]`; the OUTCAR `in kB` parser likewise negates) therefore use
//! `ASE stress = -VASP stress × 0.1 GPa`, which is what we do here.

use crate::job_dir::remove_stale_outputs;
use crate::output::{
    crashed_output, describe_exit, fortran_f64, join_msg, judge_exit, max_force, not_text_reason, tail_lines, voigt,
    ParseError, ParsedOutput, RunError, RunStatus,
};
use autopipe_atoms::structure::{cross, dot, norm};
use autopipe_atoms::units::KBAR_IN_EV_PER_A3;

/// kbar (VASP's stress unit) -> eV/Å³: 1 kbar = 1e8 Pa and 1 eV/Å³ = e·1e30 Pa, with the
/// exact SI elementary charge (CODATA 2018), i.e. 1/1602.176634.
pub const VASP_KBAR_TO_EV_PER_A3: f64 = KBAR_IN_EV_PER_A3;
use autopipe_atoms::{Element, Structure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

/// Settings of a VASP calculation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VaspSettings {
    /// Plane-wave cutoff (eV).
    pub encut: Option<f64>,
    /// SCF convergence (eV).
    pub ediff: Option<f64>,
    pub ismear: Option<i32>,
    /// Smearing width (eV).
    pub sigma: Option<f64>,
    /// Maximum number of electronic steps.
    pub nelm: Option<u32>,
    pub ibrion: Option<i32>,
    pub nsw: Option<u32>,
    pub isif: Option<u32>,
    /// Any other INCAR tags (name -> value: numbers, booleans, strings).
    /// A tag may not be set both here and in a typed field.
    pub incar: BTreeMap<String, serde_json::Value>,
    /// k-point spacing in 1/Å *including* 2π (ASE's / VASP's KSPACING convention):
    /// `N_i = max(1, ceil(|b_i| / kspacing))` with |b_i| = 2π/d_i. Ignored when
    /// `kpoints` is given.
    pub kspacing_per_a: Option<f64>,
    /// An explicit mesh.
    pub kpoints: Option<[u32; 3]>,
    /// Γ-centred mesh (`Gamma`) instead of `Monkhorst-Pack`.
    pub gamma_centered: bool,
    /// Directory holding one sub-directory per POTCAR (`<dir>/<name>/POTCAR`).
    pub potcar_dir: String,
    /// Element symbol -> POTCAR name (e.g. `Cu` -> `Cu_pv`); default: the symbol.
    pub potcars: BTreeMap<String, String>,
    /// POSCAR coordinates: direct (fractional) when true, Cartesian otherwise.
    pub poscar_direct: bool,
    /// The user's VASP command, e.g. `mpirun -np 4 vasp_std`.
    pub command: String,
}

impl Default for VaspSettings {
    fn default() -> Self {
        VaspSettings {
            encut: Some(520.0),
            ediff: Some(1e-6),
            ismear: Some(0),
            sigma: Some(0.05),
            nelm: Some(100),
            ibrion: Some(-1),
            nsw: Some(0),
            isif: Some(2),
            incar: BTreeMap::new(),
            kspacing_per_a: Some(0.25),
            kpoints: None,
            gamma_centered: true,
            potcar_dir: String::new(),
            potcars: BTreeMap::new(),
            poscar_direct: true,
            command: "vasp_std".into(),
        }
    }
}

/// Species in order of first appearance: the POSCAR/POTCAR order.
pub fn species_order(structure: &Structure) -> Vec<Element> {
    let mut v = Vec::new();
    for &e in &structure.species {
        if !v.contains(&e) {
            v.push(e);
        }
    }
    v
}

/// The atom order of the POSCAR written by [`write_poscar`]: atoms grouped by species
/// (in order of first appearance), stable within a species. `order[k]` is the index in
/// the structure of the k-th POSCAR atom; VASP's forces come back in this order.
pub fn poscar_atom_order(structure: &Structure) -> Vec<usize> {
    let mut order = Vec::with_capacity(structure.len());
    for e in species_order(structure) {
        order.extend((0..structure.len()).filter(|&i| structure.species[i] == e));
    }
    order
}

/// Shortest text that reads back to the same f64 (never exponent notation).
fn fmt_f(x: f64) -> String {
    let x = if x == 0.0 { 0.0 } else { x }; // no "-0"
    format!("{x}")
}

/// POSCAR in VASP 5 format (element line and counts), scale factor 1, lattice rows in
/// Å, `Direct` or `Cartesian` positions written exactly (shortest round-trip decimals), atoms grouped by species
/// (see [`poscar_atom_order`]).
pub fn write_poscar(structure: &Structure, direct: bool) -> Result<String, RunError> {
    structure.validate().map_err(|e| RunError::Settings(format!("structure: {e}")))?;
    if structure.is_empty() {
        return Err(RunError::Settings("structure has no atoms".into()));
    }
    if structure.volume_a3().abs() < 1e-6 {
        return Err(RunError::Settings("VASP needs a cell with a non-zero volume".into()));
    }
    let order = poscar_atom_order(structure);
    let species = species_order(structure);
    let mut o = String::new();
    let _ = writeln!(o, "{}", structure.formula());
    let _ = writeln!(o, "1.0");
    for row in &structure.cell_a {
        let _ = writeln!(o, "  {} {} {}", fmt_f(row[0]), fmt_f(row[1]), fmt_f(row[2]));
    }
    let _ = writeln!(o, "  {}", species.iter().map(|e| e.symbol()).collect::<Vec<_>>().join(" "));
    let counts: Vec<String> =
        species.iter().map(|e| structure.species.iter().filter(|s| *s == e).count().to_string()).collect();
    let _ = writeln!(o, "  {}", counts.join(" "));
    let frac = if direct { Some(structure.fractional_positions()) } else { None };
    let _ = writeln!(o, "{}", if direct { "Direct" } else { "Cartesian" });
    for &i in &order {
        let p = match &frac {
            Some(f) => f[i],
            None => structure.positions_a[i],
        };
        let _ = writeln!(o, "  {} {} {}", fmt_f(p[0]), fmt_f(p[1]), fmt_f(p[2]));
    }
    Ok(o)
}

/// A minimal POSCAR reader (VASP 5 with an element line; scale factor > 0; `Selective
/// dynamics` accepted; Direct or Cartesian), for round trips and tests. The structure is
/// periodic in all three directions.
pub fn parse_poscar(text: &str) -> Result<Structure, String> {
    let mut lines = text.lines();
    let _comment = lines.next().ok_or("empty POSCAR")?;
    let scale: f64 = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .and_then(fortran_f64)
        .ok_or("line 2: no scale factor")?;
    if scale <= 0.0 {
        return Err("negative (volume) scale factors are not supported".into());
    }
    let mut cell = [[0.0; 3]; 3];
    for (k, row) in cell.iter_mut().enumerate() {
        let l = lines.next().ok_or("the lattice is incomplete")?;
        let v =
            crate::output::floats::<3>(l.split_whitespace()).ok_or(format!("line {}: bad lattice vector", k + 3))?;
        *row = v.map(|x| x * scale);
    }
    let symbols: Vec<Element> = lines
        .next()
        .ok_or("no element line")?
        .split_whitespace()
        .map(|s| Element::from_symbol(s.split(['/', '_']).next().unwrap_or(s)).ok_or(format!("unknown element {s:?}")))
        .collect::<Result<_, _>>()?;
    let counts: Vec<usize> = lines
        .next()
        .ok_or("no counts line")?
        .split_whitespace()
        .map(|s| s.parse().map_err(|_| format!("bad count {s:?}")))
        .collect::<Result<_, _>>()?;
    if counts.len() != symbols.len() {
        return Err("element and count lines differ in length".into());
    }
    let mut mode = lines.next().ok_or("no coordinate mode line")?.trim().to_string();
    if mode.starts_with(['S', 's']) {
        mode = lines.next().ok_or("no coordinate mode line")?.trim().to_string();
    }
    let direct = mode.starts_with(['D', 'd']);
    let n: usize = counts.iter().sum();
    let mut species = Vec::with_capacity(n);
    for (e, &c) in symbols.iter().zip(&counts) {
        species.resize(species.len() + c, *e);
    }
    let mut positions = Vec::with_capacity(n);
    for k in 0..n {
        let l = lines.next().ok_or(format!("only {k} of {n} positions"))?;
        let p = crate::output::floats::<3>(l.split_whitespace()).ok_or(format!("position {} unreadable", k + 1))?;
        positions.push(if direct { autopipe_atoms::structure::vec_mat(&p, &cell) } else { p.map(|x| x * scale) });
    }
    Structure::new(cell, positions, species, [true; 3]).map_err(|e| e.to_string())
}

fn incar_value(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::Bool(b) => Ok(if *b { ".TRUE.".into() } else { ".FALSE.".into() }),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) if !s.contains('\n') && !s.contains('#') && !s.contains('!') => Ok(s.clone()),
        serde_json::Value::Array(a) => a.iter().map(incar_value).collect::<Result<Vec<_>, _>>().map(|v| v.join(" ")),
        other => Err(format!("{other} is not a valid INCAR value")),
    }
}

/// INCAR: the typed tags (when set) and then the `incar` map, one `TAG = value` per
/// line, sorted within each part. Setting a tag both ways is an error.
pub fn write_incar(settings: &VaspSettings) -> Result<String, RunError> {
    let s = settings;
    let mut typed: Vec<(&str, String)> = Vec::new();
    let f = |x: f64| format!("{x}");
    if let Some(v) = s.encut {
        if !(v.is_finite() && v > 0.0) {
            return Err(RunError::Settings(format!("encut must be > 0, got {v}")));
        }
        typed.push(("ENCUT", f(v)));
    }
    if let Some(v) = s.ediff {
        if !(v.is_finite() && v > 0.0) {
            return Err(RunError::Settings(format!("ediff must be > 0, got {v}")));
        }
        typed.push(("EDIFF", format!("{v:e}").replace('e', "E")));
    }
    if let Some(v) = s.ismear {
        typed.push(("ISMEAR", v.to_string()));
    }
    if let Some(v) = s.sigma {
        if !(v.is_finite() && v > 0.0) {
            return Err(RunError::Settings(format!("sigma must be > 0, got {v}")));
        }
        typed.push(("SIGMA", f(v)));
    }
    if let Some(v) = s.nelm {
        if v == 0 {
            return Err(RunError::Settings("nelm must be >= 1".into()));
        }
        typed.push(("NELM", v.to_string()));
    }
    if let Some(v) = s.ibrion {
        typed.push(("IBRION", v.to_string()));
    }
    if let Some(v) = s.nsw {
        typed.push(("NSW", v.to_string()));
    }
    if let Some(v) = s.isif {
        typed.push(("ISIF", v.to_string()));
    }
    let mut o = String::new();
    for (k, v) in &typed {
        let _ = writeln!(o, "{k} = {v}");
    }
    for (k, v) in &s.incar {
        let up = k.to_ascii_uppercase();
        if up.is_empty() || !up.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(RunError::Settings(format!("{k:?} is not an INCAR tag")));
        }
        if typed.iter().any(|(t, _)| *t == up) {
            return Err(RunError::Settings(format!("INCAR tag {up} is set both as a typed setting and in `incar`")));
        }
        if up == "KSPACING" && (s.kpoints.is_some() || s.kspacing_per_a.is_some()) {
            return Err(RunError::Settings("KSPACING in `incar` conflicts with the KPOINTS file we write".into()));
        }
        let v = incar_value(v).map_err(|e| RunError::Settings(format!("INCAR tag {up}: {e}")))?;
        let _ = writeln!(o, "{up} = {v}");
    }
    Ok(o)
}

/// k-point mesh from a spacing in 1/Å including 2π; 1 along non-periodic directions.
pub fn kmesh_from_spacing(structure: &Structure, kspacing_per_a: f64) -> [u32; 3] {
    let c = &structure.cell_a;
    let vol = dot(&c[0], &cross(&c[1], &c[2])).abs();
    let mut mesh = [1u32; 3];
    for i in 0..3 {
        if !structure.pbc[i] || vol < 1e-12 {
            continue;
        }
        let b = cross(&c[(i + 1) % 3], &c[(i + 2) % 3]);
        let bnorm = 2.0 * std::f64::consts::PI * norm(&b) / vol;
        mesh[i] = ((bnorm / kspacing_per_a - 1e-9).ceil() as u32).max(1);
    }
    mesh
}

/// KPOINTS: an automatic `Gamma` or `Monkhorst-Pack` mesh, from `kpoints` or from
/// `kspacing_per_a`.
pub fn write_kpoints(structure: &Structure, settings: &VaspSettings) -> Result<String, RunError> {
    let mesh = match (settings.kpoints, settings.kspacing_per_a) {
        (Some(k), _) => {
            if k.contains(&0) {
                return Err(RunError::Settings(format!("kpoints must be >= 1, got {k:?}")));
            }
            k
        }
        (None, Some(sp)) if sp.is_finite() && sp > 0.0 => kmesh_from_spacing(structure, sp),
        (None, Some(sp)) => return Err(RunError::Settings(format!("kspacing_per_a must be > 0, got {sp}"))),
        (None, None) => return Err(RunError::Settings("either kpoints or kspacing_per_a is needed".into())),
    };
    let kind = if settings.gamma_centered { "Gamma" } else { "Monkhorst-Pack" };
    Ok(format!("Automatic mesh\n0\n{kind}\n{} {} {}\n0 0 0\n", mesh[0], mesh[1], mesh[2]))
}

/// POTCAR: the POTCARs of the species in POSCAR order (first appearance), each read by
/// `read` from `<potcar_dir>/<name>/POTCAR` (name from `potcars`, default the symbol),
/// concatenated.
pub fn assemble_potcar(
    structure: &Structure,
    settings: &VaspSettings,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<String, RunError> {
    if settings.potcar_dir.is_empty() {
        return Err(RunError::Settings("potcar_dir is not set".into()));
    }
    let mut out = String::new();
    for e in species_order(structure) {
        let name = settings.potcars.get(e.symbol()).map(String::as_str).unwrap_or(e.symbol());
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
            return Err(RunError::Settings(format!("invalid POTCAR name {name:?} for {e}")));
        }
        let path = Path::new(&settings.potcar_dir).join(name).join("POTCAR");
        let text =
            read(&path).map_err(|err| RunError::Io { path: path.display().to_string(), error: err.to_string() })?;
        if text.trim().is_empty() {
            return Err(RunError::Io { path: path.display().to_string(), error: "empty POTCAR".into() });
        }
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// INCAR tags that are convergence knobs (electronic minimiser, mixing, step limits) or
/// run options (parallelisation, which files are written): they never define a label,
/// so [`label_params`] leaves them out of the `incar` map and [`remediate`] may change
/// the knobs among them.
pub const NON_LABEL_INCAR_TAGS: &[&str] = &[
    "ALGO", "IALGO", "NELM", "NELMIN", "NELMDL", "AMIX", "BMIX", "AMIX_MAG", "BMIX_MAG", "AMIN", "IMIX", "MAXMIX",
    "INIMIX", "MIXPRE", "WC", "TIME", "NCORE", "NPAR", "KPAR", "NSIM", "LPLANE", "LWAVE", "LCHARG", "LVTOT", "LVHAR",
    "LORBIT", "NWRITE",
];

fn is_non_label_tag(tag: &str) -> bool {
    NON_LABEL_INCAR_TAGS.iter().any(|t| t.eq_ignore_ascii_case(tag))
}

/// The label-defining settings: everything except NELM, the convergence knobs and run
/// options of [`NON_LABEL_INCAR_TAGS`] in `incar`, the command, the POTCAR directory
/// and the POSCAR coordinate mode.
pub fn label_params(settings: &VaspSettings) -> serde_json::Value {
    let s = settings;
    let incar: BTreeMap<String, &serde_json::Value> =
        s.incar.iter().filter(|(k, _)| !is_non_label_tag(k)).map(|(k, v)| (k.to_ascii_uppercase(), v)).collect();
    let kpoints = match s.kpoints {
        Some(k) => serde_json::json!({ "mesh": k, "gamma": s.gamma_centered }),
        None => serde_json::json!({ "kspacing_per_a": s.kspacing_per_a, "gamma": s.gamma_centered }),
    };
    serde_json::json!({
        "engine": "vasp",
        "encut": s.encut, "ediff": s.ediff, "ismear": s.ismear, "sigma": s.sigma,
        "ibrion": s.ibrion, "nsw": s.nsw, "isif": s.isif,
        "incar": incar, "kpoints": kpoints, "potcars": s.potcars,
    })
}

// ---------------------------------------------------------------------------------
// Remediation ladder
// ---------------------------------------------------------------------------------

/// The key of `tag` in the `incar` map (case-insensitive), if set there.
fn incar_key(s: &VaspSettings, tag: &str) -> Option<String> {
    s.incar.keys().find(|k| k.eq_ignore_ascii_case(tag)).cloned()
}

fn incar_f64(s: &VaspSettings, tag: &str) -> Option<f64> {
    let v = &s.incar[&incar_key(s, tag)?];
    v.as_f64().or_else(|| v.as_str().and_then(fortran_f64))
}

/// Set `tag` in the `incar` map, keeping the user's spelling of the key.
fn set_incar(s: &mut VaspSettings, tag: &str, v: serde_json::Value) {
    let k = incar_key(s, tag).unwrap_or_else(|| tag.to_string());
    s.incar.insert(k, v);
}

/// NELM in effect: the typed field, else an `incar` NELM, else VASP's default 60.
fn nelm_of(s: &VaspSettings) -> u32 {
    s.nelm.or_else(|| incar_f64(s, "NELM").map(|v| v.max(1.0) as u32)).unwrap_or(60)
}

fn set_nelm(s: &mut VaspSettings, n: u32) {
    if s.nelm.is_none() && incar_key(s, "NELM").is_some() {
        set_incar(s, "NELM", serde_json::json!(n));
    } else {
        s.nelm = Some(n);
    }
}

/// ALGO in effect, upper case (VASP's default `Normal`).
fn algo_of(s: &VaspSettings) -> String {
    incar_key(s, "ALGO")
        .and_then(|k| s.incar[&k].as_str().map(str::to_string))
        .unwrap_or_else(|| "Normal".into())
        .to_ascii_uppercase()
}

enum AlgoFamily {
    /// VeryFast, Fast (RMM-DIIS)
    Fast,
    /// Normal (blocked Davidson, VASP's default)
    Normal,
    /// All, Damped, Exact, None, GW algorithms ...: left alone
    Other,
}

/// What kind of ALGO is in effect (VASP reads ALGO by its first letter(s)).
fn algo_family(s: &VaspSettings) -> AlgoFamily {
    let a = algo_of(s);
    if a.starts_with("NONE") || a.starts_with("NOTHING") {
        AlgoFamily::Other
    } else if a.starts_with('N') {
        AlgoFamily::Normal
    } else if a.starts_with('F') || a.starts_with('V') {
        AlgoFamily::Fast
    } else {
        AlgoFamily::Other
    }
}

/// The remediation ladder for a physics failure (SCF not converged). `failed_attempt`
/// is the number of the attempt that just failed (1 = the first run; 0 is read as 1),
/// `settings` the settings it used. Only convergence knobs change (NELM, and ALGO,
/// AMIX, BMIX in `incar`); ENCUT, EDIFF, the functional, k-points, smearing and every
/// other label-defining setting stay:
///
/// 1. NELM -> at least 2× (and >= 200); ALGO VeryFast/Fast -> Normal;
/// 2. ALGO Normal/Fast/VeryFast -> All (all bands at once, conjugate gradient; other
///    ALGOs such as Damped or Exact are left alone), NELM -> >= 300;
/// 3. AMIX -> at most 0.1, BMIX -> at most 0.01 (VASP's defaults 0.4 and 1.0), NELM -> >= 400.
///
/// A rung that would change nothing is skipped; None when the ladder is exhausted.
pub fn remediate(settings: &VaspSettings, failed_attempt: u32) -> Option<(VaspSettings, String)> {
    let mut rung = failed_attempt.max(1);
    loop {
        let mut s = settings.clone();
        let nelm = nelm_of(settings);
        match rung {
            1 => {
                set_nelm(&mut s, nelm.saturating_mul(2).max(200));
                if matches!(algo_family(settings), AlgoFamily::Fast) {
                    set_incar(&mut s, "ALGO", serde_json::json!("Normal"));
                }
            }
            2 => {
                set_nelm(&mut s, nelm.max(300));
                if matches!(algo_family(settings), AlgoFamily::Fast | AlgoFamily::Normal) {
                    set_incar(&mut s, "ALGO", serde_json::json!("All"));
                }
            }
            3 => {
                set_nelm(&mut s, nelm.max(400));
                if incar_f64(settings, "AMIX").unwrap_or(0.4) > 0.1 {
                    set_incar(&mut s, "AMIX", serde_json::json!(0.1));
                }
                if incar_f64(settings, "BMIX").unwrap_or(1.0) > 0.01 {
                    set_incar(&mut s, "BMIX", serde_json::json!(0.01));
                }
            }
            _ => return None,
        }
        let what = describe_changes(settings, &s);
        if !what.is_empty() {
            debug_assert_eq!(label_params(settings), label_params(&s));
            return Some((s, what));
        }
        rung += 1;
    }
}

fn describe_changes(a: &VaspSettings, b: &VaspSettings) -> String {
    let mut v = Vec::new();
    if nelm_of(a) != nelm_of(b) {
        v.push(format!("NELM {} -> {}", nelm_of(a), nelm_of(b)));
    }
    for tag in ["ALGO", "AMIX", "BMIX"] {
        let (x, y) = (incar_key(a, tag).map(|k| &a.incar[&k]), incar_key(b, tag).map(|k| &b.incar[&k]));
        if x != y {
            let show = |v: Option<&serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "default".into(),
            };
            v.push(format!("{tag} {} -> {}", show(x), show(y)));
        }
    }
    v.join(", ")
}

// ---------------------------------------------------------------------------------
// Runner (I/O)
// ---------------------------------------------------------------------------------

/// VASP's forces (in POSCAR order, see [`poscar_atom_order`]) in the structure's atom
/// order: `out[order[k]] = forces[k]`. None when the counts differ or `order` is not a
/// permutation.
pub fn forces_to_structure_order(order: &[usize], forces: &[[f64; 3]]) -> Option<Vec<[f64; 3]>> {
    if order.len() != forces.len() {
        return None;
    }
    let mut out: Vec<Option<[f64; 3]>> = vec![None; forces.len()];
    for (k, &i) in order.iter().enumerate() {
        let slot = out.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(forces[k]);
    }
    out.into_iter().collect()
}

const VASP_HINT: &str = " (VASP is licensed software and is not installed by autopipe: set the VASP \
command in [oracle] to your own binary, e.g. \"mpirun -np 4 vasp_std\" or a full path)";

/// Run VASP on one structure in `job_dir`: writes `POSCAR` (atoms grouped by species),
/// `INCAR`, `KPOINTS` and `POTCAR` (each POTCAR read by `potcar`, see
/// [`assemble_potcar`]), runs `sh -c "<settings.command>"` there (stdout to `vasp.out`,
/// stderr to `vasp.err`), waits, and parses `vasprun.xml`, falling back to `OUTCAR`
/// when vasprun.xml is missing, unreadable or truncated. The forces are returned in the
/// structure's atom order (mapped back from POSCAR order). It never kills VASP: time
/// limits belong to the caller's executor (which kills the process group).
///
/// A command that the shell cannot find or execute (exit code 127 or 126 without any
/// output) is a `RunError::Spawn` saying how to configure VASP. A VASP that dies before
/// writing a recognisable output gives a `crashed` result with the exit status and the
/// end of `vasp.err`/`vasp.out`.
pub fn run_vasp(
    job_dir: &Path,
    structure: &Structure,
    settings: &VaspSettings,
    potcar: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<ParsedOutput, RunError> {
    if settings.command.trim().is_empty() {
        return Err(RunError::Settings(format!("the VASP command is empty{VASP_HINT}")));
    }
    let poscar = write_poscar(structure, settings.poscar_direct)?;
    let incar = write_incar(settings)?;
    let kpoints = write_kpoints(structure, settings)?;
    let potcar = assemble_potcar(structure, settings, potcar)?;
    let io = |p: &Path, e: std::io::Error| RunError::Io { path: p.display().to_string(), error: e.to_string() };
    std::fs::create_dir_all(job_dir).map_err(|e| io(job_dir, e))?;
    for (name, text) in [("POSCAR", &poscar), ("INCAR", &incar), ("KPOINTS", &kpoints), ("POTCAR", &potcar)] {
        let p = job_dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    // outputs of an earlier attempt must not be read as this run's
    remove_stale_outputs(job_dir, &["vasprun.xml", "OUTCAR", "OSZICAR", "CONTCAR"])?;
    let out_path = job_dir.join("vasp.out");
    let err_path = job_dir.join("vasp.err");
    let stdout = std::fs::File::create(&out_path).map_err(|e| io(&out_path, e))?;
    let stderr = std::fs::File::create(&err_path).map_err(|e| io(&err_path, e))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&settings.command)
        .current_dir(job_dir)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|e| RunError::Spawn {
            command: format!("sh -c {:?}", settings.command),
            error: e.to_string(),
            hint: VASP_HINT,
        })?;

    let vasprun_path = job_dir.join("vasprun.xml");
    let outcar_path = job_dir.join("OUTCAR");
    let err_text = std::fs::read_to_string(&err_path).unwrap_or_default();
    let out_text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr_tail = || {
        let t = tail_lines(&err_text, 5);
        if t.is_empty() {
            format!("stdout: {}", tail_lines(&out_text, 5))
        } else {
            format!("stderr: {t}")
        }
    };
    if matches!(status.code(), Some(126 | 127)) && !vasprun_path.exists() && !outcar_path.exists() {
        return Err(RunError::Spawn {
            command: settings.command.clone(),
            error: format!("the shell could not run it ({}; {})", describe_exit(&status), stderr_tail()),
            hint: VASP_HINT,
        });
    }

    let vasprun = vasprun_path.exists().then(|| read_vasprun(&vasprun_path));
    let outcar = outcar_path.exists().then(|| read_outcar(&outcar_path));
    let vasprun_ok = matches!(&vasprun, Some(Ok(p)) if p.status != RunStatus::Truncated);
    let parsed: Option<Result<ParsedOutput, ParseError>> = if vasprun_ok {
        let mut p = vasprun.and_then(Result::ok).expect("checked");
        // vasprun.xml has no wall time; OUTCAR does
        if let Some(Ok(o)) = &outcar {
            p.wall_time_s = p.wall_time_s.or(o.wall_time_s);
        }
        Some(Ok(p))
    } else {
        match (vasprun, outcar) {
            (v, Some(Ok(o))) if o.status != RunStatus::Truncated || !matches!(v, Some(Ok(_))) => {
                let mut o = o;
                let why = match &v {
                    None => "vasprun.xml is missing".to_string(),
                    Some(Ok(_)) => "vasprun.xml is truncated".to_string(),
                    Some(Err(e)) => format!("vasprun.xml is unreadable ({e})"),
                };
                o.message =
                    Some(join_msg(Some(format!("read from OUTCAR: {why}")), o.message.take().unwrap_or_default()));
                Some(Ok(o))
            }
            (Some(Ok(v)), _) => Some(Ok(v)),
            (Some(Err(e)), _) => Some(Err(e)),
            (None, Some(o)) => Some(o),
            (None, None) => None,
        }
    };
    let p = match parsed {
        Some(Ok(p)) => p,
        Some(Err(ParseError::NotAnOutput { .. })) | None if !status.success() => {
            return Ok(crashed_output(format!(
                "VASP ({}) {} before writing vasprun.xml or OUTCAR; {}",
                settings.command,
                describe_exit(&status),
                stderr_tail()
            )))
        }
        None => {
            return Ok(crashed_output(format!(
                "`{}` exited successfully but wrote neither vasprun.xml nor OUTCAR in {}; {}",
                settings.command,
                job_dir.display(),
                stderr_tail()
            )))
        }
        Some(Err(e)) => return Err(e.into()),
    };
    let mut p = judge_exit("VASP", p, &status, &stderr_tail());
    // VASP's atom order (POSCAR order) -> ours
    if let Some(f) = p.forces_ev_per_a.take() {
        match forces_to_structure_order(&poscar_atom_order(structure), &f) {
            Some(mapped) => p.forces_ev_per_a = Some(mapped),
            None => {
                p.max_force_ev_per_a = None;
                p.message = Some(join_msg(
                    p.message.take(),
                    format!("VASP returned {} forces for {} atoms: forces dropped", f.len(), structure.len()),
                ));
            }
        }
    }
    Ok(p)
}

/// [`run_vasp`] reading the POTCARs from disk (`<potcar_dir>/<name>/POTCAR`).
pub fn run_vasp_with_potcar_dir(
    job_dir: &Path,
    structure: &Structure,
    settings: &VaspSettings,
) -> Result<ParsedOutput, RunError> {
    run_vasp(job_dir, structure, settings, |p| std::fs::read_to_string(p))
}

// ---------------------------------------------------------------------------------
// vasprun.xml
// ---------------------------------------------------------------------------------

const VASPRUN: &str = "VASP vasprun.xml";
const OUTCAR: &str = "VASP OUTCAR";

/// The value of `<i ... name="TAG">value</i>` (first occurrence in `xml`).
fn xml_param(xml: &str, tag: &str) -> Option<String> {
    let needle = format!("name=\"{tag}\"");
    let mut from = 0;
    while let Some(k) = xml[from..].find(&needle) {
        let at = from + k;
        from = at + needle.len();
        // must be inside an <i ...> tag
        let open = xml[..at].rfind('<')?;
        if !xml[open..].starts_with("<i") {
            continue;
        }
        let gt = at + xml[at..].find('>')?;
        let end = gt + xml[gt..].find("</i>")?;
        return Some(xml[gt + 1..end].trim().to_string());
    }
    None
}

/// The numbers of the `<v>` rows of `<varray name="NAME">` inside `block`.
fn xml_varray(block: &str, name: &str) -> Option<Result<Vec<[f64; 3]>, String>> {
    let start = block.find(&format!("<varray name=\"{name}\""))?;
    let body_start = start + block[start..].find('>')? + 1;
    let Some(end) = block[body_start..].find("</varray>") else {
        return Some(Err(format!("<varray name=\"{name}\"> is not closed")));
    };
    let body = &block[body_start..body_start + end];
    let mut rows = Vec::new();
    for (k, piece) in body.split("<v").skip(1).enumerate() {
        let Some(gt) = piece.find('>') else { return Some(Err(format!("{name}: bad row {}", k + 1))) };
        let Some(close) = piece.find("</v>") else { return Some(Err(format!("{name}: row {} not closed", k + 1))) };
        if close < gt {
            return Some(Err(format!("{name}: bad row {}", k + 1)));
        }
        match crate::output::floats::<3>(piece[gt + 1..close].split_whitespace()) {
            Some(v) => rows.push(v),
            None => return Some(Err(format!("{name}: row {} is not three numbers", k + 1))),
        }
    }
    Some(Ok(rows))
}

/// `e_fr_energy` inside an `<energy>` block.
fn energy_in(block: &str) -> Option<f64> {
    xml_param(block, "e_fr_energy").and_then(|v| fortran_f64(&v))
}

struct IonicStep {
    scsteps: usize,
    /// e_fr_energy of the last two electronic steps.
    last_sc_energies: Vec<f64>,
    energy: Option<f64>,
    forces: Option<Result<Vec<[f64; 3]>, String>>,
    stress: Option<Result<Vec<[f64; 3]>, String>>,
}

fn parse_calculation(block: &str) -> IonicStep {
    let scsteps = block.matches("<scstep>").count();
    let mut sc_energies = Vec::new();
    for piece in block.split("<scstep>").skip(1) {
        let piece = piece.split("</scstep>").next().unwrap_or(piece);
        if let Some(e) = energy_in(piece) {
            sc_energies.push(e);
        }
    }
    let last_sc_energies = sc_energies[sc_energies.len().saturating_sub(2)..].to_vec();
    // the ionic step's own <energy> follows the last </scstep>
    let tail = match block.rfind("</scstep>") {
        Some(i) => &block[i..],
        None => block,
    };
    // The last electronic step's e_fr_energy is OUTCAR's `free  energy   TOTEN` (without
    // the PSTRESS·V term, which the ionic step's own <energy> block includes; ASE reads it
    // the same way); fall back to the ionic step's <energy> block.
    let energy = sc_energies.last().copied().or_else(|| tail.find("<energy>").and_then(|i| energy_in(&tail[i..])));
    IonicStep {
        scsteps,
        last_sc_energies,
        energy,
        forces: xml_varray(tail, "forces"),
        stress: xml_varray(tail, "stress"),
    }
}

/// Whether the first element of an XML text (after the `<?xml ...?>` declaration,
/// comments and doctype) is `<modeling>`; otherwise the start of the element found.
fn modeling_root(xml: &str) -> Result<(), String> {
    let mut rest = xml.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!") {
            rest = r.split_once('>').map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    if rest.strip_prefix("<modeling").is_some_and(|r| r.starts_with(['>', ' ', '\t', '\r', '\n', '/'])) {
        return Ok(());
    }
    if !rest.starts_with('<') {
        return Err("missing (the file is not XML)".into());
    }
    let name: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '>').take(60).collect();
    Err(format!("{name}>"))
}

/// Parse `vasprun.xml`.
///
/// * the last complete `<calculation>` (ionic step): `e_fr_energy` of its last
///   `<scstep>` (the free energy, OUTCAR's TOTEN, without PSTRESS·V) as `energy_ev`,
///   `<varray name="forces">` (eV/Å), `<varray name="stress">` (kbar -> eV/Å³, ASE sign),
///   the number of its `<scstep>`s as `scf_steps`;
/// * the number of ionic steps goes into `message`;
/// * status: no `</modeling>` -> truncated (values of the last complete ionic step are
///   still reported); NELM electronic steps with the last energy change above EDIFF ->
///   scf_not_converged; NSW ionic steps in a relaxation (IBRION 1, 2, 3) ->
///   relax_not_converged; otherwise converged.
pub fn parse_vasprun(xml: &str, source: &str) -> Result<ParsedOutput, ParseError> {
    let not_output = |reason: String| ParseError::NotAnOutput { engine: VASPRUN, file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(xml) {
        return Err(not_output(reason));
    }
    if let Err(root) = modeling_root(xml) {
        return Err(not_output(format!("its root element is {root}, not <modeling>")));
    }
    let complete = xml.contains("</modeling>");
    // parameters: the full <parameters> section (with VASP's defaults) when present
    let params = xml.find("<parameters>").map(|i| &xml[i..]).unwrap_or(xml);
    let int = |t: &str| xml_param(params, t).or_else(|| xml_param(xml, t)).and_then(|v| v.parse::<i64>().ok());
    let nelm = int("NELM");
    let nsw = int("NSW");
    let ibrion = int("IBRION");
    let ediff = xml_param(params, "EDIFF").or_else(|| xml_param(xml, "EDIFF")).and_then(|v| fortran_f64(&v));

    let mut steps: Vec<IonicStep> = Vec::new();
    let mut incomplete_tail = false;
    let mut from = 0;
    while let Some(k) = xml[from..].find("<calculation>") {
        let start = from + k;
        match xml[start..].find("</calculation>") {
            Some(e) => {
                let end = start + e;
                steps.push(parse_calculation(&xml[start..end]));
                from = end;
            }
            None => {
                incomplete_tail = true;
                break;
            }
        }
    }
    let n_ionic = steps.len();
    let last = steps.last();
    let mut notes: Vec<String> = vec![format!("{n_ionic} complete ionic step(s)")];
    let scf_steps = last.map(|s| s.scsteps as u32);

    let scf_failed = last.is_some_and(|s| {
        let at_limit = nelm.is_some_and(|n| s.scsteps as i64 >= n);
        let de = match s.last_sc_energies.as_slice() {
            [a, b] => Some((b - a).abs()),
            _ => None,
        };
        at_limit && matches!((de, ediff), (Some(d), Some(e)) if d > e)
    });
    let relaxing = matches!(ibrion, Some(1..=3)) && nsw.is_some_and(|n| n > 0);
    let (status, why) = if !complete {
        let m = if incomplete_tail { "; the last ionic step is incomplete" } else { "" };
        (RunStatus::Truncated, format!("vasprun.xml has no </modeling> (killed, or still running){m}"))
    } else if last.is_none() {
        (RunStatus::Crashed, "vasprun.xml is complete but holds no ionic step".to_string())
    } else if scf_failed {
        (
            RunStatus::ScfNotConverged,
            format!("the last SCF stopped at NELM = {} electronic steps above EDIFF", nelm.unwrap_or(0)),
        )
    } else if relaxing && nsw.is_some_and(|n| n_ionic as i64 >= n) {
        (RunStatus::RelaxNotConverged, format!("the relaxation reached NSW = {} ionic steps", nsw.unwrap_or(0)))
    } else {
        (RunStatus::Converged, String::new())
    };
    if !why.is_empty() {
        notes.insert(0, why);
    }

    let mut out = ParsedOutput {
        energy_ev: None,
        forces_ev_per_a: None,
        stress_ev_per_a3: None,
        max_force_ev_per_a: None,
        scf_steps,
        wall_time_s: None,
        status,
        message: None,
    };
    let usable = matches!(status, RunStatus::Converged | RunStatus::RelaxNotConverged | RunStatus::Truncated);
    if let (true, Some(s)) = (usable, last) {
        out.energy_ev = s.energy;
        match &s.forces {
            Some(Ok(f)) if !f.is_empty() => {
                out.max_force_ev_per_a = Some(max_force(f));
                out.forces_ev_per_a = Some(f.clone());
            }
            Some(Ok(_)) => notes.push("empty forces array".into()),
            Some(Err(e)) => notes.push(e.clone()),
            None => {}
        }
        match &s.stress {
            Some(Ok(m)) if m.len() == 3 => {
                out.stress_ev_per_a3 = Some(voigt(&[m[0], m[1], m[2]], -VASP_KBAR_TO_EV_PER_A3));
            }
            Some(Ok(_)) => notes.push("stress array without 3 rows".into()),
            Some(Err(e)) => notes.push(e.clone()),
            None => {}
        }
        if s.energy.is_none() {
            notes.push("no e_fr_energy in the last ionic step".into());
        }
    }
    out.message = Some(notes.join("; "));
    Ok(out)
}

// ---------------------------------------------------------------------------------
// OUTCAR
// ---------------------------------------------------------------------------------

/// `   NSW    =      0    number of steps for IOM` -> 0.
fn outcar_param(text: &str, tag: &str) -> Option<f64> {
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(tag) {
            let rest = rest.trim_start();
            if let Some(v) = rest.strip_prefix('=') {
                let tok = v.split(|c: char| c.is_whitespace() || c == ';').find(|s| !s.is_empty())?;
                return fortran_f64(tok);
            }
        }
    }
    None
}

/// Parse `OUTCAR`.
///
/// * energy: the last `free  energy   TOTEN  =` (eV);
/// * forces: the last `TOTAL-FORCE (eV/Angst)` block (columns 4-6);
/// * stress: the last `in kB` line (XX YY ZZ XY YZ ZX, kbar -> eV/Å³, ASE sign);
/// * scf_steps: electronic steps of the last ionic step (`Iteration  n(  m)`);
/// * wall time: `Elapsed time (sec):`;
/// * status: no `General timing and accounting` -> truncated; the last SCF loop
///   `aborting loop EDIFF was not reached (unconverged)`, or NELM steps -> scf_not_converged;
///   a relaxation (IBRION 1-3) with NSW ionic steps and no `reached required accuracy`
///   -> relax_not_converged.
pub fn parse_outcar(text: &str, source: &str) -> Result<ParsedOutput, ParseError> {
    let not_output = |reason: String| ParseError::NotAnOutput { engine: OUTCAR, file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(text) {
        return Err(not_output(reason));
    }
    if text.trim_start().starts_with('<') {
        return Err(not_output("it is an XML file (vasprun.xml is read by the vasprun parser)".into()));
    }
    // OUTCAR opens with ` vasp.6.2.1 16May21 (build ...)`; a file cut before that line, or
    // with it lost, must still show OUTCAR's own lines
    let head_ok = text.lines().take(50).any(|l| l.trim_start().starts_with("vasp."));
    let has_toten = text.contains("free  energy   TOTEN");
    if !head_ok && !(text.contains("POTCAR:") && (has_toten || text.contains("NIONS ="))) {
        return Err(not_output("no `vasp.` version header, and no POTCAR lines with NIONS or TOTEN".into()));
    }
    let nelm = outcar_param(text, "NELM").map(|v| v as i64);
    let nsw = outcar_param(text, "NSW").map(|v| v as i64);
    let ibrion = outcar_param(text, "IBRION").map(|v| v as i64);
    let nions = outcar_param(text, "NIONS").map(|v| v as usize).or_else(|| {
        text.lines()
            .find(|l| l.contains("NIONS ="))
            .and_then(|l| l.split("NIONS =").nth(1)?.split_whitespace().next()?.parse().ok())
    });

    let mut energy: Option<f64> = None;
    let mut forces: Option<Result<Vec<[f64; 3]>, String>> = None;
    let mut stress_kb: Option<[f64; 6]> = None;
    let mut ionic = 0u32;
    let mut scf_in_step: Option<u32> = None;
    let mut last_loop_unconverged = false;
    let mut reached_accuracy = false;
    let mut timing = false;
    let mut wall: Option<f64> = None;
    let mut bad: Vec<String> = Vec::new();

    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        i += 1;
        if t.is_empty() {
            continue;
        }
        if t.starts_with("free  energy   TOTEN") {
            match t.split('=').nth(1).and_then(|v| v.split_whitespace().next()).and_then(fortran_f64) {
                Some(e) => energy = Some(e),
                None => bad.push(format!("line {i}: unreadable TOTEN")),
            }
        } else if t.contains("Iteration") && t.starts_with("---") {
            // ----- Iteration    1(  12)  -----
            if let Some(inner) = t.split('(').nth(1).and_then(|r| r.split(')').next()) {
                if let Ok(m) = inner.trim().parse::<u32>() {
                    let outer = t
                        .split("Iteration")
                        .nth(1)
                        .and_then(|r| r.split('(').next())
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(o) = outer {
                        ionic = ionic.max(o);
                    }
                    scf_in_step = Some(m);
                }
            }
        } else if t.starts_with("POSITION") && t.contains("TOTAL-FORCE") {
            // a dashed line, then one row per ion, then a dashed line
            let mut rows = Vec::new();
            let mut problem = None;
            if i < lines.len() && lines[i].trim().starts_with("---") {
                i += 1;
            }
            while i < lines.len() {
                let l = lines[i].trim();
                if l.starts_with("---") || l.is_empty() {
                    break;
                }
                let toks: Vec<&str> = l.split_whitespace().collect();
                match (toks.len() >= 6).then(|| crate::output::floats::<3>(toks[3..6].iter())).flatten() {
                    Some(v) => rows.push(v),
                    None => problem = Some(format!("line {}: unreadable force row", i + 1)),
                }
                i += 1;
            }
            if problem.is_none() {
                if let Some(n) = nions {
                    if rows.len() != n {
                        problem = Some(format!("force block has {} of {n} ions", rows.len()));
                    }
                }
            }
            forces = Some(match problem {
                Some(p) => Err(p),
                None if rows.is_empty() => Err("empty TOTAL-FORCE block".into()),
                None => Ok(rows),
            });
        } else if t.starts_with("in kB") {
            let toks: Vec<&str> = t.split_whitespace().skip(2).collect();
            match (toks.len() == 6).then(|| crate::output::floats::<6>(toks.iter())).flatten() {
                Some(v) => stress_kb = Some(v),
                None => bad.push(format!("line {i}: unreadable `in kB` stress")),
            }
        } else if t.contains("aborting loop") {
            last_loop_unconverged = t.contains("not reached") || t.contains("unconverged");
        } else if t.starts_with("reached required accuracy") {
            reached_accuracy = true;
        } else if t.starts_with("General timing and accounting") {
            timing = true;
        } else if let Some(rest) = t.strip_prefix("Elapsed time (sec):") {
            wall = rest.split_whitespace().next().and_then(fortran_f64);
        }
    }

    let scf_failed = last_loop_unconverged
        || matches!((scf_in_step, nelm), (Some(s), Some(n)) if i64::from(s) >= n && !text.contains("aborting loop because EDIFF is reached"));
    let relaxing = matches!(ibrion, Some(1..=3)) && nsw.is_some_and(|n| n > 0);
    let (status, why) = if !timing {
        (
            RunStatus::Truncated,
            "OUTCAR has no `General timing and accounting` section (killed, or still running)".to_string(),
        )
    } else if scf_failed {
        (RunStatus::ScfNotConverged, format!("the last SCF did not reach EDIFF (NELM = {})", nelm.unwrap_or(0)))
    } else if relaxing && !reached_accuracy && nsw.is_some_and(|n| i64::from(ionic) >= n) {
        (RunStatus::RelaxNotConverged, format!("the relaxation reached NSW = {} ionic steps", nsw.unwrap_or(0)))
    } else {
        (RunStatus::Converged, String::new())
    };
    let mut notes: Vec<String> = Vec::new();
    if !why.is_empty() {
        notes.push(why);
    }
    notes.push(format!("{ionic} ionic step(s)"));
    let mut out = ParsedOutput {
        energy_ev: None,
        forces_ev_per_a: None,
        stress_ev_per_a3: None,
        max_force_ev_per_a: None,
        scf_steps: scf_in_step,
        wall_time_s: wall,
        status,
        message: None,
    };
    if matches!(status, RunStatus::Converged | RunStatus::RelaxNotConverged) {
        out.energy_ev = energy;
        match forces {
            Some(Ok(f)) => {
                out.max_force_ev_per_a = Some(max_force(&f));
                out.forces_ev_per_a = Some(f);
            }
            Some(Err(e)) => notes.push(e),
            None => {}
        }
        // OUTCAR order XX YY ZZ XY YZ ZX -> Voigt xx yy zz yz xz xy, ASE sign
        out.stress_ev_per_a3 =
            stress_kb.map(|s| [s[0], s[1], s[2], s[4], s[5], s[3]].map(|x| -x * VASP_KBAR_TO_EV_PER_A3));
        if energy.is_none() {
            notes.push("no `free  energy   TOTEN` line".into());
        }
    }
    notes.extend(bad);
    out.message = Some(notes.join("; "));
    Ok(out)
}

/// Read and parse a `vasprun.xml` (plain or gzip-compressed).
pub fn read_vasprun(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = crate::orca::read_maybe_gz(path)?;
    parse_vasprun(&text, &path.display().to_string())
}

/// Read and parse an `OUTCAR` (plain or gzip-compressed).
pub fn read_outcar(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = crate::orca::read_maybe_gz(path)?;
    parse_outcar(&text, &path.display().to_string())
}

/// Read and parse a `vasprun.xml` or an `OUTCAR` (either plain or gzip-compressed), told
/// apart by their content.
pub fn read_vasp_output(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = crate::orca::read_maybe_gz(path)?;
    let source = path.display().to_string();
    if text.trim_start().starts_with("<?xml") || text.contains("<modeling>") {
        parse_vasprun(&text, &source)
    } else {
        parse_outcar(&text, &source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nacl() -> Structure {
        let na = Element::from_symbol("Na").unwrap();
        let cl = Element::from_symbol("Cl").unwrap();
        Structure::new(
            [[0.0, 2.82, 2.82], [2.82, 0.0, 2.82], [2.82, 2.82, 0.0]],
            vec![[0.0; 3], [2.82, 2.82, 2.82]],
            vec![na, cl],
            [true; 3],
        )
        .unwrap()
    }

    #[test]
    fn poscar_round_trip_both_modes() {
        for direct in [true, false] {
            let text = write_poscar(&nacl(), direct).unwrap();
            let back = parse_poscar(&text).unwrap();
            assert_eq!(back.species, nacl().species);
            for (a, b) in back.positions_a.iter().zip(&nacl().positions_a) {
                for k in 0..3 {
                    assert!((a[k] - b[k]).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn grouped_order() {
        let mut s = nacl();
        s.positions_a.push([1.0, 1.0, 1.0]);
        s.species.push(Element::from_symbol("Na").unwrap());
        assert_eq!(poscar_atom_order(&s), vec![0, 2, 1]);
        assert!(write_poscar(&s, true).unwrap().contains("  Na Cl\n  2 1\n"));
    }

    #[test]
    fn incar_conflicts_and_values() {
        let mut s = VaspSettings::default();
        s.incar.insert("LREAL".into(), serde_json::json!(false));
        s.incar.insert("magmom".into(), serde_json::json!([1.0, 1.0]));
        let t = write_incar(&s).unwrap();
        assert!(
            t.contains("LREAL = .FALSE.\n") && t.contains("MAGMOM = 1.0 1.0\n") && t.contains("EDIFF = 1E-6\n"),
            "{t}"
        );
        s.incar.insert("ENCUT".into(), serde_json::json!(400));
        assert!(write_incar(&s).is_err());
    }

    #[test]
    fn forces_mapped_back_to_structure_order() {
        // Cu Au Cu Au: POSCAR order Cu0 Cu2 Au1 Au3
        let cu = Element::from_symbol("Cu").unwrap();
        let au = Element::from_symbol("Au").unwrap();
        let s = Structure::new(
            [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]],
            vec![[0.0; 3], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]],
            vec![cu, au, cu, au],
            [true; 3],
        )
        .unwrap();
        let order = poscar_atom_order(&s);
        assert_eq!(order, vec![0, 2, 1, 3]);
        let vasp = [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]];
        let ours = forces_to_structure_order(&order, &vasp).unwrap();
        for (i, f) in ours.iter().enumerate() {
            assert_eq!(f[0], i as f64);
        }
        assert!(forces_to_structure_order(&order, &vasp[..3]).is_none());
        assert!(forces_to_structure_order(&[0, 0, 1, 2], &vasp).is_none());
        assert!(forces_to_structure_order(&[0, 1, 2, 9], &vasp).is_none());
    }

    #[test]
    fn label_params_ignore_knobs_and_run_options() {
        let a = VaspSettings::default();
        let mut b = a.clone();
        b.nelm = Some(999);
        b.command = "mpirun -np 64 /opt/vasp/vasp_std".into();
        b.potcar_dir = "/elsewhere".into();
        for (k, v) in
            [("algo", "All"), ("AMIX", "0.1"), ("BMIX", "0.01"), ("NCORE", "4"), ("KPAR", "2"), ("LWAVE", "F")]
        {
            b.incar.insert(k.into(), serde_json::json!(v));
        }
        assert_eq!(label_params(&a), label_params(&b));
        for change in [
            |s: &mut VaspSettings| s.encut = Some(400.0),
            |s: &mut VaspSettings| s.sigma = Some(0.1),
            |s: &mut VaspSettings| s.ismear = Some(1),
            |s: &mut VaspSettings| s.kspacing_per_a = Some(0.2),
            |s: &mut VaspSettings| s.kpoints = Some([2, 2, 2]),
            |s: &mut VaspSettings| {
                s.incar.insert("GGA".into(), serde_json::json!("PS"));
            },
            |s: &mut VaspSettings| {
                s.potcars.insert("Cu".into(), "Cu_pv".into());
            },
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert_ne!(label_params(&a), label_params(&c), "{c:?}");
        }
    }

    #[test]
    fn ladder_changes_only_knobs_and_ends() {
        let mut start = VaspSettings::default();
        start.incar.insert("ALGO".into(), serde_json::json!("Fast"));
        start.incar.insert("GGA".into(), serde_json::json!("PE"));
        let mut cur = start.clone();
        let mut steps = Vec::new();
        for attempt in 1.. {
            assert!(attempt < 10);
            match remediate(&cur, attempt) {
                Some((next, what)) => {
                    assert!(!what.is_empty());
                    assert_eq!(label_params(&next), label_params(&start));
                    assert_eq!(
                        (next.encut, next.ediff, next.ismear, next.sigma),
                        (start.encut, start.ediff, start.ismear, start.sigma)
                    );
                    assert_eq!(
                        (next.kpoints, next.kspacing_per_a, &next.command),
                        (start.kpoints, start.kspacing_per_a, &start.command)
                    );
                    assert!(write_incar(&next).is_ok(), "{what}");
                    steps.push(what);
                    cur = next;
                }
                None => break,
            }
        }
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert!(steps[0].contains("NELM 100 -> 200") && steps[0].contains("ALGO Fast -> Normal"), "{steps:?}");
        assert!(steps[1].contains("ALGO Normal -> All"), "{steps:?}");
        assert_eq!(cur.incar["ALGO"], "All");
        assert_eq!(cur.incar["AMIX"], 0.1);
        assert_eq!(cur.incar["BMIX"], 0.01);
        assert_eq!(cur.nelm, Some(400));
        let t = write_incar(&cur).unwrap();
        assert!(t.contains("ALGO = All\n") && t.contains("NELM = 400\n") && t.contains("ENCUT = 520\n"), "{t}");
        // a user's NELM in `incar` (lower case) is raised there, not duplicated
        let mut u = VaspSettings { nelm: None, ..VaspSettings::default() };
        u.incar.insert("nelm".into(), serde_json::json!(80));
        let (v, what) = remediate(&u, 1).unwrap();
        assert_eq!(v.incar["nelm"], 200);
        assert!(v.nelm.is_none() && write_incar(&v).is_ok(), "{what}");
        // a rung with nothing left to change is skipped: ALGO All and NELM 500 already
        let mut w = VaspSettings { nelm: Some(500), ..VaspSettings::default() };
        w.incar.insert("ALGO".into(), serde_json::json!("All"));
        let (x, what) = remediate(&w, 1).unwrap();
        assert!(what.contains("NELM 500 -> 1000"), "{what}");
        let (_, what) = remediate(&x, 2).unwrap();
        assert!(what.contains("AMIX") && !what.contains("ALGO"), "{what}");
        // ALGO Damped (hybrid functionals) is not switched to All
        let mut d = VaspSettings::default();
        d.incar.insert("ALGO".into(), serde_json::json!("Damped"));
        let (e, _) = remediate(&d, 2).unwrap();
        assert_eq!(e.incar["ALGO"], "Damped");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..300 {
            let n = (round * 41) % 3000;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_vasprun(&text, "random");
            let _ = parse_outcar(&text, "random");
            let _ = parse_poscar(&text);
            let printable: String = bytes.iter().map(|b| (b'0' + b % 64) as char).collect();
            let xml = format!(
                "<modeling><calculation><scstep>{printable}</scstep><varray name=\"forces\" ><v>{printable}</v></varray><energy><i name=\"e_fr_energy\">{printable}</i></energy></calculation></modeling>"
            );
            let _ = parse_vasprun(&xml, "mixed");
            let _ = parse_vasprun(&xml[..xml.len() * (round % 7 + 1) / 8], "mixed");
            let outcar = format!(
                "vasp.6\nNIONS = 2\nPOSITION  TOTAL-FORCE\n---\n{printable}\n in kB {printable}\nfree  energy   TOTEN  = {printable}\n ---- Iteration 1( {printable})\n"
            );
            let _ = parse_outcar(&outcar, "mixed");
        }
    }
}
