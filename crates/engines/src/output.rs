//! The common shape of what a parser reads from a DFT engine's output, and the
//! helpers the QE and CP2K parsers share (number parsing, wall-time formats, the
//! "is this text at all?" check).
//!
//! Everything here is pure: text in, values out.

use crate::labels::Labels;
use serde::{Deserialize, Serialize};

/// How an engine run ended, as read from its output.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Finished normally; the last SCF converged (and a relaxation, if any, converged).
    Converged,
    /// The (last) SCF did not reach its threshold. QE prints `convergence NOT achieved`
    /// (exit code 2, `JOB DONE.` still printed); CP2K warns `SCF run NOT converged` and exits 0.
    ScfNotConverged,
    /// A geometry optimisation stopped at its step limit (or gave up) without converging.
    RelaxNotConverged,
    /// The engine stopped itself on its own time limit (QE `max_seconds`, CP2K `WALLTIME`),
    /// or the batch scheduler stopped it at the job's time limit (Slurm `... DUE TO TIME LIMIT ***`).
    OutOfTime,
    /// The engine reported an error (QE `%%%%` block, CP2K `[ABORT]` box), or the batch
    /// scheduler killed it for another reason (Slurm `CANCELLED AT`, out of memory).
    Crashed,
    /// The output stops mid-run: no end-of-job marker and no error message.
    Truncated,
}

impl RunStatus {
    /// Physics failures (remediable by convergence knobs) as opposed to infrastructure
    /// failures (time limits, crashes, truncation).
    pub fn is_physics_failure(self) -> bool {
        matches!(self, RunStatus::ScfNotConverged | RunStatus::RelaxNotConverged)
    }
}

/// What a parser read from one engine output, in ASE units and conventions:
/// eV, eV/Å, eV/Å³ (Voigt `[xx, yy, zz, yz, xz, xy]`, positive = tensile).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ParsedOutput {
    /// The final energy of the run: QE's last `!` energy; CP2K's last FORCE_EVAL energy;
    /// None when the run has no trustworthy final energy (SCF not converged, time limit,
    /// crash, truncation).
    pub energy_ev: Option<f64>,
    /// Forces of the last complete force block (same geometry as `energy_ev`).
    pub forces_ev_per_a: Option<Vec<[f64; 3]>>,
    /// Voigt `[xx, yy, zz, yz, xz, xy]`, ASE sign convention (= minus the engines' printed stress).
    pub stress_ev_per_a3: Option<[f64; 6]>,
    /// Largest per-atom force norm of the last force block.
    pub max_force_ev_per_a: Option<f64>,
    /// Number of SCF iterations of the last SCF.
    pub scf_steps: Option<u32>,
    /// Wall time the engine reports for the whole run.
    pub wall_time_s: Option<f64>,
    pub status: RunStatus,
    /// Why the run is not converged, the engine's error message, or other remarks.
    pub message: Option<String>,
}

impl ParsedOutput {
    /// Training labels, only when the run converged and energy and forces are present.
    /// A run whose SCF did not converge never becomes a label, even when the engine
    /// printed numbers (CP2K does).
    pub fn to_labels(&self) -> Option<Labels> {
        if self.status != RunStatus::Converged {
            return None;
        }
        let energy_ev = self.energy_ev.filter(|e| e.is_finite())?;
        let forces = self.forces_ev_per_a.clone()?;
        if forces.iter().flatten().any(|x| !x.is_finite()) {
            return None;
        }
        Some(Labels { energy_ev, forces_ev_per_a: forces, stress_ev_per_a3: self.stress_ev_per_a3 })
    }
}

/// A file that cannot be read as the output of the named program.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Empty, binary or unrelated text: "FILE is not a Quantum ESPRESSO pw.x output: ...".
    #[error("{file} is not {} {engine} output: {reason}", article(engine))]
    NotAnOutput { engine: &'static str, file: String, reason: String },
    #[error("cannot read {file}: {error}")]
    Io { file: String, error: String },
}

/// "a" or "an" before a program's name ("an ORCA output", "a CP2K output").
fn article(name: &str) -> &'static str {
    if name.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Why a text cannot be a program's text output at all (empty, binary), or None.
pub(crate) fn not_text_reason(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("the file is empty".into());
    }
    let head = &text.as_bytes()[..text.len().min(65536)];
    let bad =
        head.iter().filter(|&&b| b == 0 || (b < 0x20 && b != b'\n' && b != b'\r' && b != b'\t' && b != 0x0c)).count();
    if bad > 0 {
        return Some(format!("it contains {bad} binary control bytes in its first {} bytes", head.len()));
    }
    if text.contains('\u{FFFD}') && text.matches('\u{FFFD}').count() * 100 > text.len().min(65536) {
        return Some("it is not text (invalid UTF-8)".into());
    }
    None
}

/// Bytes to text for the parsers: invalid UTF-8 is replaced (the parsers only look at
/// ASCII markers), NUL bytes are kept so that `not_text_reason` sees them.
pub fn bytes_to_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Parse a Fortran real: accepts `1.5`, `-1.5E-03`, `1.5D-03`; rejects `****`, NaN, inf.
pub(crate) fn fortran_f64(s: &str) -> Option<f64> {
    let v: f64 = if s.bytes().any(|b| b == b'D' || b == b'd') {
        s.replace(['D', 'd'], "E").parse().ok()?
    } else {
        s.parse().ok()?
    };
    v.is_finite().then_some(v)
}

/// The first `n` real numbers of whitespace-separated tokens, or None if any is not a number.
pub(crate) fn floats<const N: usize>(mut tokens: impl Iterator<Item = impl AsRef<str>>) -> Option<[f64; N]> {
    let mut out = [0.0; N];
    for slot in out.iter_mut() {
        *slot = fortran_f64(tokens.next()?.as_ref())?;
    }
    Some(out)
}

/// The part of `text` from the start of the line holding the last `marker` (a program
/// banner), and the number of lines before it; the whole text when the marker is absent.
pub(crate) fn last_run<'a>(text: &'a str, marker: &str) -> (&'a str, usize) {
    match text.rfind(marker) {
        Some(i) => {
            let start = text[..i].rfind('\n').map_or(0, |j| j + 1);
            (&text[start..], text[..start].bytes().filter(|&b| b == b'\n').count())
        }
        None => (text, 0),
    }
}

/// How many lines at the end of an output [`scheduler_kill`] looks at.
const SCHEDULER_TAIL_LINES: usize = 60;

/// The batch scheduler's own words at the end of an output whose program did not finish
/// (stdout and stderr in one file): Slurm `slurmstepd: error: *** JOB 123 ON node CANCELLED
/// AT 2024-04-20T09:09:37 [DUE TO TIME LIMIT] ***` (also `STEP 123.0`, `slurmstepd-host:` and
/// `0: ` rank labels), `srun: Force Terminated job 123`, Slurm's out-of-memory kill, PBS
/// `job killed: walltime ... exceeded limit`, LSF `TERM_RUNLIMIT`. Only the last
/// [`SCHEDULER_TAIL_LINES`] lines are read. Returns `OutOfTime` when the job hit its time
/// limit, `Crashed` otherwise, with a message quoting the scheduler's line.
pub(crate) fn scheduler_kill(text: &str) -> Option<(RunStatus, String)> {
    let mut time_limit = false;
    let mut best: Option<(u8, &str)> = None; // (rank, line): a `JOB ... CANCELLED` line is the most telling
    for line in text.lines().rev().take(SCHEDULER_TAIL_LINES) {
        let t = line.trim();
        let rank = if t.contains("slurmstepd") && t.contains("CANCELLED") {
            time_limit |= t.contains("DUE TO TIME LIMIT");
            if t.contains("*** JOB") {
                4
            } else {
                3
            }
        } else if t.contains("oom-kill") || t.contains("out-of-memory handler") {
            3
        } else if t.contains("PBS: job killed: walltime") || t.contains("TERM_RUNLIMIT") {
            time_limit = true;
            3
        } else if t.starts_with("srun: Force Terminated") || t.starts_with("srun: forcing job termination") {
            1
        } else {
            continue;
        };
        if !matches!(best, Some((r, _)) if r >= rank) {
            best = Some((rank, t));
        }
    }
    let (_, line) = best?;
    let status = if time_limit { RunStatus::OutOfTime } else { RunStatus::Crashed };
    Some((status, format!("killed by the batch scheduler: {line}")))
}

/// Largest per-atom force norm.
pub(crate) fn max_force(forces: &[[f64; 3]]) -> f64 {
    forces.iter().map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt()).fold(0.0, f64::max)
}

/// A symmetric 3x3 tensor as Voigt `[xx, yy, zz, yz, xz, xy]`, scaled by `factor`.
/// The off-diagonal elements are averaged over the two triangles.
pub(crate) fn voigt(m: &[[f64; 3]; 3], factor: f64) -> [f64; 6] {
    [
        m[0][0] * factor,
        m[1][1] * factor,
        m[2][2] * factor,
        0.5 * (m[1][2] + m[2][1]) * factor,
        0.5 * (m[0][2] + m[2][0]) * factor,
        0.5 * (m[0][1] + m[1][0]) * factor,
    ]
}

/// Read a file for a parser: I/O errors and non-text are `ParseError`s naming the file.
pub fn read_output_file(path: &std::path::Path) -> Result<String, ParseError> {
    let bytes =
        std::fs::read(path).map_err(|e| ParseError::Io { file: path.display().to_string(), error: e.to_string() })?;
    Ok(bytes_to_text(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converged() -> ParsedOutput {
        ParsedOutput {
            energy_ev: Some(-1.0),
            forces_ev_per_a: Some(vec![[0.0, 0.0, 1.0]]),
            stress_ev_per_a3: None,
            max_force_ev_per_a: Some(1.0),
            scf_steps: Some(3),
            wall_time_s: Some(1.0),
            status: RunStatus::Converged,
            message: None,
        }
    }

    #[test]
    fn labels_only_when_converged_with_energy_and_forces() {
        assert!(converged().to_labels().is_some());
        for s in [
            RunStatus::ScfNotConverged,
            RunStatus::RelaxNotConverged,
            RunStatus::OutOfTime,
            RunStatus::Crashed,
            RunStatus::Truncated,
        ] {
            let p = ParsedOutput { status: s, ..converged() };
            assert!(p.to_labels().is_none(), "{s:?}");
        }
        assert!(ParsedOutput { energy_ev: None, ..converged() }.to_labels().is_none());
        assert!(ParsedOutput { forces_ev_per_a: None, ..converged() }.to_labels().is_none());
    }

    #[test]
    fn json_shape() {
        let j = serde_json::to_value(ParsedOutput { status: RunStatus::ScfNotConverged, ..converged() }).unwrap();
        assert_eq!(j["status"], "scf_not_converged");
        for k in [
            "energy_ev",
            "forces_ev_per_a",
            "stress_ev_per_a3",
            "max_force_ev_per_a",
            "scf_steps",
            "wall_time_s",
            "status",
            "message",
        ] {
            assert!(j.get(k).is_some(), "{k}");
        }
        assert_eq!(j.as_object().unwrap().len(), 8);
        assert_eq!(serde_json::to_string(&RunStatus::OutOfTime).unwrap(), "\"out_of_time\"");
    }

    #[test]
    fn fortran_numbers() {
        assert_eq!(fortran_f64("1.5D-03"), Some(1.5e-3));
        assert_eq!(fortran_f64("-2.0E+01"), Some(-20.0));
        assert_eq!(fortran_f64("********"), None);
        assert_eq!(fortran_f64("NaN"), None);
        assert!(not_text_reason("").is_some());
        assert!(not_text_reason("a\0b").is_some());
        assert!(not_text_reason("hello\n").is_none());
    }
}

/// Why running an engine did not give a parsed output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("{path}: {error}")]
    Io { path: String, error: String },
    #[error("cannot start `{command}`: {error}{hint}")]
    Spawn { command: String, error: String, hint: &'static str },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The process exit of an engine, for messages.
pub(crate) fn describe_exit(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "unknown exit".into(),
    }
}

/// A process that failed by itself (non-zero exit, or a crash signal such as SIGSEGV or
/// SIGABRT), as opposed to being stopped from outside (SIGKILL, SIGTERM, SIGINT: the
/// executor's time limit or a user).
pub(crate) fn died_on_its_own(status: &std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return !matches!(sig, 9 | 15 | 2);
        }
    }
    !status.success()
}

/// Two messages as one ("a; b"), either may be missing or empty.
pub(crate) fn join_msg(a: Option<String>, b: String) -> String {
    match a {
        Some(a) if b.is_empty() => a,
        Some(a) if !a.is_empty() => format!("{a}; {b}"),
        _ => b,
    }
}

/// A run that crashed before its output said anything usable.
pub(crate) fn crashed_output(message: String) -> ParsedOutput {
    ParsedOutput {
        energy_ev: None,
        forces_ev_per_a: None,
        stress_ev_per_a3: None,
        max_force_ev_per_a: None,
        scf_steps: None,
        wall_time_s: None,
        status: RunStatus::Crashed,
        message: Some(message),
    }
}

/// How `program`'s process ended, folded into what its output says: an output cut short
/// by a process that died by itself is a crash; a failed process is never trusted even
/// when its output looks complete; `detail` (e.g. the end of stderr) is added to the
/// message of a failed run.
pub(crate) fn judge_exit(
    program: &str,
    mut p: ParsedOutput,
    status: &std::process::ExitStatus,
    detail: &str,
) -> ParsedOutput {
    if p.status == RunStatus::Truncated && died_on_its_own(status) {
        p.status = RunStatus::Crashed;
    }
    if !status.success() && p.status == RunStatus::Converged {
        p.status = RunStatus::Crashed;
        p.message = Some(format!("{program} {} although the output looks complete; {detail}", describe_exit(status)));
    } else if matches!(p.status, RunStatus::Truncated | RunStatus::Crashed) && !status.success() {
        p.message = Some(join_msg(p.message.take(), format!("{program} {}; {detail}", describe_exit(status))));
    }
    p
}

/// The last `n` non-empty lines of a text, joined by " | ".
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let v: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    v[v.len().saturating_sub(n)..].join(" | ")
}
