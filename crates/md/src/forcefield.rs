//! What MD needs from a model: energy, forces, (stress), (extrapolation grade).

use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};

/// What a force field returns for one structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub energy_ev: f64,
    pub forces_ev_per_a: Vec<[f64; 3]>,
    /// ASE convention: Voigt `[xx, yy, zz, yz, xz, xy]`, eV/Å³, `(1/V) dE/dε`
    /// (virial part only; the kinetic part is added by MD).
    pub stress_ev_per_a3: Option<[f64; 6]>,
    /// Per-atom extrapolation grade, when the model has one.
    pub gamma: Option<Vec<f64>>,
}

impl Evaluation {
    /// The largest per-atom extrapolation grade, if any.
    pub fn max_gamma(&self) -> Option<f64> {
        self.gamma.as_ref().map(|g| g.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    }

    /// Largest per-atom force norm, eV/Å.
    pub fn max_force_ev_per_a(&self) -> f64 {
        self.forces_ev_per_a.iter().map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt()).fold(0.0, f64::max)
    }
}

/// A source of forces. `&mut self` so that models can keep scratch space and caches.
pub trait ForceField {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String>;
}

impl<F: ForceField + ?Sized> ForceField for &mut F {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        (**self).evaluate(s)
    }
}

impl<F: ForceField + ?Sized> ForceField for Box<F> {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        (**self).evaluate(s)
    }
}
