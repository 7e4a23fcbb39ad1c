//! The SNAP model: per-element coefficients (LAMMPS `.snapcoeff` order), optional quadratic
//! terms, optional active sets for the extrapolation grade γ, and its evaluation.
//!
//! Site energy of atom i of element e (LAMMPS `pair_style snap`):
//! `E_i = β_e,0 + Σ_k β_e,k B_i,k [+ Σ_k ½ β_e,kk' B_k² + Σ_{k<l} β_e,kl B_k B_l]`,
//! where `B` already has the isolated-atom value subtracted when `bzeroflag` is set
//! (the descriptor code does it, as LAMMPS does).

use crate::active_set::ActiveSet;
use crate::snap::{Snap, SnapError, SnapKernels, SnapParams};
use crate::zbl::ZblReference;
use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};

/// A fitted (or hand-made) SNAP potential. Serialised as JSON by the callers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapModel {
    pub params: SnapParams,
    /// One vector per element of `params.elements`: `[β0, β_1 .. β_ncol]`, i.e.
    /// `1 + params.n_columns()` numbers, exactly the coefficient block of a LAMMPS
    /// `.snapcoeff` file (linear terms, then quadratic ones when `quadraticflag`).
    pub beta: Vec<Vec<f64>>,
    /// Active sets for the extrapolation grade, one per element (empty: no γ).
    #[serde(default)]
    pub active_sets: Vec<ActiveSet>,
    /// The reference potential added to the SNAP energy (None: bare SNAP). The SNAP part
    /// was fitted to the labels minus this reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ZblReference>,
}

/// What a model says about one structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    pub energy_ev: f64,
    pub atom_energies_ev: Vec<f64>,
    pub forces_ev_per_a: Vec<[f64; 3]>,
    /// ASE convention: Voigt xx yy zz yz xz xy, eV/Å³, `σ = (1/V) dE/dε = -W/V`;
    /// None unless periodic in all three directions.
    pub stress_ev_per_a3: Option<[f64; 6]>,
    /// Virial `W = Σ r ⊗ F` (eV, Voigt xx yy zz yz xz xy; LAMMPS's sign).
    pub virial_ev: [f64; 6],
    /// Per-atom extrapolation grade, when the model has active sets.
    pub gamma: Option<Vec<f64>>,
}

impl ModelEval {
    /// The largest per-atom γ (None without active sets).
    pub fn max_gamma(&self) -> Option<f64> {
        self.gamma.as_ref().map(|g| g.iter().copied().fold(0.0, f64::max))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error(transparent)]
    Snap(#[from] SnapError),
    #[error("invalid model: {0}")]
    Invalid(String),
    #[error("fit: {0}")]
    Fit(String),
}

impl SnapModel {
    /// A model with all coefficients zero.
    pub fn zeros(params: SnapParams) -> SnapModel {
        let n = 1 + params.n_columns();
        let ne = params.elements.len();
        SnapModel { params, beta: vec![vec![0.0; n]; ne], active_sets: Vec::new(), reference: None }
    }

    pub fn n_coefficients_per_element(&self) -> usize {
        1 + self.params.n_columns()
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        self.params.validate()?;
        let n = self.n_coefficients_per_element();
        if self.beta.len() != self.params.elements.len() || self.beta.iter().any(|b| b.len() != n) {
            return Err(ModelError::Invalid(format!(
                "beta: expected {} vectors of {n} coefficients (constant + {} columns), got {:?}",
                self.params.elements.len(),
                self.params.n_columns(),
                self.beta.iter().map(|b| b.len()).collect::<Vec<_>>()
            )));
        }
        if self.beta.iter().flatten().any(|x| !x.is_finite()) {
            return Err(ModelError::Invalid("beta has non-finite coefficients".into()));
        }
        if let Some(r) = &self.reference {
            r.validate().map_err(ModelError::Invalid)?;
        }
        if !self.active_sets.is_empty() {
            if self.active_sets.len() != self.params.elements.len() {
                return Err(ModelError::Invalid(format!(
                    "{} active sets for {} elements",
                    self.active_sets.len(),
                    self.params.elements.len()
                )));
            }
            for (a, e) in self.active_sets.iter().zip(&self.params.elements) {
                if a.element != e.element || a.n_dim != 1 + self.params.n_linear() {
                    return Err(ModelError::Invalid(format!(
                        "active set of {} does not match element {} with {} linear columns",
                        a.element,
                        e.element,
                        self.params.n_linear()
                    )));
                }
            }
        }
        Ok(())
    }

    /// A reusable evaluator (builds the SNAP index tables once).
    pub fn evaluator(&self) -> Result<ModelEvaluator<'_>, ModelError> {
        self.validate()?;
        let snap = Snap::new(&self.params)?;
        let beta_cols = self.beta.iter().map(|b| b[1..].to_vec()).collect();
        Ok(ModelEvaluator { model: self, snap, beta_cols, threads: 1 })
    }

    /// Energy, forces, stress and (with active sets) γ of one structure. Builds the SNAP
    /// tables each call: use [`SnapModel::evaluator`] in loops.
    pub fn evaluate(&self, s: &Structure) -> Result<ModelEval, ModelError> {
        self.evaluator()?.evaluate(s)
    }
}

/// A model with its SNAP tables built, for repeated evaluations.
pub struct ModelEvaluator<'a> {
    model: &'a SnapModel,
    snap: Snap,
    beta_cols: Vec<Vec<f64>>,
    threads: usize,
}

impl ModelEvaluator<'_> {
    /// Energy, forces and virial on `threads` threads (the same result for any count, up
    /// to the order of the final sums over thread blocks).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Evaluate with the given SNAP kernels (default: [`SnapKernels::from_env`]).
    pub fn with_kernels(mut self, kernels: SnapKernels) -> Self {
        self.snap = self.snap.with_kernels(kernels);
        self
    }

    pub fn snap(&self) -> &Snap {
        &self.snap
    }

    /// See [`SnapModel::evaluate`]. Energy, forces and virial come from the adjoint path
    /// ([`Snap::energy_forces_virial`]); γ needs the per-atom B as well, which costs one
    /// more descriptor pass (without gradients, so well under the cost of the forces).
    pub fn evaluate(&self, s: &Structure) -> Result<ModelEval, ModelError> {
        let m = self.model;
        let efv = self.snap.energy_forces_virial_threads(s, &self.beta_cols, self.threads)?;
        let elem: Vec<usize> =
            s.species.iter().map(|&e| m.params.element_index(e).expect("checked by energy_forces_virial")).collect();
        let mut efv = efv;
        if let Some(r) = &m.reference {
            let z = r.evaluate(s);
            efv.energy += z.energy_ev;
            for (a, b) in efv.atom_energies.iter_mut().zip(&z.atom_energies_ev) {
                *a += b;
            }
            for (a, b) in efv.forces.iter_mut().zip(&z.forces_ev_per_a) {
                for c in 0..3 {
                    a[c] += b[c];
                }
            }
            for k in 0..6 {
                efv.virial[k] += z.virial_ev[k];
            }
        }
        let atom_energies: Vec<f64> = efv.atom_energies.iter().zip(&elem).map(|(e, &k)| e + m.beta[k][0]).collect();
        let energy = efv.energy + elem.iter().map(|&k| m.beta[k][0]).sum::<f64>();
        let stress = if s.pbc.iter().all(|&p| p) {
            let v = s.volume_a3().abs();
            let mut st = [0.0; 6];
            for k in 0..6 {
                st[k] = -efv.virial[k] / v;
            }
            Some(st)
        } else {
            None
        };
        let gamma = if m.active_sets.is_empty() {
            None
        } else {
            let d = self.snap.descriptors(s)?;
            let nl = d.n_linear;
            Some((0..d.n_atoms).map(|i| m.active_sets[elem[i]].gamma(&d.b_row(i)[..nl])).collect())
        };
        Ok(ModelEval {
            energy_ev: energy,
            atom_energies_ev: atom_energies,
            forces_ev_per_a: efv.forces,
            stress_ev_per_a3: stress,
            virial_ev: efv.virial,
            gamma,
        })
    }

    /// Per-atom γ only (one descriptor pass, no forces). None without active sets.
    pub fn gamma(&self, s: &Structure) -> Result<Option<Vec<f64>>, ModelError> {
        let m = self.model;
        if m.active_sets.is_empty() {
            return Ok(None);
        }
        let d = self.snap.descriptors(s)?;
        let nl = d.n_linear;
        Ok(Some((0..d.n_atoms).map(|i| m.active_sets[d.atom_element[i]].gamma(&d.b_row(i)[..nl])).collect()))
    }
}
