//! CP2K (Quickstep, GPW): input writer, settings, remediation ladder, runner and
//! output parser.
//!
//! Parsing and input writing are pure (text in, values out); only [`run_cp2k`] touches
//! files and processes.
//!
//! Units: CP2K prints energies in Hartree, forces in Hartree/bohr and the stress in GPa
//! (or bar, with `STRESS_UNIT`). They are converted with the constants CP2K itself uses
//! (`common/physcon.F`, CODATA 2006, unchanged from CP2K 2.x to 2025.x; printed by
//! `&GLOBAL &PRINT PHYSCON`).
//!
//! Output layouts read (found in public outputs of several versions):
//!
//! | | ≤ 7.1 | 8.1 – 2024.x | 2025.x |
//! |---|---|---|---|
//! | energy | `ENERGY\| Total FORCE_EVAL ( QS ) energy (a.u.):` | `... energy [a.u.]:` | `... energy [hartree]` |
//! | forces | `ATOMIC FORCES in [a.u.]` table | same | `FORCES\| Atomic forces [hartree/bohr]` |
//! | stress | ` STRESS TENSOR [GPa]` with `X`/`Y`/`Z` rows | `STRESS\| Analytical stress tensor [GPa]` | same (or `[bar]`) |

use crate::job_dir::remove_stale_outputs;
use crate::output::{
    crashed_output, describe_exit, fortran_f64, join_msg, judge_exit, last_run, max_force, not_text_reason,
    scheduler_kill, tail_lines, voigt, ParseError, ParsedOutput, RunError, RunStatus,
};
use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const ENGINE: &str = "CP2K";

/// CP2K's Bohr radius in Å (`a_bohr`, CODATA 2006).
pub const CP2K_BOHR_A: f64 = 0.529_177_208_59;
/// CP2K's Hartree in eV (`[a.u.] -> [eV]` of the PHYSCON printout, CODATA 2006).
pub const CP2K_HARTREE_EV: f64 = 27.211_383_856_556_3;
/// CP2K's atomic unit of pressure in Pa (`[a.u.] -> [Pa]`).
pub const CP2K_AU_PA: f64 = 2.942_101_079_947_16e13;
/// Hartree/bohr -> eV/Å.
pub const CP2K_HA_PER_BOHR_TO_EV_PER_A: f64 = CP2K_HARTREE_EV / CP2K_BOHR_A;
/// Hartree/bohr³ -> eV/Å³.
pub const CP2K_HA_PER_BOHR3_TO_EV_PER_A3: f64 = CP2K_HARTREE_EV / (CP2K_BOHR_A * CP2K_BOHR_A * CP2K_BOHR_A);
/// GPa -> eV/Å³ through CP2K's own a.u. of pressure.
pub const CP2K_GPA_TO_EV_PER_A3: f64 = 1e9 / CP2K_AU_PA * CP2K_HA_PER_BOHR3_TO_EV_PER_A3;

// ---------------------------------------------------------------------------------
// Output parser
// ---------------------------------------------------------------------------------

/// Parse CP2K's main output (`-o cp2k.out` or stdout).
///
/// * energy: the last `ENERGY| Total FORCE_EVAL ( .. ) energy` line (Hartree -> eV);
/// * forces: the last complete `ATOMIC FORCES in [a.u.]` or `FORCES| Atomic forces`
///   block after that energy (Ha/bohr -> eV/Å);
/// * stress: the last `STRESS| Analytical stress tensor [GPa|bar]` (or old
///   ` STRESS TENSOR [GPa]`) block, with ASE's sign (ASE stress = -CP2K stress);
/// * status: `[ABORT]` box -> crashed (with CP2K's message); `exceeded requested
///   execution time` -> out_of_time; no `PROGRAM ENDED AT` -> truncated, or what the
///   batch scheduler said at the end of the file (Slurm `... CANCELLED AT ... ***` ->
///   crashed, `... DUE TO TIME LIMIT ***` -> out_of_time, with its line); `SCF run NOT
///   converged` / `outer SCF loop FAILED` on the last SCF -> scf_not_converged (CP2K
///   exits 0 and prints energy and forces anyway: they are *not* reported);
///   `MAXIMUM NUMBER OF OPTIMIZATION STEPS REACHED` -> relax_not_converged.
#[allow(clippy::collapsible_match, clippy::collapsible_if)]
pub fn parse_cp2k_output(text: &str, source: &str) -> Result<ParsedOutput, ParseError> {
    let not_output = |reason: String| ParseError::NotAnOutput { engine: ENGINE, file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(text) {
        return Err(not_output(reason));
    }
    // A file holding several runs (appended outputs): parse the last one.
    let (text, line_offset) = last_run(text, "PROGRAM STARTED AT");

    let mut saw_program = false;
    let mut natoms: Option<usize> = None;
    let mut energy_ha: Option<f64> = None;
    let mut n_energies = 0usize;
    let mut forces: Option<Vec<[f64; 3]>> = None;
    let mut forces_problem: Option<String> = None;
    let mut stress_ev: Option<[f64; 6]> = None;
    let mut last_scf_converged: Option<bool> = None;
    let mut scf_steps: Option<u32> = None;
    let mut out_of_time = false;
    let mut relax_failed: Option<String> = None;
    let mut abort: Option<String> = None;
    let mut ended = false;
    let mut wall: Option<f64> = None;
    let mut bad_numbers: Vec<String> = Vec::new();

    let mut lines = text.lines().enumerate().peekable();
    while let Some((lineno, line)) = lines.next() {
        let t = line.trim();
        let Some(&first) = t.as_bytes().first() else { continue };
        match first {
            b'E' => {
                if t.starts_with("ENERGY| Total FORCE_EVAL") {
                    match t.split_whitespace().last().and_then(fortran_f64) {
                        Some(e) => {
                            energy_ha = Some(e);
                            n_energies += 1;
                            forces = None;
                            forces_problem = None;
                            stress_ev = None;
                        }
                        None => bad_numbers.push(format!("line {}: unreadable energy", lineno + 1 + line_offset)),
                    }
                }
            }
            b'A' => {
                if t.starts_with("ATOMIC FORCES in") {
                    // blank, `# Atom Kind Element X Y Z`, rows, `SUM OF ATOMIC FORCES`
                    let mut f = Vec::new();
                    let mut complete = false;
                    let mut problem = None;
                    while let Some((ln, l)) = lines.peek() {
                        let lt = l.trim();
                        if lt.is_empty() || lt.starts_with('#') {
                            lines.next();
                            if f.is_empty() {
                                continue;
                            }
                            break;
                        }
                        if lt.starts_with("SUM OF ATOMIC FORCES") {
                            complete = true;
                            lines.next();
                            break;
                        }
                        let toks: Vec<&str> = lt.split_whitespace().collect();
                        if toks.len() < 6 || toks[0].parse::<usize>().is_err() {
                            break;
                        }
                        match crate::output::floats::<3>(toks[3..].iter()) {
                            Some(v) => f.push(v),
                            None => problem = Some(format!("line {}: unreadable force", ln + 1 + line_offset)),
                        }
                        lines.next();
                    }
                    finish_force_block(f, complete, problem, natoms, &mut forces, &mut forces_problem);
                }
            }
            b'F' => {
                if t.starts_with("FORCES| Atomic forces") {
                    let mut f = Vec::new();
                    let mut complete = false;
                    let mut problem = None;
                    while let Some(&(ln, l)) = lines.peek() {
                        let lt = l.trim();
                        let Some(rest) = lt.strip_prefix("FORCES|") else { break };
                        let toks: Vec<&str> = rest.split_whitespace().collect();
                        lines.next();
                        match toks.first() {
                            Some(&"Atom") => continue,
                            Some(&"Sum") => {
                                complete = true;
                                break;
                            }
                            Some(x) if x.parse::<usize>().is_ok() => {
                                match crate::output::floats::<3>(toks[1..].iter()) {
                                    Some(v) => f.push(v),
                                    None => problem = Some(format!("line {}: unreadable force", ln + 1 + line_offset)),
                                }
                            }
                            _ => break,
                        }
                    }
                    finish_force_block(f, complete, problem, natoms, &mut forces, &mut forces_problem);
                }
            }
            b'S' => {
                if t.starts_with("STRESS| Analytical stress tensor") || t.starts_with("STRESS| Numerical stress tensor")
                {
                    let factor = stress_unit_factor(t);
                    let mut m = [[0.0; 3]; 3];
                    let mut got = [false; 3];
                    while let Some((_, l)) = lines.peek() {
                        let lt = l.trim();
                        let Some(rest) = lt.strip_prefix("STRESS|") else { break };
                        let toks: Vec<&str> = rest.split_whitespace().collect();
                        if toks == ["x", "y", "z"] {
                            lines.next();
                            continue; // the `x y z` header
                        }
                        let row = match toks.first() {
                            Some(&"x") => 0,
                            Some(&"y") => 1,
                            Some(&"z") => 2,
                            _ => break,
                        };
                        if let Some(v) = crate::output::floats::<3>(toks[1..].iter()) {
                            m[row] = v;
                            got[row] = true;
                        }
                        lines.next();
                        if got.iter().all(|&g| g) {
                            break;
                        }
                    }
                    stress_ev = match (got.iter().all(|&g| g), factor) {
                        (true, Some(fac)) => Some(voigt(&m, -fac)),
                        _ => None,
                    };
                } else if t.starts_with("STRESS TENSOR [") {
                    // CP2K <= 7: ` STRESS TENSOR [GPa]`, blank, `X Y Z` header, rows `X  a b c`
                    let factor = stress_unit_factor(t);
                    let mut m = [[0.0; 3]; 3];
                    let mut got = [false; 3];
                    let mut seen = 0;
                    while let Some((_, l)) = lines.peek() {
                        let toks: Vec<&str> = l.split_whitespace().collect();
                        seen += 1;
                        if seen > 8 {
                            break;
                        }
                        lines.next();
                        let row = match toks.first() {
                            Some(&"X") => 0,
                            Some(&"Y") => 1,
                            Some(&"Z") => 2,
                            _ => continue,
                        };
                        if toks.len() == 3 {
                            continue; // header `X Y Z`
                        }
                        if let Some(v) = crate::output::floats::<3>(toks[1..].iter()) {
                            m[row] = v;
                            got[row] = true;
                        }
                        if got.iter().all(|&g| g) {
                            break;
                        }
                    }
                    stress_ev = match (got.iter().all(|&g| g), factor) {
                        (true, Some(fac)) => Some(voigt(&m, -fac)),
                        _ => None,
                    };
                } else if t.starts_with("SCF WAVEFUNCTION OPTIMIZATION") {
                    last_scf_converged = None;
                    scf_steps = None;
                }
            }
            b'*' => {
                if let Some(rest) = t.strip_prefix("*** SCF run converged in") {
                    last_scf_converged = Some(true);
                    scf_steps = rest.split_whitespace().next().and_then(|s| s.parse().ok()).or(scf_steps);
                } else if t.contains("SCF run NOT converged") {
                    last_scf_converged = Some(false);
                } else if t.contains("exceeded requested execution time") || t.contains("WALLTIME REACHED") {
                    out_of_time = true;
                } else if t.contains("MAXIMUM NUMBER OF OPTIMIZATION STEPS REACHED") {
                    relax_failed = Some("the maximum number of optimisation steps (MAX_ITER) was reached".into());
                } else if t.contains("PROGRAM ENDED AT") {
                    ended = true;
                } else if t.contains("PROGRAM STARTED AT") {
                    saw_program = true;
                } else if t.contains("[ABORT]") {
                    abort = Some(read_abort_box(&mut lines));
                }
            }
            b'L' => {
                if let Some(rest) = t.strip_prefix("Leaving inner SCF loop after reaching") {
                    scf_steps = rest.split_whitespace().next().and_then(|s| s.parse().ok()).or(scf_steps);
                }
            }
            b'o' => {
                // `outer SCF loop converged in 2 iterations or 23 steps`
                // `outer SCF loop FAILED to converge after 5 iterations or 125 steps`
                if t.starts_with("outer SCF loop") {
                    if t.contains("FAILED") {
                        last_scf_converged = Some(false);
                    } else if t.contains("converged") {
                        last_scf_converged = Some(true);
                    }
                    if let Some((_, r)) = t.split_once(" or ") {
                        scf_steps = r.split_whitespace().next().and_then(|s| s.parse().ok()).or(scf_steps);
                    }
                }
            }
            b'-' => {
                if let Some(rest) = t.strip_prefix("- Atoms:") {
                    if natoms.is_none() {
                        natoms = rest.trim().parse().ok();
                    }
                }
            }
            b'C' => {
                if t.starts_with("CP2K|") {
                    saw_program = true;
                } else if t.starts_with("CP2K ") {
                    // timing table: `CP2K   1  1.0   0.006   0.006   9.135   9.135`
                    let toks: Vec<&str> = t.split_whitespace().collect();
                    if toks.len() == 7 {
                        if let Some(w) = fortran_f64(toks[6]) {
                            wall = Some(w);
                        }
                    }
                }
            }
            _ => {
                if first == b'P' && t.starts_with("PROGRAM ENDED AT") {
                    ended = true;
                }
            }
        }
    }

    if !saw_program && n_energies == 0 {
        return Err(not_output(
            "no CP2K banner (`PROGRAM STARTED AT`, `CP2K|`) and no `ENERGY| Total FORCE_EVAL` line".into(),
        ));
    }

    let (status, mut message) = if let Some(a) = abort {
        (RunStatus::Crashed, Some(a))
    } else if out_of_time {
        (
            RunStatus::OutOfTime,
            Some("CP2K stopped at its time limit (WALLTIME: exceeded requested execution time)".into()),
        )
    } else if !ended {
        match scheduler_kill(text) {
            Some((status, m)) => (status, Some(m)),
            None => (
                RunStatus::Truncated,
                Some("the output stops before `PROGRAM ENDED AT` (killed, or still running)".into()),
            ),
        }
    } else if last_scf_converged == Some(false) {
        let n = scf_steps.map(|n| format!(" after {n} steps")).unwrap_or_default();
        (
            RunStatus::ScfNotConverged,
            Some(format!(
                "SCF run NOT converged{n} (CP2K exits 0 and still prints energy and forces; they are discarded)"
            )),
        )
    } else if let Some(m) = relax_failed {
        (RunStatus::RelaxNotConverged, Some(m))
    } else {
        (RunStatus::Converged, None)
    };

    let trusted = matches!(status, RunStatus::Converged | RunStatus::RelaxNotConverged);
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
    if trusted {
        out.energy_ev = energy_ha.map(|e| e * CP2K_HARTREE_EV);
        if let Some(p) = forces_problem {
            message = Some(join_msg(message, p));
        } else if let Some(f) = forces {
            let f: Vec<[f64; 3]> = f.iter().map(|v| v.map(|x| x * CP2K_HA_PER_BOHR_TO_EV_PER_A)).collect();
            out.max_force_ev_per_a = Some(max_force(&f));
            out.forces_ev_per_a = Some(f);
        }
        out.stress_ev_per_a3 = stress_ev;
        if out.energy_ev.is_none() {
            message = Some(join_msg(message, "no `ENERGY| Total FORCE_EVAL` line".into()));
        }
    }
    if !bad_numbers.is_empty() {
        message = Some(join_msg(message, bad_numbers.join("; ")));
    }
    out.message = message;
    Ok(out)
}

fn finish_force_block(
    f: Vec<[f64; 3]>,
    complete: bool,
    mut problem: Option<String>,
    natoms: Option<usize>,
    forces: &mut Option<Vec<[f64; 3]>>,
    forces_problem: &mut Option<String>,
) {
    if problem.is_none() {
        if !complete {
            problem = Some(format!("incomplete force block ({} rows, no sum line)", f.len()));
        } else if let Some(n) = natoms {
            if f.len() != n {
                problem = Some(format!("force block has {} of {} atoms", f.len(), n));
            }
        }
        if f.is_empty() && problem.is_none() {
            problem = Some("empty force block".into());
        }
    }
    *forces_problem = problem;
    *forces = Some(f);
}

/// eV/Å³ per printed unit from a header like `... [GPa]`, `[bar]`, `[a.u.]`.
fn stress_unit_factor(header: &str) -> Option<f64> {
    let unit = header.rsplit_once('[').map(|(_, u)| u.trim_end_matches(']').trim().to_ascii_lowercase())?;
    match unit.as_str() {
        "gpa" => Some(CP2K_GPA_TO_EV_PER_A3),
        "bar" => Some(1e-4 * CP2K_GPA_TO_EV_PER_A3),
        "mpa" => Some(1e-3 * CP2K_GPA_TO_EV_PER_A3),
        "a.u." | "au" => Some(CP2K_HA_PER_BOHR3_TO_EV_PER_A3),
        _ => None,
    }
}

/// The text of CP2K's `[ABORT]` box (the lines up to the closing row of stars), without
/// the borders and the ASCII-art figure on the left.
fn read_abort_box<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> String {
    let mut parts = Vec::new();
    for (_, l) in lines {
        let t = l.trim();
        if t.starts_with("****") || !t.starts_with('*') {
            break;
        }
        let inner = t.trim_start_matches('*').trim_end_matches('*');
        let text = inner.get(10.min(inner.len())..).unwrap_or("").trim();
        if !text.is_empty() {
            parts.push(text.to_string());
        }
    }
    if parts.is_empty() {
        "CP2K aborted ([ABORT])".into()
    } else {
        parts.join(" ")
    }
}

/// Read and parse an output file (what `autopipe parse` does): I/O errors, binary and
/// unrelated files are [`ParseError`]s naming the file.
pub fn parse_cp2k_file(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = crate::output::read_output_file(path)?;
    parse_cp2k_output(&text, &path.display().to_string())
}

// ---------------------------------------------------------------------------------
// Settings and input writing
// ---------------------------------------------------------------------------------

/// Settings of a CP2K Quickstep (GPW) single point.
///
/// Label-defining ([`label_params`]): `basis_set_file`, `potential_file`, `basis_sets`,
/// `potentials`, `xc_functional`, `cutoff_ry`, `rel_cutoff_ry`,
/// `kspacing_per_a`/`kpoints`, `smearing_temperature_k`, `scf_method`, `uks`,
/// `multiplicity`, `eps_scf` (the label's precision).
///
/// Convergence knobs (the remediation ladder changes only these): `mixing_method`,
/// `mixing_alpha`, `max_scf`, `outer_scf`, `added_mos`.
///
/// Run options: `command`, `mpi_ranks`, `omp_threads`, `walltime_s`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cp2kSettings {
    /// Found by bare name in CP2K's data directory (Debian: /usr/share/cp2k).
    pub basis_set_file: String,
    pub potential_file: String,
    /// Element symbol -> basis set name, e.g. `Si` -> `DZVP-MOLOPT-SR-GTH`.
    pub basis_sets: BTreeMap<String, String>,
    /// Element symbol -> pseudopotential name, e.g. `Si` -> `GTH-PBE-q4`.
    pub potentials: BTreeMap<String, String>,
    /// `&XC_FUNCTIONAL` name: PBE, PADE, BLYP, ...
    pub xc_functional: String,
    /// `&MGRID CUTOFF` in Ry.
    pub cutoff_ry: f64,
    /// `&MGRID REL_CUTOFF` in Ry.
    pub rel_cutoff_ry: f64,
    /// k-point density in 1/Å *including* 2π (mesh_i = max(1, ceil(|b_i| / kspacing)),
    /// as for QE); a 1×1×1 mesh is written as Γ-only (no `&KPOINTS`).
    pub kspacing_per_a: Option<f64>,
    pub kpoints: Option<[u32; 3]>,
    /// Fermi-Dirac smearing (`&SMEAR`) electronic temperature; None: no smearing.
    /// Smearing needs `scf_method = "diagonalization"`.
    pub smearing_temperature_k: Option<f64>,
    /// `diagonalization` (standard, with mixing) or `ot` (orbital transformation).
    pub scf_method: String,
    /// Unrestricted Kohn-Sham.
    pub uks: bool,
    pub multiplicity: Option<u32>,
    /// `&SCF EPS_SCF`.
    pub eps_scf: f64,
    /// `BROYDEN_MIXING`, `PULAY_MIXING`, `DIRECT_P_MIXING` (diagonalisation only).
    pub mixing_method: String,
    pub mixing_alpha: f64,
    /// `&SCF MAX_SCF` (inner loop).
    pub max_scf: u32,
    /// `&OUTER_SCF MAX_SCF`; None: no outer loop.
    pub outer_scf: Option<u32>,
    /// `ADDED_MOS` (empty states for smearing); None: max(10, 2 × atoms) with smearing.
    pub added_mos: Option<u32>,
    pub command: String,
    /// > 1: run under `mpirun --allow-run-as-root -np N`.
    pub mpi_ranks: u32,
    /// OMP_NUM_THREADS for cp2k.psmp (1: avoids oversubscription).
    pub omp_threads: u32,
    /// `&GLOBAL WALLTIME` in seconds: CP2K stops itself (status out_of_time).
    pub walltime_s: Option<f64>,
}

impl Default for Cp2kSettings {
    fn default() -> Self {
        Cp2kSettings {
            basis_set_file: "BASIS_MOLOPT".into(),
            potential_file: "GTH_POTENTIALS".into(),
            basis_sets: BTreeMap::new(),
            potentials: BTreeMap::new(),
            xc_functional: "PBE".into(),
            cutoff_ry: 400.0,
            rel_cutoff_ry: 50.0,
            kspacing_per_a: Some(0.25),
            kpoints: None,
            smearing_temperature_k: Some(300.0),
            scf_method: "diagonalization".into(),
            uks: false,
            multiplicity: None,
            eps_scf: 1e-7,
            mixing_method: "BROYDEN_MIXING".into(),
            mixing_alpha: 0.4,
            max_scf: 50,
            outer_scf: None,
            added_mos: None,
            command: "cp2k.psmp".into(),
            mpi_ranks: 1,
            omp_threads: 1,
            walltime_s: None,
        }
    }
}

fn keyword_ok(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/'))
}

fn check_settings(s: &Cp2kSettings) -> Result<(), String> {
    let pos = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(format!("{name} must be > 0, got {v}"))
        }
    };
    pos("cutoff_ry", s.cutoff_ry)?;
    pos("rel_cutoff_ry", s.rel_cutoff_ry)?;
    pos("eps_scf", s.eps_scf)?;
    if s.kpoints.is_none() {
        pos("kspacing_per_a", s.kspacing_per_a.ok_or("either kpoints or kspacing_per_a is needed")?)?;
    }
    if let Some(k) = s.kpoints {
        if k.contains(&0) {
            return Err(format!("kpoints must be >= 1, got {k:?}"));
        }
    }
    if let Some(t) = s.smearing_temperature_k {
        pos("smearing_temperature_k", t)?;
        if s.scf_method != "diagonalization" {
            return Err("smearing needs scf_method = \"diagonalization\"".into());
        }
    }
    if !matches!(s.scf_method.as_str(), "diagonalization" | "ot") {
        return Err(format!("scf_method must be diagonalization or ot, got {:?}", s.scf_method));
    }
    if !(s.mixing_alpha > 0.0 && s.mixing_alpha <= 1.0) {
        return Err(format!("mixing_alpha must be in (0, 1], got {}", s.mixing_alpha));
    }
    if s.max_scf == 0 || s.mpi_ranks == 0 || s.omp_threads == 0 {
        return Err("max_scf, mpi_ranks and omp_threads must be >= 1".into());
    }
    for (k, v) in [
        ("basis_set_file", &s.basis_set_file),
        ("potential_file", &s.potential_file),
        ("xc_functional", &s.xc_functional),
        ("mixing_method", &s.mixing_method),
    ] {
        if !keyword_ok(v) {
            return Err(format!("{k} {v:?} is not a valid CP2K keyword"));
        }
    }
    for (k, v) in s.basis_sets.iter().chain(&s.potentials) {
        if !keyword_ok(v) {
            return Err(format!("{v:?} (for {k}) is not a valid CP2K basis/potential name"));
        }
    }
    Ok(())
}

/// The CP2K input for an `ENERGY_FORCE` run with forces and (for fully periodic cells)
/// the analytical stress tensor printed.
pub fn write_cp2k_input(structure: &Structure, settings: &Cp2kSettings) -> Result<String, RunError> {
    check_settings(settings).map_err(RunError::Settings)?;
    structure.validate().map_err(|e| RunError::Settings(format!("structure: {e}")))?;
    if structure.is_empty() {
        return Err(RunError::Settings("structure has no atoms".into()));
    }
    let periodic = match structure.pbc {
        [true, true, true] => true,
        [false, false, false] => false,
        p => return Err(RunError::Settings(format!("partial periodicity {p:?} is not supported by the CP2K writer"))),
    };
    if structure.volume_a3().abs() < 1e-6 {
        return Err(RunError::Settings("CP2K needs a cell with a non-zero volume (also for molecules)".into()));
    }
    let s = settings;
    let f = |x: f64| format!("{x:.10}");
    let mut o = String::new();
    let _ = writeln!(o, "&GLOBAL\n  PROJECT cp2k\n  RUN_TYPE ENERGY_FORCE\n  PRINT_LEVEL LOW");
    if let Some(w) = s.walltime_s {
        let _ = writeln!(o, "  WALLTIME {}", f(w));
    }
    let _ = writeln!(o, "&END GLOBAL");
    let _ = writeln!(o, "&FORCE_EVAL\n  METHOD Quickstep");
    if periodic {
        let _ = writeln!(o, "  STRESS_TENSOR ANALYTICAL");
    }
    let _ = writeln!(o, "  &DFT");
    let _ = writeln!(o, "    BASIS_SET_FILE_NAME {}", s.basis_set_file);
    let _ = writeln!(o, "    POTENTIAL_FILE_NAME {}", s.potential_file);
    if s.uks {
        let _ = writeln!(o, "    UKS .TRUE.");
    }
    if let Some(m) = s.multiplicity {
        let _ = writeln!(o, "    MULTIPLICITY {m}");
    }
    let _ = writeln!(
        o,
        "    &MGRID\n      CUTOFF {}\n      REL_CUTOFF {}\n    &END MGRID",
        f(s.cutoff_ry),
        f(s.rel_cutoff_ry)
    );
    if !periodic {
        let _ = writeln!(o, "    &POISSON\n      PERIODIC NONE\n      POISSON_SOLVER MT\n    &END POISSON");
    }
    let mesh = match s.kpoints {
        Some(k) => k,
        None => crate::qe::kmesh_from_spacing(structure, s.kspacing_per_a.unwrap_or(0.25)),
    };
    if periodic && mesh != [1, 1, 1] {
        let _ = writeln!(
            o,
            "    &KPOINTS\n      SCHEME MONKHORST-PACK {} {} {}\n    &END KPOINTS",
            mesh[0], mesh[1], mesh[2]
        );
    }
    let _ = writeln!(o, "    &SCF");
    let _ = writeln!(o, "      EPS_SCF {:e}", s.eps_scf);
    let _ = writeln!(o, "      MAX_SCF {}", s.max_scf);
    if s.scf_method == "diagonalization" {
        let added = s.added_mos.unwrap_or(if s.smearing_temperature_k.is_some() {
            (2 * structure.len() as u32).max(10)
        } else {
            0
        });
        if added > 0 {
            let _ = writeln!(o, "      ADDED_MOS {added}");
        }
        let _ = writeln!(o, "      &DIAGONALIZATION\n        ALGORITHM STANDARD\n      &END DIAGONALIZATION");
        let _ = writeln!(
            o,
            "      &MIXING\n        METHOD {}\n        ALPHA {}\n      &END MIXING",
            s.mixing_method,
            f(s.mixing_alpha)
        );
        if let Some(t) = s.smearing_temperature_k {
            let _ = writeln!(
                o,
                "      &SMEAR ON\n        METHOD FERMI_DIRAC\n        ELECTRONIC_TEMPERATURE [K] {}\n      &END SMEAR",
                f(t)
            );
        }
    } else {
        let _ =
            writeln!(o, "      &OT\n        MINIMIZER DIIS\n        PRECONDITIONER FULL_SINGLE_INVERSE\n      &END OT");
    }
    if let Some(n) = s.outer_scf {
        let _ =
            writeln!(o, "      &OUTER_SCF\n        MAX_SCF {n}\n        EPS_SCF {:e}\n      &END OUTER_SCF", s.eps_scf);
    }
    let _ = writeln!(o, "    &END SCF");
    let _ = writeln!(o, "    &XC\n      &XC_FUNCTIONAL {}\n      &END XC_FUNCTIONAL\n    &END XC", s.xc_functional);
    let _ = writeln!(o, "  &END DFT");
    let _ = writeln!(o, "  &SUBSYS\n    &CELL");
    for (name, row) in ["A", "B", "C"].iter().zip(&structure.cell_a) {
        let _ = writeln!(o, "      {name} {} {} {}", f(row[0]), f(row[1]), f(row[2]));
    }
    let _ = writeln!(o, "      PERIODIC {}", if periodic { "XYZ" } else { "NONE" });
    let _ = writeln!(o, "    &END CELL\n    &COORD");
    for (e, p) in structure.species.iter().zip(&structure.positions_a) {
        let _ = writeln!(o, "      {} {} {} {}", e.symbol(), f(p[0]), f(p[1]), f(p[2]));
    }
    let _ = writeln!(o, "    &END COORD");
    let mut seen = Vec::new();
    for &e in &structure.species {
        if seen.contains(&e) {
            continue;
        }
        seen.push(e);
        let sym = e.symbol();
        let basis = s
            .basis_sets
            .get(sym)
            .ok_or_else(|| RunError::Settings(format!("no basis set for {sym} in settings.basis_sets")))?;
        let pot = s
            .potentials
            .get(sym)
            .ok_or_else(|| RunError::Settings(format!("no potential for {sym} in settings.potentials")))?;
        let _ = writeln!(o, "    &KIND {sym}\n      BASIS_SET {basis}\n      POTENTIAL {pot}\n    &END KIND");
    }
    let _ = writeln!(o, "  &END SUBSYS");
    let _ = writeln!(o, "  &PRINT\n    &FORCES ON\n    &END FORCES");
    if periodic {
        let _ = writeln!(o, "    &STRESS_TENSOR ON\n    &END STRESS_TENSOR");
    }
    let _ = writeln!(o, "  &END PRINT\n&END FORCE_EVAL");
    Ok(o)
}

/// The label-defining settings only (no mixing, SCF step limits, added MOs, command,
/// ranks, threads or wall time): the engine part of the idempotency hash.
pub fn label_params(settings: &Cp2kSettings) -> serde_json::Value {
    let s = settings;
    let kpoints = match s.kpoints {
        Some(k) => serde_json::json!({ "mesh": k }),
        None => serde_json::json!({ "kspacing_per_a": s.kspacing_per_a }),
    };
    serde_json::json!({
        "engine": "cp2k-quickstep",
        "basis_set_file": s.basis_set_file,
        "potential_file": s.potential_file,
        "basis_sets": s.basis_sets,
        "potentials": s.potentials,
        "xc_functional": s.xc_functional,
        "cutoff_ry": s.cutoff_ry,
        "rel_cutoff_ry": s.rel_cutoff_ry,
        "kpoints": kpoints,
        "smearing_temperature_k": s.smearing_temperature_k,
        "scf_method": s.scf_method,
        "uks": s.uks,
        "multiplicity": s.multiplicity,
        "eps_scf": s.eps_scf,
    })
}

/// The remediation ladder for a physics failure (SCF not converged). `failed_attempt`
/// is the number of the attempt that just failed (1 = the first run; 0 is read as 1).
/// Only convergence knobs change:
///
/// 1. mixing_alpha -> at most 0.2, max_scf -> at least 2× (and >= 100);
/// 2. mixing_alpha -> at most 0.1, max_scf -> >= 200, mixing_method -> PULAY_MIXING
///    (diagonalisation) ;
/// 3. an outer SCF loop of 10 (inner max_scf kept);
///
/// A rung that would change nothing is skipped; None when the ladder is exhausted.
pub fn remediate(settings: &Cp2kSettings, failed_attempt: u32) -> Option<(Cp2kSettings, String)> {
    let mut rung = failed_attempt.max(1);
    loop {
        let mut s = settings.clone();
        match rung {
            1 => {
                s.mixing_alpha = s.mixing_alpha.min(0.2);
                s.max_scf = s.max_scf.saturating_mul(2).max(100);
            }
            2 => {
                s.mixing_alpha = s.mixing_alpha.min(0.1);
                s.max_scf = s.max_scf.max(200);
                if s.scf_method == "diagonalization" {
                    s.mixing_method = "PULAY_MIXING".into();
                }
            }
            3 => {
                s.outer_scf = Some(s.outer_scf.unwrap_or(0).max(10));
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

fn describe_changes(a: &Cp2kSettings, b: &Cp2kSettings) -> String {
    let mut v = Vec::new();
    if a.mixing_alpha != b.mixing_alpha {
        v.push(format!("mixing_alpha {} -> {}", a.mixing_alpha, b.mixing_alpha));
    }
    if a.mixing_method != b.mixing_method {
        v.push(format!("mixing_method {} -> {}", a.mixing_method, b.mixing_method));
    }
    if a.max_scf != b.max_scf {
        v.push(format!("max_scf {} -> {}", a.max_scf, b.max_scf));
    }
    if a.outer_scf != b.outer_scf {
        v.push(format!("outer_scf {:?} -> {:?}", a.outer_scf, b.outer_scf));
    }
    v.join(", ")
}

// ---------------------------------------------------------------------------------
// Runner (I/O)
// ---------------------------------------------------------------------------------

/// Run CP2K on one structure in `job_dir`: writes `cp2k.inp`, runs
/// `[mpirun --allow-run-as-root -np N] cp2k.psmp -i cp2k.inp -o cp2k.out` there
/// (stdout to `cp2k.stdout`, stderr to `cp2k.err`), waits and parses `cp2k.out`.
/// It never kills CP2K: time limits belong to the caller's executor (which kills the
/// process group) or to `walltime_s`.
pub fn run_cp2k(job_dir: &Path, structure: &Structure, settings: &Cp2kSettings) -> Result<ParsedOutput, RunError> {
    let input = write_cp2k_input(structure, settings)?;
    let io = |p: &Path, e: std::io::Error| RunError::Io { path: p.display().to_string(), error: e.to_string() };
    std::fs::create_dir_all(job_dir).map_err(|e| io(job_dir, e))?;
    let in_path = job_dir.join("cp2k.inp");
    std::fs::write(&in_path, &input).map_err(|e| io(&in_path, e))?;
    let out_path = job_dir.join("cp2k.out");
    // a stale output from an earlier attempt must not be parsed as this run's
    remove_stale_outputs(job_dir, &["cp2k.out"])?;
    let so_path = job_dir.join("cp2k.stdout");
    let err_path = job_dir.join("cp2k.err");
    let stdout = std::fs::File::create(&so_path).map_err(|e| io(&so_path, e))?;
    let stderr = std::fs::File::create(&err_path).map_err(|e| io(&err_path, e))?;

    let mut words: Vec<String> = settings.command.split_whitespace().map(String::from).collect();
    if words.is_empty() {
        return Err(RunError::Settings("command is empty".into()));
    }
    if settings.mpi_ranks > 1 {
        let mut w = vec!["mpirun".into(), "--allow-run-as-root".into(), "-np".into(), settings.mpi_ranks.to_string()];
        w.append(&mut words);
        words = w;
    }
    words.extend(["-i", "cp2k.inp", "-o", "cp2k.out"].map(String::from));
    let status = std::process::Command::new(&words[0])
        .args(&words[1..])
        .current_dir(job_dir)
        .env("OMP_NUM_THREADS", settings.omp_threads.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|e| RunError::Spawn {
            command: words.join(" "),
            error: e.to_string(),
            hint: " (is CP2K installed? apt-get install cp2k cp2k-data)",
        })?;

    let text = if out_path.exists() { crate::output::read_output_file(&out_path)? } else { String::new() };
    let err_text = std::fs::read_to_string(&err_path).unwrap_or_default();
    match parse_cp2k_output(&text, &out_path.display().to_string()) {
        Ok(p) => {
            let detail = format!("stderr: {}", tail_lines(&err_text, 5));
            Ok(judge_exit("cp2k", p, &status, &detail))
        }
        Err(ParseError::NotAnOutput { .. }) if !status.success() => Ok(crashed_output(format!(
            "cp2k {} before writing an output; stderr: {}",
            describe_exit(&status),
            tail_lines(&err_text, 5)
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::units;

    #[test]
    fn cp2k_constants_are_codata_2006_and_close_to_2018() {
        // CP2K's own numbers (PHYSCON printout of CP2K 2023.1)
        assert!((CP2K_HARTREE_EV - 27.211_383_856_556_3).abs() < 1e-12);
        // within 1e-7 relative of CODATA 2018
        assert!((CP2K_HARTREE_EV / units::codata2018::HARTREE_EV - 1.0).abs() < 1e-7);
        assert!((CP2K_BOHR_A / units::codata2018::BOHR_A - 1.0).abs() < 1e-8);
        // 1 GPa in eV/Å³ agrees with the exact SI value to 1e-7
        assert!((CP2K_GPA_TO_EV_PER_A3 / units::GPA_IN_EV_PER_A3 - 1.0).abs() < 1e-7, "{CP2K_GPA_TO_EV_PER_A3}");
    }

    #[test]
    fn settings_defaults_and_unknown_fields() {
        let s: Cp2kSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Cp2kSettings::default());
        assert!(serde_json::from_str::<Cp2kSettings>(r#"{"cutoff": 300}"#).is_err());
    }

    #[test]
    fn ladder_changes_only_knobs_and_ends() {
        let s = Cp2kSettings::default();
        let mut cur = s.clone();
        let mut n = 0;
        for attempt in 1..10 {
            match remediate(&cur, attempt) {
                Some((next, what)) => {
                    assert!(!what.is_empty());
                    assert_eq!(label_params(&next), label_params(&s));
                    cur = next;
                    n += 1;
                }
                None => break,
            }
        }
        assert_eq!(n, 3);
        assert_eq!(cur.outer_scf, Some(10));
    }

    #[test]
    fn input_has_the_required_sections() {
        let si = autopipe_atoms::Element::from_symbol("Si").unwrap();
        let st = Structure::new(
            [[0.0, 2.715, 2.715], [2.715, 0.0, 2.715], [2.715, 2.715, 0.0]],
            vec![[0.0; 3], [1.3575, 1.3575, 1.3575]],
            vec![si, si],
            [true; 3],
        )
        .unwrap();
        let mut s = Cp2kSettings::default();
        assert!(write_cp2k_input(&st, &s).is_err(), "no basis set for Si");
        s.basis_sets.insert("Si".into(), "DZVP-MOLOPT-SR-GTH".into());
        s.potentials.insert("Si".into(), "GTH-PBE-q4".into());
        let inp = write_cp2k_input(&st, &s).unwrap();
        for needle in [
            "RUN_TYPE ENERGY_FORCE",
            "STRESS_TENSOR ANALYTICAL",
            "SCHEME MONKHORST-PACK 9 9 9",
            "&SMEAR ON",
            "ADDED_MOS 10",
            "BASIS_SET DZVP-MOLOPT-SR-GTH",
            "POTENTIAL GTH-PBE-q4",
            "&FORCES ON",
            "&STRESS_TENSOR ON",
            "PERIODIC XYZ",
        ] {
            assert!(inp.contains(needle), "{needle} missing in\n{inp}");
        }
        s.kpoints = Some([1, 1, 1]);
        assert!(!write_cp2k_input(&st, &s).unwrap().contains("&KPOINTS"), "Γ only");
        let mut a = s.clone();
        a.mixing_alpha = 0.05;
        a.max_scf = 7;
        a.command = "x".into();
        assert_eq!(label_params(&a), label_params(&s));
        a.cutoff_ry = 600.0;
        assert_ne!(label_params(&a), label_params(&s));
    }

    #[test]
    fn stress_units() {
        assert_eq!(stress_unit_factor("STRESS| Analytical stress tensor [GPa]"), Some(CP2K_GPA_TO_EV_PER_A3));
        assert_eq!(stress_unit_factor("STRESS| Analytical stress tensor [bar]"), Some(1e-4 * CP2K_GPA_TO_EV_PER_A3));
        assert_eq!(stress_unit_factor("STRESS| Analytical stress tensor [furlong]"), None);
    }
}
