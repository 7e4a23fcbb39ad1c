//! Structure relaxation: FIRE (Bitzek et al., PRL 97, 170201 (2006)) with ASE's
//! parameters, on the atomic positions and, optionally, the cell.
//!
//! The cell enters as in ASE's `UnitCellFilter`: the generalised coordinates are the
//! positions in the reference (initial) cell, `p = r F^-T`, and `c F`, where `F` is the
//! deformation gradient from the initial cell (`cell = cell0 F^T`) and `c` the number of
//! atoms (so that cell and atom steps have comparable size). The generalised forces are
//! `f F` on the atoms and `W F^-T / c` on the cell, `W = -V (σ + P I)` the virial with
//! the target pressure `P`; at a minimum of the enthalpy `E + P V` both vanish.
//!
//! The minimiser keeps the last accepted point: a step that raises the enthalpy is
//! undone and the velocities are zeroed (ASE's `downhill_check`), so the enthalpy of the
//! returned structure is never above that of the start.
//!
//! Pure computation: takes any [`ForceField`], no files.

use autopipe_atoms::structure::{inverse3, Mat3};
use autopipe_atoms::units::GPA_IN_EV_PER_A3;
use autopipe_atoms::Structure;
use autopipe_md::forcefield::{Evaluation, ForceField};

/// Which cell degrees of freedom move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellMode {
    /// Positions only.
    Fixed,
    /// All six strain components.
    Full,
    /// The shape is kept, the volume changes (ASE's `hydrostatic_strain`).
    FixedShape,
    /// The volume is kept, the shape changes (ASE's `constant_volume`).
    FixedVolume,
}

/// What a relaxation aims at and when it stops.
#[derive(Clone, Debug)]
pub struct RelaxSettings {
    /// Converged when every atomic force is below this (eV/Å) ...
    pub fmax_ev_per_a: f64,
    /// ... and (cell modes) every moving component of `σ + P I` is below this (eV/Å³).
    pub max_stress_ev_per_a3: f64,
    pub max_steps: usize,
    pub cell: CellMode,
    /// Target (external) pressure, GPa; positive compresses.
    pub pressure_gpa: f64,
    /// FIRE's largest step (Å, over all generalised coordinates together; ASE: 0.2).
    pub max_step_a: f64,
}

impl RelaxSettings {
    /// Positions only, forces below `fmax_ev_per_a`.
    pub fn positions(fmax_ev_per_a: f64) -> RelaxSettings {
        RelaxSettings {
            fmax_ev_per_a,
            max_stress_ev_per_a3: f64::INFINITY,
            max_steps: 2000,
            cell: CellMode::Fixed,
            pressure_gpa: 0.0,
            max_step_a: 0.2,
        }
    }

    /// Positions and the whole cell at zero pressure.
    pub fn full(fmax_ev_per_a: f64, max_stress_ev_per_a3: f64) -> RelaxSettings {
        RelaxSettings { max_stress_ev_per_a3, cell: CellMode::Full, ..RelaxSettings::positions(fmax_ev_per_a) }
    }

    pub fn validate(&self) -> Result<(), RelaxError> {
        let bad = |what: &str, v: f64| RelaxError::Settings(format!("{what} must be a positive number, not {v}"));
        if !positive(self.fmax_ev_per_a) {
            return Err(bad("fmax_ev_per_a", self.fmax_ev_per_a));
        }
        if self.cell != CellMode::Fixed && !positive(self.max_stress_ev_per_a3) {
            return Err(bad("max_stress_ev_per_a3", self.max_stress_ev_per_a3));
        }
        if !positive(self.max_step_a) || !self.max_step_a.is_finite() {
            return Err(bad("max_step_a", self.max_step_a));
        }
        if !self.pressure_gpa.is_finite() {
            return Err(RelaxError::Settings(format!("pressure_gpa must be finite, not {}", self.pressure_gpa)));
        }
        if self.max_steps == 0 {
            return Err(RelaxError::Settings("max_steps must be at least 1".into()));
        }
        Ok(())
    }
}

/// A number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x > 0.0
}

#[derive(Debug, thiserror::Error)]
pub enum RelaxError {
    #[error("relaxation settings: {0}")]
    Settings(String),
    #[error("the force field failed: {0}")]
    ForceField(String),
    #[error("a cell relaxation needs the stress, and the force field gives none")]
    NoStress,
    #[error("the structure has {0} atoms, and the force field returned forces for {1}")]
    ForceCount(usize, usize),
    #[error("the cell became singular during the relaxation")]
    SingularCell,
    #[error("the force field returned a non-finite energy, force or stress")]
    NonFinite,
}

/// The result of a relaxation.
#[derive(Clone, Debug)]
pub struct Relaxed {
    pub structure: Structure,
    /// The force field's answer for `structure`.
    pub evaluation: Evaluation,
    pub initial_energy_ev: f64,
    /// `E + P V` at the start and at the end (eV); the end is never above the start.
    pub initial_enthalpy_ev: f64,
    pub enthalpy_ev: f64,
    /// Largest atomic force at the end, eV/Å.
    pub fmax_ev_per_a: f64,
    /// Largest moving component of `σ + P I` at the end, eV/Å³ (0 for `CellMode::Fixed`).
    pub max_stress_ev_per_a3: f64,
    /// Force evaluations made.
    pub evaluations: usize,
    pub converged: bool,
}

/// FIRE's constants, as ASE's `ase.optimize.FIRE` has them.
const DT_START: f64 = 0.1;
const DT_MAX: f64 = 1.0;
const N_MIN: usize = 5;
const F_INC: f64 = 1.1;
const F_DEC: f64 = 0.5;
const A_START: f64 = 0.1;
const F_A: f64 = 0.99;

/// Relax `start` with `ff` under `settings`. Not converging within `max_steps` is not an
/// error: the result says `converged: false` and holds the best point reached.
pub fn relax<F: ForceField + ?Sized>(
    ff: &mut F,
    start: &Structure,
    settings: &RelaxSettings,
) -> Result<Relaxed, RelaxError> {
    settings.validate()?;
    let n = start.len();
    let pressure = settings.pressure_gpa * GPA_IN_EV_PER_A3;
    let cell0 = start.cell_a;
    let moves_cell = settings.cell != CellMode::Fixed;
    let cell_factor = n.max(1) as f64;
    // Generalised coordinates: n reference positions, then (cell) the three rows of c F.
    let dof = n + if moves_cell { 3 } else { 0 };
    let identity: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let mut x: Vec<[f64; 3]> = start.positions_a.clone();
    if moves_cell {
        x.extend(identity.iter().map(|r| r.map(|v| v * cell_factor)));
    }

    // The structure at generalised coordinates x.
    let structure_at = |x: &[[f64; 3]]| -> Result<(Structure, Mat3), RelaxError> {
        let f: Mat3 = if moves_cell {
            [x[n].map(|v| v / cell_factor), x[n + 1].map(|v| v / cell_factor), x[n + 2].map(|v| v / cell_factor)]
        } else {
            identity
        };
        let ft = transpose(&f);
        let mut s = start.clone();
        s.cell_a = mat_mul(&cell0, &ft);
        for (r, p) in s.positions_a.iter_mut().zip(x) {
            *r = row_mat(p, &ft);
        }
        if moves_cell && s.volume_a3().abs() < 1e-9 {
            return Err(RelaxError::SingularCell);
        }
        Ok((s, f))
    };

    struct Point {
        x: Vec<[f64; 3]>,
        structure: Structure,
        evaluation: Evaluation,
        enthalpy_ev: f64,
        /// Generalised forces.
        g: Vec<[f64; 3]>,
        fmax: f64,
        smax: f64,
    }
    let mut evaluate = |x: Vec<[f64; 3]>| -> Result<Point, RelaxError> {
        let (structure, f) = structure_at(&x)?;
        let e = ff.evaluate(&structure).map_err(RelaxError::ForceField)?;
        if e.forces_ev_per_a.len() != n {
            return Err(RelaxError::ForceCount(n, e.forces_ev_per_a.len()));
        }
        if !e.energy_ev.is_finite() || e.forces_ev_per_a.iter().flatten().any(|v| !v.is_finite()) {
            return Err(RelaxError::NonFinite);
        }
        let volume = structure.volume_a3().abs();
        let mut g: Vec<[f64; 3]> = e.forces_ev_per_a.iter().map(|fi| row_mat(fi, &f)).collect();
        let fmax = e.max_force_ev_per_a();
        let mut smax = 0.0;
        let mut enthalpy_ev = e.energy_ev;
        if moves_cell {
            let v = e.stress_ev_per_a3.ok_or(RelaxError::NoStress)?;
            if v.iter().any(|s| !s.is_finite()) {
                return Err(RelaxError::NonFinite);
            }
            enthalpy_ev += pressure * volume;
            // σ + P I, the residual stress, and the virial W = -V (σ + P I).
            let mut s = voigt_to_full(&v);
            for (i, row) in s.iter_mut().enumerate() {
                row[i] += pressure;
            }
            let mut w = s.map(|r| r.map(|x| -volume * x));
            let finv_t = transpose(&inverse3(&f).ok_or(RelaxError::SingularCell)?);
            w = mat_mul(&w, &finv_t);
            let trace = |m: &Mat3| m[0][0] + m[1][1] + m[2][2];
            match settings.cell {
                CellMode::FixedShape => {
                    let t = trace(&w) / 3.0;
                    w = [[t, 0.0, 0.0], [0.0, t, 0.0], [0.0, 0.0, t]];
                    smax = (trace(&s) / 3.0).abs();
                }
                CellMode::FixedVolume => {
                    let t = trace(&w) / 3.0;
                    let ts = trace(&s) / 3.0;
                    for i in 0..3 {
                        w[i][i] -= t;
                        s[i][i] -= ts;
                    }
                    smax = s.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
                }
                _ => smax = s.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs())),
            }
            g.extend(w.iter().map(|r| r.map(|v| v / cell_factor)));
        }
        Ok(Point { x, structure, evaluation: e, enthalpy_ev, g, fmax, smax })
    };
    let converged =
        |p: &Point| p.fmax < settings.fmax_ev_per_a && (!moves_cell || p.smax < settings.max_stress_ev_per_a3);

    let first = evaluate(x)?;
    let mut evaluations = 1usize;
    let initial_energy_ev = first.evaluation.energy_ev;
    let initial_enthalpy_ev = first.enthalpy_ev;
    let mut current = first;
    let mut v = vec![[0.0; 3]; dof];
    let (mut dt, mut a, mut n_pos) = (DT_START, A_START, 0usize);
    let mut done = converged(&current);
    while !done && evaluations < settings.max_steps {
        let f = &current.g;
        let vf = dot_all(f, &v);
        if vf > 0.0 {
            let (fnorm, vnorm) = (dot_all(f, f).sqrt(), dot_all(&v, &v).sqrt());
            for (vi, fi) in v.iter_mut().zip(f) {
                for k in 0..3 {
                    vi[k] = (1.0 - a) * vi[k] + a * fi[k] / fnorm * vnorm;
                }
            }
            if n_pos > N_MIN {
                dt = (dt * F_INC).min(DT_MAX);
                a *= F_A;
            }
            n_pos += 1;
        } else {
            v.iter_mut().for_each(|vi| *vi = [0.0; 3]);
            a = A_START;
            dt *= F_DEC;
            n_pos = 0;
        }
        let mut dr: Vec<[f64; 3]> = Vec::with_capacity(dof);
        for (vi, fi) in v.iter_mut().zip(f) {
            for k in 0..3 {
                vi[k] += dt * fi[k];
            }
            dr.push(vi.map(|c| dt * c));
        }
        let norm = dot_all(&dr, &dr).sqrt();
        let scale = if norm > settings.max_step_a { settings.max_step_a / norm } else { 1.0 };
        let x_new: Vec<[f64; 3]> = current
            .x
            .iter()
            .zip(&dr)
            .map(|(p, d)| [p[0] + scale * d[0], p[1] + scale * d[1], p[2] + scale * d[2]])
            .collect();
        let next = evaluate(x_new)?;
        evaluations += 1;
        // Rounding in the energy sum is not a climb.
        let noise_ev = 1e-11 * (n.max(1) as f64 + current.enthalpy_ev.abs());
        if next.enthalpy_ev > current.enthalpy_ev + noise_ev {
            // Uphill: stay at the last point, and restart FIRE from rest there.
            v.iter_mut().for_each(|vi| *vi = [0.0; 3]);
            a = A_START;
            dt *= F_DEC;
            n_pos = 0;
            if dt < 1e-12 {
                break;
            }
        } else {
            current = next;
            done = converged(&current);
        }
    }
    Ok(Relaxed {
        fmax_ev_per_a: current.fmax,
        max_stress_ev_per_a3: current.smax,
        enthalpy_ev: current.enthalpy_ev,
        structure: current.structure,
        evaluation: current.evaluation,
        initial_energy_ev,
        initial_enthalpy_ev,
        evaluations,
        converged: done,
    })
}

/// Voigt `[xx, yy, zz, yz, xz, xy]` to the symmetric 3x3 tensor.
pub fn voigt_to_full(v: &[f64; 6]) -> Mat3 {
    [[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]]
}

fn transpose(m: &Mat3) -> Mat3 {
    [[m[0][0], m[1][0], m[2][0]], [m[0][1], m[1][1], m[2][1]], [m[0][2], m[1][2], m[2][2]]]
}

pub(crate) fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// Row vector times matrix.
pub(crate) fn row_mat(v: &[f64; 3], m: &Mat3) -> [f64; 3] {
    autopipe_atoms::structure::vec_mat(v, m)
}

fn dot_all(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x[0] * y[0] + x[1] * y[1] + x[2] * y[2]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::Element;

    /// A harmonic pair spring in a box with a stress that is exactly the derivative of
    /// the energy: E = k/2 Σ (V/V0 - 1)² V0 + k/2 |r1 - r0 - d|².
    struct Toy {
        v0: f64,
    }
    impl ForceField for Toy {
        fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
            let v = s.volume_a3();
            let strain = v / self.v0 - 1.0;
            let d = [1.0, 0.5, 0.0];
            let r = [0, 1, 2].map(|k| s.positions_a[1][k] - s.positions_a[0][k] - d[k]);
            let e = 0.5 * strain * strain * self.v0 + 0.5 * (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
            // dE/dε_ii = V dE/dV = V strain; σ = (1/V) dE/dε (spring part ignored: a toy).
            let p = strain;
            Ok(Evaluation {
                energy_ev: e,
                forces_ev_per_a: vec![r, r.map(|x| -x)],
                stress_ev_per_a3: Some([p, p, p, 0.0, 0.0, 0.0]),
                gamma: None,
            })
        }
    }

    fn toy_structure() -> Structure {
        let cu = Element::from_symbol("Cu").unwrap();
        Structure::new(
            [[3.3, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.1]],
            vec![[0.0; 3], [0.3, 0.2, 0.1]],
            vec![cu, cu],
            [true; 3],
        )
        .unwrap()
    }

    #[test]
    fn positions_only_reach_the_spring_minimum_and_keep_the_cell() {
        let s = toy_structure();
        let r = relax(&mut Toy { v0: 27.0 }, &s, &RelaxSettings::positions(1e-6)).unwrap();
        assert!(r.converged);
        assert_eq!(r.structure.cell_a, s.cell_a);
        let d = [0, 1, 2].map(|k| r.structure.positions_a[1][k] - r.structure.positions_a[0][k]);
        assert!((d[0] - 1.0).abs() < 1e-5 && (d[1] - 0.5).abs() < 1e-5 && d[2].abs() < 1e-5, "{d:?}");
        assert!(r.enthalpy_ev <= r.initial_enthalpy_ev);
    }

    #[test]
    fn fixed_shape_reaches_the_volume_and_keeps_the_shape() {
        let s = toy_structure();
        let mut settings = RelaxSettings::full(1e-6, 1e-7);
        settings.cell = CellMode::FixedShape;
        let r = relax(&mut Toy { v0: 27.0 }, &s, &settings).unwrap();
        assert!(r.converged, "{r:?}");
        assert!((r.structure.volume_a3() - 27.0).abs() < 1e-4, "{}", r.structure.volume_a3());
        let ratio = r.structure.cell_a[0][0] / r.structure.cell_a[1][1];
        assert!((ratio - 1.1).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn pressure_moves_the_volume_where_the_stress_balances_it() {
        // σ + P = 0 with σ = V/V0 - 1: V = V0 (1 - P).
        let s = toy_structure();
        let mut settings = RelaxSettings::full(1e-6, 1e-8);
        settings.cell = CellMode::FixedShape;
        settings.pressure_gpa = 0.05 / GPA_IN_EV_PER_A3;
        let r = relax(&mut Toy { v0: 27.0 }, &s, &settings).unwrap();
        assert!(r.converged);
        assert!((r.structure.volume_a3() - 27.0 * 0.95).abs() < 1e-4, "{}", r.structure.volume_a3());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut settings = RelaxSettings::positions(0.0);
        assert!(matches!(relax(&mut Toy { v0: 27.0 }, &toy_structure(), &settings), Err(RelaxError::Settings(_))));
        settings.fmax_ev_per_a = f64::NAN;
        assert!(settings.validate().is_err());
    }
}
