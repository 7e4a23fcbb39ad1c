//! Quantum ESPRESSO `pw.x`: input writer, settings, remediation ladder, runner and
//! output parser.
//!
//! Parsing and input writing are pure (text in, values out); only [`run_pw`] touches
//! files and processes.
//!
//! Units: pw.x prints energies in Ry, forces in Ry/bohr and the stress in Ry/bohr³
//! (and kbar). They are converted with the constants pw.x itself uses
//! (`Modules/constants.f90`), which in QE 6.7 are the CODATA 2018 values.

use crate::job_dir::remove_stale_outputs;
use crate::output::{
    crashed_output, describe_exit, fortran_f64, join_msg, judge_exit, last_run, max_force, not_text_reason,
    scheduler_kill, tail_lines, voigt, ParseError, ParsedOutput, RunError, RunStatus,
};
use autopipe_atoms::structure::{cross, dot, norm};
use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const ENGINE: &str = "Quantum ESPRESSO pw.x";

/// QE's `BOHR_RADIUS_SI` in Å (QE 6.7 `Modules/constants.f90`, CODATA 2018).
pub const QE_BOHR_RADIUS_ANGS: f64 = 0.529_177_210_903;
/// QE's `HARTREE_SI` (J).
pub const QE_HARTREE_SI: f64 = 4.359_744_722_207_1e-18;
/// QE's `ELECTRONVOLT_SI` (J).
pub const QE_ELECTRONVOLT_SI: f64 = 1.602_176_634e-19;
/// QE's `AUTOEV` = HARTREE_SI / ELECTRONVOLT_SI.
pub const QE_AUTOEV: f64 = QE_HARTREE_SI / QE_ELECTRONVOLT_SI;
/// QE's `RYTOEV` = AUTOEV / 2.
pub const QE_RYTOEV: f64 = QE_AUTOEV / 2.0;
/// Ry/bohr -> eV/Å.
pub const QE_RY_PER_BOHR_TO_EV_PER_A: f64 = QE_RYTOEV / QE_BOHR_RADIUS_ANGS;
/// Ry/bohr³ -> eV/Å³.
pub const QE_RY_PER_BOHR3_TO_EV_PER_A3: f64 =
    QE_RYTOEV / (QE_BOHR_RADIUS_ANGS * QE_BOHR_RADIUS_ANGS * QE_BOHR_RADIUS_ANGS);
/// QE's `RY_KBAR` (kbar per Ry/bohr³) = 10 * AU_GPA / 2 with AU_GPA = HARTREE_SI / BOHR_RADIUS_SI³ / 1e9.
pub const QE_RY_KBAR: f64 = 10.0
    * (QE_HARTREE_SI / (QE_BOHR_RADIUS_ANGS * 1e-10 * QE_BOHR_RADIUS_ANGS * 1e-10 * QE_BOHR_RADIUS_ANGS * 1e-10) / 1e9)
    / 2.0;

// ---------------------------------------------------------------------------------
// Output parser
// ---------------------------------------------------------------------------------

/// Parse the text output (stdout) of `pw.x`.
///
/// * energy: the last `!    total energy` line (Ry -> eV); with smearing this is the
///   free energy F = E - TS, whose derivatives the printed forces and stress are (as ASE
///   reads it);
/// * forces: the last `Forces acting on atoms` block (Ry/bohr -> eV/Å), only when it has
///   one line per atom and follows the last energy;
/// * stress: the last `total   stress` block, read from its Ry/bohr³ columns (more digits
///   than the kbar columns), with ASE's sign (ASE stress = -QE stress);
/// * wall time: the `PWSCF  :  1.20s CPU  1.25s WALL` line (QE 4.0/4.1:
///   `PWSCF  :  1.35s CPU time,  3.94s wall time`);
/// * status: `%%%%` error block -> crashed (with QE's message); `Maximum CPU time
///   exceeded` -> out_of_time; the run did not reach its end -> truncated, or what the
///   batch scheduler said at the end of the file (Slurm `... CANCELLED AT ... DUE TO TIME
///   LIMIT ***` -> out_of_time, other cancellations -> crashed); `convergence NOT
///   achieved` on the last SCF -> scf_not_converged; `The maximum number of steps has been
///   reached.` / `bfgs failed` -> relax_not_converged. The end of the run is `JOB DONE.`
///   (QE >= 4.3) or the final `PWSCF  :` timing line (QE 4.0-4.2 print no `JOB DONE.`).
///
/// Energy, forces and stress are reported for converged and relax_not_converged runs
/// (the last SCF converged). A run cut off before its end (truncated, or killed by the
/// scheduler) whose last SCF converged keeps that SCF's `!` energy, and its forces and
/// stress if they were printed completely after it; it never becomes a label (its status
/// is not converged). Otherwise they are None and `message` says why.
/// Empty, binary or unrelated text is a [`ParseError::NotAnOutput`].
#[allow(clippy::collapsible_match, clippy::collapsible_if)]
pub fn parse_pw_output(text: &str, source: &str) -> Result<ParsedOutput, ParseError> {
    let not_output = |reason: String| ParseError::NotAnOutput { engine: ENGINE, file: source.to_string(), reason };
    if let Some(reason) = not_text_reason(text) {
        return Err(not_output(reason));
    }
    // A file holding several runs (appended outputs): parse the last one.
    let (text, line_offset) = last_run(text, "Program PWSCF");

    let mut saw_program = false;
    let mut nat: Option<usize> = None;
    let mut energy_ry: Option<f64> = None;
    let mut n_energies = 0usize;
    let mut forces: Option<Vec<[f64; 3]>> = None;
    let mut forces_problem: Option<String> = None;
    let mut stress: Option<[[f64; 3]; 3]> = None;
    let mut last_scf_converged: Option<bool> = None;
    let mut scf_steps_explicit: Option<u32> = None;
    let mut last_iteration: Option<u32> = None;
    let mut out_of_time = false;
    let mut relax_failed: Option<String> = None;
    let mut error_block: Option<String> = None;
    let mut job_done = false;
    let mut timing_done = false;
    let mut wall: Option<f64> = None;
    let mut bad_numbers: Vec<String> = Vec::new();

    let mut lines = text.lines().enumerate().peekable();
    while let Some((lineno, line)) = lines.next() {
        let t = line.trim();
        let Some(&first) = t.as_bytes().first() else { continue };
        match first {
            b'!' => {
                if t.contains("total energy") {
                    match t.split_once('=').and_then(|(_, v)| v.split_whitespace().next()).and_then(fortran_f64) {
                        Some(e) => {
                            energy_ry = Some(e);
                            n_energies += 1;
                            // forces and stress printed before this energy belong to an earlier geometry
                            forces = None;
                            forces_problem = None;
                            stress = None;
                        }
                        None => bad_numbers.push(format!("line {}: unreadable energy", lineno + 1 + line_offset)),
                    }
                }
            }
            b'%' if t.starts_with("%%%%%") => {
                let mut block = Vec::new();
                for (_, l) in lines.by_ref() {
                    let lt = l.trim();
                    if lt.starts_with("%%%%%") {
                        break;
                    }
                    if !lt.is_empty() {
                        block.push(lt.to_string());
                    }
                }
                if block.iter().any(|l| l.starts_with("Error in routine") || l.contains("Error")) {
                    error_block = Some(block.join(" "));
                }
            }
            b'P' => {
                if t.starts_with("Program PWSCF") {
                    saw_program = true;
                } else if t.starts_with("PWSCF") && (t.contains("WALL") || t.contains("wall time")) {
                    // the last timing report: printed only when pw.x reaches its end
                    timing_done = true;
                    wall = qe_wall_time(t).or(wall);
                }
            }
            b'n' => {
                if t.starts_with("number of atoms/cell") {
                    nat = t.split_once('=').and_then(|(_, v)| v.trim().parse().ok());
                }
            }
            b'F' => {
                if t.starts_with("Forces acting on atoms") {
                    let mut f = Vec::new();
                    let mut problem = None;
                    // skip blank lines, then read `atom N type M force = fx fy fz` lines
                    while let Some((_, l)) = lines.peek() {
                        if l.trim().is_empty() && f.is_empty() {
                            lines.next();
                            continue;
                        }
                        break;
                    }
                    while let Some((ln, l)) = lines.peek() {
                        let lt = l.trim();
                        if !lt.starts_with("atom") || !lt.contains("force") {
                            break;
                        }
                        match lt.split_once('=').and_then(|(_, v)| parse_force_values(v)) {
                            Some(v) => f.push(v),
                            None => {
                                problem = Some(format!("line {}: unreadable force", ln + 1 + line_offset));
                            }
                        }
                        lines.next();
                    }
                    if let (Some(n), None) = (nat, &problem) {
                        if f.len() != n {
                            problem = Some(format!("force block has {} of {} atoms", f.len(), n));
                        }
                    }
                    if f.is_empty() && problem.is_none() {
                        problem = Some("empty force block".into());
                    }
                    forces_problem = problem;
                    forces = Some(f);
                }
            }
            b't' => {
                if t.starts_with("total") && t.contains("stress") && t.contains("Ry/bohr**3") {
                    let mut m = [[0.0; 3]; 3];
                    let mut ok = true;
                    for row in m.iter_mut() {
                        match lines.next().and_then(|(_, l)| parse_stress_row(l)) {
                            Some(r) => *row = r,
                            None => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    stress = ok.then_some(m);
                }
            }
            b'c' => {
                if let Some(rest) = t.strip_prefix("convergence has been achieved in") {
                    last_scf_converged = Some(true);
                    scf_steps_explicit = rest.split_whitespace().next().and_then(|s| s.parse().ok());
                } else if let Some(rest) = t.strip_prefix("convergence NOT achieved after") {
                    last_scf_converged = Some(false);
                    scf_steps_explicit = rest.split_whitespace().next().and_then(|s| s.parse().ok());
                }
            }
            b'i' => {
                if let Some(rest) = t.strip_prefix("iteration #") {
                    let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Ok(n) = digits.parse() {
                        last_iteration = Some(n);
                    }
                }
            }
            b'S' => {
                if t.starts_with("Self-consistent Calculation") {
                    last_iteration = None;
                    scf_steps_explicit = None;
                }
            }
            b'M' => {
                if t.starts_with("Maximum CPU time exceeded") {
                    out_of_time = true;
                }
            }
            b'T' => {
                if t.starts_with("The maximum number of steps has been reached") {
                    relax_failed = Some("the maximum number of ionic steps (nstep) was reached".into());
                }
            }
            b'b' => {
                if t.starts_with("bfgs failed") || t.starts_with("bfgs converged") && t.contains("failed") {
                    relax_failed = Some(t.to_string());
                }
            }
            b'h' => {
                if t.starts_with("history already reset at previous step") {
                    relax_failed = Some(t.to_string());
                }
            }
            b'J' => {
                if t.starts_with("JOB DONE") {
                    job_done = true;
                }
            }
            _ => {}
        }
    }

    if !saw_program && n_energies == 0 {
        return Err(not_output("no `Program PWSCF` header and no `!    total energy` line".into()));
    }

    let scf_steps = scf_steps_explicit.or(last_iteration);
    let mut cut_off = false;
    let (status, mut message) = if let Some(err) = error_block {
        (RunStatus::Crashed, Some(err))
    } else if out_of_time {
        (RunStatus::OutOfTime, Some("pw.x stopped at its time limit (Maximum CPU time exceeded, max_seconds)".into()))
    } else if !job_done && !timing_done {
        cut_off = true;
        match scheduler_kill(text) {
            Some((status, m)) => (status, Some(m)),
            None => {
                (RunStatus::Truncated, Some("the output stops before `JOB DONE.` (killed, or still running)".into()))
            }
        }
    } else if last_scf_converged == Some(false) {
        let n = scf_steps.map(|n| format!(" after {n} iterations")).unwrap_or_default();
        (RunStatus::ScfNotConverged, Some(format!("SCF convergence NOT achieved{n}")))
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
    // a run cut off after a converged SCF: that SCF's values (never a label: not converged)
    let partial = cut_off && last_scf_converged == Some(true) && energy_ry.is_some();
    if partial {
        message = Some(join_msg(message, "values of the last converged SCF".into()));
    }
    if trusted || partial {
        out.energy_ev = energy_ry.map(|e| e * QE_RYTOEV);
        if let Some(p) = forces_problem {
            message = Some(join_msg(message, p));
        } else if let Some(f) = forces {
            let f: Vec<[f64; 3]> = f.iter().map(|v| v.map(|x| x * QE_RY_PER_BOHR_TO_EV_PER_A)).collect();
            out.max_force_ev_per_a = Some(max_force(&f));
            out.forces_ev_per_a = Some(f);
        }
        out.stress_ev_per_a3 = stress.map(|m| voigt(&m, -QE_RY_PER_BOHR3_TO_EV_PER_A3));
        if out.energy_ev.is_none() {
            message = Some(join_msg(message, "no `!    total energy` line".into()));
        }
    }
    if !bad_numbers.is_empty() {
        message = Some(join_msg(message, bad_numbers.join("; ")));
    }
    out.message = message;
    Ok(out)
}

/// Read and parse an output file (what `autopipe parse` does): I/O errors, binary and
/// unrelated files are [`ParseError`]s naming the file.
pub fn parse_pw_file(path: &Path) -> Result<ParsedOutput, ParseError> {
    let text = crate::output::read_output_file(path)?;
    parse_pw_output(&text, &path.display().to_string())
}

/// `   0.02333408   -0.03136136    0.00474375` (format 3F14.8; numbers may touch).
fn parse_force_values(v: &str) -> Option<[f64; 3]> {
    let toks: Vec<&str> = v.split_whitespace().collect();
    if toks.len() >= 3 {
        if let Some(r) = crate::output::floats::<3>(toks.iter()) {
            return Some(r);
        }
    }
    // fixed width fallback: 3 fields of 14 characters after "force ="
    let b = v.as_bytes();
    if b.len() >= 42 {
        let mut r = [0.0; 3];
        for (k, x) in r.iter_mut().enumerate() {
            *x = fortran_f64(std::str::from_utf8(&b[k * 14..(k + 1) * 14]).ok()?.trim())?;
        }
        return Some(r);
    }
    None
}

/// A stress row `   0.00020624  -0.00002074   0.00014953           30.34       -3.05       22.00`:
/// the first three columns (format 3F13.8) in Ry/bohr³.
fn parse_stress_row(l: &str) -> Option<[f64; 3]> {
    let toks: Vec<&str> = l.split_whitespace().collect();
    if toks.len() == 6 {
        if let Some(r) = crate::output::floats::<3>(toks.iter()) {
            return Some(r);
        }
    }
    let b = l.as_bytes();
    if b.len() >= 39 {
        let mut r = [0.0; 3];
        for (k, x) in r.iter_mut().enumerate() {
            *x = fortran_f64(std::str::from_utf8(&b[k * 13..(k + 1) * 13]).ok()?.trim())?;
        }
        return Some(r);
    }
    None
}

/// `PWSCF        :      1.20s CPU      1.25s WALL` (also `1m23.45s`, `1h23m`, `1d 2h 3m`);
/// QE 4.0/4.1: `PWSCF        :     1.35s CPU time,    3.94s wall time`.
fn qe_wall_time(t: &str) -> Option<f64> {
    let (_, rest) = t.split_once(':')?;
    let end = rest.find("WALL").or_else(|| rest.find("wall time"))?;
    let after_cpu = rest[..end].split("CPU").nth(1)?.trim_start();
    let after_cpu = after_cpu.strip_prefix("time,").unwrap_or(after_cpu);
    parse_qe_duration(after_cpu.trim())
}

/// A QE duration: `1.25s`, `1m23.45s`, `1h23m`, `2d 3h 4m` (spaces allowed).
pub(crate) fn parse_qe_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'd' | 'h' | 'm' | 's' => {
                let v: f64 = num.trim().parse().ok()?;
                num.clear();
                total += v * match c {
                    'd' => 86400.0,
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                any = true;
            }
            ' ' => {}
            _ => return None,
        }
    }
    (any && num.trim().is_empty()).then_some(total)
}

/// The `<convergence_achieved>` flag of pw.x's XML data file
/// (`<outdir>/<prefix>.xml` or `<outdir>/<prefix>.save/data-file-schema.xml`):
/// Some(true/false), or None when the element is absent.
pub fn parse_pw_xml_convergence(xml: &str) -> Option<bool> {
    let start = xml.find("<convergence_achieved>")? + "<convergence_achieved>".len();
    let end = start + xml[start..].find("</convergence_achieved>")?;
    match xml[start..end].trim() {
        "true" | "TRUE" | ".true." | "T" => Some(true),
        "false" | "FALSE" | ".false." | "F" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Settings and input writing
// ---------------------------------------------------------------------------------

/// Settings of a pw.x single point.
///
/// Label-defining (they change the numbers; part of the idempotency hash via
/// [`label_params`]): `pseudo_dir`, `pseudopotentials`, `ecutwfc_ry`, `ecutrho_ry`,
/// `input_dft`, `kspacing_per_a`/`kpoints`, `occupations`, `smearing`, `degauss_ry`,
/// `nspin`, `starting_magnetization`, `conv_thr_ry` (it sets the label's precision).
///
/// Convergence knobs (the remediation ladder changes only these): `mixing_beta`,
/// `mixing_mode`, `electron_maxstep`, `diagonalization`.
///
/// Run options: `command`, `mpi_ranks`, `npool`, `omp_threads`, `max_seconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QeSettings {
    pub pseudo_dir: String,
    /// Element symbol -> pseudopotential file name in `pseudo_dir`.
    pub pseudopotentials: BTreeMap<String, String>,
    pub ecutwfc_ry: f64,
    /// Default (None): pw.x's default, 4 × ecutwfc.
    pub ecutrho_ry: Option<f64>,
    /// Exchange-correlation override (`input_dft`); None: the pseudopotentials' functional.
    pub input_dft: Option<String>,
    /// k-point density in 1/Å, *including* the 2π: the Monkhorst-Pack mesh along each
    /// reciprocal vector b_i (|b_i| = 2π/d_i) is `max(1, ceil(|b_i| / kspacing))`
    /// (ASE's `kspacing` convention for QE); 1 along non-periodic directions.
    /// Ignored when `kpoints` is given.
    pub kspacing_per_a: Option<f64>,
    /// An explicit Monkhorst-Pack mesh (unshifted).
    pub kpoints: Option<[u32; 3]>,
    /// `fixed` or `smearing`.
    pub occupations: String,
    /// `mv` (Marzari-Vanderbilt), `gaussian`, `mp`, `fd`.
    pub smearing: String,
    pub degauss_ry: f64,
    /// 1 (non-spin-polarised) or 2.
    pub nspin: u32,
    /// Element symbol -> starting magnetisation (-1..1), used when nspin = 2.
    pub starting_magnetization: BTreeMap<String, f64>,
    pub conv_thr_ry: f64,
    pub mixing_beta: f64,
    /// `plain`, `TF` or `local-TF`.
    pub mixing_mode: String,
    pub electron_maxstep: u32,
    /// `david`, `cg`, `ppcg`, `paro`.
    pub diagonalization: String,
    /// The pw.x executable (or a wrapper).
    pub command: String,
    /// > 1: run under `mpirun --allow-run-as-root -np N`.
    pub mpi_ranks: u32,
    /// `-npool N` (k-point parallelisation), only with mpi_ranks > 1.
    pub npool: Option<u32>,
    /// OMP_NUM_THREADS for pw.x.
    pub omp_threads: u32,
    /// pw.x's own soft time limit (`max_seconds`); it stops cleanly (status out_of_time).
    pub max_seconds: Option<f64>,
}

impl Default for QeSettings {
    fn default() -> Self {
        QeSettings {
            pseudo_dir: "/usr/share/espresso/pseudo".into(),
            pseudopotentials: BTreeMap::new(),
            ecutwfc_ry: 30.0,
            ecutrho_ry: None,
            input_dft: None,
            kspacing_per_a: Some(0.25),
            kpoints: None,
            occupations: "smearing".into(),
            smearing: "mv".into(),
            degauss_ry: 0.01,
            nspin: 1,
            starting_magnetization: BTreeMap::new(),
            conv_thr_ry: 1e-8,
            mixing_beta: 0.7,
            mixing_mode: "plain".into(),
            electron_maxstep: 100,
            diagonalization: "david".into(),
            command: "pw.x".into(),
            mpi_ranks: 1,
            npool: None,
            omp_threads: 1,
            max_seconds: None,
        }
    }
}

/// Monkhorst-Pack mesh from a k-point spacing in 1/Å including 2π (see
/// [`QeSettings::kspacing_per_a`]); 1 along non-periodic directions.
pub fn kmesh_from_spacing(structure: &Structure, kspacing_per_a: f64) -> [u32; 3] {
    let c = &structure.cell_a;
    let vol = dot(&c[0], &cross(&c[1], &c[2]));
    let mut mesh = [1u32; 3];
    for i in 0..3 {
        if !structure.pbc[i] {
            continue;
        }
        let b = cross(&c[(i + 1) % 3], &c[(i + 2) % 3]);
        let bnorm = 2.0 * std::f64::consts::PI * norm(&b) / vol.abs();
        mesh[i] = ((bnorm / kspacing_per_a).ceil() as u32).max(1);
    }
    mesh
}

fn check_settings(s: &QeSettings) -> Result<(), String> {
    let pos = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(format!("{name} must be > 0, got {v}"))
        }
    };
    pos("ecutwfc_ry", s.ecutwfc_ry)?;
    if let Some(r) = s.ecutrho_ry {
        pos("ecutrho_ry", r)?;
        if r < s.ecutwfc_ry {
            return Err(format!("ecutrho_ry {r} is below ecutwfc_ry {}", s.ecutwfc_ry));
        }
    }
    if s.kpoints.is_none() {
        pos("kspacing_per_a", s.kspacing_per_a.ok_or("either kpoints or kspacing_per_a is needed")?)?;
    }
    if let Some(k) = s.kpoints {
        if k.contains(&0) {
            return Err(format!("kpoints must be >= 1, got {k:?}"));
        }
    }
    pos("conv_thr_ry", s.conv_thr_ry)?;
    if !(s.mixing_beta > 0.0 && s.mixing_beta <= 1.0) {
        return Err(format!("mixing_beta must be in (0, 1], got {}", s.mixing_beta));
    }
    if s.electron_maxstep == 0 {
        return Err("electron_maxstep must be >= 1".into());
    }
    if !matches!(s.occupations.as_str(), "fixed" | "smearing") {
        return Err(format!("occupations must be fixed or smearing, got {:?}", s.occupations));
    }
    if s.occupations == "smearing" {
        pos("degauss_ry", s.degauss_ry)?;
    }
    if !matches!(s.nspin, 1 | 2) {
        return Err(format!("nspin must be 1 or 2, got {}", s.nspin));
    }
    for (k, v) in [("smearing", &s.smearing), ("diagonalization", &s.diagonalization), ("mixing_mode", &s.mixing_mode)]
    {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("{k} {v:?} is not a valid pw.x keyword"));
        }
    }
    if let Some(d) = &s.input_dft {
        if d.contains('\'') || d.contains('\n') {
            return Err(format!("input_dft {d:?} is not valid"));
        }
    }
    if s.mpi_ranks == 0 || s.omp_threads == 0 {
        return Err("mpi_ranks and omp_threads must be >= 1".into());
    }
    Ok(())
}

fn species_order(structure: &Structure) -> Vec<autopipe_atoms::Element> {
    let mut v = Vec::new();
    for &e in &structure.species {
        if !v.contains(&e) {
            v.push(e);
        }
    }
    v
}

/// The pw.x input (namelists + cards) for a single point with forces and stress:
/// `ibrav = 0`, `CELL_PARAMETERS angstrom`, `ATOMIC_POSITIONS angstrom`,
/// `tprnfor`/`tstress` on, `outdir = './out'`, `prefix = 'pw'`.
pub fn write_pw_input(structure: &Structure, settings: &QeSettings) -> Result<String, RunError> {
    check_settings(settings).map_err(RunError::Settings)?;
    structure.validate().map_err(|e| RunError::Settings(format!("structure: {e}")))?;
    if structure.is_empty() {
        return Err(RunError::Settings("structure has no atoms".into()));
    }
    if structure.volume_a3().abs() < 1e-6 {
        return Err(RunError::Settings("pw.x needs a cell with a non-zero volume".into()));
    }
    let species = species_order(structure);
    let s = settings;
    let mut o = String::new();
    let f = |x: f64| format!("{x:.10}");
    let _ = writeln!(o, "&CONTROL");
    let _ = writeln!(o, "  calculation = 'scf'");
    let _ = writeln!(o, "  prefix = 'pw'");
    let _ = writeln!(o, "  outdir = './out'");
    let _ = writeln!(o, "  pseudo_dir = '{}'", s.pseudo_dir.replace('\'', ""));
    let _ = writeln!(o, "  tprnfor = .true.");
    let _ = writeln!(o, "  tstress = .true.");
    let _ = writeln!(o, "  disk_io = 'low'");
    if let Some(ms) = s.max_seconds {
        let _ = writeln!(o, "  max_seconds = {}", f(ms));
    }
    let _ = writeln!(o, "/");
    let _ = writeln!(o, "&SYSTEM");
    let _ = writeln!(o, "  ibrav = 0");
    let _ = writeln!(o, "  nat = {}", structure.len());
    let _ = writeln!(o, "  ntyp = {}", species.len());
    let _ = writeln!(o, "  ecutwfc = {}", f(s.ecutwfc_ry));
    if let Some(r) = s.ecutrho_ry {
        let _ = writeln!(o, "  ecutrho = {}", f(r));
    }
    if let Some(d) = &s.input_dft {
        let _ = writeln!(o, "  input_dft = '{d}'");
    }
    let _ = writeln!(o, "  occupations = '{}'", s.occupations);
    if s.occupations == "smearing" {
        let _ = writeln!(o, "  smearing = '{}'", s.smearing);
        let _ = writeln!(o, "  degauss = {}", f(s.degauss_ry));
    }
    if s.nspin == 2 {
        let _ = writeln!(o, "  nspin = 2");
        for (i, e) in species.iter().enumerate() {
            let m = s.starting_magnetization.get(e.symbol()).copied().unwrap_or(0.0);
            let _ = writeln!(o, "  starting_magnetization({}) = {}", i + 1, f(m));
        }
    }
    let _ = writeln!(o, "/");
    let _ = writeln!(o, "&ELECTRONS");
    let _ = writeln!(o, "  conv_thr = {:e}", s.conv_thr_ry);
    let _ = writeln!(o, "  mixing_beta = {}", f(s.mixing_beta));
    let _ = writeln!(o, "  mixing_mode = '{}'", s.mixing_mode);
    let _ = writeln!(o, "  electron_maxstep = {}", s.electron_maxstep);
    let _ = writeln!(o, "  diagonalization = '{}'", s.diagonalization);
    let _ = writeln!(o, "/");
    let _ = writeln!(o, "ATOMIC_SPECIES");
    for e in &species {
        let pp = s.pseudopotentials.get(e.symbol()).ok_or_else(|| {
            RunError::Settings(format!("no pseudopotential for {} in settings.pseudopotentials", e.symbol()))
        })?;
        if pp.contains(char::is_whitespace) {
            return Err(RunError::Settings(format!("pseudopotential file name {pp:?} contains whitespace")));
        }
        let _ = writeln!(o, "{} {} {}", e.symbol(), f(e.mass_amu()), pp);
    }
    let _ = writeln!(o, "CELL_PARAMETERS angstrom");
    for row in &structure.cell_a {
        let _ = writeln!(o, "  {} {} {}", f(row[0]), f(row[1]), f(row[2]));
    }
    let _ = writeln!(o, "ATOMIC_POSITIONS angstrom");
    for (e, p) in structure.species.iter().zip(&structure.positions_a) {
        let _ = writeln!(o, "{} {} {} {}", e.symbol(), f(p[0]), f(p[1]), f(p[2]));
    }
    let mesh = match s.kpoints {
        Some(k) => k,
        None => kmesh_from_spacing(structure, s.kspacing_per_a.unwrap_or(0.25)),
    };
    let _ = writeln!(o, "K_POINTS automatic");
    let _ = writeln!(o, "{} {} {} 0 0 0", mesh[0], mesh[1], mesh[2]);
    Ok(o)
}

/// The label-defining settings only (no mixing, max steps, diagonalisation, command,
/// ranks, pools, threads or time limit): the engine part of the idempotency hash.
/// The k-point request is recorded as given (spacing or mesh), so the value does not
/// depend on the structure.
pub fn label_params(settings: &QeSettings) -> serde_json::Value {
    let s = settings;
    let kpoints = match s.kpoints {
        Some(k) => serde_json::json!({ "mesh": k }),
        None => serde_json::json!({ "kspacing_per_a": s.kspacing_per_a }),
    };
    let (smearing, degauss) =
        if s.occupations == "smearing" { (Some(&s.smearing), Some(s.degauss_ry)) } else { (None, None) };
    let magnetization = if s.nspin == 2 { Some(&s.starting_magnetization) } else { None };
    serde_json::json!({
        "engine": "qe-pw",
        "pseudo_dir": s.pseudo_dir,
        "pseudopotentials": s.pseudopotentials,
        "ecutwfc_ry": s.ecutwfc_ry,
        "ecutrho_ry": s.ecutrho_ry.unwrap_or(4.0 * s.ecutwfc_ry),
        "input_dft": s.input_dft,
        "kpoints": kpoints,
        "occupations": s.occupations,
        "smearing": smearing,
        "degauss_ry": degauss,
        "nspin": s.nspin,
        "starting_magnetization": magnetization,
        "conv_thr_ry": s.conv_thr_ry,
    })
}

/// The remediation ladder for a physics failure (SCF not converged). `failed_attempt`
/// is the number of the attempt that just failed (1 = the first run; 0 is read as 1),
/// `settings` the settings it used. Only convergence knobs change:
///
/// 1. mixing_beta -> at most 0.3, electron_maxstep -> at least 2× (and >= 200);
/// 2. mixing_beta -> at most 0.1, mixing_mode -> local-TF, electron_maxstep -> >= 300;
/// 3. diagonalization -> cg, electron_maxstep -> >= 400;
///
/// A rung that would change nothing is skipped; None when the ladder is exhausted.
pub fn remediate(settings: &QeSettings, failed_attempt: u32) -> Option<(QeSettings, String)> {
    let mut rung = failed_attempt.max(1);
    loop {
        let mut s = settings.clone();
        match rung {
            1 => {
                s.mixing_beta = s.mixing_beta.min(0.3);
                s.electron_maxstep = (s.electron_maxstep.saturating_mul(2)).max(200);
            }
            2 => {
                s.mixing_beta = s.mixing_beta.min(0.1);
                s.mixing_mode = "local-TF".into();
                s.electron_maxstep = s.electron_maxstep.max(300);
            }
            3 => {
                s.diagonalization = "cg".into();
                s.electron_maxstep = s.electron_maxstep.max(400);
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

fn describe_changes(a: &QeSettings, b: &QeSettings) -> String {
    let mut v = Vec::new();
    if a.mixing_beta != b.mixing_beta {
        v.push(format!("mixing_beta {} -> {}", a.mixing_beta, b.mixing_beta));
    }
    if a.mixing_mode != b.mixing_mode {
        v.push(format!("mixing_mode {} -> {}", a.mixing_mode, b.mixing_mode));
    }
    if a.electron_maxstep != b.electron_maxstep {
        v.push(format!("electron_maxstep {} -> {}", a.electron_maxstep, b.electron_maxstep));
    }
    if a.diagonalization != b.diagonalization {
        v.push(format!("diagonalization {} -> {}", a.diagonalization, b.diagonalization));
    }
    v.join(", ")
}

// ---------------------------------------------------------------------------------
// Runner (I/O)
// ---------------------------------------------------------------------------------

/// Run pw.x on one structure in `job_dir`: writes `pw.in`, runs
/// `[mpirun --allow-run-as-root -np N] pw.x [-npool K] -in pw.in` there with stdout to
/// `pw.out` and stderr to `pw.err` (`outdir` is `job_dir/out`), waits, and parses
/// `pw.out`. It never kills pw.x: time limits belong to the caller's executor (which
/// kills the process group) or to `max_seconds`.
///
/// A pw.x that dies before writing a recognisable output gives a `crashed` result with
/// the exit status and the end of `pw.err`.
pub fn run_pw(job_dir: &Path, structure: &Structure, settings: &QeSettings) -> Result<ParsedOutput, RunError> {
    let input = write_pw_input(structure, settings)?;
    let io = |p: &Path, e: std::io::Error| RunError::Io { path: p.display().to_string(), error: e.to_string() };
    std::fs::create_dir_all(job_dir).map_err(|e| io(job_dir, e))?;
    let in_path = job_dir.join("pw.in");
    std::fs::write(&in_path, &input).map_err(|e| io(&in_path, e))?;
    let out_path = job_dir.join("pw.out");
    let err_path = job_dir.join("pw.err");
    let stdout = std::fs::File::create(&out_path).map_err(|e| io(&out_path, e))?;
    let stderr = std::fs::File::create(&err_path).map_err(|e| io(&err_path, e))?;

    // an XML data file left by an earlier attempt must not be read as this run's
    remove_stale_outputs(job_dir, &["out/pw.save/data-file-schema.xml", "out/pw.xml"])?;
    let mut words: Vec<String> = settings.command.split_whitespace().map(String::from).collect();
    if words.is_empty() {
        return Err(RunError::Settings("command is empty".into()));
    }
    if settings.mpi_ranks > 1 {
        let mut w = vec!["mpirun".into(), "--allow-run-as-root".into(), "-np".into(), settings.mpi_ranks.to_string()];
        w.append(&mut words);
        words = w;
        if let Some(np) = settings.npool {
            words.push("-npool".into());
            words.push(np.to_string());
        }
    }
    words.push("-in".into());
    words.push("pw.in".into());
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
            hint: " (is Quantum ESPRESSO installed? apt-get install quantum-espresso)",
        })?;

    let text = crate::output::read_output_file(&out_path)?;
    let err_text = std::fs::read_to_string(&err_path).unwrap_or_default();
    match parse_pw_output(&text, &out_path.display().to_string()) {
        Ok(mut p) => {
            // second source: the XML data file's <convergence_achieved>
            let xml = ["out/pw.save/data-file-schema.xml", "out/pw.xml"]
                .iter()
                .find_map(|f| std::fs::read_to_string(job_dir.join(f)).ok());
            if p.status == RunStatus::Converged && xml.as_deref().and_then(parse_pw_xml_convergence) == Some(false) {
                p.status = RunStatus::ScfNotConverged;
                p.message = Some("pw.x's XML data file says <convergence_achieved>false</convergence_achieved>".into());
                p.energy_ev = None;
                p.forces_ev_per_a = None;
                p.stress_ev_per_a3 = None;
                p.max_force_ev_per_a = None;
            }
            let detail = format!("stderr: {}", tail_lines(&err_text, 5));
            Ok(judge_exit("pw.x", p, &status, &detail))
        }
        Err(ParseError::NotAnOutput { .. }) if !status.success() => Ok(crashed_output(format!(
            "pw.x {} before writing an output; stderr: {}",
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
    fn qe_constants_match_codata_2018() {
        assert!((QE_BOHR_RADIUS_ANGS - units::codata2018::BOHR_A).abs() < 1e-15);
        assert!((QE_RYTOEV - units::codata2018::RYDBERG_EV).abs() < 1e-10, "{QE_RYTOEV}");
        assert!((QE_AUTOEV - units::codata2018::HARTREE_EV).abs() < 1e-10);
        // the kbar column of pw.x's stress block: 1 Ry/bohr³ = 147105.08 kbar
        assert!((QE_RY_KBAR - 147_105.078_5).abs() < 0.01, "{QE_RY_KBAR}");
        assert!((QE_RY_PER_BOHR3_TO_EV_PER_A3 / QE_RY_KBAR - units::KBAR_IN_EV_PER_A3).abs() < 1e-12);
    }

    fn si2() -> Structure {
        let si = autopipe_atoms::Element::from_symbol("Si").unwrap();
        Structure::new(
            [[0.0, 2.715, 2.715], [2.715, 0.0, 2.715], [2.715, 2.715, 0.0]],
            vec![[0.0; 3], [1.3575, 1.3575, 1.3575]],
            vec![si, si],
            [true; 3],
        )
        .unwrap()
    }

    #[test]
    fn kmesh_includes_two_pi() {
        // fcc Si, a = 5.43 Å: |b| = 2π√3/a = 2.004 1/Å -> ceil(2.004/0.25) = 9
        assert_eq!(kmesh_from_spacing(&si2(), 0.25), [9, 9, 9]);
        assert_eq!(kmesh_from_spacing(&si2(), 100.0), [1, 1, 1]);
        let mut slab = si2();
        slab.pbc = [true, true, false];
        assert_eq!(kmesh_from_spacing(&slab, 0.25), [9, 9, 1]);
    }

    #[test]
    fn input_has_the_required_cards() {
        let mut s = QeSettings::default();
        assert!(
            matches!(write_pw_input(&si2(), &s), Err(RunError::Settings(m)) if m.contains("pseudopotential for Si"))
        );
        s.pseudopotentials.insert("Si".into(), "Si.pbe-rrkj.UPF".into());
        s.kpoints = Some([4, 4, 4]);
        let inp = write_pw_input(&si2(), &s).unwrap();
        for needle in [
            "tprnfor = .true.",
            "tstress = .true.",
            "ibrav = 0",
            "nat = 2",
            "ntyp = 1",
            "CELL_PARAMETERS angstrom",
            "ATOMIC_POSITIONS angstrom",
            "Si 28.0850000000 Si.pbe-rrkj.UPF",
            "K_POINTS automatic\n4 4 4 0 0 0",
            "outdir = './out'",
            "electron_maxstep = 100",
        ] {
            assert!(inp.contains(needle), "{needle} missing in\n{inp}");
        }
        s.ecutwfc_ry = -1.0;
        assert!(write_pw_input(&si2(), &s).is_err());
    }

    #[test]
    fn label_params_ignore_knobs_and_run_options() {
        let a = QeSettings::default();
        let mut b = a.clone();
        b.mixing_beta = 0.1;
        b.electron_maxstep = 999;
        b.diagonalization = "cg".into();
        b.command = "/opt/qe/pw.x".into();
        b.mpi_ranks = 8;
        b.npool = Some(4);
        assert_eq!(label_params(&a), label_params(&b));
        let mut c = a.clone();
        c.ecutwfc_ry = 50.0;
        assert_ne!(label_params(&a), label_params(&c));
        let mut d = a.clone();
        d.kspacing_per_a = Some(0.2);
        assert_ne!(label_params(&a), label_params(&d));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_qe_duration("1.25s"), Some(1.25));
        assert_eq!(parse_qe_duration("1m23.50s"), Some(83.5));
        assert_eq!(parse_qe_duration("1h23m"), Some(3600.0 + 23.0 * 60.0));
        assert_eq!(parse_qe_duration("2d 3h 4m"), Some(2.0 * 86400.0 + 3.0 * 3600.0 + 240.0));
        assert_eq!(parse_qe_duration("abc"), None);
        assert_eq!(qe_wall_time("PWSCF        :      1.20s CPU      1.25s WALL"), Some(1.25));
        assert_eq!(qe_wall_time("PWSCF        :     1.35s CPU time,    3.94s wall time"), Some(3.94));
        assert!((qe_wall_time("PWSCF        :  1m48.02s CPU     1m50.68s WALL").unwrap() - 110.68).abs() < 1e-9);
        assert_eq!(qe_wall_time("PWSCF        :     1.35s CPU time"), None);
    }

    #[test]
    fn settings_defaults_and_unknown_fields() {
        let s: QeSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, QeSettings::default());
        assert!(serde_json::from_str::<QeSettings>(r#"{"ecutwfc": 30}"#).is_err());
    }

    #[test]
    fn ladder_changes_only_knobs_and_ends() {
        let s = QeSettings::default();
        let mut cur = s.clone();
        let mut n = 0;
        for attempt in 1.. {
            match remediate(&cur, attempt) {
                Some((next, what)) => {
                    assert!(!what.is_empty());
                    assert_eq!(label_params(&next), label_params(&s));
                    cur = next;
                    n += 1;
                }
                None => break,
            }
            assert!(attempt < 10);
        }
        assert_eq!(n, 3);
        assert_eq!(cur.diagonalization, "cg");
        assert!(cur.mixing_beta <= 0.1);
    }
}
