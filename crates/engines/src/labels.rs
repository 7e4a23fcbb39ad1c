//! What an engine computes for one structure.

use autopipe_atoms::structure::Vec3;
use serde::{Deserialize, Serialize};

/// Energy, forces and stress of one structure, in ASE's units and conventions:
/// eV, eV/Å, and eV/Å³ as Voigt `[xx, yy, zz, yz, xz, xy]` (positive = tensile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub energy_ev: f64,
    pub forces_ev_per_a: Vec<Vec3>,
    pub stress_ev_per_a3: Option<[f64; 6]>,
}

impl Labels {
    /// Largest per-atom force norm, eV/Å.
    pub fn max_force_ev_per_a(&self) -> f64 {
        self.forces_ev_per_a.iter().map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt()).fold(0.0, f64::max)
    }
}
