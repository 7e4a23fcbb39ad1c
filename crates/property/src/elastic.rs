//! Elastic constants from stress-strain: the full 6x6 C_ij fitted by least squares on
//! the stresses of strained cells, the Voigt/Reuss/Hill moduli, and Born stability.
//!
//! The structure is relaxed first (positions and cell, [`crate::relax`]), unless asked
//! not to. Each of the six Voigt strains (xx yy zz yz xz xy; shear strains are
//! engineering strains, γ = 2ε) is applied with both signs at every amplitude; at each
//! strain the positions relax in the fixed cell (internal relaxation: atoms that do not
//! sit at inversion centres, as in diamond, move, and that lowers C44). Every stress
//! component `σ_i` (ASE's sign: positive in tension) is fitted, over all the strained
//! cells and the unstrained one, as `σ_i = σ0_i + Σ_j C_ij ε_j`; the symmetrised C is
//! reported with the fit's residuals and its asymmetry.
//!
//! Born stability is the general criterion (Mouhat & Coudert, PRB 90, 224104 (2014)):
//! a crystal is stable when all eigenvalues of C are positive.

use crate::relax::{relax, RelaxError, RelaxSettings, Relaxed};
use autopipe_atoms::structure::Mat3;
use autopipe_atoms::units::EV_PER_A3_IN_GPA;
use autopipe_atoms::Structure;
use autopipe_md::forcefield::ForceField;
use serde::Serialize;

/// How the constants are computed.
#[derive(Clone, Debug)]
pub struct ElasticSettings {
    /// Strain amplitudes (each used with both signs); at least two for a fit that can
    /// show curvature in its residuals.
    pub amplitudes: Vec<f64>,
    /// The relaxation of positions and cell before straining (None: as given).
    pub relax: Option<RelaxSettings>,
    /// The relaxation of positions at each strain (None: clamped ions).
    pub internal: Option<RelaxSettings>,
}

impl Default for ElasticSettings {
    fn default() -> Self {
        ElasticSettings {
            amplitudes: vec![0.005, 0.01],
            relax: Some(RelaxSettings { max_steps: 3000, ..RelaxSettings::full(1e-4, 1e-6) }),
            internal: Some(RelaxSettings::positions(1e-4)),
        }
    }
}

impl ElasticSettings {
    /// No relaxation at all (the structure as given, clamped ions).
    pub fn unrelaxed() -> Self {
        ElasticSettings { relax: None, internal: None, ..ElasticSettings::default() }
    }

    pub fn validate(&self) -> Result<(), ElasticError> {
        if self.amplitudes.is_empty() {
            return Err(ElasticError::Settings("no strain amplitudes".into()));
        }
        if let Some(a) = self.amplitudes.iter().find(|a| !(**a > 0.0 && **a <= 0.1)) {
            return Err(ElasticError::Settings(format!("strain amplitude {a} is not in (0, 0.1]")));
        }
        for r in self.relax.iter().chain(&self.internal) {
            r.validate().map_err(|e| ElasticError::Settings(e.to_string()))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElasticError {
    #[error("elastic settings: {0}")]
    Settings(String),
    #[error("the structure is not periodic in all three directions")]
    NotPeriodic,
    #[error("relaxing the structure before straining: {0}")]
    Relax(RelaxError),
    #[error("the relaxation before straining did not converge in {steps} evaluations (largest force {fmax_ev_per_a:.2e} eV/Å, largest stress {stress_gpa:.2e} GPa); the structure may be unstable")]
    RelaxNotConverged { steps: usize, fmax_ev_per_a: f64, stress_gpa: f64 },
    #[error("at strain {component} = {strain:+}: {source}")]
    Strained { component: &'static str, strain: f64, source: RelaxError },
    #[error("the force field gives no stress")]
    NoStress,
}

/// Voigt-Reuss-Hill values of one modulus, GPa. Reuss (and so Hill) is None when C is
/// singular.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Vrh {
    pub voigt: f64,
    pub reuss: Option<f64>,
    pub hill: Option<f64>,
}

/// Elastic constants and what follows from them.
#[derive(Clone, Debug, Serialize)]
pub struct Elastic {
    /// 6x6, GPa, Voigt order xx yy zz yz xz xy (symmetrised).
    pub c_ij_gpa: [[f64; 6]; 6],
    pub bulk_modulus_gpa: Vrh,
    pub shear_modulus_gpa: Vrh,
    /// From the Hill moduli (Voigt when Reuss is undefined).
    pub young_modulus_gpa: f64,
    pub poisson_ratio: f64,
    /// Eigenvalues of C, ascending, GPa.
    pub eigenvalues_gpa: [f64; 6],
    /// All eigenvalues of C positive.
    pub born_stable: bool,
    /// Root mean square and largest difference between the fitted and the computed
    /// stresses over every strained cell, GPa.
    pub fit_rms_residual_gpa: f64,
    pub fit_max_residual_gpa: f64,
    /// Largest |C_ij - C_ji| of the fit before symmetrising, GPa.
    pub asymmetry_gpa: f64,
    /// The fitted stress at zero strain (Voigt, GPa): near zero after a relaxation.
    pub residual_stress_gpa: [f64; 6],
    pub strain_amplitudes: Vec<f64>,
    pub internal_relaxation: bool,
    /// Strained cells whose internal relaxation stopped short of its fmax.
    pub internal_unconverged: usize,
    /// Force evaluations in all.
    pub evaluations: usize,
}

pub const VOIGT_NAMES: [&str; 6] = ["xx", "yy", "zz", "yz", "xz", "xy"];

/// The strain matrix (symmetric) of engineering Voigt strain `e` on component `j`.
pub fn voigt_strain(j: usize, e: f64) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    let (a, b) = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)][j];
    if a == b {
        m[a][a] = e;
    } else {
        m[a][b] = e / 2.0;
        m[b][a] = e / 2.0;
    }
    m
}

/// `s` deformed by `I + eps`: cell rows and positions alike (r' = r (I + eps)).
pub fn strained(s: &Structure, eps: &Mat3) -> Structure {
    let f = [
        [1.0 + eps[0][0], eps[0][1], eps[0][2]],
        [eps[1][0], 1.0 + eps[1][1], eps[1][2]],
        [eps[2][0], eps[2][1], 1.0 + eps[2][2]],
    ];
    let mut out = s.clone();
    out.cell_a = crate::relax::mat_mul(&s.cell_a, &f);
    for p in &mut out.positions_a {
        *p = crate::relax::row_mat(p, &f);
    }
    out
}

/// Relax `s` as `settings.relax` says (or not), then compute its elastic constants.
/// Returns the constants and the structure they belong to.
pub fn elastic_constants<F: ForceField + ?Sized>(
    ff: &mut F,
    s: &Structure,
    settings: &ElasticSettings,
) -> Result<(Elastic, Structure), ElasticError> {
    elastic_constants_with_cells(ff, s, settings).map(|(e, reference, _)| (e, reference))
}

/// One cell of the stress-strain fit: its Voigt strain (engineering shear) and the
/// structure as evaluated (positions relaxed in the strained cell when internal
/// relaxation is on).
#[derive(Clone, Debug)]
pub struct StrainedCell {
    pub strain: [f64; 6],
    pub structure: Structure,
}

/// [`elastic_constants`], also returning every cell of the fit (the unstrained one
/// first): another calculator's stresses on them give its own constants through
/// [`elastic_from_stresses`].
pub fn elastic_constants_with_cells<F: ForceField + ?Sized>(
    ff: &mut F,
    s: &Structure,
    settings: &ElasticSettings,
) -> Result<(Elastic, Structure, Vec<StrainedCell>), ElasticError> {
    settings.validate()?;
    if s.pbc != [true; 3] {
        return Err(ElasticError::NotPeriodic);
    }
    let mut evaluations = 0;
    let reference = match &settings.relax {
        Some(r) => {
            let relaxed = relax(ff, s, r).map_err(ElasticError::Relax)?;
            evaluations += relaxed.evaluations;
            if !relaxed.converged {
                return Err(ElasticError::RelaxNotConverged {
                    steps: relaxed.evaluations,
                    fmax_ev_per_a: relaxed.fmax_ev_per_a,
                    stress_gpa: relaxed.max_stress_ev_per_a3 * EV_PER_A3_IN_GPA,
                });
            }
            relaxed.structure
        }
        None => s.clone(),
    };
    // (strain vector, stress in eV/Å³) of every cell.
    let mut samples: Vec<([f64; 6], [f64; 6])> = Vec::new();
    let mut cells = Vec::new();
    let mut internal_unconverged = 0;
    let mut stress_of = |cell: &Structure,
                         component: &'static str,
                         strain: f64,
                         evaluations: &mut usize|
     -> Result<([f64; 6], Structure), ElasticError> {
        let wrap = |source| ElasticError::Strained { component, strain, source };
        let r: Relaxed = match &settings.internal {
            Some(internal) => relax(ff, cell, internal).map_err(wrap)?,
            // One evaluation, through the same path (max_steps 1 with an unreachable fmax
            // would loop: a huge fmax converges at once).
            None => relax(ff, cell, &RelaxSettings::positions(f64::MAX)).map_err(wrap)?,
        };
        *evaluations += r.evaluations;
        if !r.converged {
            internal_unconverged += 1;
        }
        Ok((r.evaluation.stress_ev_per_a3.ok_or(ElasticError::NoStress)?, r.structure))
    };
    let (stress, evaluated) = stress_of(&reference, "none", 0.0, &mut evaluations)?;
    samples.push(([0.0; 6], stress));
    cells.push(StrainedCell { strain: [0.0; 6], structure: evaluated });
    for j in 0..6 {
        for &amp in &settings.amplitudes {
            for sign in [1.0, -1.0] {
                let e = sign * amp;
                let cell = strained(&reference, &voigt_strain(j, e));
                let (stress, evaluated) = stress_of(&cell, VOIGT_NAMES[j], e, &mut evaluations)?;
                let mut strain = [0.0; 6];
                strain[j] = e;
                samples.push((strain, stress));
                cells.push(StrainedCell { strain, structure: evaluated });
            }
        }
    }
    let mut elastic = elastic_from_stresses(&samples, &settings.amplitudes, settings.internal.is_some());
    elastic.internal_unconverged = internal_unconverged;
    elastic.evaluations = evaluations;
    Ok((elastic, reference, cells))
}

/// The constants from given `(strain, stress eV/Å³)` samples (pure: the fit, the moduli,
/// Born stability); `amplitudes` and `internal_relaxation` are recorded as said.
pub fn elastic_from_stresses(
    samples: &[([f64; 6], [f64; 6])],
    amplitudes: &[f64],
    internal_relaxation: bool,
) -> Elastic {
    let fit = fit_stress_strain(samples);
    let mut elastic = from_c_ij(fit.c_ij_gpa);
    elastic.fit_rms_residual_gpa = fit.rms_residual_gpa;
    elastic.fit_max_residual_gpa = fit.max_residual_gpa;
    elastic.asymmetry_gpa = fit.asymmetry_gpa;
    elastic.residual_stress_gpa = fit.intercept_gpa;
    elastic.strain_amplitudes = amplitudes.to_vec();
    elastic.internal_relaxation = internal_relaxation;
    elastic
}

/// The least-squares fit of `σ = σ0 + C ε` (all in GPa on output).
pub struct StressStrainFit {
    pub c_ij_gpa: [[f64; 6]; 6],
    pub intercept_gpa: [f64; 6],
    pub rms_residual_gpa: f64,
    pub max_residual_gpa: f64,
    pub asymmetry_gpa: f64,
}

/// Fit every stress component on the six strains and a constant, from
/// `(strain, stress eV/Å³)` samples; C is symmetrised.
#[allow(clippy::needless_range_loop)] // index loops read as the formulas
pub fn fit_stress_strain(samples: &[([f64; 6], [f64; 6])]) -> StressStrainFit {
    // Normal equations of the design [ε_1..ε_6, 1], shared by the six components.
    let mut ata = [[0.0; 7]; 7];
    for (e, _) in samples {
        let row = [e[0], e[1], e[2], e[3], e[4], e[5], 1.0];
        for a in 0..7 {
            for b in 0..7 {
                ata[a][b] += row[a] * row[b];
            }
        }
    }
    let mut c = [[0.0; 6]; 6];
    let mut intercept = [0.0; 6];
    let mut sum_sq = 0.0;
    let mut max_res: f64 = 0.0;
    for i in 0..6 {
        let mut atb = [0.0; 7];
        for (e, s) in samples {
            let row = [e[0], e[1], e[2], e[3], e[4], e[5], 1.0];
            for a in 0..7 {
                atb[a] += row[a] * s[i] * EV_PER_A3_IN_GPA;
            }
        }
        let x = solve(ata, atb);
        c[i].copy_from_slice(&x[..6]);
        intercept[i] = x[6];
        for (e, s) in samples {
            let fitted: f64 = (0..6).map(|j| x[j] * e[j]).sum::<f64>() + x[6];
            let r = fitted - s[i] * EV_PER_A3_IN_GPA;
            sum_sq += r * r;
            max_res = max_res.max(r.abs());
        }
    }
    let mut asymmetry: f64 = 0.0;
    let mut sym = c;
    for i in 0..6 {
        for j in 0..6 {
            asymmetry = asymmetry.max((c[i][j] - c[j][i]).abs());
            sym[i][j] = 0.5 * (c[i][j] + c[j][i]);
        }
    }
    StressStrainFit {
        c_ij_gpa: sym,
        intercept_gpa: intercept,
        rms_residual_gpa: (sum_sq / (6 * samples.len()) as f64).sqrt(),
        max_residual_gpa: max_res,
        asymmetry_gpa: asymmetry,
    }
}

/// Moduli, eigenvalues and stability of a (symmetric) C in GPa; the fit fields are zero.
#[allow(clippy::needless_range_loop)] // index loops read as the formulas
pub fn from_c_ij(c: [[f64; 6]; 6]) -> Elastic {
    let kv = ((c[0][0] + c[1][1] + c[2][2]) + 2.0 * (c[0][1] + c[1][2] + c[0][2])) / 9.0;
    let gv =
        ((c[0][0] + c[1][1] + c[2][2]) - (c[0][1] + c[1][2] + c[0][2]) + 3.0 * (c[3][3] + c[4][4] + c[5][5])) / 15.0;
    let (kr, gr) = match invert6(c) {
        Some(s) => (
            Some(1.0 / ((s[0][0] + s[1][1] + s[2][2]) + 2.0 * (s[0][1] + s[1][2] + s[0][2]))),
            Some(
                15.0 / (4.0 * (s[0][0] + s[1][1] + s[2][2]) - 4.0 * (s[0][1] + s[1][2] + s[0][2])
                    + 3.0 * (s[3][3] + s[4][4] + s[5][5])),
            ),
        ),
        None => (None, None),
    };
    let hill = |v: f64, r: Option<f64>| r.map(|r| 0.5 * (v + r));
    let k = Vrh { voigt: kv, reuss: kr, hill: hill(kv, kr) };
    let g = Vrh { voigt: gv, reuss: gr, hill: hill(gv, gr) };
    let (kh, gh) = (k.hill.unwrap_or(kv), g.hill.unwrap_or(gv));
    let eigenvalues_gpa = symmetric_eigenvalues(c);
    let scale = c.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    Elastic {
        c_ij_gpa: c,
        bulk_modulus_gpa: k,
        shear_modulus_gpa: g,
        young_modulus_gpa: 9.0 * kh * gh / (3.0 * kh + gh),
        poisson_ratio: (3.0 * kh - 2.0 * gh) / (2.0 * (3.0 * kh + gh)),
        born_stable: eigenvalues_gpa[0] > 1e-9 * scale,
        eigenvalues_gpa,
        fit_rms_residual_gpa: 0.0,
        fit_max_residual_gpa: 0.0,
        asymmetry_gpa: 0.0,
        residual_stress_gpa: [0.0; 6],
        strain_amplitudes: Vec::new(),
        internal_relaxation: false,
        internal_unconverged: 0,
        evaluations: 0,
    }
}

/// Solve the 7x7 system by Gaussian elimination with partial pivoting (the normal
/// equations of the fit; regular as soon as every strain component appears).
#[allow(clippy::needless_range_loop)] // index loops read as the formulas
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> [f64; N] {
    for col in 0..N {
        let p = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, p);
        b.swap(col, p);
        let d = a[col][col];
        if d.abs() < 1e-300 {
            continue;
        }
        for r in col + 1..N {
            let f = a[r][col] / d;
            for k in col..N {
                a[r][k] -= f * a[col][k];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = [0.0; N];
    for r in (0..N).rev() {
        let s: f64 = (r + 1..N).map(|k| a[r][k] * x[k]).sum();
        x[r] = if a[r][r].abs() < 1e-300 { 0.0 } else { (b[r] - s) / a[r][r] };
    }
    x
}

/// The inverse of a 6x6 matrix (Gauss-Jordan), None when singular.
#[allow(clippy::needless_range_loop)] // index loops read as the formulas
fn invert6(c: [[f64; 6]; 6]) -> Option<[[f64; 6]; 6]> {
    let mut a = c;
    let mut inv = [[0.0; 6]; 6];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let scale = c.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    for col in 0..6 {
        let p = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        if a[p][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, p);
        inv.swap(col, p);
        let d = a[col][col];
        for k in 0..6 {
            a[col][k] /= d;
            inv[col][k] /= d;
        }
        for r in 0..6 {
            if r != col {
                let f = a[r][col];
                for k in 0..6 {
                    a[r][k] -= f * a[col][k];
                    inv[r][k] -= f * inv[col][k];
                }
            }
        }
    }
    Some(inv)
}

/// Eigenvalues of a symmetric 6x6 matrix (cyclic Jacobi), ascending.
#[allow(clippy::needless_range_loop)] // index loops read as the formulas
pub fn symmetric_eigenvalues(c: [[f64; 6]; 6]) -> [f64; 6] {
    let mut a = c;
    for _sweep in 0..100 {
        let off: f64 = (0..6)
            .flat_map(|i| (0..6).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let diag: f64 = (0..6).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..6 {
            for q in p + 1..6 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let cs = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * cs;
                for k in 0..6 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = cs * akp - sn * akq;
                    a[k][q] = sn * akp + cs * akq;
                }
                for k in 0..6 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = cs * apk - sn * aqk;
                    a[q][k] = sn * apk + cs * aqk;
                }
            }
        }
    }
    let mut e = [0.0; 6];
    for i in 0..6 {
        e[i] = a[i][i];
    }
    e.sort_by(f64::total_cmp);
    e
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn cubic(c11: f64, c12: f64, c44: f64) -> [[f64; 6]; 6] {
        let mut c = [[0.0; 6]; 6];
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] = if i == j { c11 } else { c12 };
            }
            c[i + 3][i + 3] = c44;
        }
        c
    }

    #[test]
    fn cubic_moduli_follow_the_closed_forms() {
        // Cubic: K_V = K_R = (C11 + 2 C12)/3; G_V = (C11 - C12 + 3 C44)/5;
        // G_R = 5 (C11 - C12) C44 / (4 C44 + 3 (C11 - C12)).
        let (c11, c12, c44) = (170.0, 120.0, 75.0);
        let e = from_c_ij(cubic(c11, c12, c44));
        let k = (c11 + 2.0 * c12) / 3.0;
        assert!((e.bulk_modulus_gpa.voigt - k).abs() < 1e-9);
        assert!((e.bulk_modulus_gpa.reuss.unwrap() - k).abs() < 1e-9);
        assert!((e.shear_modulus_gpa.voigt - (c11 - c12 + 3.0 * c44) / 5.0).abs() < 1e-9);
        let gr = 5.0 * (c11 - c12) * c44 / (4.0 * c44 + 3.0 * (c11 - c12));
        assert!((e.shear_modulus_gpa.reuss.unwrap() - gr).abs() < 1e-9);
        // Eigenvalues of a cubic C: C11 + 2 C12, C11 - C12 (twice), C44 (three times).
        let mut expect = [c11 + 2.0 * c12, c11 - c12, c11 - c12, c44, c44, c44];
        expect.sort_by(f64::total_cmp);
        for (a, b) in e.eigenvalues_gpa.iter().zip(expect) {
            assert!((a - b).abs() < 1e-9, "{:?}", e.eigenvalues_gpa);
        }
        assert!(e.born_stable);
        // Isotropic limit: E and ν from K and G.
        let iso = from_c_ij(cubic(200.0, 100.0, 50.0));
        assert!((iso.poisson_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert!((iso.young_modulus_gpa - 133.333_333_333_333_3).abs() < 1e-9);
    }

    #[test]
    fn born_criteria_flag_negative_shear_and_tetragonal_moduli() {
        assert!(!from_c_ij(cubic(170.0, 120.0, -5.0)).born_stable);
        assert!(!from_c_ij(cubic(120.0, 170.0, 75.0)).born_stable, "C11 < C12");
        assert!(!from_c_ij(cubic(100.0, -60.0, 75.0)).born_stable, "C11 + 2 C12 < 0");
    }

    #[test]
    fn the_fit_recovers_a_linear_law_with_its_offset() {
        let c = cubic(170.0, 120.0, 75.0);
        let mut samples = Vec::new();
        let offset = [0.1, -0.2, 0.3, 0.0, 0.05, 0.0];
        for j in 0..6 {
            for e in [0.01, -0.01, 0.005, -0.005] {
                let mut strain = [0.0; 6];
                strain[j] = e;
                let stress: [f64; 6] = std::array::from_fn(|i| (offset[i] + c[i][j] * e) / EV_PER_A3_IN_GPA);
                samples.push((strain, stress));
            }
        }
        let fit = fit_stress_strain(&samples);
        for i in 0..6 {
            assert!((fit.intercept_gpa[i] - offset[i]).abs() < 1e-9);
            for j in 0..6 {
                assert!((fit.c_ij_gpa[i][j] - c[i][j]).abs() < 1e-8, "{i}{j}");
            }
        }
        assert!(fit.rms_residual_gpa < 1e-9 && fit.asymmetry_gpa < 1e-8);
    }
}
