//! ORCA: settings, input writer and output parsers (text output and `.engrad`).
//!
//! Everything here is pure (text in, values out) except [`read_orca_output`], which
//! reads a file (plain or gzip-compressed).
//!
//! Units: ORCA prints energies in Hartree (Eh) and gradients in Eh/bohr. They are
//! converted with CODATA 2018 (`autopipe_atoms::units`), the project's default set; ORCA
//! itself and ASE (CODATA 2014) differ in the 8th significant digit.
//! Forces are minus the gradient.

use crate::job_dir::remove_stale_outputs;
use crate::output::{
    crashed_output, describe_exit, floats, fortran_f64, join_msg, judge_exit, max_force, not_text_reason, tail_lines,
    ParseError, ParsedOutput, RunError, RunStatus,
};
use autopipe_atoms::units::{BOHR_A, HARTREE_EV};
use autopipe_atoms::{Element, Structure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const ENGINE: &str = "ORCA";

/// Eh -> eV as used for ORCA's energies (CODATA 2018).
pub const ORCA_HARTREE_TO_EV: f64 = HARTREE_EV;
/// bohr -> Å as used for ORCA's `.engrad` coordinates (CODATA 2018).
pub const ORCA_BOHR_TO_A: f64 = BOHR_A;
/// Eh/bohr -> eV/Å.
pub const HARTREE_PER_BOHR_TO_EV_PER_A: f64 = HARTREE_EV / BOHR_A;

// ---------------------------------------------------------------------------------
// Settings and input writing
// ---------------------------------------------------------------------------------

/// Basis set and effective core potential for one element, overriding the global basis
/// (`%basis NewGTO Pt "def2-TZVP" end NewECP Pt "def2-ECP" end end`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ElementBasis {
    pub basis: Option<String>,
    pub ecp: Option<String>,
}

/// Settings of an ORCA calculation on a molecule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrcaSettings {
    /// Total charge of the molecule.
    pub charge: i32,
    /// Spin multiplicity 2S+1.
    pub multiplicity: u32,
    /// Functional or method keyword, e.g. `PBE0`, `B3LYP`, `HF`.
    pub functional: String,
    /// Global orbital basis, e.g. `def2-TZVP`.
    pub basis: String,
    /// Element symbol -> basis/ECP override (heavy elements).
    pub element_basis: BTreeMap<String, ElementBasis>,
    /// Geometry optimisation (`Opt`). Gradients are printed every cycle.
    pub optimize: bool,
    /// `%geom MaxIter N end` (ORCA's default is 50 when None).
    pub opt_max_cycles: Option<u32>,
    /// Natural bond orbital analysis (`NBO`; needs NBO installed with ORCA).
    pub nbo: bool,
    /// `%scf MaxIter N end`.
    pub scf_max_iter: Option<u32>,
    /// `%pal nprocs N end` when > 1.
    pub cores: u32,
    /// `%maxcore` in MB per core.
    pub maxcore_mb: u32,
    /// Energy and gradient (`EnGrad`): forces for a single point. Not written together
    /// with `Opt` (an optimisation computes gradients anyway).
    pub engrad: bool,
    /// Further simple-input keywords, e.g. `["TightSCF", "D3BJ", "RIJCOSX", "def2/J"]`.
    pub extra_keywords: Vec<String>,
    /// The ORCA executable (full path for parallel runs, as ORCA requires).
    pub command: String,
}

impl Default for OrcaSettings {
    fn default() -> Self {
        OrcaSettings {
            charge: 0,
            multiplicity: 1,
            functional: "PBE0".into(),
            basis: "def2-TZVP".into(),
            element_basis: BTreeMap::new(),
            optimize: false,
            opt_max_cycles: None,
            nbo: false,
            scf_max_iter: Some(125),
            cores: 1,
            maxcore_mb: 2000,
            engrad: true,
            extra_keywords: Vec::new(),
            command: "orca".into(),
        }
    }
}

fn check_word(what: &str, w: &str) -> Result<(), String> {
    if w.trim().is_empty() || w.chars().any(|c| c.is_whitespace() || matches!(c, '%' | '*' | '!' | '"' | '#')) {
        return Err(format!("{what} {w:?} is not a valid ORCA keyword"));
    }
    Ok(())
}

fn check_settings(structure: &Structure, s: &OrcaSettings) -> Result<(), String> {
    check_word("functional", &s.functional)?;
    check_word("basis", &s.basis)?;
    for k in &s.extra_keywords {
        check_word("extra keyword", k)?;
    }
    if s.multiplicity == 0 {
        return Err("multiplicity must be >= 1".into());
    }
    if s.cores == 0 {
        return Err("cores must be >= 1".into());
    }
    if s.maxcore_mb == 0 {
        return Err("maxcore_mb must be >= 1".into());
    }
    if s.scf_max_iter == Some(0) || s.opt_max_cycles == Some(0) {
        return Err("scf_max_iter and opt_max_cycles must be >= 1".into());
    }
    for (el, b) in &s.element_basis {
        if Element::from_symbol(el).is_none() {
            return Err(format!("element_basis: unknown element {el:?}"));
        }
        for v in b.basis.iter().chain(b.ecp.iter()) {
            if v.is_empty() || v.contains('"') || v.contains('\n') {
                return Err(format!("element_basis.{el}: invalid name {v:?}"));
            }
        }
    }
    // electron count and multiplicity must have matching parity
    let electrons: i64 = structure.species.iter().map(|e| i64::from(e.z())).sum::<i64>() - i64::from(s.charge);
    if electrons < 0 {
        return Err(format!("charge {} leaves {electrons} electrons", s.charge));
    }
    let unpaired = i64::from(s.multiplicity) - 1;
    if unpaired > electrons || (electrons - unpaired) % 2 != 0 {
        return Err(format!(
            "multiplicity {} is impossible with {electrons} electrons (charge {})",
            s.multiplicity, s.charge
        ));
    }
    Ok(())
}

/// The ORCA input for a molecule: simple-input line, `%maxcore`, `%pal`, `%scf`,
/// `%geom`, `%basis` blocks and the `* xyz charge multiplicity` block in Å.
///
/// ORCA computes molecules: a structure periodic along any direction is refused.
pub fn write_orca_input(structure: &Structure, settings: &OrcaSettings) -> Result<String, RunError> {
    structure.validate().map_err(|e| RunError::Settings(format!("structure: {e}")))?;
    if structure.is_empty() {
        return Err(RunError::Settings("structure has no atoms".into()));
    }
    if structure.pbc.iter().any(|&p| p) {
        return Err(RunError::Settings(
            "ORCA computes molecules, but the structure is periodic (set pbc to false)".into(),
        ));
    }
    check_settings(structure, settings).map_err(RunError::Settings)?;
    let s = settings;
    let mut words = vec![s.functional.clone(), s.basis.clone()];
    if s.optimize {
        words.push("Opt".into());
    } else if s.engrad {
        words.push("EnGrad".into());
    }
    if s.nbo {
        words.push("NBO".into());
    }
    words.extend(s.extra_keywords.iter().cloned());
    let mut o = String::new();
    let _ = writeln!(o, "! {}", words.join(" "));
    let _ = writeln!(o, "%maxcore {}", s.maxcore_mb);
    if s.cores > 1 {
        let _ = writeln!(o, "%pal nprocs {} end", s.cores);
    }
    if let Some(n) = s.scf_max_iter {
        let _ = writeln!(o, "%scf MaxIter {n} end");
    }
    if let (true, Some(n)) = (s.optimize, s.opt_max_cycles) {
        let _ = writeln!(o, "%geom MaxIter {n} end");
    }
    // only overrides for elements present, in a stable order
    let present: Vec<&String> =
        s.element_basis.keys().filter(|el| structure.species.iter().any(|e| e.symbol() == el.as_str())).collect();
    let has_override = present.iter().any(|el| {
        let b = &s.element_basis[*el];
        b.basis.is_some() || b.ecp.is_some()
    });
    if has_override {
        let _ = writeln!(o, "%basis");
        for el in present {
            let b = &s.element_basis[el];
            if let Some(g) = &b.basis {
                let _ = writeln!(o, "  NewGTO {el} \"{g}\" end");
            }
            if let Some(e) = &b.ecp {
                let _ = writeln!(o, "  NewECP {el} \"{e}\" end");
            }
        }
        let _ = writeln!(o, "end");
    }
    let _ = writeln!(o, "* xyz {} {}", s.charge, s.multiplicity);
    for (e, p) in structure.species.iter().zip(&structure.positions_a) {
        let _ = writeln!(o, "  {:<2} {:>16.10} {:>16.10} {:>16.10}", e.symbol(), p[0], p[1], p[2]);
    }
    let _ = writeln!(o, "*");
    Ok(o)
}

/// Simple-input keywords that are SCF convergence knobs (and that [`remediate`] may add
/// or swap): they never define a label, so [`label_params`] leaves them out.
pub const SCF_KNOB_KEYWORDS: &[&str] = &[
    "SlowConv",
    "VerySlowConv",
    "KDIIS",
    "SOSCF",
    "NoSOSCF",
    "DIIS",
    "NoDIIS",
    "TRAH",
    "NoTRAH",
    "AutoTRAH",
    "NoAutoStart",
    "MORead",
];

/// Keywords that change how ORCA runs or prints, not what it computes: the knobs of
/// [`SCF_KNOB_KEYWORDS`], `PALn` (cores) and the print levels.
fn is_non_label_keyword(k: &str) -> bool {
    let l = k.to_ascii_lowercase();
    SCF_KNOB_KEYWORDS.iter().any(|w| w.eq_ignore_ascii_case(k))
        || (l.starts_with("pal") && l.len() > 3 && l[3..].bytes().all(|b| b.is_ascii_digit()))
        || matches!(l.as_str(), "miniprint" | "smallprint" | "normalprint" | "largeprint" | "printbasis" | "printmos")
}

/// The label-defining settings (no cores, memory, SCF iteration limit, command, SCF
/// convergence-knob keywords, `PALn` or print-level keywords).
pub fn label_params(settings: &OrcaSettings) -> serde_json::Value {
    let s = settings;
    let extra_keywords: Vec<&String> = s.extra_keywords.iter().filter(|k| !is_non_label_keyword(k)).collect();
    serde_json::json!({
        "engine": "orca",
        "charge": s.charge,
        "multiplicity": s.multiplicity,
        "functional": s.functional,
        "basis": s.basis,
        "element_basis": s.element_basis,
        "optimize": s.optimize,
        "extra_keywords": extra_keywords,
    })
}

fn has_keyword(s: &OrcaSettings, k: &str) -> bool {
    s.extra_keywords.iter().any(|w| w.eq_ignore_ascii_case(k))
}

/// The remediation ladder for a physics failure (SCF not converged). `failed_attempt`
/// is the number of the attempt that just failed (1 = the first run; 0 is read as 1),
/// `settings` the settings it used. Only SCF convergence knobs change (`%scf MaxIter`
/// and the keywords of [`SCF_KNOB_KEYWORDS`]); functional, basis, charge, multiplicity
/// and every other label-defining setting stay:
///
/// 1. MaxIter -> at least 2× (and >= 300), `SlowConv` (more damping);
/// 2. `SlowConv` -> `VerySlowConv`, MaxIter -> >= 500;
/// 3. `KDIIS` and `SOSCF` (another DIIS and a second-order converger), MaxIter -> >= 1000.
///
/// A rung that would change nothing is skipped; None when the ladder is exhausted.
pub fn remediate(settings: &OrcaSettings, failed_attempt: u32) -> Option<(OrcaSettings, String)> {
    let mut rung = failed_attempt.max(1);
    // ORCA's own default MaxIter is 125
    let max_iter = settings.scf_max_iter.unwrap_or(125);
    loop {
        let mut s = settings.clone();
        let mut added: Vec<&str> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        match rung {
            1 => {
                s.scf_max_iter = Some(max_iter.saturating_mul(2).max(300));
                if !has_keyword(&s, "SlowConv") && !has_keyword(&s, "VerySlowConv") {
                    added.push("SlowConv");
                }
            }
            2 => {
                s.scf_max_iter = Some(max_iter.max(500));
                if !has_keyword(&s, "VerySlowConv") {
                    removed.extend(s.extra_keywords.iter().filter(|w| w.eq_ignore_ascii_case("SlowConv")).cloned());
                    added.push("VerySlowConv");
                }
            }
            3 => {
                s.scf_max_iter = Some(max_iter.max(1000));
                for k in ["KDIIS", "SOSCF"] {
                    if !has_keyword(&s, k) {
                        added.push(k);
                    }
                }
                // SOSCF would be switched off again by NoSOSCF
                removed.extend(s.extra_keywords.iter().filter(|w| w.eq_ignore_ascii_case("NoSOSCF")).cloned());
            }
            _ => return None,
        }
        s.extra_keywords.retain(|w| !removed.contains(w));
        s.extra_keywords.extend(added.iter().map(|k| k.to_string()));
        let mut what = Vec::new();
        if s.scf_max_iter != settings.scf_max_iter {
            what.push(format!("SCF MaxIter {max_iter} -> {}", s.scf_max_iter.unwrap_or(0)));
        }
        if !removed.is_empty() {
            what.push(format!("keywords removed: {}", removed.join(" ")));
        }
        if !added.is_empty() {
            what.push(format!("keywords added: {}", added.join(" ")));
        }
        if !what.is_empty() {
            debug_assert_eq!(label_params(settings), label_params(&s));
            return Some((s, what.join(", ")));
        }
        rung += 1;
    }
}

// ---------------------------------------------------------------------------------
// Runner (I/O)
// ---------------------------------------------------------------------------------

const ORCA_HINT: &str = " (ORCA is not installed by autopipe: download it from the ORCA forum \
(orcaforum.kofo.mpg.de, free for academic use) and set the ORCA command in [oracle] to the full \
path of the `orca` executable, which ORCA needs for parallel runs)";

/// The program to start: `command` itself when it holds a `/`, else its full path found
/// on `PATH` (ORCA restarts itself through this path for parallel runs).
fn resolve_program(command: &str) -> Option<std::path::PathBuf> {
    if command.contains('/') {
        return Some(std::path::PathBuf::from(command));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(command)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Run ORCA on one molecule in `job_dir`: writes `orca.inp`, runs
/// `<settings.command> orca.inp` there (the command is the path of the `orca`
/// executable, not a shell line; a bare name is resolved to its full path on `PATH`,
/// which ORCA needs for parallel runs), stdout to `orca.out`, stderr to `orca.err`,
/// waits, and parses `orca.out`. For a single point (`engrad`, no `optimize`), the forces
/// come from `orca.engrad` when it is present (more digits than the printed gradient).
/// The atom order is the structure's. It never kills ORCA: time limits belong to the
/// caller's executor (which kills the process group).
///
/// A missing ORCA is a `RunError::Spawn` saying how to install and configure it; an ORCA
/// that dies before writing a recognisable output gives a `crashed` result with the exit
/// status and the end of `orca.err`.
pub fn run_orca(job_dir: &Path, structure: &Structure, settings: &OrcaSettings) -> Result<ParsedOutput, RunError> {
    let input = write_orca_input(structure, settings)?;
    let command = settings.command.trim();
    if command.is_empty() {
        return Err(RunError::Settings(format!("the ORCA command is empty{ORCA_HINT}")));
    }
    let program = resolve_program(command).ok_or_else(|| RunError::Spawn {
        command: command.to_string(),
        error: "not found on PATH".into(),
        hint: ORCA_HINT,
    })?;
    let io = |p: &Path, e: std::io::Error| RunError::Io { path: p.display().to_string(), error: e.to_string() };
    std::fs::create_dir_all(job_dir).map_err(|e| io(job_dir, e))?;
    let in_path = job_dir.join("orca.inp");
    std::fs::write(&in_path, &input).map_err(|e| io(&in_path, e))?;
    let engrad_path = job_dir.join("orca.engrad");
    // gradients of an earlier attempt must not be read as this run's
    remove_stale_outputs(job_dir, &["orca.engrad"])?;
    let out_path = job_dir.join("orca.out");
    let err_path = job_dir.join("orca.err");
    let stdout = std::fs::File::create(&out_path).map_err(|e| io(&out_path, e))?;
    let stderr = std::fs::File::create(&err_path).map_err(|e| io(&err_path, e))?;
    let status = std::process::Command::new(&program)
        .arg("orca.inp")
        .current_dir(job_dir)
        .env("OMP_NUM_THREADS", "1")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|e| RunError::Spawn {
            command: format!("{} orca.inp", program.display()),
            error: e.to_string(),
            hint: ORCA_HINT,
        })?;

    let text = crate::output::read_output_file(&out_path)?;
    let err_text = std::fs::read_to_string(&err_path).unwrap_or_default();
    let detail = format!("stderr: {}", tail_lines(&err_text, 5));
    let mut p = match parse_orca_output(&text, &out_path.display().to_string()) {
        Ok(p) => judge_exit("ORCA", p, &status, &detail),
        Err(ParseError::NotAnOutput { .. }) if !status.success() => {
            return Ok(crashed_output(format!("ORCA {} before writing an output; {detail}", describe_exit(&status))))
        }
        Err(e) => return Err(e.into()),
    };
    // a single point's forces from orca.engrad (12 decimals instead of 9)
    if p.status == RunStatus::Converged && settings.engrad && !settings.optimize && engrad_path.exists() {
        let g = std::fs::read_to_string(&engrad_path)
            .map_err(|e| ParseError::Io { file: engrad_path.display().to_string(), error: e.to_string() })
            .and_then(|t| parse_engrad_from(&t, &engrad_path.display().to_string()));
        match g {
            Ok(g) if g.natoms == structure.len() => {
                p.max_force_ev_per_a = Some(max_force(&g.forces_ev_per_a));
                p.forces_ev_per_a = Some(g.forces_ev_per_a);
                if p.energy_ev.is_none() {
                    p.energy_ev = Some(g.energy_ev);
                }
            }
            Ok(g) => {
                p.message = Some(join_msg(
                    p.message.take(),
                    format!("orca.engrad has {} atoms, the structure {}: ignored", g.natoms, structure.len()),
                ))
            }
            Err(e) => p.message = Some(join_msg(p.message.take(), format!("orca.engrad ignored: {e}"))),
        }
    }
    if let Some(f) = &p.forces_ev_per_a {
        if f.len() != structure.len() {
            p.message = Some(join_msg(
                p.message.take(),
                format!("ORCA printed {} gradients for {} atoms: forces dropped", f.len(), structure.len()),
            ));
            p.forces_ev_per_a = None;
            p.max_force_ev_per_a = None;
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------
// Output parser
// ---------------------------------------------------------------------------------

/// Parse ORCA's text output.
///
/// * energy: the last `FINAL SINGLE POINT ENERGY` (Eh -> eV);
/// * scf_steps: the last `SCF CONVERGED AFTER N CYCLES` / `SCF NOT CONVERGED AFTER N CYCLES`;
/// * forces: minus the last `CARTESIAN GRADIENT` block (Eh/bohr -> eV/Å);
/// * wall time: `TOTAL RUN TIME: d days h hours m minutes s seconds ms msec`;
/// * optimisation cycles (`GEOMETRY OPTIMIZATION CYCLE N`) go into `message`;
/// * status: SCF not converged (`SCF NOT CONVERGED AFTER`, `This wavefunction IS NOT
///   CONVERGED!`) -> scf_not_converged (also when ORCA then aborts); `ORCA finished by
///   error termination` / `aborting the run` -> crashed; `The optimization did not
///   converge` -> relax_not_converged; no `ORCA TERMINATED NORMALLY` -> truncated.
///
/// Energy and forces are reported only for converged and relax_not_converged runs.
pub fn parse_orca_output(text: &str, source: &str) -> Result<ParsedOutput, ParseError> {
    let not_output = |reason: String| ParseError::NotAnOutput { engine: ENGINE, file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(text) {
        return Err(not_output(reason));
    }
    let mut saw_orca = false;
    let mut energy_eh: Option<f64> = None;
    let mut gradient: Option<Vec<[f64; 3]>> = None;
    let mut gradient_problem: Option<String> = None;
    let mut nat: Option<usize> = None;
    let mut scf_steps: Option<u32> = None;
    let mut scf_not_converged = false;
    let mut opt_cycles: Option<u32> = None;
    let mut opt_converged = false;
    let mut opt_failed: Option<String> = None;
    let mut error: Option<String> = None;
    let mut aborting = false;
    let mut terminated = false;
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
        if t.contains("O   R   C   A") || t.starts_with("Program Version") {
            saw_orca = true;
        }
        if let Some(rest) = t.strip_prefix("FINAL SINGLE POINT ENERGY") {
            match rest.split_whitespace().next().and_then(fortran_f64) {
                Some(e) => energy_eh = Some(e),
                None => bad.push(format!("line {i}: unreadable FINAL SINGLE POINT ENERGY")),
            }
        } else if let Some(k) = t.find("SCF CONVERGED AFTER") {
            // printed inside a box: `*           SCF CONVERGED AFTER   3 CYCLES          *`
            scf_steps = t[k + 19..].split_whitespace().next().and_then(|s| s.parse().ok());
            scf_not_converged = false;
        } else if let Some(k) = t.find("SCF NOT CONVERGED AFTER") {
            scf_steps = t[k + 23..].split_whitespace().next().and_then(|s| s.parse().ok());
            scf_not_converged = true;
        } else if t.contains("wavefunction IS NOT CONVERGED") {
            scf_not_converged = true;
        } else if t.starts_with("Number of atoms") {
            if let Some(n) = t.rsplit(|c: char| c.is_whitespace() || c == '.').next().and_then(|s| s.parse().ok()) {
                nat = Some(n);
            }
        } else if t == "CARTESIAN GRADIENT" || t.starts_with("CARTESIAN GRADIENT") && !t.contains("NORM") {
            let (g, problem, next) = read_gradient_block(&lines, i);
            i = next;
            gradient_problem = problem;
            gradient = Some(g);
        } else if t.contains("GEOMETRY OPTIMIZATION CYCLE") {
            let n = t.split("CYCLE").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|s| s.parse().ok());
            if n.is_some() {
                opt_cycles = n;
            }
        } else if t.contains("THE OPTIMIZATION HAS CONVERGED") || t.contains("OPTIMIZATION RUN DONE") {
            opt_converged = true;
        } else if t.starts_with("The optimization did not converge") {
            opt_failed = Some(t.to_string());
        } else if t.contains("ORCA TERMINATED NORMALLY") {
            terminated = true;
        } else if t.contains("ORCA finished by error termination") {
            // the lines just before say why
            let start = i.saturating_sub(4);
            let why: Vec<&str> =
                lines[start..i].iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with("---")).collect();
            error = Some(why.join(" | "));
        } else if t.contains("aborting the run") {
            aborting = true;
        } else if let Some(rest) = t.strip_prefix("TOTAL RUN TIME:") {
            wall = parse_run_time(rest).or(wall);
        } else if t.contains("Energy+Gradient Calculation") || t.starts_with("INPUT FILE") {
            saw_orca = true;
        }
    }

    if !saw_orca && energy_eh.is_none() && gradient.is_none() && !terminated {
        return Err(not_output("no ORCA banner, no `FINAL SINGLE POINT ENERGY` and no termination line".into()));
    }

    let opt_note = opt_cycles.map(|n| format!("geometry optimisation: {n} cycles"));
    let (status, mut message) = if scf_not_converged {
        let n = scf_steps.map(|n| format!(" after {n} cycles")).unwrap_or_default();
        let abort = if aborting || error.is_some() { "; ORCA aborted the run" } else { "" };
        (RunStatus::ScfNotConverged, Some(format!("SCF NOT CONVERGED{n}{abort}")))
    } else if let Some(e) = error {
        (RunStatus::Crashed, Some(format!("ORCA finished by error termination: {e}")))
    } else if aborting {
        (RunStatus::Crashed, Some("ORCA is aborting the run".into()))
    } else if !terminated {
        (
            RunStatus::Truncated,
            Some("the output stops before `ORCA TERMINATED NORMALLY` (killed, or still running)".into()),
        )
    } else if let Some(m) = opt_failed {
        (RunStatus::RelaxNotConverged, Some(m))
    } else if opt_cycles.is_some() && !opt_converged {
        (RunStatus::RelaxNotConverged, Some("the optimisation ended without `THE OPTIMIZATION HAS CONVERGED`".into()))
    } else {
        (RunStatus::Converged, None)
    };
    if let Some(n) = opt_note {
        message = Some(join_msg(message, n));
    }

    let mut out = ParsedOutput {
        energy_ev: None,
        forces_ev_per_a: None,
        stress_ev_per_a3: None,
        max_force_ev_per_a: None,
        scf_steps,
        wall_time_s: wall,
        status,
        message: None,
    };
    if matches!(status, RunStatus::Converged | RunStatus::RelaxNotConverged) {
        out.energy_ev = energy_eh.map(|e| e * HARTREE_EV);
        if out.energy_ev.is_none() {
            message = Some(join_msg(message, "no `FINAL SINGLE POINT ENERGY` line".into()));
        }
        if let Some(g) = gradient {
            let problem = gradient_problem.or_else(|| match nat {
                Some(n) if n != g.len() => Some(format!("gradient block has {} of {n} atoms", g.len())),
                _ => None,
            });
            match problem {
                Some(p) => message = Some(join_msg(message, p)),
                None => {
                    let f: Vec<[f64; 3]> = g.iter().map(|v| v.map(|x| -x * HARTREE_PER_BOHR_TO_EV_PER_A)).collect();
                    out.max_force_ev_per_a = Some(max_force(&f));
                    out.forces_ev_per_a = Some(f);
                }
            }
        }
    }
    if !bad.is_empty() {
        message = Some(join_msg(message, bad.join("; ")));
    }
    out.message = message;
    Ok(out)
}

/// Read the lines of a `CARTESIAN GRADIENT` block starting at `start` (just after the
/// title): `   1   O   :   -0.047131485   -0.047131485    0.0000000001`.
/// Returns the gradient, a problem if any, and the index of the first unread line.
fn read_gradient_block(lines: &[&str], start: usize) -> (Vec<[f64; 3]>, Option<String>, usize) {
    let mut i = start;
    // skip the underline and blank lines
    while i < lines.len() && (lines[i].trim().is_empty() || lines[i].trim().starts_with("---")) {
        i += 1;
    }
    let mut g = Vec::new();
    let mut problem = None;
    while i < lines.len() {
        let t = lines[i].trim();
        let Some((head, values)) = t.split_once(':') else { break };
        let mut h = head.split_whitespace();
        let idx_ok = h.next().is_some_and(|s| s.parse::<usize>().is_ok());
        let el_ok = h.next().is_some_and(|s| s.chars().all(|c| c.is_ascii_alphabetic()));
        if !idx_ok || !el_ok {
            break;
        }
        match floats::<3>(values.split_whitespace()) {
            Some(v) => g.push(v),
            None => problem = Some(format!("line {}: unreadable gradient", i + 1)),
        }
        i += 1;
    }
    if g.is_empty() && problem.is_none() {
        problem = Some("empty CARTESIAN GRADIENT block".into());
    }
    (g, problem, i)
}

/// `0 days 0 hours 0 minutes 52 seconds 153 msec` -> 52.153.
fn parse_run_time(s: &str) -> Option<f64> {
    let toks: Vec<&str> = s.split_whitespace().collect();
    if toks.len() < 2 || toks.len() & 1 == 1 {
        return None;
    }
    let mut total = 0.0;
    for pair in toks.chunks(2) {
        let v: f64 = pair[0].parse().ok()?;
        let unit = pair[1].to_ascii_lowercase();
        total += v * match unit.trim_end_matches('s') {
            "day" => 86400.0,
            "hour" => 3600.0,
            "minute" | "min" => 60.0,
            "second" | "sec" => 1.0,
            "mse" | "msec" | "millisecond" => 1e-3,
            _ => return None,
        };
    }
    Some(total)
}

/// What an ORCA `.engrad` file holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OrcaEngrad {
    pub natoms: usize,
    pub energy_ev: f64,
    /// Forces (minus the gradient) in eV/Å.
    pub forces_ev_per_a: Vec<[f64; 3]>,
    /// Atomic numbers, when the coordinate section is present.
    pub atomic_numbers: Vec<u8>,
    /// Positions in Å, when the coordinate section is present.
    pub positions_a: Vec<[f64; 3]>,
}

/// Parse an ORCA `.engrad` file: `#` comment lines, then the number of atoms, the
/// energy (Eh), 3N gradient components (Eh/bohr) and N lines `Z x y z` (bohr).
pub fn parse_engrad(text: &str) -> Result<OrcaEngrad, ParseError> {
    parse_engrad_from(text, "<engrad>")
}

/// [`parse_engrad`] naming the file in errors.
pub fn parse_engrad_from(text: &str, source: &str) -> Result<OrcaEngrad, ParseError> {
    let err = |reason: String| ParseError::NotAnOutput { engine: "ORCA .engrad", file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(text) {
        return Err(err(reason));
    }
    let mut toks =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).flat_map(str::split_whitespace);
    let natoms: usize = toks
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0 && n < 10_000_000)
        .ok_or_else(|| err("the first value is not a number of atoms".into()))?;
    let energy_eh =
        toks.next().and_then(fortran_f64).ok_or_else(|| err("no energy after the number of atoms".into()))?;
    let mut forces = Vec::with_capacity(natoms.min(100_000));
    for a in 0..natoms {
        let v = floats::<3>(toks.by_ref().take(3))
            .ok_or_else(|| err(format!("gradient of atom {} is missing or unreadable", a + 1)))?;
        forces.push(v.map(|x| -x * HARTREE_PER_BOHR_TO_EV_PER_A));
    }
    let mut atomic_numbers = Vec::new();
    let mut positions_a = Vec::new();
    for _ in 0..natoms {
        let Some(z) = toks.next() else { break };
        let z: u8 = z.parse().map_err(|_| err(format!("atomic number {z:?} is not a number")))?;
        let p = floats::<3>(toks.by_ref().take(3)).ok_or_else(|| err("unreadable coordinates".into()))?;
        atomic_numbers.push(z);
        positions_a.push(p.map(|x| x * BOHR_A));
    }
    if !atomic_numbers.is_empty() && atomic_numbers.len() != natoms {
        return Err(err(format!("{} of {natoms} atoms in the coordinate section", atomic_numbers.len())));
    }
    Ok(OrcaEngrad { natoms, energy_ev: energy_eh * HARTREE_EV, forces_ev_per_a: forces, atomic_numbers, positions_a })
}

/// Read an ORCA output file, transparently decompressing `.gz` (detected by the gzip
/// magic bytes, whatever the file name), and parse it.
pub fn read_orca_output(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = read_maybe_gz(path)?;
    parse_orca_output(&text, &path.display().to_string())
}

/// The text of a file, gunzipped when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<String, ParseError> {
    let io = |e: std::io::Error| ParseError::Io { file: path.display().to_string(), error: e.to_string() };
    let bytes = std::fs::read(path).map_err(io)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).map_err(io)?;
        Ok(crate::output::bytes_to_text(&out).into_owned())
    } else {
        Ok(crate::output::bytes_to_text(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn water() -> Structure {
        let o = Element::from_symbol("O").unwrap();
        let h = Element::from_symbol("H").unwrap();
        Structure::new(
            [[0.0; 3]; 3],
            vec![[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2399872, 0.9266272, 0.0]],
            vec![o, h, h],
            [false; 3],
        )
        .unwrap()
    }

    #[test]
    fn run_time() {
        assert_eq!(parse_run_time(" 0 days 0 hours 0 minutes 52 seconds 153 msec"), Some(52.153));
        assert_eq!(parse_run_time("1 days 2 hours 3 minutes 4 seconds 5 msec"), Some(86400.0 + 7200.0 + 180.0 + 4.005));
        assert_eq!(parse_run_time("abc"), None);
    }

    #[test]
    fn input_block_and_keywords() {
        let mut s = OrcaSettings { optimize: true, nbo: true, cores: 4, scf_max_iter: Some(300), ..Default::default() };
        s.extra_keywords.push("TightSCF".into());
        let inp = write_orca_input(&water(), &s).unwrap();
        assert!(inp.starts_with("! PBE0 def2-TZVP Opt NBO TightSCF\n"), "{inp}");
        assert!(inp.contains("%pal nprocs 4 end"));
        assert!(inp.contains("%scf MaxIter 300 end"));
        assert!(inp.contains("%maxcore 2000"));
        assert!(inp.contains("* xyz 0 1\n  O      0.0000000000"));
        assert!(inp.trim_end().ends_with('*'));
        // odd electron count with a singlet is refused
        let bad = OrcaSettings { charge: 1, ..Default::default() };
        assert!(matches!(write_orca_input(&water(), &bad), Err(RunError::Settings(m)) if m.contains("multiplicity")));
        let ok = OrcaSettings { charge: 1, multiplicity: 2, ..Default::default() };
        assert!(write_orca_input(&water(), &ok).unwrap().contains("* xyz 1 2"));
        let mut periodic = water();
        periodic.cell_a = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];
        periodic.pbc = [true; 3];
        assert!(write_orca_input(&periodic, &OrcaSettings::default()).is_err());
    }

    #[test]
    fn label_params_ignore_knobs_and_run_options() {
        let a = OrcaSettings { extra_keywords: vec!["TightSCF".into(), "D3BJ".into()], ..Default::default() };
        let mut b = a.clone();
        b.scf_max_iter = Some(999);
        b.cores = 16;
        b.maxcore_mb = 8000;
        b.command = "/opt/orca/orca".into();
        b.extra_keywords.extend(["slowconv", "KDIIS", "SOSCF", "PAL8", "MiniPrint"].map(String::from));
        assert_eq!(label_params(&a), label_params(&b));
        for change in [
            |s: &mut OrcaSettings| s.functional = "B3LYP".into(),
            |s: &mut OrcaSettings| s.basis = "def2-SVP".into(),
            |s: &mut OrcaSettings| s.charge = 1,
            |s: &mut OrcaSettings| s.multiplicity = 3,
            |s: &mut OrcaSettings| s.extra_keywords.retain(|k| k != "TightSCF"),
            |s: &mut OrcaSettings| s.extra_keywords.push("RIJCOSX".into()),
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert_ne!(label_params(&a), label_params(&c), "{c:?}");
        }
    }

    #[test]
    fn ladder_changes_only_knobs_and_ends() {
        let start = OrcaSettings { extra_keywords: vec!["TightSCF".into()], ..Default::default() };
        let mut cur = start.clone();
        let mut steps = Vec::new();
        for attempt in 1.. {
            assert!(attempt < 10);
            match remediate(&cur, attempt) {
                Some((next, what)) => {
                    assert_eq!(label_params(&next), label_params(&start));
                    assert!(write_orca_input(&water(), &next).is_ok());
                    steps.push(what);
                    cur = next;
                }
                None => break,
            }
        }
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert!(steps[0].contains("MaxIter 125 -> 300") && steps[0].contains("SlowConv"), "{steps:?}");
        assert!(steps[1].contains("removed: SlowConv") && steps[1].contains("added: VerySlowConv"), "{steps:?}");
        assert_eq!(cur.extra_keywords, ["TightSCF", "VerySlowConv", "KDIIS", "SOSCF"]);
        assert_eq!(cur.scf_max_iter, Some(1000));
        let inp = write_orca_input(&water(), &cur).unwrap();
        assert!(inp.starts_with("! PBE0 def2-TZVP EnGrad TightSCF VerySlowConv KDIIS SOSCF\n"), "{inp}");
        assert!(inp.contains("%scf MaxIter 1000 end"));
        // already VerySlowConv: rung 2 has only MaxIter to change
        let v =
            OrcaSettings { extra_keywords: vec!["VerySlowConv".into()], scf_max_iter: Some(600), ..Default::default() };
        let (_, what) = remediate(&v, 2).unwrap();
        assert!(what.contains("KDIIS"), "{what}");
        assert!(remediate(&cur, 3).is_none());
    }

    #[test]
    fn settings_defaults_and_unknown_fields() {
        let s: OrcaSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, OrcaSettings::default());
        assert!(serde_json::from_str::<OrcaSettings>(r#"{"mult": 1}"#).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..300 {
            let n = (round * 37) % 3000;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_orca_output(&text, "random");
            let _ = parse_engrad(&text);
            // printable noise with ORCA markers mixed in
            let printable: String = bytes.iter().map(|b| (b'0' + b % 64) as char).collect();
            let mixed = format!(
                "CARTESIAN GRADIENT\n{printable}\nFINAL SINGLE POINT ENERGY {printable}\nTOTAL RUN TIME: {printable}\n"
            );
            let _ = parse_orca_output(&mixed, "mixed");
            let _ = parse_engrad(&format!("3\n{printable}"));
        }
    }
}
