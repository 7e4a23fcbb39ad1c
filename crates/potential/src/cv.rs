//! K-fold cross-validation of [`fit`]: every labelled frame is held out exactly once, so
//! the error estimate rests on all labels instead of a small test split.
//!
//! Frames go to folds by a hash of their structure: ordered by it, frame r of that order
//! goes to fold `r mod k` (deterministic, folds of equal size within one frame).
//! Fold k is predicted by the model fitted on the other folds, with the same options. The
//! estimate of each quantity is the RMSE over every held-out value; its 95% confidence
//! interval treats frames as the independent units (values within a frame are
//! correlated): with `s_i` the sum of squared errors of frame i and `n_i` its number of
//! values, `MSE = Σ s_i / Σ n_i`, its standard error is the ratio estimator's
//! `sqrt(Σ (s_i - MSE n_i)² / (m (m-1))) / n̄` over the `m` frames, and the interval of the
//! RMSE is `sqrt(MSE ± 1.96 SE)`.

use crate::fit::{fit_split, frame_group, FitOptions, Split};
use crate::model::ModelError;
use crate::snap::SnapParams;
use autopipe_atoms::{Frame, Structure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A cross-validated RMSE with its 95% confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvStat {
    pub rmse: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Held-out frames and values behind it.
    pub n_frames: usize,
    pub n_values: usize,
}

/// The cross-validated errors of one set of frames (all, or one group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CvErrors {
    /// Energy per atom, eV/atom.
    pub energy_ev_per_atom: Option<CvStat>,
    /// Force components, eV/Å.
    pub forces_ev_per_a: Option<CvStat>,
    /// Stress components, eV/Å³.
    pub stress_ev_per_a3: Option<CvStat>,
}

/// What [`cross_validate`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    pub folds: usize,
    /// Frames per fold.
    pub fold_sizes: Vec<usize>,
    pub all: CvErrors,
    pub groups: BTreeMap<String, CvErrors>,
}

/// A uniform number in [0, 1) from a hash of the structure's content and `salt`.
fn hash_unit(s: &Structure, salt: u64) -> f64 {
    let h = s.content_hash();
    let mut z = u64::from_str_radix(&h[..16], 16).unwrap_or(0)
        ^ salt.wrapping_add(0x0C0F_01D5).wrapping_mul(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The folds (0..k) of `structures`: ordered by a hash of their content with `salt`, the
/// r-th goes to fold `r mod k`.
pub fn assign_folds(structures: &[&Structure], k: usize, salt: u64) -> Vec<usize> {
    let mut order: Vec<(f64, usize)> = structures.iter().enumerate().map(|(i, s)| (hash_unit(s, salt), i)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut fold = vec![0; structures.len()];
    for (r, &(_, i)) in order.iter().enumerate() {
        fold[i] = r % k.max(1);
    }
    fold
}

/// Per-frame sums of squared errors and counts, for one quantity.
#[derive(Default, Clone)]
struct FrameSums(Vec<(f64, usize)>);

impl FrameSums {
    fn stat(&self) -> Option<CvStat> {
        let v: Vec<(f64, usize)> = self.0.iter().copied().filter(|&(_, n)| n > 0).collect();
        let m = v.len();
        if m == 0 {
            return None;
        }
        let n_values: usize = v.iter().map(|x| x.1).sum();
        let mse = v.iter().map(|x| x.0).sum::<f64>() / n_values as f64;
        let se = if m > 1 {
            let nbar = n_values as f64 / m as f64;
            (v.iter().map(|&(s, n)| (s - mse * n as f64).powi(2)).sum::<f64>() / (m * (m - 1)) as f64).sqrt() / nbar
        } else {
            f64::INFINITY
        };
        Some(CvStat {
            rmse: mse.sqrt(),
            ci95_low: (mse - 1.96 * se).max(0.0).sqrt(),
            ci95_high: (mse + 1.96 * se).sqrt(),
            n_frames: m,
            n_values,
        })
    }
}

#[derive(Default, Clone)]
struct Sums {
    e: FrameSums,
    f: FrameSums,
    s: FrameSums,
}

impl Sums {
    fn errors(&self) -> CvErrors {
        CvErrors { energy_ev_per_atom: self.e.stat(), forces_ev_per_a: self.f.stat(), stress_ev_per_a3: self.s.stat() }
    }
}

/// K-fold cross-validation of `fit(frames, params, opts)` (the options' own test split is
/// ignored: every frame is held out once). `k` must be at least 2 and at most the number
/// of frames with labels.
pub fn cross_validate(
    frames: &[Frame],
    params: &SnapParams,
    opts: &FitOptions,
    k: usize,
) -> Result<CvReport, ModelError> {
    let mut all_opts = opts.clone();
    all_opts.test_fraction = 0.0;
    all_opts.groups.values_mut().for_each(|g| g.test_fraction = None);
    all_opts.active_set = false;
    let base = crate::fit::split_frames(frames, &all_opts);
    let usable = &base.train;
    if k < 2 || k > usable.len() {
        return Err(ModelError::Fit(format!(
            "{k} folds for {} labelled frames: need 2 ..= {}",
            usable.len(),
            usable.len()
        )));
    }
    let structures: Vec<&Structure> = usable.iter().map(|&i| &frames[i].structure).collect();
    let fold = assign_folds(&structures, k, opts.split_salt);
    let mut fold_sizes = vec![0; k];
    for &f in &fold {
        fold_sizes[f] += 1;
    }
    if let Some(empty) = fold_sizes.iter().position(|&n| n == 0) {
        return Err(ModelError::Fit(format!(
            "fold {empty} of {k} is empty ({} frames): use fewer folds",
            usable.len()
        )));
    }
    let mut all = Sums::default();
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    for f in 0..k {
        let train: Vec<usize> = usable.iter().zip(&fold).filter(|(_, &x)| x != f).map(|(&i, _)| i).collect();
        let test: Vec<usize> = usable.iter().zip(&fold).filter(|(_, &x)| x == f).map(|(&i, _)| i).collect();
        let rep = fit_split(frames, params.clone(), &all_opts, Split { train, test: Vec::new(), skipped: Vec::new() })?;
        let ev = rep.model.evaluator()?;
        for &i in &test {
            let fr = &frames[i];
            let r = ev.evaluate(&fr.structure)?;
            let n = fr.len() as f64;
            let e = if opts.use_free_energy {
                fr.free_energy_ev.or(fr.energy_ev)
            } else {
                fr.energy_ev.or(fr.free_energy_ev)
            };
            let es = e.map_or((0.0, 0), |e| (((r.energy_ev - e) / n).powi(2), 1));
            let fs = fr.forces_ev_per_a.as_ref().map_or((0.0, 0), |fl| {
                let s: f64 = r
                    .forces_ev_per_a
                    .iter()
                    .zip(fl)
                    .map(|(a, b)| (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f64>())
                    .sum();
                (s, 3 * fl.len())
            });
            let ss = match (r.stress_ev_per_a3, fr.stress_ev_per_a3) {
                (Some(a), Some(b)) => ((0..6).map(|t| (a[t] - b[t]).powi(2)).sum(), 6),
                _ => (0.0, 0),
            };
            for sums in [&mut all, groups.entry(frame_group(fr).to_string()).or_default()] {
                sums.e.0.push(es);
                sums.f.0.push(fs);
                sums.s.0.push(ss);
            }
        }
    }
    Ok(CvReport {
        folds: k,
        fold_sizes,
        all: all.errors(),
        groups: groups.into_iter().map(|(g, s)| (g, s.errors())).collect(),
    })
}
