//! D-optimal active sets and the extrapolation grade γ (Podryabinkin & Shapeev, as in
//! MLIP-3 and pacemaker), chosen with MaxVol (Goreinov, Oseledets, Savostyanov et al.).
//!
//! For one element, every training environment gives a row `x = [1, B_1 .. B_K]` (the
//! constant term and the linear bispectrum components: the site energy is linear in
//! them). The active set is the `K+1` rows with (locally) maximal `|det A|`; the
//! extrapolation grade of an environment is `γ = max_j |(x A⁻¹)_j|`: the largest
//! coefficient needed to write `x` in the basis of the active set. By construction
//! `γ ≤ tol` for every training environment (`tol` → 1 in the final MaxVol pass) and it
//! grows for environments outside the training domain.
//!
//! Quadratic models: the active set is still built on `[1, B_lin]` (the quadratic columns
//! would need more environments than a training set usually has, `~K²/2`); γ measures
//! how far the descriptors are from the training descriptors, which is what matters for
//! trust.
//!
//! Numerics: `γ` is invariant under any invertible linear map of the columns, so the
//! rows are centred and scaled column by column (`x' = (x - c)/s`, the constant column
//! left alone) before anything else; this changes nothing mathematically and tames the
//! strong collinearity of raw bispectrum components.
//!
//! Rank deficiency (fewer distinct environments than columns, e.g. a perfect crystal
//! where all atoms are alike): the rank `r` is found by a pivoted QR of the scaled rows;
//! the rows are projected on an orthonormal basis `V` (`K+1 x r`) of their span and
//! MaxVol runs on the `r` projected columns. An environment then gets
//! `γ = max(max_j |c_j|, ‖x' - x'VVᵀ‖ / residual_tol)`: the coefficients in the active
//! set as before, and the part of `x'` outside the span of the training environments
//! measured against `residual_tol` (in scaled units; default 1e-3, i.e. a 0.1 %
//! deviation of the descriptors where the training set had no spread). The fall-back is
//! reported in `ActiveSet::note`.

use crate::linalg::{lu_inverse, qr_pivoted, ColMat};
use autopipe_atoms::Element;
use serde::{Deserialize, Serialize};

/// Where a training environment came from: frame index (in the list given to the fit)
/// and atom index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvOrigin {
    pub frame: usize,
    pub atom: usize,
}

/// The active set of one element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveSet {
    pub element: Element,
    /// Columns of a row: 1 + number of linear bispectrum components.
    pub n_dim: usize,
    /// Number of active environments (= `n_dim` unless rank-deficient).
    pub rank: usize,
    pub rank_deficient: bool,
    /// Column centres and scales (`x' = (x - center) / scale`; column 0 is the constant 1,
    /// center 0 and scale 1).
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
    /// `n_dim x rank`, row-major: an orthonormal basis of the span of the scaled training
    /// rows. Empty when `rank == n_dim` (the identity).
    pub basis: Vec<f64>,
    /// `rank x rank`, row-major: the inverse of the active-set matrix (scaled, projected).
    pub inverse: Vec<f64>,
    /// The active environments' raw rows `[1, B...]` (`rank` of them), to update the set
    /// later with new environments.
    pub rows: Vec<Vec<f64>>,
    /// Where each active environment came from.
    pub origin: Vec<EnvOrigin>,
    /// Scale of the out-of-span residual (see the module documentation).
    pub residual_tol: f64,
    /// The largest γ over the training environments after the final MaxVol pass.
    pub max_training_gamma: f64,
    /// Number of training environments the set was chosen from.
    pub n_candidates: usize,
    /// MaxVol swaps performed.
    pub n_swaps: usize,
    /// Human-readable remark (e.g. the rank-deficiency fall-back), if any.
    pub note: Option<String>,
}

/// Options of the MaxVol selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxVolOptions {
    /// First pass: swap while some coefficient exceeds this (MLIP-3 / pacemaker use ~1.01).
    pub coarse_tol: f64,
    /// Final pass, so that every training environment ends with γ ≤ `fine_tol`.
    pub fine_tol: f64,
    /// Cap on the number of swaps of the fine pass (times the number of columns).
    pub max_swaps_per_column: usize,
    /// Relative threshold on the pivots of the rank decision.
    pub rank_rtol: f64,
    /// See [`ActiveSet::residual_tol`].
    pub residual_tol: f64,
}

impl Default for MaxVolOptions {
    fn default() -> Self {
        MaxVolOptions {
            coarse_tol: 1.01,
            fine_tol: 1.0 + 1e-10,
            max_swaps_per_column: 100,
            rank_rtol: 1e-9,
            residual_tol: 1e-3,
        }
    }
}

fn scaled(x: &[f64], center: &[f64], scale: &[f64], out: &mut [f64]) {
    for k in 0..x.len() {
        out[k] = (x[k] - center[k]) / scale[k];
    }
}

impl ActiveSet {
    /// Chooses the active set of `element` from candidate rows (`n_dim` each, `[1, B...]`).
    pub fn select(
        element: Element,
        rows: &[Vec<f64>],
        origin: &[EnvOrigin],
        opts: &MaxVolOptions,
    ) -> Result<ActiveSet, String> {
        let m = rows.len();
        if m == 0 {
            return Err(format!("no training environments of {element}"));
        }
        let n = rows[0].len();
        Self::select_inner(element, rows, origin, opts, m, n)
    }

    /// An active set for an element without any training environment: every environment
    /// of it gets `γ = f64::MAX` (maximally uncertain).
    pub fn empty(element: Element, n_dim: usize) -> ActiveSet {
        ActiveSet {
            element,
            n_dim,
            rank: 0,
            rank_deficient: true,
            center: vec![0.0; n_dim],
            scale: vec![1.0; n_dim],
            basis: Vec::new(),
            inverse: Vec::new(),
            rows: Vec::new(),
            origin: Vec::new(),
            residual_tol: 1.0,
            max_training_gamma: 0.0,
            n_candidates: 0,
            n_swaps: 0,
            note: Some(format!("no training environment of {element}: gamma is f64::MAX for every {element} atom")),
        }
    }

    fn select_inner(
        element: Element,
        rows: &[Vec<f64>],
        origin: &[EnvOrigin],
        opts: &MaxVolOptions,
        m: usize,
        n: usize,
    ) -> Result<ActiveSet, String> {
        if rows.iter().any(|r| r.len() != n || r.iter().any(|x| !x.is_finite())) {
            return Err(format!("{element}: descriptor rows of unequal length or not finite"));
        }
        // column centring and scaling
        let mut center = vec![0.0; n];
        let mut scale = vec![1.0; n];
        for k in 1..n {
            let mean = rows.iter().map(|r| r[k]).sum::<f64>() / m as f64;
            let var = rows.iter().map(|r| (r[k] - mean).powi(2)).sum::<f64>() / m as f64;
            let rms = rows.iter().map(|r| r[k] * r[k]).sum::<f64>().sqrt() / (m as f64).sqrt();
            let std = var.sqrt();
            center[k] = mean;
            scale[k] = if std > 1e-8 * rms && std > 0.0 {
                std
            } else if rms > 0.0 {
                rms
            } else {
                1.0
            };
        }
        let mut xs = ColMat::zeros(m, n);
        let mut buf = vec![0.0; n];
        for (i, r) in rows.iter().enumerate() {
            scaled(r, &center, &scale, &mut buf);
            for k in 0..n {
                xs.set(i, k, buf[k]);
            }
        }
        // rank and (if deficient) an orthonormal basis of the row space
        let f = qr_pivoted(xs.clone());
        let rank = f.rank(opts.rank_rtol).max(1);
        let mut note = None;
        let basis: Vec<f64> = if rank == n {
            Vec::new()
        } else {
            // rows of R Pᵀ (first `rank`) span the row space; orthonormalise them (twice-MGS)
            let mut vecs: Vec<Vec<f64>> = (0..rank)
                .map(|i| {
                    let mut v = vec![0.0; n];
                    for k in i..n {
                        v[f.perm[k]] = f.qr.get(i, k);
                    }
                    v
                })
                .collect();
            for i in 0..rank {
                for _ in 0..2 {
                    for j in 0..i {
                        let d: f64 = (0..n).map(|k| vecs[i][k] * vecs[j][k]).sum();
                        for k in 0..n {
                            vecs[i][k] -= d * vecs[j][k];
                        }
                    }
                }
                let nn: f64 = vecs[i].iter().map(|x| x * x).sum::<f64>().sqrt();
                vecs[i].iter_mut().for_each(|x| *x /= nn);
            }
            note = Some(format!(
                "rank-deficient: the {m} training environments of {element} span only {rank} of {n} \
                 dimensions; gamma adds the out-of-span residual / {:e}",
                opts.residual_tol
            ));
            let mut b = vec![0.0; n * rank];
            for k in 0..n {
                for j in 0..rank {
                    b[k * rank + j] = vecs[j][k];
                }
            }
            b
        };
        // projected rows Y (m x rank), row-major
        let r = rank;
        let mut y = vec![0.0; m * r];
        for i in 0..m {
            if basis.is_empty() {
                for k in 0..n {
                    y[i * r + k] = xs.get(i, k);
                }
            } else {
                for j in 0..r {
                    let mut s = 0.0;
                    for k in 0..n {
                        s += xs.get(i, k) * basis[k * r + j];
                    }
                    y[i * r + j] = s;
                }
            }
        }
        let (sel, inverse, n_swaps, max_gamma) = maxvol(&y, m, r, opts)?;
        let mut set = ActiveSet {
            element,
            n_dim: n,
            rank: r,
            rank_deficient: r < n,
            center,
            scale,
            basis,
            inverse,
            rows: sel.iter().map(|&i| rows[i].clone()).collect(),
            origin: sel.iter().map(|&i| origin.get(i).copied().unwrap_or(EnvOrigin { frame: 0, atom: i })).collect(),
            residual_tol: opts.residual_tol,
            max_training_gamma: max_gamma,
            n_candidates: m,
            n_swaps,
            note,
        };
        // the grade as evaluated later (with the out-of-span part), on the training rows
        set.max_training_gamma = rows.iter().map(|x| set.gamma_row(x)).fold(0.0, f64::max);
        Ok(set)
    }

    /// γ of a raw row `[1, B...]` (`f64::MAX` when the set is empty or the numbers
    /// overflow; never NaN).
    pub fn gamma_row(&self, x: &[f64]) -> f64 {
        let n = self.n_dim;
        let r = self.rank;
        if r == 0 {
            return f64::MAX;
        }
        let mut xs = vec![0.0; n];
        scaled(x, &self.center, &self.scale, &mut xs);
        let (y, resid) = if self.basis.is_empty() {
            (xs, 0.0)
        } else {
            let mut y = vec![0.0; r];
            for k in 0..n {
                for j in 0..r {
                    y[j] += xs[k] * self.basis[k * r + j];
                }
            }
            let mut res2 = 0.0;
            for k in 0..n {
                let p: f64 = (0..r).map(|j| y[j] * self.basis[k * r + j]).sum();
                res2 += (xs[k] - p).powi(2);
            }
            (y, res2.sqrt())
        };
        let mut g = 0.0f64;
        for j in 0..r {
            let c: f64 = (0..r).map(|k| y[k] * self.inverse[k * r + j]).sum();
            g = g.max(c.abs());
        }
        let g = g.max(resid / self.residual_tol);
        if g.is_finite() {
            g
        } else {
            f64::MAX
        }
    }

    /// γ of an environment given by its linear bispectrum components (without the 1).
    pub fn gamma(&self, b_linear: &[f64]) -> f64 {
        let mut x = Vec::with_capacity(self.n_dim);
        x.push(1.0);
        x.extend_from_slice(&b_linear[..self.n_dim - 1]);
        self.gamma_row(&x)
    }
}

/// Square MaxVol on `y` (`m x r`, row-major, full column rank): returns the selected rows,
/// the inverse of the selected `r x r` matrix (row-major), the number of swaps and the
/// largest |coefficient| over all rows at the end.
fn maxvol(y: &[f64], m: usize, r: usize, opts: &MaxVolOptions) -> Result<(Vec<usize>, Vec<f64>, usize, f64), String> {
    if m < r {
        return Err(format!("MaxVol: {m} rows for {r} columns"));
    }
    // greedy start: pivoted Gram-Schmidt on the rows (= QR with column pivoting of yᵀ)
    let mut w = y.to_vec();
    let mut norms: Vec<f64> = (0..m).map(|i| w[i * r..(i + 1) * r].iter().map(|x| x * x).sum()).collect();
    let mut sel = Vec::with_capacity(r);
    let mut taken = vec![false; m];
    for _ in 0..r {
        let (best, &bn) = norms
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .max_by(|a, b| a.1.partial_cmp(b.1).unwrap_or(std::cmp::Ordering::Equal))
            .ok_or("MaxVol: ran out of rows")?;
        if !(bn > 0.0) {
            return Err("MaxVol: the rows do not have full rank".into());
        }
        taken[best] = true;
        sel.push(best);
        let q: Vec<f64> = w[best * r..(best + 1) * r].iter().map(|x| x / bn.sqrt()).collect();
        for i in 0..m {
            if taken[i] {
                continue;
            }
            let row = &mut w[i * r..(i + 1) * r];
            let d: f64 = row.iter().zip(&q).map(|(a, b)| a * b).sum();
            for (a, b) in row.iter_mut().zip(&q) {
                *a -= d * b;
            }
            norms[i] = row.iter().map(|x| x * x).sum();
        }
    }
    drop(w);
    let inverse_of = |sel: &[usize]| -> Result<Vec<f64>, String> {
        let mut a = vec![0.0; r * r];
        for (j, &i) in sel.iter().enumerate() {
            a[j * r..(j + 1) * r].copy_from_slice(&y[i * r..(i + 1) * r]);
        }
        lu_inverse(&a, r).ok_or_else(|| "MaxVol: singular active-set matrix".to_string())
    };
    let coeffs = |inv: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; m * r];
        for i in 0..m {
            let yi = &y[i * r..(i + 1) * r];
            let ci = &mut c[i * r..(i + 1) * r];
            for k in 0..r {
                let a = yi[k];
                if a != 0.0 {
                    for (cj, v) in ci.iter_mut().zip(&inv[k * r..(k + 1) * r]) {
                        *cj += a * v;
                    }
                }
            }
        }
        c
    };
    let mut inv = inverse_of(&sel)?;
    let mut c = coeffs(&inv);
    let mut swaps = 0usize;
    let cap = opts.max_swaps_per_column.max(1) * r + 100;
    for tol in [opts.coarse_tol, opts.fine_tol] {
        let mut since_refresh = 0usize;
        loop {
            let (mut bi, mut bj, mut bv) = (0, 0, 0.0f64);
            for (k, v) in c.iter().enumerate() {
                if v.abs() > bv {
                    bv = v.abs();
                    bi = k / r;
                    bj = k % r;
                }
            }
            if bv <= tol || swaps >= cap {
                break;
            }
            // swap row bi into position bj; rank-1 update of the coefficients
            let cij = c[bi * r + bj];
            let mut u: Vec<f64> = c[bi * r..(bi + 1) * r].to_vec();
            u[bj] -= 1.0;
            let colj: Vec<f64> = (0..m).map(|i| c[i * r + bj]).collect();
            for i in 0..m {
                let f = colj[i] / cij;
                if f != 0.0 {
                    for (cv, uv) in c[i * r..(i + 1) * r].iter_mut().zip(&u) {
                        *cv -= f * uv;
                    }
                }
            }
            sel[bj] = bi;
            swaps += 1;
            since_refresh += 1;
            if since_refresh >= 50 {
                inv = inverse_of(&sel)?;
                c = coeffs(&inv);
                since_refresh = 0;
            }
        }
        inv = inverse_of(&sel)?;
        c = coeffs(&inv);
    }
    let max_gamma = c.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    Ok((sel, inv, swaps, max_gamma))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    #[test]
    fn maxvol_bounds_training_rows_and_flags_outliers() {
        let mut s = 3u64;
        let cu = Element::from_symbol("Cu").unwrap();
        let rows: Vec<Vec<f64>> =
            (0..400).map(|_| std::iter::once(1.0).chain((0..6).map(|_| 5.0 + rng(&mut s))).collect()).collect();
        let set = ActiveSet::select(cu, &rows, &[], &MaxVolOptions::default()).unwrap();
        assert_eq!(set.rank, 7);
        assert!(!set.rank_deficient);
        for r in &rows {
            assert!(set.gamma_row(r) <= 1.0 + 1e-9);
        }
        assert!(set.max_training_gamma <= 1.0 + 1e-9);
        let far: Vec<f64> = std::iter::once(1.0).chain((0..6).map(|k| if k == 2 { 15.0 } else { 5.0 })).collect();
        assert!(set.gamma_row(&far) > 2.0);
        // active rows have gamma exactly 1
        for r in &set.rows {
            assert!((set.gamma_row(r) - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn rank_deficient_sets_fall_back() {
        let cu = Element::from_symbol("Cu").unwrap();
        // every environment alike (a perfect crystal), plus one other
        let mut rows = vec![vec![1.0, 2.0, 3.0, 4.0]; 10];
        rows.push(vec![1.0, 2.1, 3.0, 4.2]);
        let set = ActiveSet::select(cu, &rows, &[], &MaxVolOptions::default()).unwrap();
        assert_eq!(set.rank, 2);
        assert!(set.rank_deficient && set.note.is_some());
        for r in &rows {
            let g = set.gamma_row(r);
            assert!(g.is_finite() && g <= 1.0 + 1e-9, "{g}");
        }
        assert!(set.gamma_row(&[1.0, 2.0, 3.3, 4.0]) > 10.0);
        let one = ActiveSet::select(cu, &rows[..1], &[], &MaxVolOptions::default()).unwrap();
        assert_eq!(one.rank, 1);
        assert!(one.gamma_row(&rows[0]) <= 1.0 + 1e-12);
        assert!(one.gamma_row(&rows[10]) > 10.0);
    }
}
