#![allow(dead_code)]
use autopipe_atoms::{Element, Structure};
use autopipe_build::{bulk, supercell, Lattice};
use autopipe_engines::emt::Emt;
use autopipe_md::{Evaluation, ForceField};

/// The built-in EMT as an MD force field.
pub struct EmtFf(pub Emt);

impl EmtFf {
    pub fn new() -> Self {
        EmtFf(Emt::new())
    }
}

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

pub fn cu() -> Element {
    Element::from_symbol("Cu").unwrap()
}

/// An fcc Cu supercell of n x n x n conventional cells (4 n³ atoms).
pub fn cu_fcc(a: f64, n: usize) -> Structure {
    supercell(&bulk(Lattice::Fcc, cu(), a), [n, n, n])
}

pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}
