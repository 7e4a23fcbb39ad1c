//! The ASE bridge: any ASE calculator, named by import path and keyword arguments
//! (`ase.calculators.emt.EMT`, `mace.calculators.mace_mp`, `gpaw.GPAW` ...), run in a
//! long-lived Python subprocess that evaluates many structures per start (a model is
//! loaded once).
//!
//! The Python side is `ase_bridge/bridge.py`, embedded in the binary and given to the
//! interpreter with `-c`. The two sides exchange JSON, one object per line, over the
//! child's stdin and stdout (floats round-trip exactly both ways); anything the
//! calculator prints is sent to the child's stderr, whose last lines are kept for error
//! messages. An exception while evaluating one structure fails that structure only
//! ([`AseBridgeError::Structure`]); the bridge stays usable. A bridge whose process died
//! (a crash in native code) is restarted by the next [`AseBridge::evaluate`].

use crate::Labels;
use autopipe_atoms::structure::Vec3;
use autopipe_atoms::Structure;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The bridge's Python program.
pub const BRIDGE_PY: &str = include_str!("ase_bridge/bridge.py");

/// The interpreter used when none is configured (found on PATH).
pub const DEFAULT_PYTHON: &str = "python3";

/// How many bytes of the child's stderr are kept for error messages.
const STDERR_TAIL_BYTES: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum AseBridgeError {
    #[error("cannot start Python `{python}` for the ASE bridge: {message} (set `python` to an interpreter with ASE installed)")]
    NoPython { python: String, message: String },
    #[error("ASE is not installed for `{python}`: {message} (pip install ase)")]
    NoAse { python: String, message: String },
    #[error("ASE calculator `{calculator}`: {message}")]
    NoCalculator { calculator: String, message: String },
    #[error("ASE calculator `{calculator}` could not be created: {message}")]
    Construct { calculator: String, message: String },
    /// The calculator raised on this structure (`error_type` is the Python exception's
    /// class name); the bridge is still usable.
    #[error("ASE calculator `{calculator}` failed on this structure: {error_type}: {message}")]
    Structure { calculator: String, error_type: String, message: String },
    /// The Python process ended or answered something unreadable.
    #[error("the ASE bridge process ({calculator}) {message}{}", stderr_note(.stderr_tail))]
    Died { calculator: String, message: String, stderr_tail: String },
}

fn stderr_note(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{tail}")
    }
}

/// What the calculator gave for one structure.
#[derive(Clone, Debug, PartialEq)]
pub struct AseEvaluation {
    /// Energy (eV), forces (eV/Å), and stress (eV/Å³, Voigt, ASE's sign) for a structure
    /// periodic along all three axes whose calculator implements stress.
    pub labels: Labels,
    /// The requested entries of the calculator's `results`, each flattened row-major
    /// (a per-atom scalar such as pyace's `gamma` has one value per atom).
    pub extra: BTreeMap<String, Vec<f64>>,
}

/// The settings of a bridge, kept to restart it.
#[derive(Clone, Debug)]
struct BridgeConfig {
    python: String,
    calculator: String,
    kwargs: serde_json::Map<String, serde_json::Value>,
    extra_results: Vec<String>,
}

/// A running bridge. Dropping it closes the child's stdin (it then exits) and reaps it.
pub struct AseBridge {
    config: BridgeConfig,
    process: Option<Process>,
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ready: bool,
    fatal: Option<String>,
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_type: String,
    energy: Option<f64>,
    #[serde(default)]
    forces: Vec<f64>,
    stress: Option<Vec<f64>>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<f64>>,
}

impl AseBridge {
    /// Start `python` with the bridge, import `calculator` (`module.Name`, a class or a
    /// function returning a calculator) and call it with `kwargs`. Returns once the
    /// calculator exists, or with a clear error when Python, ASE, the module or the name
    /// is missing or the constructor raised. `extra_results` are keys of the calculator's
    /// `results` returned with every evaluation (missing: that structure fails).
    pub fn start(
        python: &str,
        calculator: &str,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        extra_results: &[String],
    ) -> Result<AseBridge, AseBridgeError> {
        let config = BridgeConfig {
            python: python.to_string(),
            calculator: calculator.to_string(),
            kwargs: kwargs.clone(),
            extra_results: extra_results.to_vec(),
        };
        let process = spawn(&config)?;
        Ok(AseBridge { config, process: Some(process) })
    }

    pub fn calculator(&self) -> &str {
        &self.config.calculator
    }

    /// Evaluate one structure. A failure of this structure ([`AseBridgeError::Structure`])
    /// leaves the bridge usable; after [`AseBridgeError::Died`] the next call restarts it.
    pub fn evaluate(&mut self, structure: &Structure) -> Result<AseEvaluation, AseBridgeError> {
        let process = match &mut self.process {
            Some(p) => p,
            None => self.process.insert(spawn(&self.config)?),
        };
        let request = serde_json::json!({
            "numbers": structure.species.iter().map(|e| e.z()).collect::<Vec<_>>(),
            "positions": structure.positions_a,
            "cell": structure.cell_a,
            "pbc": structure.pbc,
        });
        let answer = match process.exchange(&request.to_string()) {
            Ok(a) => a,
            Err(message) => {
                let process = self.process.take().expect("present");
                return Err(process.died(&self.config.calculator, message));
            }
        };
        if !answer.ok {
            return Err(AseBridgeError::Structure {
                calculator: self.config.calculator.clone(),
                error_type: answer.error_type,
                message: answer.message,
            });
        }
        let n = structure.len();
        let bad = |message: String| AseBridgeError::Structure {
            calculator: self.config.calculator.clone(),
            error_type: "BridgeProtocol".into(),
            message,
        };
        let energy_ev = answer.energy.ok_or_else(|| bad("no energy in the answer".into()))?;
        if answer.forces.len() != 3 * n {
            return Err(bad(format!("{} force components for {n} atoms", answer.forces.len())));
        }
        let forces_ev_per_a: Vec<Vec3> = answer.forces.chunks(3).map(|f| [f[0], f[1], f[2]]).collect();
        let stress_ev_per_a3 = match answer.stress {
            None => None,
            Some(s) if s.len() == 6 => Some([s[0], s[1], s[2], s[3], s[4], s[5]]),
            Some(s) => return Err(bad(format!("a stress of {} components", s.len()))),
        };
        Ok(AseEvaluation { labels: Labels { energy_ev, forces_ev_per_a, stress_ev_per_a3 }, extra: answer.extra })
    }
}

impl Drop for AseBridge {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.close();
        }
    }
}

fn spawn(config: &BridgeConfig) -> Result<Process, AseBridgeError> {
    let mut child = Command::new(&config.python)
        .arg("-u")
        .arg("-c")
        .arg(BRIDGE_PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AseBridgeError::NoPython { python: config.python.clone(), message: e.to_string() })?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_tail = Arc::new(Mutex::new(Vec::new()));
    let tail = Arc::clone(&stderr_tail);
    // Drains the child's stderr so that it never blocks on a full pipe, keeping the end.
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            t.extend_from_slice(&buf[..n]);
            if t.len() > 2 * STDERR_TAIL_BYTES {
                let cut = t.len() - STDERR_TAIL_BYTES;
                t.drain(..cut);
            }
        }
    });
    let mut process = Process { child, stdin, stdout, stderr_tail, stderr_reader: Some(stderr_reader) };
    let hello = serde_json::json!({
        "calculator": config.calculator,
        "kwargs": config.kwargs,
        "extra_results": config.extra_results,
    });
    let answer = match process.exchange(&hello.to_string()) {
        Ok(a) => a,
        Err(message) => return Err(process.died(&config.calculator, message)),
    };
    if answer.ready {
        return Ok(process);
    }
    let message = answer.message;
    let calculator = config.calculator.clone();
    let python = config.python.clone();
    let error = match answer.fatal.as_deref() {
        Some("ase") => AseBridgeError::NoAse { python, message },
        Some("module") | Some("attribute") => AseBridgeError::NoCalculator { calculator, message },
        Some("construct") => AseBridgeError::Construct { calculator, message },
        _ => return Err(process.died(&config.calculator, "did not say it was ready".into())),
    };
    process.close();
    Err(error)
}

impl Process {
    /// Send one line, read one answer.
    fn exchange(&mut self, line: &str) -> Result<Answer, String> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("could not be written to: {e}"))?;
        let mut answer = String::new();
        match self.stdout.read_line(&mut answer) {
            Ok(0) => Err("ended unexpectedly".into()),
            Ok(_) => serde_json::from_str(&answer)
                .map_err(|e| format!("answered an unreadable line ({e}): {}", answer.trim_end())),
            Err(e) => Err(format!("could not be read from: {e}")),
        }
    }

    /// The error for a process that stopped answering; it is killed and reaped.
    fn died(mut self, calculator: &str, message: String) -> AseBridgeError {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        // the reader ends at the end of the dead process's stderr
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        let start = tail.len().saturating_sub(STDERR_TAIL_BYTES);
        let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
        AseBridgeError::Died {
            calculator: calculator.to_string(),
            message: format!("{message}{status}"),
            stderr_tail: String::from_utf8_lossy(&tail[start..]).into_owned(),
        }
    }

    /// Close stdin (the bridge exits at its end) and reap the child; kill it if it does
    /// not exit within a few seconds.
    fn close(self) {
        let Process { mut child, stdin, .. } = self;
        drop(stdin);
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `engine = "ase"`: the settings of an ASE calculator used as an engine (oracle or
/// surrogate).
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AseSettings {
    /// Import path of a calculator class or of a function returning one,
    /// e.g. `ase.calculators.emt.EMT`, `mace.calculators.mace_mp`.
    pub calculator: String,
    /// Keyword arguments of that call (label-defining: part of the idempotency key).
    #[serde(default)]
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// The Python interpreter (with ASE and the calculator's package); default `python3`
    /// on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

impl AseSettings {
    pub fn python(&self) -> &str {
        self.python.as_deref().unwrap_or(DEFAULT_PYTHON)
    }

    /// Start a bridge with these settings.
    pub fn start(&self, extra_results: &[String]) -> Result<AseBridge, AseBridgeError> {
        AseBridge::start(self.python(), &self.calculator, &self.kwargs, extra_results)
    }
}

/// What defines the labels: the calculator and its arguments (not the interpreter).
pub fn label_params(s: &AseSettings) -> serde_json::Value {
    serde_json::json!({ "calculator": s.calculator, "kwargs": s.kwargs })
}

/// Whether a failure on one structure is a physics failure (an SCF that did not converge,
/// e.g. GPAW's `KohnShamConvergenceError`) rather than an error.
pub fn is_physics_failure(error: &AseBridgeError) -> bool {
    matches!(error, AseBridgeError::Structure { error_type, .. } if error_type.contains("Convergence"))
}
