//! The dynamical state and the thermodynamic quantities computed from it.

use crate::forcefield::Evaluation;
use crate::units::{AMU_A2_PER_FS2_IN_EV, BOLTZMANN_EV_PER_K};
use autopipe_atoms::Structure;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Positions (never wrapped: the unwrapped trajectory), cell, velocities, clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MdState {
    pub structure: Structure,
    pub velocities_a_per_fs: Vec<[f64; 3]>,
    pub step: u64,
    pub time_fs: f64,
}

impl MdState {
    /// A state at step 0 with the given velocities.
    pub fn new(structure: Structure, velocities_a_per_fs: Vec<[f64; 3]>) -> MdState {
        MdState { structure, velocities_a_per_fs, step: 0, time_fs: 0.0 }
    }

    /// A state at step 0 with all atoms at rest.
    pub fn at_rest(structure: Structure) -> MdState {
        let n = structure.len();
        MdState::new(structure, vec![[0.0; 3]; n])
    }

    /// Masses in amu.
    pub fn masses_amu(&self) -> Vec<f64> {
        masses_amu(&self.structure)
    }

    /// Kinetic energy in eV.
    pub fn kinetic_energy_ev(&self) -> f64 {
        kinetic_energy_ev(&self.structure, &self.velocities_a_per_fs)
    }

    /// Instantaneous temperature (K) from the kinetic energy with
    /// [`degrees_of_freedom`] (3N-3) degrees of freedom.
    pub fn temperature_k(&self) -> f64 {
        temperature_from_kinetic(self.kinetic_energy_ev(), self.structure.len())
    }

    /// Total momentum, amu·Å/fs.
    pub fn momentum(&self) -> [f64; 3] {
        let mut p = [0.0; 3];
        for (v, e) in self.velocities_a_per_fs.iter().zip(&self.structure.species) {
            let m = e.mass_amu();
            for k in 0..3 {
                p[k] += m * v[k];
            }
        }
        p
    }

    /// Kinetic contribution to the stress, ASE convention (eV/Å³):
    /// `-(1/V) Σ m v_α v_β` as Voigt `[xx, yy, zz, yz, xz, xy]`.
    pub fn kinetic_stress_ev_per_a3(&self) -> [f64; 6] {
        let v = self.structure.volume_a3().abs();
        let mut t = [0.0; 6];
        for (u, e) in self.velocities_a_per_fs.iter().zip(&self.structure.species) {
            let m = e.mass_amu() * AMU_A2_PER_FS2_IN_EV;
            t[0] += m * u[0] * u[0];
            t[1] += m * u[1] * u[1];
            t[2] += m * u[2] * u[2];
            t[3] += m * u[1] * u[2];
            t[4] += m * u[0] * u[2];
            t[5] += m * u[0] * u[1];
        }
        t.map(|x| -x / v)
    }

    /// Full stress (virial from the force field + kinetic), ASE convention, if the
    /// force field gave a stress.
    pub fn total_stress_ev_per_a3(&self, eval: &Evaluation) -> Option<[f64; 6]> {
        let s = eval.stress_ev_per_a3?;
        let k = self.kinetic_stress_ev_per_a3();
        Some(std::array::from_fn(|i| s[i] + k[i]))
    }

    /// Pressure including the kinetic term, eV/Å³ (`-trace(stress)/3`).
    pub fn pressure_ev_per_a3(&self, eval: &Evaluation) -> Option<f64> {
        self.total_stress_ev_per_a3(eval).map(|s| -(s[0] + s[1] + s[2]) / 3.0)
    }

    /// Pressure including the kinetic term, GPa.
    pub fn pressure_gpa(&self, eval: &Evaluation) -> Option<f64> {
        self.pressure_ev_per_a3(eval).map(|p| p * crate::units::EV_PER_A3_IN_GPA)
    }
}

/// Masses in amu.
pub fn masses_amu(s: &Structure) -> Vec<f64> {
    s.species.iter().map(|e| e.mass_amu()).collect()
}

/// Kinetic energy in eV.
pub fn kinetic_energy_ev(s: &Structure, v: &[[f64; 3]]) -> f64 {
    let mut k = 0.0;
    for (u, e) in v.iter().zip(&s.species) {
        k += e.mass_amu() * (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
    }
    0.5 * k * AMU_A2_PER_FS2_IN_EV
}

/// Degrees of freedom used for temperatures: 3N-3 (total momentum fixed), 3 for a
/// single atom.
pub fn degrees_of_freedom(n_atoms: usize) -> usize {
    if n_atoms > 1 {
        3 * n_atoms - 3
    } else {
        3
    }
}

/// T = 2 K / (f k_B) with f = [`degrees_of_freedom`].
pub fn temperature_from_kinetic(kinetic_ev: f64, n_atoms: usize) -> f64 {
    2.0 * kinetic_ev / (degrees_of_freedom(n_atoms) as f64 * BOLTZMANN_EV_PER_K)
}

/// Subtracts the centre-of-mass velocity (zero total momentum).
pub fn remove_com_velocity(masses: &[f64], v: &mut [[f64; 3]]) {
    let mut p = [0.0; 3];
    let mut mt = 0.0;
    for (u, &m) in v.iter().zip(masses) {
        mt += m;
        for k in 0..3 {
            p[k] += m * u[k];
        }
    }
    if mt <= 0.0 {
        return;
    }
    let vc = p.map(|x| x / mt);
    for u in v.iter_mut() {
        for k in 0..3 {
            u[k] -= vc[k];
        }
    }
}

/// Maxwell-Boltzmann velocities (Å/fs) at `temperature_k`: Gaussian components with
/// variance kT/m, then zero total momentum, then rescaled so that the instantaneous
/// temperature (3N-3 degrees of freedom) is exactly `temperature_k`. A single atom (or
/// T = 0) gets zero velocity.
pub fn maxwell_boltzmann(structure: &Structure, temperature_k: f64, rng: &mut impl Rng) -> Vec<[f64; 3]> {
    let n = structure.len();
    let masses = masses_amu(structure);
    let kt_amu = BOLTZMANN_EV_PER_K * temperature_k.max(0.0) / AMU_A2_PER_FS2_IN_EV;
    let mut v: Vec<[f64; 3]> = masses
        .iter()
        .map(|&m| {
            let s = (kt_amu / m).sqrt();
            let mut g = || -> f64 { rng.sample::<f64, _>(StandardNormal) * s };
            [g(), g(), g()]
        })
        .collect();
    if n < 2 || temperature_k <= 0.0 {
        return vec![[0.0; 3]; n];
    }
    remove_com_velocity(&masses, &mut v);
    let t = temperature_from_kinetic(kinetic_energy_ev(structure, &v), n);
    if t > 0.0 {
        let f = (temperature_k / t).sqrt();
        for u in v.iter_mut() {
            for x in u.iter_mut() {
                *x *= f;
            }
        }
    }
    v
}
