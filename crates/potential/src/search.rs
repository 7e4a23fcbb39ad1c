//! Choosing the ridge strength and the weights by k-fold cross-validation, deterministically.
//!
//! The descriptor rows of every frame are computed once, unweighted (energy per atom,
//! force components, stress in bar, the reference subtracted); each candidate setting and
//! fold then only re-weights rows and solves, so a grid of dozens of settings costs about
//! one fit. The candidates scale the configured weights: every group's energy weight by
//! `energy_scale`, every stress weight by `stress_scale`, with the ridge `alpha` (one
//! factorisation per fold and weight setting serves every `alpha`). The goal is the one
//! of the issue: lower forces with energies no worse (see [`search_weights`]).

use crate::cv::assign_folds;
use crate::fit::{
    fixed_constants, frame_group, frame_rows, n_threads, par_map, solve_regularised, split_frames, Baseline,
    FitOptions, FrameRows, RowWeights,
};
use crate::linalg::StreamingQr;
use crate::model::ModelError;
use crate::snap::{Snap, SnapParams};
use autopipe_atoms::{Frame, Structure};
use serde::{Deserialize, Serialize};

/// One candidate of the search and its cross-validated RMSEs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPoint {
    pub alpha: f64,
    pub energy_scale: f64,
    pub stress_scale: f64,
    /// Cross-validated RMSE of energy per atom (eV/atom) and force components (eV/Å).
    pub cv_energy_ev_per_atom: f64,
    pub cv_forces_ev_per_a: f64,
    /// The cross-validated force RMSE, or infinity when the energy RMSE is worse than
    /// that of the options searched from.
    pub score: f64,
}

/// What [`search_weights`] returns: every candidate, the best, and the options it gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchReport {
    pub folds: usize,
    /// The options searched from, cross-validated.
    pub start: SearchPoint,
    pub points: Vec<SearchPoint>,
    pub best: SearchPoint,
    pub options: FitOptions,
}

/// The candidates of a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchGrid {
    pub alphas: Vec<f64>,
    pub energy_scales: Vec<f64>,
    pub stress_scales: Vec<f64>,
    /// Energies must be no worse than this cross-validated RMSE (eV/atom) instead of that
    /// of the options searched from (e.g. a linear model's, when searching a quadratic one).
    #[serde(default)]
    pub max_cv_energy_ev_per_atom: Option<f64>,
}

impl Default for SearchGrid {
    fn default() -> Self {
        SearchGrid {
            alphas: vec![0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4],
            energy_scales: vec![0.25, 0.5, 1.0, 2.0, 4.0],
            stress_scales: vec![0.1, 1.0, 10.0],
            max_cv_energy_ev_per_atom: None,
        }
    }
}

/// The unweighted rows of the labelled frames, ready to be weighted and solved.
pub struct DesignCache {
    ncoef: usize,
    ntot: usize,
    /// (frame index, its rows with unit weights, its group's weights)
    frames: Vec<(usize, FrameRows, RowWeights)>,
}

impl DesignCache {
    /// Rows of every frame with a usable label under `opts`.
    pub fn new(frames: &[Frame], params: &SnapParams, opts: &FitOptions) -> Result<DesignCache, ModelError> {
        opts.validate().map_err(ModelError::Fit)?;
        let snap = Snap::new(params)?;
        let mut all = opts.clone();
        all.test_fraction = 0.0;
        all.groups.values_mut().for_each(|g| g.test_fraction = None);
        let usable = split_frames(frames, &all).train;
        let base = Baseline {
            reference: opts.reference.as_ref(),
            fixed_constant: fixed_constants(params, opts)?,
            free: opts.use_free_energy,
        };
        let unit = RowWeights { e: 1.0, f: 1.0, s: 1.0 };
        let rows = par_map(&usable, n_threads(opts.threads), |&k| frame_rows(&snap, &frames[k], unit, &base, false));
        let mut out = Vec::with_capacity(usable.len());
        for (&k, r) in usable.iter().zip(rows) {
            let r = r?;
            if r.rows.iter().chain(&r.rhs).any(|x| !x.is_finite()) {
                return Err(ModelError::Fit(format!("frame {k}: non-finite descriptors")));
            }
            let (w, _) = opts.group_weights(frame_group(&frames[k]));
            out.push((k, r, w));
        }
        let ncoef = 1 + params.n_columns();
        Ok(DesignCache { ncoef, ntot: params.elements.len() * ncoef, frames: out })
    }

    /// Cross-validated (energy, force) RMSE with the cached weights scaled, for every
    /// ridge strength in `alphas` (one factorisation per fold serves them all).
    fn cv(
        &self,
        fold: &[usize],
        k: usize,
        alphas: &[f64],
        es: f64,
        ss: f64,
        rank_rtol: f64,
    ) -> Result<Vec<(f64, f64)>, ModelError> {
        let na = alphas.len();
        let (mut se, mut ne, mut sf, mut nf) = (vec![0.0; na], 0usize, vec![0.0; na], 0usize);
        for f in 0..k {
            let mut qr = StreamingQr::new(self.ntot);
            let mut buf = Vec::new();
            let mut rhs = Vec::new();
            for ((_, r, w), &fo) in self.frames.iter().zip(fold) {
                if fo == f {
                    continue;
                }
                buf.clear();
                rhs.clear();
                for (row, (scale, keep)) in self.row_scales(r, w, es, ss).into_iter().enumerate() {
                    if keep {
                        buf.extend(r.rows[row * self.ntot..(row + 1) * self.ntot].iter().map(|x| x * scale));
                        rhs.push(r.rhs[row] * scale);
                    }
                }
                qr.add_rows(&buf, &rhs);
            }
            let betas: Vec<Vec<f64>> = alphas
                .iter()
                .map(|&a| solve_regularised(&qr, self.ncoef, a, rank_rtol).map(|x| x.0))
                .collect::<Result<_, _>>()?;
            for ((_, r, _), &fo) in self.frames.iter().zip(fold) {
                if fo != f {
                    continue;
                }
                let n = self.ntot;
                let resid = |row: usize, beta: &[f64]| -> f64 {
                    r.rows[row * n..(row + 1) * n].iter().zip(beta).map(|(a, b)| a * b).sum::<f64>() - r.rhs[row]
                };
                let mut row = 0;
                if r.has_e {
                    for (j, b) in betas.iter().enumerate() {
                        se[j] += resid(row, b).powi(2);
                    }
                    ne += 1;
                    row += 1;
                }
                for _ in 0..r.n_f {
                    for (j, b) in betas.iter().enumerate() {
                        sf[j] += resid(row, b).powi(2);
                    }
                    nf += 1;
                    row += 1;
                }
            }
        }
        Ok((0..na).map(|j| ((se[j] / ne.max(1) as f64).sqrt(), (sf[j] / nf.max(1) as f64).sqrt())).collect())
    }

    /// Per row of a frame: its weight and whether the weighted fit has the row.
    fn row_scales(&self, r: &FrameRows, w: &RowWeights, es: f64, ss: f64) -> Vec<(f64, bool)> {
        let mut v = Vec::new();
        if r.has_e {
            v.push((w.e * es, w.e > 0.0));
        }
        v.extend(std::iter::repeat_n((w.f, w.f > 0.0), r.n_f));
        if r.has_s {
            v.extend(std::iter::repeat_n((w.s * ss, w.s > 0.0), 6));
        }
        v
    }
}

/// Searches `grid` by `k`-fold cross-validation (folds as in [`crate::cross_validate`]):
/// the lowest cross-validated force RMSE among the candidates whose cross-validated energy
/// RMSE is no worse than that of the options given (which are themselves a candidate, so
/// the search never makes either figure worse in cross-validation); ties go to the
/// earlier candidate in grid order (alphas outermost, then energy, then stress scales).
pub fn search_weights(
    frames: &[Frame],
    params: &SnapParams,
    opts: &FitOptions,
    k: usize,
    grid: &SearchGrid,
) -> Result<SearchReport, ModelError> {
    let cache = DesignCache::new(frames, params, opts)?;
    let n = cache.frames.len();
    if k < 2 || k > n {
        return Err(ModelError::Fit(format!("{k} folds for {n} labelled frames: need 2 ..= {n}")));
    }
    if grid.alphas.is_empty() || grid.energy_scales.is_empty() || grid.stress_scales.is_empty() {
        return Err(ModelError::Fit("the search grid is empty".into()));
    }
    let structures: Vec<&Structure> = cache.frames.iter().map(|(i, _, _)| &frames[*i].structure).collect();
    let fold = assign_folds(&structures, k, opts.split_salt);
    let (e0, f0) = cache.cv(&fold, k, &[opts.alpha], 1.0, 1.0, opts.rank_rtol)?[0];
    let e_max = grid.max_cv_energy_ev_per_atom.unwrap_or(e0);
    let start = SearchPoint {
        alpha: opts.alpha,
        energy_scale: 1.0,
        stress_scale: 1.0,
        cv_energy_ev_per_atom: e0,
        cv_forces_ev_per_a: f0,
        score: if e0 <= e_max * (1.0 + 1e-12) { f0 } else { f64::INFINITY },
    };
    let mut points = Vec::new();
    let mut by_scale = Vec::new();
    for &es in &grid.energy_scales {
        for &ss in &grid.stress_scales {
            by_scale.push(((es, ss), cache.cv(&fold, k, &grid.alphas, es, ss, opts.rank_rtol)?));
        }
    }
    for (j, &alpha) in grid.alphas.iter().enumerate() {
        for ((es, ss), r) in &by_scale {
            let (e, f) = r[j];
            let score = if e <= e_max * (1.0 + 1e-12) { f } else { f64::INFINITY };
            points.push(SearchPoint {
                alpha,
                energy_scale: *es,
                stress_scale: *ss,
                cv_energy_ev_per_atom: e,
                cv_forces_ev_per_a: f,
                score,
            });
        }
    }
    let best = points.iter().fold(start, |b, p| if p.score < b.score { *p } else { b });
    let mut options = opts.clone();
    options.alpha = best.alpha;
    options.energy_weight *= best.energy_scale;
    options.stress_weight *= best.stress_scale;
    for g in options.groups.values_mut() {
        g.energy_weight = g.energy_weight.map(|w| w * best.energy_scale);
        g.stress_weight = g.stress_weight.map(|w| w * best.stress_scale);
    }
    Ok(SearchReport { folds: k, start, points, best, options })
}
