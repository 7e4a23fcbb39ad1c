//! The ZBL screened nuclear repulsion as LAMMPS's `pair_style zbl inner outer` computes it
//! (the reference potential under a SNAP model: it repels close contacts the training data
//! never saw).
//!
//! For a pair of atoms with atomic numbers `Zi`, `Zj` at distance `r < outer`:
//!
//! ```text
//! E(r) = k Zi Zj / r · Σ_m c_m exp(-d_m r / a) + C + [r > inner] (A/3 t³ + B/4 t⁴),  t = r - inner
//! a    = 0.46850 Å / (Zi^0.23 + Zj^0.23),   k = 14.399645 eV·Å (LAMMPS metal units)
//! ```
//!
//! `A`, `B`, `C` make the energy, its first and its second derivative vanish at `outer`
//! (LAMMPS's `PairZBL::set_coeff`); the constant `C` applies at every `r < outer`, as in
//! LAMMPS. Every pair of elements gets its own `Zi`, `Zj` (LAMMPS: `pair_coeff I J zbl Zi Zj`).
//! Energies in eV, distances in Å, forces in eV/Å, virial in eV (`W = Σ r ⊗ F`, Voigt
//! `xx yy zz yz xz xy`, LAMMPS's sign).

use autopipe_atoms::neighbors::CellList;
use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};

/// LAMMPS `pair_zbl_const.h`.
const PZBL: f64 = 0.23;
const A0: f64 = 0.46850;
const C: [f64; 4] = [0.02817, 0.28022, 0.50986, 0.18175];
const D: [f64; 4] = [0.20162, 0.40290, 0.94229, 3.19980];
/// `force->qqr2e · qelectron²` in LAMMPS metal units (eV·Å).
const QQR2E_METAL: f64 = 14.399645;

/// The reference potential: ZBL between every pair of elements, switched off between
/// `inner_a` and `outer_a`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZblReference {
    pub inner_a: f64,
    pub outer_a: f64,
}

/// Energy, forces and virial of the reference on one structure.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceEval {
    pub energy_ev: f64,
    /// Each pair's energy split half and half between its atoms (LAMMPS's `eatom`).
    pub atom_energies_ev: Vec<f64>,
    pub forces_ev_per_a: Vec<[f64; 3]>,
    pub virial_ev: [f64; 6],
}

/// The ZBL function of one pair of atomic numbers, with its switching coefficients.
#[derive(Clone, Copy, Debug)]
pub struct ZblPair {
    d_over_a: [f64; 4],
    zze: f64,
    inner: f64,
    outer: f64,
    sw1: f64,
    sw2: f64,
    sw3: f64,
    sw4: f64,
    sw5: f64,
}

impl ZblPair {
    pub fn new(zi: f64, zj: f64, inner_a: f64, outer_a: f64) -> ZblPair {
        let ainv = (zi.powf(PZBL) + zj.powf(PZBL)) / A0;
        let mut p = ZblPair {
            d_over_a: D.map(|d| d * ainv),
            zze: zi * zj * QQR2E_METAL,
            inner: inner_a,
            outer: outer_a,
            sw1: 0.0,
            sw2: 0.0,
            sw3: 0.0,
            sw4: 0.0,
            sw5: 0.0,
        };
        let tc = outer_a - inner_a;
        let fc = p.e_zbl(outer_a);
        let fcp = p.dzbldr(outer_a);
        let fcpp = p.d2zbldr2(outer_a);
        let swa = (-3.0 * fcp + tc * fcpp) / (tc * tc);
        let swb = (2.0 * fcp - tc * fcpp) / (tc * tc * tc);
        let swc = -fc + (tc / 2.0) * fcp - (tc * tc / 12.0) * fcpp;
        p.sw1 = swa;
        p.sw2 = swb;
        p.sw3 = swa / 3.0;
        p.sw4 = swb / 4.0;
        p.sw5 = swc;
        p
    }

    fn e_zbl(&self, r: f64) -> f64 {
        let rinv = 1.0 / r;
        let mut sum = C[0] * (-self.d_over_a[0] * r).exp();
        for m in 1..4 {
            sum += C[m] * (-self.d_over_a[m] * r).exp();
        }
        self.zze * sum * rinv
    }

    fn dzbldr(&self, r: f64) -> f64 {
        let rinv = 1.0 / r;
        let e: [f64; 4] = std::array::from_fn(|m| (-self.d_over_a[m] * r).exp());
        let mut sum = C[0] * e[0];
        let mut sum_p = -C[0] * self.d_over_a[0] * e[0];
        for m in 1..4 {
            sum += C[m] * e[m];
            sum_p -= C[m] * self.d_over_a[m] * e[m];
        }
        self.zze * (sum_p - sum * rinv) * rinv
    }

    fn d2zbldr2(&self, r: f64) -> f64 {
        let rinv = 1.0 / r;
        let e: [f64; 4] = std::array::from_fn(|m| (-self.d_over_a[m] * r).exp());
        let mut sum = C[0] * e[0];
        // Σ c d e (= -S'), as LAMMPS's sum_p here
        let mut sum_p = C[0] * e[0] * self.d_over_a[0];
        let mut sum_pp = C[0] * e[0] * self.d_over_a[0] * self.d_over_a[0];
        for m in 1..4 {
            sum += C[m] * e[m];
            sum_p += C[m] * e[m] * self.d_over_a[m];
            sum_pp += C[m] * e[m] * self.d_over_a[m] * self.d_over_a[m];
        }
        self.zze * (sum_pp + 2.0 * sum_p * rinv + 2.0 * sum * rinv * rinv) * rinv
    }

    /// Pair energy (eV) and `dE/dr` (eV/Å) at `r` (0 at and beyond the outer radius).
    pub fn energy_derivative(&self, r: f64) -> (f64, f64) {
        if r >= self.outer {
            return (0.0, 0.0);
        }
        let mut e = self.e_zbl(r) + self.sw5;
        let mut de = self.dzbldr(r);
        if r > self.inner {
            let t = r - self.inner;
            de += t * t * (self.sw1 + self.sw2 * t);
            e += t * t * t * (self.sw3 + self.sw4 * t);
        }
        (e, de)
    }
}

impl ZblReference {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.inner_a.is_finite() && self.outer_a.is_finite() && self.inner_a > 0.0 && self.outer_a > self.inner_a)
        {
            return Err(format!(
                "ZBL radii must satisfy 0 < inner < outer, got inner {} Å, outer {} Å",
                self.inner_a, self.outer_a
            ));
        }
        Ok(())
    }

    /// Energy, forces and virial of every pair closer than `outer_a` (periodic images
    /// included in the periodic directions).
    pub fn evaluate(&self, s: &Structure) -> ReferenceEval {
        let n = s.len();
        let mut out = ReferenceEval {
            energy_ev: 0.0,
            atom_energies_ev: vec![0.0; n],
            forces_ev_per_a: vec![[0.0; 3]; n],
            virial_ev: [0.0; 6],
        };
        if n == 0 {
            return out;
        }
        // one ZblPair per pair of distinct atomic numbers present
        let mut zs: Vec<u8> = s.species.iter().map(|e| e.z()).collect();
        zs.sort_unstable();
        zs.dedup();
        let idx: Vec<usize> = s.species.iter().map(|e| zs.binary_search(&e.z()).unwrap()).collect();
        let nz = zs.len();
        let pairs: Vec<ZblPair> = (0..nz * nz)
            .map(|k| ZblPair::new(zs[k / nz] as f64, zs[k % nz] as f64, self.inner_a, self.outer_a))
            .collect();
        let cells = CellList::new(s, self.outer_a);
        cells.for_each_half_pair(|i, j, _shift, v, r| {
            if r >= self.outer_a || r <= 0.0 {
                return;
            }
            let (e, de) = pairs[idx[i] * nz + idx[j]].energy_derivative(r);
            out.energy_ev += e;
            out.atom_energies_ev[i] += 0.5 * e;
            out.atom_energies_ev[j] += 0.5 * e;
            // force on j: -dE/dr · v/r; on i the opposite
            let fpair = -de / r;
            for c in 0..3 {
                out.forces_ev_per_a[j][c] += fpair * v[c];
                out.forces_ev_per_a[i][c] -= fpair * v[c];
            }
            let w = &mut out.virial_ev;
            w[0] += v[0] * v[0] * fpair;
            w[1] += v[1] * v[1] * fpair;
            w[2] += v[2] * v[2] * fpair;
            w[3] += v[1] * v[2] * fpair;
            w[4] += v[0] * v[2] * fpair;
            w[5] += v[0] * v[1] * fpair;
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switched_pair_is_smooth_and_zero_at_outer() {
        let p = ZblPair::new(73.0, 73.0, 4.0, 4.8);
        let (e, de) = p.energy_derivative(4.8 - 1e-9);
        assert!(e.abs() < 1e-12 && de.abs() < 1e-8, "{e} {de}");
        // dE/dr against central differences on both sides of the inner radius
        for r in [0.5, 1.0, 2.0, 3.99, 4.01, 4.5, 4.79] {
            let h = 1e-6;
            let fd = (p.energy_derivative(r + h).0 - p.energy_derivative(r - h).0) / (2.0 * h);
            let (_, de) = p.energy_derivative(r);
            assert!((fd - de).abs() < 1e-6 * (1.0 + de.abs()), "r {r}: {fd} vs {de}");
        }
        // the second derivative that sets the switch: central differences of dE/dr
        let r = 4.5;
        let h = 1e-5;
        let fd2 = (p.dzbldr(r + h) - p.dzbldr(r - h)) / (2.0 * h);
        assert!((fd2 - p.d2zbldr2(r)).abs() < 1e-6 * p.d2zbldr2(r).abs(), "{fd2} vs {}", p.d2zbldr2(r));
        // unscreened limit: E -> k Z²/r at small r (the screening sum tends to 1)
        let r = 1e-4;
        let (e, _) = p.energy_derivative(r);
        let bare = QQR2E_METAL * 73.0 * 73.0 / r;
        assert!((e / bare - 1.0).abs() < 0.01, "{e} vs {bare}");
    }
}
