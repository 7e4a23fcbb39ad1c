//! Pacemaker (ACE) as the training engine, run as a job, and its evaluator.
//!
//! The fit's task directory (like an exploration segment's) holds `pace.json` (the
//! settings and the Pacemaker installation), the labels (`labels.xyz`), the per-frame
//! weights (`weights.json`), the per-element reference energies taken off the labels'
//! energies (`references.json`, Pacemaker's `energy_corrected`) and Pacemaker's
//! `input.yaml`. `autopipe job-exec DIR` takes the directory's lock, turns the labels into
//! Pacemaker's dataset (a gzip pandas pickle, by `pace_dataset.py` in Pacemaker's Python), runs `pacemaker input.yaml` and
//! `pace_activeset`, and writes `result.json` (a [`PaceModel`]) atomically as its last
//! step; each tool's output goes to its own log in the directory.
//!
//! [`PaceEvaluator`] evaluates energy, forces, stress and the extrapolation grade γ with
//! Pacemaker's own calculator (pyace's `PyACECalculator` with the active set) in one
//! long-lived Python process, structure after structure.

use autopipe_atoms::extxyz::write_extxyz_file;
use autopipe_atoms::{Frame, Structure};
use autopipe_potential::{FitOptions, ModelEval, PaceModel, PaceSettings};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// The input file of a Pacemaker fit's task directory.
pub const PACE_FILE: &str = "pace.json";
const DATASET_SCRIPT: &str = include_str!("pace/pace_dataset.py");
const EVAL_SCRIPT: &str = include_str!("pace/pace_eval.py");

/// Where Pacemaker's Python is: `AUTOPIPE_PACE_PYTHON`, else the venv that
/// `scripts/install-test-deps.sh` makes, `/opt/autopipe-pace/bin/python`. `pacemaker` and
/// `pace_activeset` are taken from the same `bin` directory.
pub fn pace_python() -> PathBuf {
    std::env::var_os("AUTOPIPE_PACE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/autopipe-pace/bin/python"))
}

/// Everything a Pacemaker fit needs (`pace.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceJob {
    pub settings: PaceSettings,
    /// Pacemaker's Python interpreter (absolute).
    pub python: PathBuf,
    /// Per-element reference energies (eV, by symbol) taken off the labels' energies
    /// (Pacemaker's `energy_corrected`); the model adds them back.
    #[serde(default)]
    pub reference_energies_ev: std::collections::BTreeMap<String, f64>,
}

/// `potential.kind` and `[potential.pace]` checked: the settings (elements from the
/// system's when not given), or the dotted key and message of the first error.
pub fn pace_config(
    kind: &str,
    pace: Option<PaceSettings>,
    elements: &[autopipe_atoms::Element],
) -> Result<PaceSettings, (Vec<String>, String)> {
    let key = |k: &str| k.split('.').map(String::from).collect::<Vec<_>>();
    match kind {
        "snap" | "pace" => {}
        other => return Err((key("potential.kind"), format!("{other:?} is not one of \"snap\", \"pace\""))),
    }
    let mut s = pace.unwrap_or_default();
    if s.elements.is_empty() {
        s.elements = elements.iter().map(|e| e.symbol().to_string()).collect();
    }
    s.validate().map_err(|m| {
        let field = m.split(':').next().unwrap_or("").to_string();
        (vec!["potential".into(), "pace".into(), field], m)
    })?;
    Ok(s)
}

/// That Pacemaker's tools are where [`pace_python`] says.
pub fn check_installed() -> Result<(), String> {
    let python = pace_python();
    for tool in ["pacemaker", "pace_activeset"] {
        let p = python.with_file_name(tool);
        if !p.is_file() {
            return Err(format!(
                "Pacemaker is not installed: {} is missing (install python-ace and tensorpotential in a venv, \
                 see scripts/install-test-deps.sh, and set AUTOPIPE_PACE_PYTHON to its python)",
                p.display()
            ));
        }
    }
    Ok(())
}

/// Whether `dir` is a Pacemaker fit's task directory.
pub fn is_pace_dir(dir: &Path) -> bool {
    dir.join(PACE_FILE).is_file()
}

/// Write a fit's task directory: the labelled frames (energy and forces required), their
/// weights from the fit's groups, the per-element reference energies, Pacemaker's input
/// and `pace.json`. Checks the settings and that Pacemaker is installed before anything runs.
pub fn prepare_pace_dir(
    dir: &Path,
    frames: &[Frame],
    opts: &FitOptions,
    settings: &PaceSettings,
) -> Result<(), String> {
    settings.validate().map_err(|e| format!("potential.pace.{e}"))?;
    if opts.reference.is_some() {
        return Err("a ZBL reference ([potential.reference] zbl_inner_a, zbl_outer_a) is for SNAP fits: \
                    Pacemaker's ACE has its own core repulsion"
            .into());
    }
    check_installed()?;
    let python = pace_python();
    for (i, f) in frames.iter().enumerate() {
        if f.energy_ev.is_none() || f.forces_ev_per_a.is_none() {
            return Err(format!("frame {}: no energy and forces to fit on", i + 1));
        }
        for e in &f.structure.species {
            if !settings.elements.iter().any(|s| s == e.symbol()) {
                return Err(format!("frame {}: element {} is not among the fit's elements", i + 1, e.symbol()));
            }
        }
    }
    if frames.is_empty() {
        return Err("no labelled frames to fit on".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), String> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
    };
    // Only the labels Pacemaker reads (ASE's SinglePointCalculator keys).
    let labels: Vec<Frame> = frames
        .iter()
        .map(|f| Frame {
            structure: f.structure.clone(),
            energy_ev: f.energy_ev,
            forces_ev_per_a: f.forces_ev_per_a.clone(),
            ..Default::default()
        })
        .collect();
    write_extxyz_file(&dir.join("labels.xyz"), &labels).map_err(|e| e.to_string())?;
    let weights = autopipe_potential::pace_frame_weights(frames, opts);
    write("weights.json", &serde_json::to_vec(&weights).expect("weights serialise"))?;
    let references = &opts.reference_energies_ev;
    write("references.json", &serde_json::to_vec(references).expect("references serialise"))?;
    write("input.yaml", settings.input_yaml("data.pckl.gzip", "weights.pckl.gzip").as_bytes())?;
    write("pace_dataset.py", DATASET_SCRIPT.as_bytes())?;
    let job = PaceJob { settings: settings.clone(), python, reference_energies_ev: references.clone() };
    write(PACE_FILE, &serde_json::to_vec_pretty(&job).expect("jobs serialise"))
}

/// Run one tool in `dir`, its output to `log`; an error quotes the log's last lines.
fn run_tool(dir: &Path, program: &Path, args: &[&str], log: &str) -> Result<(), String> {
    let log_path = dir.join(log);
    let out = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .env("CUDA_VISIBLE_DEVICES", "")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        return Err(format!(
            "{} failed ({status}); last lines of {}:\n{}",
            program.display(),
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

/// The body of a Pacemaker fit's job (`autopipe job-exec DIR` on a directory holding
/// `pace.json`).
pub fn execute_pace_dir(dir: &Path) -> Result<(), String> {
    let _lock = autopipe_exec::job::lock(dir, true).map_err(|e| e.to_string())?;
    let result_path = dir.join(autopipe_exec::job::RESULT_FILE);
    if result_path.is_file() {
        return Ok(());
    }
    let path = dir.join(PACE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let job: PaceJob = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = Instant::now();
    let py = job.python.as_path();
    run_tool(
        dir,
        py,
        &["pace_dataset.py", "labels.xyz", "weights.json", "data.pckl.gzip", "weights.pckl.gzip", "references.json"],
        "dataset.log",
    )?;
    run_tool(dir, &py.with_file_name("pacemaker"), &["input.yaml"], "pacemaker.log")?;
    run_tool(
        dir,
        &py.with_file_name("pace_activeset"),
        &["-d", "fitting_data_info.pckl.gzip", "output_potential.yaml"],
        "activeset.log",
    )?;
    let abs = |name: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(format!("Pacemaker left no {}", p.display()));
        }
        std::fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let model = PaceModel {
        kind: PaceModel::KIND.into(),
        potential_yaml: abs("output_potential.yaml")?,
        active_set_asi: abs("output_potential.asi")?,
        settings: job.settings,
        fit_s: start.elapsed().as_secs_f64(),
        reference_energies_ev: job.reference_energies_ev,
        provenance: serde_json::Value::Null,
    };
    autopipe_exec::job::write_atomic(&result_path, &serde_json::to_vec_pretty(&model).expect("models serialise"))
        .map_err(|e| e.to_string())
}

/// The model a finished fit's directory holds.
pub fn read_pace_result(dir: &Path) -> Result<PaceModel, String> {
    let p = dir.join(autopipe_exec::job::RESULT_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Read a pace model file (`"kind": "pace"`), checking that Pacemaker's files exist.
pub fn read_pace_model(path: &Path) -> Result<PaceModel, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let m: PaceModel = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.kind != PaceModel::KIND {
        return Err(format!("{}: kind is {:?}, not \"pace\"", path.display(), m.kind));
    }
    for p in [&m.potential_yaml, &m.active_set_asi] {
        if !p.is_file() {
            return Err(format!("{}: {} is missing", path.display(), p.display()));
        }
    }
    Ok(m)
}

/// Pacemaker's own calculator in a long-lived Python process.
pub struct PaceEvaluator {
    /// Added back to Pacemaker's energy (see [`PaceModel::reference_energies_ev`]).
    references_ev: std::collections::BTreeMap<String, f64>,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[derive(Deserialize)]
struct EvalLine {
    energy_ev: Option<f64>,
    forces_ev_per_a: Option<Vec<[f64; 3]>>,
    stress_ev_per_a3: Option<[f64; 6]>,
    gamma: Option<Vec<f64>>,
    error: Option<String>,
    ready: Option<bool>,
}

impl PaceEvaluator {
    /// Start Pacemaker's Python with the model's potential and active set.
    pub fn start(model: &PaceModel) -> Result<PaceEvaluator, String> {
        let python = pace_python();
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(EVAL_SCRIPT)
            .arg(&model.potential_yaml)
            .arg(&model.active_set_asi)
            .env("TF_CPP_MIN_LOG_LEVEL", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!("cannot run Pacemaker's python {} ({e}); set AUTOPIPE_PACE_PYTHON", python.display())
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut ev = PaceEvaluator { references_ev: model.reference_energies_ev.clone(), child, stdin, stdout };
        match ev.read_line()? {
            EvalLine { ready: Some(true), .. } => Ok(ev),
            EvalLine { error: Some(e), .. } => Err(e),
            _ => Err("the pace evaluator did not start".into()),
        }
    }

    fn read_line(&mut self) -> Result<EvalLine, String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(|e| format!("pace evaluator: {e}"))?;
        if n == 0 {
            return Err("the pace evaluator ended (its error is above)".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("pace evaluator said {line:?}: {e}"))
    }

    /// Energy, forces, stress (periodic cells) and per-atom γ of one structure.
    pub fn evaluate(&mut self, s: &Structure) -> Result<ModelEval, String> {
        let request = serde_json::json!({
            "cell": s.cell_a,
            "positions": s.positions_a,
            "numbers": s.species.iter().map(|e| e.z()).collect::<Vec<_>>(),
            "pbc": s.pbc,
        });
        writeln!(self.stdin, "{request}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("pace evaluator: {e}"))?;
        let r = self.read_line()?;
        if let Some(e) = r.error {
            return Err(format!("Pacemaker's calculator: {e}"));
        }
        let (Some(energy_ev), Some(forces)) = (r.energy_ev, r.forces_ev_per_a) else {
            return Err("the pace evaluator gave no energy or forces".into());
        };
        if forces.len() != s.len() {
            return Err(format!("the pace evaluator gave {} forces for {} atoms", forces.len(), s.len()));
        }
        let v = s.volume_a3().abs();
        let virial_ev = r.stress_ev_per_a3.map_or([0.0; 6], |st| st.map(|x| -x * v));
        Ok(ModelEval {
            energy_ev: energy_ev + autopipe_potential::reference_energy_ev(&self.references_ev, &s.species),
            atom_energies_ev: Vec::new(),
            forces_ev_per_a: forces,
            stress_ev_per_a3: r.stress_ev_per_a3,
            virial_ev,
            gamma: r.gamma,
        })
    }
}

/// Errors of a pace model on labelled frames (energy, forces, stress, max γ), overall and
/// per group, evaluated with Pacemaker's calculator.
pub fn pace_errors(
    model: &PaceModel,
    frames: &[Frame],
) -> Result<
    (autopipe_potential::ErrorMetrics, std::collections::BTreeMap<String, autopipe_potential::ErrorMetrics>),
    String,
> {
    let mut ev = PaceEvaluator::start(model)?;
    let mut evals = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        evals.push(ev.evaluate(&f.structure).map_err(|e| format!("frame {}: {e}", i + 1))?);
    }
    Ok(autopipe_potential::errors_of_evaluations(frames, &evals, &autopipe_potential::EvalOptions::default()))
}

/// A pace model as the MD force field: Pacemaker's energy, forces, stress and per-atom γ
/// (the extrapolation grade the gamma watchdog and the selection use).
pub struct PaceForceField(pub PaceEvaluator);

impl autopipe_md::ForceField for PaceForceField {
    fn evaluate(&mut self, s: &Structure) -> Result<autopipe_md::Evaluation, String> {
        let e = self.0.evaluate(s)?;
        Ok(autopipe_md::Evaluation {
            energy_ev: e.energy_ev,
            forces_ev_per_a: e.forces_ev_per_a,
            stress_ev_per_a3: e.stress_ev_per_a3,
            gamma: e.gamma,
        })
    }
}

impl Drop for PaceEvaluator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
