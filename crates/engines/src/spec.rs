//! How a calculation runs: the engine and its settings, as stored with each
//! calculation and written into its job directory.
//!
//! `EngineSpec::run` is the adapter side: it may write files in the job directory and
//! start programs. The executor runs it inside a job process of its own, so a crash or
//! a kill of the engine never takes the orchestrator with it.

use crate::ase_bridge::{self, AseSettings};
use crate::cp2k::{self, Cp2kSettings};
use crate::emt::Emt;
use crate::job_dir::remove_stale_outputs;
use crate::orca::{self, OrcaSettings};
use crate::output::{ParsedOutput, RunError};
use crate::qe::{self, QeSettings};
use crate::vasp::{self, VaspSettings};
use crate::Labels;
use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_atoms::{Frame, InfoValue, Structure};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// The engine of a calculation and everything it needs. Deserialised through
/// [`EngineSpecRepr`], so that a key beside `engine = "emt"` is refused like an unknown
/// key of any other engine (serde does not enforce `deny_unknown_fields` for a unit
/// variant of an internally tagged enum).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case", deny_unknown_fields, from = "EngineSpecRepr")]
pub enum EngineSpec {
    /// The built-in effective-medium theory (ASE's EMT), computed in the job process.
    Emt,
    /// Any program: it finds the structure in `input.xyz` (extended XYZ) in its working
    /// directory (the job directory) and writes `output.xyz` with `energy` and `forces`
    /// (and optionally `stress`). A frame with the info key `converged=F` is a physics
    /// failure (retried under the physics budget). Run with `sh -c`.
    Command {
        command: String,
        /// Label-defining settings of the command (e.g. the functional), hashed into the
        /// idempotency key; the command line itself is hashed too.
        #[serde(default)]
        label_params: serde_json::Map<String, serde_json::Value>,
    },
    /// Quantum ESPRESSO `pw.x` (settings: see `qe::QeSettings`).
    Qe(QeSettings),
    /// CP2K `cp2k.psmp` (settings: see `cp2k::Cp2kSettings`).
    Cp2k(Cp2kSettings),
    /// ORCA, molecules only (settings: see `orca::OrcaSettings`; `command` is the full
    /// path of the user's `orca`).
    Orca(OrcaSettings),
    /// VASP with the user's licence and binary (settings: see `vasp::VaspSettings`;
    /// POTCARs assembled from `potcar_dir`).
    Vasp(VaspSettings),
    /// Any ASE calculator through the ASE bridge (settings: see `ase_bridge::AseSettings`).
    Ase(AseSettings),
}

/// The deserialisation form of [`EngineSpec`]: the same, with EMT as an empty struct
/// variant, whose unknown fields serde does refuse.
#[derive(Deserialize)]
#[serde(tag = "engine", rename_all = "snake_case", deny_unknown_fields)]
enum EngineSpecRepr {
    Emt {},
    Command {
        command: String,
        #[serde(default)]
        label_params: serde_json::Map<String, serde_json::Value>,
    },
    Qe(QeSettings),
    Cp2k(Cp2kSettings),
    Orca(OrcaSettings),
    Vasp(VaspSettings),
    Ase(AseSettings),
}

impl From<EngineSpecRepr> for EngineSpec {
    fn from(r: EngineSpecRepr) -> EngineSpec {
        match r {
            EngineSpecRepr::Emt {} => EngineSpec::Emt,
            EngineSpecRepr::Command { command, label_params } => EngineSpec::Command { command, label_params },
            EngineSpecRepr::Qe(s) => EngineSpec::Qe(s),
            EngineSpecRepr::Cp2k(s) => EngineSpec::Cp2k(s),
            EngineSpecRepr::Orca(s) => EngineSpec::Orca(s),
            EngineSpecRepr::Vasp(s) => EngineSpec::Vasp(s),
            EngineSpecRepr::Ase(s) => EngineSpec::Ase(s),
        }
    }
}

/// What one run of an engine gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EngineOutcome {
    /// Trustworthy labels.
    Labels { labels: Labels, scf_steps: Option<u32> },
    /// The engine ran but the answer must not become a label (e.g. SCF not converged).
    PhysicsFailure { message: String },
    /// The engine could not run or crashed.
    Error { message: String },
}

pub const COMMAND_INPUT: &str = "input.xyz";
pub const COMMAND_OUTPUT: &str = "output.xyz";

impl EngineSpec {
    pub fn name(&self) -> &'static str {
        match self {
            EngineSpec::Emt => "emt",
            EngineSpec::Command { .. } => "command",
            EngineSpec::Qe(_) => "qe",
            EngineSpec::Cp2k(_) => "cp2k",
            EngineSpec::Orca(_) => "orca",
            EngineSpec::Vasp(_) => "vasp",
            EngineSpec::Ase(_) => "ase",
        }
    }

    /// Only the settings that define the labels (part of the idempotency key).
    pub fn label_params(&self) -> serde_json::Value {
        match self {
            EngineSpec::Emt => serde_json::json!({}),
            EngineSpec::Command { command, label_params } => {
                serde_json::json!({ "command": command, "params": label_params })
            }
            EngineSpec::Qe(s) => qe::label_params(s),
            EngineSpec::Cp2k(s) => cp2k::label_params(s),
            EngineSpec::Orca(s) => orca::label_params(s),
            EngineSpec::Vasp(s) => vasp::label_params(s),
            EngineSpec::Ase(s) => ase_bridge::label_params(s),
        }
    }

    /// Whether this engine can label a structure at all (checked before import).
    pub fn check_structure(&self, structure: &Structure) -> Result<(), String> {
        match self {
            EngineSpec::Emt => match structure.species.iter().find(|e| !Emt::supports(**e)) {
                Some(e) => {
                    Err(format!("EMT has no parameters for {e} (it knows Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O)"))
                }
                None => Ok(()),
            },
            EngineSpec::Command { .. } | EngineSpec::Ase(_) => Ok(()),
            EngineSpec::Qe(s) => {
                match structure.species.iter().find(|e| !s.pseudopotentials.contains_key(e.symbol())) {
                    Some(e) => Err(format!("no pseudopotential for {e} in [oracle] pseudopotentials")),
                    None => Ok(()),
                }
            }
            EngineSpec::Cp2k(s) => {
                match structure
                    .species
                    .iter()
                    .find(|e| !s.basis_sets.contains_key(e.symbol()) || !s.potentials.contains_key(e.symbol()))
                {
                    Some(e) => Err(format!("no basis set or GTH potential for {e} in [oracle] basis_sets/potentials")),
                    None => Ok(()),
                }
            }
            EngineSpec::Orca(_) if structure.pbc.iter().any(|&p| p) => {
                Err("ORCA computes molecules: the structure must not be periodic".into())
            }
            EngineSpec::Orca(_) => Ok(()),
            EngineSpec::Vasp(s) => match structure.species.iter().find(|e| !s.potcars.contains_key(e.symbol())) {
                Some(e) => Err(format!("no POTCAR for {e} in [oracle] potcars")),
                None => Ok(()),
            },
        }
    }

    /// The next rung of the remediation ladder after `physics_failures` physics failures:
    /// new settings that change only convergence knobs, and what changed. `None` when
    /// the engine has no ladder (the attempt is then retried unchanged) .
    pub fn remediate(&self, physics_failures: u32) -> Option<(EngineSpec, String)> {
        match self {
            EngineSpec::Emt | EngineSpec::Command { .. } | EngineSpec::Ase(_) => None,
            EngineSpec::Qe(s) => qe::remediate(s, physics_failures).map(|(s, c)| (EngineSpec::Qe(s), c)),
            EngineSpec::Cp2k(s) => cp2k::remediate(s, physics_failures).map(|(s, c)| (EngineSpec::Cp2k(s), c)),
            EngineSpec::Orca(s) => orca::remediate(s, physics_failures).map(|(s, c)| (EngineSpec::Orca(s), c)),
            EngineSpec::Vasp(s) => vasp::remediate(s, physics_failures).map(|(s, c)| (EngineSpec::Vasp(s), c)),
        }
    }

    /// The same settings with the engine told to stop itself within `seconds` (QE
    /// `max_seconds`, CP2K `WALLTIME`; a smaller limit already set is kept). A run option,
    /// never label-defining. Engines without a time limit of their own are unchanged.
    pub fn with_time_limit_s(&self, seconds: f64) -> EngineSpec {
        let min = |a: Option<f64>| Some(a.map_or(seconds, |a| a.min(seconds)));
        match self {
            EngineSpec::Qe(s) => EngineSpec::Qe(QeSettings { max_seconds: min(s.max_seconds), ..s.clone() }),
            EngineSpec::Cp2k(s) => EngineSpec::Cp2k(Cp2kSettings { walltime_s: min(s.walltime_s), ..s.clone() }),
            other => other.clone(),
        }
    }

    /// The same settings using `cores` cores, when the user left the engine at one core
    /// (`mpi_ranks = 1`, `omp_threads = 1`): QE and CP2K then run `cores` MPI ranks. Set by
    /// the executor from the cores a job was given (allocation mode, a scheduler's
    /// `cpus_per_task`); settings the user chose are kept.
    pub fn with_cores(&self, cores: u32) -> EngineSpec {
        match self {
            EngineSpec::Qe(s) if cores > 1 && s.mpi_ranks == 1 && s.omp_threads == 1 => {
                EngineSpec::Qe(QeSettings { mpi_ranks: cores, ..s.clone() })
            }
            EngineSpec::Cp2k(s) if cores > 1 && s.mpi_ranks == 1 && s.omp_threads == 1 => {
                EngineSpec::Cp2k(Cp2kSettings { mpi_ranks: cores, ..s.clone() })
            }
            other => other.clone(),
        }
    }

    /// Run the engine on `structure` in `job_dir` (which exists and is writable).
    pub fn run(&self, job_dir: &Path, structure: &Structure) -> EngineOutcome {
        match self {
            EngineSpec::Emt => match Emt::new().calculate(structure) {
                Ok(labels) => EngineOutcome::Labels { labels, scf_steps: None },
                Err(e) => EngineOutcome::Error { message: format!("EMT: {e}") },
            },
            EngineSpec::Command { command, .. } => run_command(command, job_dir, structure),
            EngineSpec::Qe(s) => dft_outcome(qe::run_pw(job_dir, structure, s)),
            EngineSpec::Cp2k(s) => dft_outcome(cp2k::run_cp2k(job_dir, structure, s)),
            EngineSpec::Orca(s) => dft_outcome(orca::run_orca(job_dir, structure, s)),
            EngineSpec::Vasp(s) => dft_outcome(vasp::run_vasp_with_potcar_dir(job_dir, structure, s)),
            EngineSpec::Ase(s) => run_ase(s, structure),
        }
    }
}

/// A DFT run's parsed output as an outcome: only a converged run with energy and forces
/// becomes labels; an unconverged SCF or relaxation is a physics failure; everything
/// else (out of time, crashed, truncated, could not start) is an infrastructure error.
fn dft_outcome(run: Result<ParsedOutput, RunError>) -> EngineOutcome {
    let parsed = match run {
        Ok(p) => p,
        Err(e) => return EngineOutcome::Error { message: e.to_string() },
    };
    let what = || {
        let status =
            serde_json::to_value(parsed.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        match &parsed.message {
            Some(m) => format!("{status}: {m}"),
            None => status,
        }
    };
    if parsed.status.is_physics_failure() {
        return EngineOutcome::PhysicsFailure { message: what() };
    }
    match parsed.to_labels() {
        Some(labels) => EngineOutcome::Labels { labels, scf_steps: parsed.scf_steps },
        None => EngineOutcome::Error { message: what() },
    }
}

/// One structure through a bridge of its own (the job process labels one structure).
fn run_ase(settings: &AseSettings, structure: &Structure) -> EngineOutcome {
    let result = settings.start(&[]).and_then(|mut bridge| bridge.evaluate(structure));
    match result {
        Ok(evaluation) => EngineOutcome::Labels { labels: evaluation.labels, scf_steps: None },
        Err(e) if ase_bridge::is_physics_failure(&e) => EngineOutcome::PhysicsFailure { message: e.to_string() },
        Err(e) => EngineOutcome::Error { message: e.to_string() },
    }
}

fn run_command(command: &str, job_dir: &Path, structure: &Structure) -> EngineOutcome {
    let error = |message: String| EngineOutcome::Error { message };
    let input = job_dir.join(COMMAND_INPUT);
    let output = job_dir.join(COMMAND_OUTPUT);
    // an output of an earlier attempt must not be read as this run's
    if let Err(e) = remove_stale_outputs(job_dir, &[COMMAND_OUTPUT]) {
        return error(e.to_string());
    }
    if let Err(e) = write_extxyz_file(&input, &[Frame::from_structure(structure.clone())]) {
        return error(format!("cannot write {}: {e}", input.display()));
    }
    let status = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(job_dir)
        .env("AUTOPIPE_INPUT", &input)
        .env("AUTOPIPE_OUTPUT", &output)
        .status()
    {
        Ok(s) => s,
        Err(e) => return error(format!("cannot start `sh -c {command}`: {e}")),
    };
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        return error(match (status.code(), status.signal()) {
            (_, Some(sig)) => format!("command `{command}` was killed by signal {sig}"),
            (Some(code), _) => format!("command `{command}` exited with code {code}"),
            _ => format!("command `{command}` failed"),
        });
    }
    let frames = match read_extxyz_file(&output) {
        Ok(f) => f,
        Err(e) => return error(format!("command `{command}` left no readable {COMMAND_OUTPUT}: {e}")),
    };
    let Some(frame) = frames.into_iter().last() else {
        return error(format!("{} has no frame", output.display()));
    };
    if let Some(InfoValue::Bool(false)) = frame.info.get("converged") {
        return EngineOutcome::PhysicsFailure { message: format!("{COMMAND_OUTPUT} says converged=F") };
    }
    if frame.structure.len() != structure.len() {
        return error(format!(
            "{} has {} atoms, the input had {}",
            output.display(),
            frame.structure.len(),
            structure.len()
        ));
    }
    let stress_ev_per_a3 = match frame.stress_or_virial_ev_per_a3() {
        Ok(s) => s,
        Err(e) => return error(format!("{}: {e}", output.display())),
    };
    match (frame.energy_ev, frame.forces_ev_per_a) {
        (Some(energy_ev), Some(forces)) => EngineOutcome::Labels {
            labels: Labels { energy_ev, forces_ev_per_a: forces, stress_ev_per_a3 },
            scf_steps: None,
        },
        _ => error(format!("{} lacks energy or forces", output.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_beside_engine_emt_are_refused_like_any_unknown_key() {
        let emt: EngineSpec = serde_json::from_str(r#"{"engine": "emt"}"#).unwrap();
        assert_eq!(emt, EngineSpec::Emt);
        assert_eq!(serde_json::to_string(&emt).unwrap(), r#"{"engine":"emt"}"#);
        let e = serde_json::from_str::<EngineSpec>(r#"{"engine": "emt", "ecutwfc_ry": 25}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `ecutwfc_ry`"), "{e}");
        let e = serde_json::from_str::<EngineSpec>(r#"{"engine": "command", "command": "x", "bogus": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let c: EngineSpec = serde_json::from_str(r#"{"engine": "command", "command": "x"}"#).unwrap();
        assert_eq!(serde_json::from_str::<EngineSpec>(&serde_json::to_string(&c).unwrap()).unwrap(), c);
        let qe: EngineSpec = serde_json::from_str(r#"{"engine": "qe", "ecutwfc_ry": 30}"#).unwrap();
        assert_eq!(serde_json::from_str::<EngineSpec>(&serde_json::to_string(&qe).unwrap()).unwrap(), qe);
        let e = serde_json::from_str::<EngineSpec>(r#"{"engine": "qe", "cutoff_ry": 30}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `cutoff_ry`"), "{e}");
    }
}
