//! What the property tests share: EMT as a force field, Cu cells, and ASE's side run
//! through `python3` (`tests/ase_reference.py`; needs ASE, which `scripts/test.sh` puts on
//! PATH; without it the tests fail, they do not skip).
#![allow(dead_code)]

use autopipe_atoms::{Element, Structure};
use autopipe_build::{bulk, supercell, Lattice};
use autopipe_engines::emt::Emt;
use autopipe_md::forcefield::{Evaluation, ForceField};
use std::io::Write;
use std::process::{Command, Stdio};

/// The built-in EMT as a force field.
pub struct EmtFf(pub Emt);

impl ForceField for EmtFf {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let l = self.0.calculate(s).map_err(|e| e.to_string())?;
        Ok(Evaluation {
            energy_ev: l.energy_ev,
            forces_ev_per_a: l.forces_ev_per_a,
            stress_ev_per_a3: l.stress_ev_per_a3,
            gamma: None,
        })
    }
}

pub fn emt() -> EmtFf {
    EmtFf(Emt::new())
}

pub fn cu() -> Element {
    Element::from_symbol("Cu").unwrap()
}

/// The one-atom primitive fcc Cu cell.
pub fn cu_primitive(a: f64) -> Structure {
    let h = a / 2.0;
    Structure::new([[0.0, h, h], [h, 0.0, h], [h, h, 0.0]], vec![[0.0; 3]], vec![cu()], [true; 3]).unwrap()
}

/// The conventional 4-atom cubic cell repeated n x n x n.
pub fn cu_cubic(a: f64, n: usize) -> Structure {
    supercell(&bulk(Lattice::Fcc, cu(), a), [n, n, n])
}

/// Run `tests/ase_reference.py` on one JSON task.
pub fn ase(task: serde_json::Value) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ase_reference.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): this test needs Python 3 with ASE, `pip install ase`"));
    child.stdin.take().unwrap().write_all(task.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed; this test needs ASE (`pip install ase`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The structure as the JSON ASE's side reads.
pub fn ase_atoms(s: &Structure) -> serde_json::Value {
    serde_json::json!({
        "cell": s.cell_a,
        "positions": s.positions_a,
        "symbols": s.species.iter().map(|e| e.symbol()).collect::<Vec<_>>(),
    })
}
