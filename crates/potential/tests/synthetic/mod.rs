//! Synthetic data with a known answer, shared by the fit and cross-validation tests: a
//! seeded random number stream, strained and rattled fcc Cu cells, random SNAP models.
#![allow(dead_code)]

use autopipe_atoms::{Element, Structure};
use autopipe_potential::{SnapElement, SnapModel, SnapParams};

/// splitmix64, uniform in [-1, 1).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

pub fn cu() -> Element {
    Element::from_symbol("Cu").unwrap()
}

pub fn params(twojmax: usize, quadratic: bool) -> SnapParams {
    SnapParams {
        twojmax,
        rcutfac: 4.7,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: quadratic,
        elements: vec![SnapElement { element: cu(), radius: 0.5, weight: 1.0 }],
    }
}

/// 2x2x2 conventional fcc Cu (32 atoms), strained by up to `strain` (lower-triangular
/// cell) and rattled by up to `rattle` Å.
pub fn fcc_cu(rng: &mut Rng, scale: f64, strain: f64, rattle: f64) -> Structure {
    let a = 3.615 * scale;
    let mut cell = [[2.0 * a, 0.0, 0.0], [0.0, 2.0 * a, 0.0], [0.0, 0.0, 2.0 * a]];
    for r in 0..3 {
        for c in 0..=r {
            cell[r][c] += 2.0 * a * strain * rng.next();
        }
    }
    let mut pos = Vec::new();
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                    let f = [(i as f64 + b[0]) / 2.0, (j as f64 + b[1]) / 2.0, (k as f64 + b[2]) / 2.0];
                    let mut p = [0.0; 3];
                    for c in 0..3 {
                        for r in 0..3 {
                            p[c] += f[r] * cell[r][c];
                        }
                        p[c] += rattle * rng.next();
                    }
                    pos.push(p);
                }
            }
        }
    }
    let n = pos.len();
    Structure::new(cell, pos, vec![cu(); n], [true; 3]).unwrap()
}

pub fn random_model(p: SnapParams, seed: u64) -> SnapModel {
    let mut rng = Rng(seed);
    let mut m = SnapModel::zeros(p);
    let nl = m.params.n_linear();
    for b in m.beta.iter_mut() {
        b[0] = -3.5;
        for (k, x) in b[1..].iter_mut().enumerate() {
            // quadratic coefficients smaller
            *x = rng.next() * if k < nl { 0.05 } else { 0.002 };
        }
    }
    m
}
