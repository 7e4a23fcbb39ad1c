//! Fitting a SNAP model: weighted, ridge-regularised linear least squares on energies,
//! forces and stresses, solved by Householder QR (never by the normal equations); a
//! deterministic train/test split; error metrics; the active set for γ.
//!
//! The loss, with `n_E`, `n_F`, `n_S` the numbers of energy, force-component and
//! stress-component rows of the training set:
//!
//! ```text
//! L(β) = w_E/n_E Σ (ΔE/N)²  +  w_F/n_F Σ ΔF_kc²  +  w_S/n_S Σ (ΔW_t/N)²  +  α Σ_k d_k² β_k²
//! ```
//!
//! i.e. `w_E·MSE(energy per atom) + w_F·MSE(force components) + w_S·MSE(virial per atom)`
//! plus a ridge term in which `d_k` is the norm of column k of the weighted design matrix
//! (so `α` is relative, independent of the scale of each descriptor; the constant terms
//! are not penalised). The stress enters as the virial per atom, `W/N = -σ V/N` (eV/atom).
//!
//! The design matrix is never stored: frames are turned into rows (in parallel) and
//! folded into the triangular factor of a streaming QR. The final solve is a
//! column-equilibrated, column-pivoted QR of `[R; √α D]`, which reports the numerical
//! rank: coefficients the data cannot determine (and α does not pin) are set to zero and
//! a warning says so.

use crate::active_set::{ActiveSet, EnvOrigin, MaxVolOptions};
use crate::linalg::{lstsq_pivoted, ColMat, StreamingQr};
use crate::model::{ModelError, SnapModel};
use crate::snap::{Snap, SnapParams};
use autopipe_atoms::units::EV_PER_A3_IN_GPA;
use autopipe_atoms::{Frame, Structure};
use serde::{Deserialize, Serialize};

/// Options of [`fit`]. Defaults suit metals (energies good to a few meV/atom, forces to
/// ~0.1 eV/Å): `energy_weight / force_weight = 1000` makes 3 meV/atom in energy cost as
/// much as 0.1 eV/Å in forces; `stress_weight = 4` makes 0.05 eV/atom of virial
/// (≈ 0.7 GPa in Cu) cost the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitOptions {
    /// Weight of the mean squared energy error per atom ((eV/atom)⁻²).
    pub energy_weight: f64,
    /// Weight of the mean squared force-component error ((eV/Å)⁻²).
    pub force_weight: f64,
    /// Weight of the mean squared virial-per-atom error ((eV/atom)⁻²); only frames with a
    /// stress label and periodic in all directions.
    pub stress_weight: f64,
    /// Relative ridge parameter (see the module documentation). 0 = none. The default
    /// (1e-10) only pins directions the data leave (nearly) undetermined: on 300 noisy
    /// 32-atom Cu cells at 2J = 8 it changed no test error, where 1e-8 already biased the
    /// fit (stress test RMSE 0.016 -> 0.10 GPa) and 1e-6 ruined it.
    pub alpha: f64,
    /// Fraction of frames held out for testing (by a hash of the structure).
    pub test_fraction: f64,
    /// Changes which frames are held out (same salt, same split).
    pub split_salt: u64,
    /// Fit `free_energy` instead of `energy` (force-consistent with smearing); a frame
    /// lacking the chosen one falls back to the other.
    pub use_free_energy: bool,
    /// Build the active sets (γ) from the training environments.
    pub active_set: bool,
    pub maxvol: MaxVolOptions,
    /// Relative pivot threshold of the rank decision in the final solve.
    pub rank_rtol: f64,
    /// Worker threads for the descriptors (0: all available cores).
    pub threads: usize,
    /// Frames per parallel batch (bounds the memory of the rows in flight).
    pub batch_frames: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            energy_weight: 1000.0,
            force_weight: 1.0,
            stress_weight: 4.0,
            alpha: 1e-10,
            test_fraction: 0.1,
            split_salt: 0,
            use_free_energy: false,
            active_set: true,
            maxvol: MaxVolOptions::default(),
            rank_rtol: 1e-12,
            threads: 0,
            batch_frames: 32,
        }
    }
}

/// Error statistics of one quantity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Number of compared values.
    pub n: usize,
    pub rmse: f64,
    pub mae: f64,
    pub max_abs: f64,
}

#[derive(Default, Clone, Copy)]
struct Acc {
    n: usize,
    sq: f64,
    abs: f64,
    max: f64,
}

impl Acc {
    fn add(&mut self, d: f64) {
        self.n += 1;
        self.sq += d * d;
        self.abs += d.abs();
        self.max = self.max.max(d.abs());
    }
    fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.sq += o.sq;
        self.abs += o.abs;
        self.max = self.max.max(o.max);
    }
    fn stat(&self, scale: f64) -> Option<Stat> {
        (self.n > 0).then(|| Stat {
            n: self.n,
            rmse: (self.sq / self.n as f64).sqrt() * scale,
            mae: self.abs / self.n as f64 * scale,
            max_abs: self.max * scale,
        })
    }
}

/// Errors of a model on a set of frames (labels missing in a frame are skipped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorMetrics {
    pub n_frames: usize,
    pub n_atoms: usize,
    /// Energy per atom, eV/atom.
    pub energy_ev_per_atom: Option<Stat>,
    /// Force components, eV/Å.
    pub forces_ev_per_a: Option<Stat>,
    /// Stress components (Voigt, 6 per frame), eV/Å³.
    pub stress_ev_per_a3: Option<Stat>,
    /// The same in GPa.
    pub stress_gpa: Option<Stat>,
    /// Largest per-atom γ seen (when the model has active sets).
    pub max_gamma: Option<f64>,
}

/// What [`fit`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub model: SnapModel,
    pub options: FitOptions,
    pub train: ErrorMetrics,
    pub test: ErrorMetrics,
    /// Indices (into the frames given) of the training and test frames, and of the frames
    /// without any usable label.
    pub train_frames: Vec<usize>,
    pub test_frames: Vec<usize>,
    pub skipped_frames: Vec<usize>,
    pub n_energy_rows: usize,
    pub n_force_rows: usize,
    pub n_stress_rows: usize,
    /// Total number of coefficients and how many the data (with α) determined.
    pub n_coefficients: usize,
    pub rank: usize,
    /// Condition estimate of the equilibrated, regularised problem.
    pub condition_estimate: f64,
    /// Residual sum of squares of the weighted, unregularised problem at the optimum of
    /// the weighted least squares without ridge (a lower bound of the training loss).
    pub weighted_rss_lower_bound: f64,
    pub warnings: Vec<String>,
}

/// Whether a structure is held out for testing: a hash of its content (the same frame is
/// always on the same side; duplicates go together), compared with `test_fraction`.
pub fn is_test_structure(s: &Structure, test_fraction: f64, salt: u64) -> bool {
    is_test_hash(&s.content_hash(), test_fraction, salt)
}

/// [`is_test_structure`] from the structure's content hash (`Structure::content_hash`,
/// as the job database stores it), without the atoms.
pub fn is_test_hash(h: &str, test_fraction: f64, salt: u64) -> bool {
    if test_fraction <= 0.0 {
        return false;
    }
    let mut z = u64::from_str_radix(h.get(..16).unwrap_or(h), 16).unwrap_or(0) ^ salt.wrapping_mul(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    u < test_fraction
}

fn energy_label(f: &Frame, free: bool) -> Option<f64> {
    if free {
        f.free_energy_ev.or(f.energy_ev)
    } else {
        f.energy_ev.or(f.free_energy_ev)
    }
}

fn full_pbc(s: &Structure) -> bool {
    s.pbc.iter().all(|&p| p)
}

fn check_frame(k: usize, f: &Frame) -> Result<(), ModelError> {
    f.structure.validate().map_err(|e| ModelError::Fit(format!("frame {k}: {e}")))?;
    if let Some(fr) = &f.forces_ev_per_a {
        if fr.len() != f.len() {
            return Err(ModelError::Fit(format!("frame {k}: {} forces for {} atoms", fr.len(), f.len())));
        }
        if fr.iter().flatten().any(|x| !x.is_finite()) {
            return Err(ModelError::Fit(format!("frame {k}: non-finite forces")));
        }
    }
    if f.energy_ev.is_some_and(|e| !e.is_finite())
        || f.stress_ev_per_a3.is_some_and(|s| s.iter().any(|x| !x.is_finite()))
    {
        return Err(ModelError::Fit(format!("frame {k}: non-finite energy or stress")));
    }
    Ok(())
}

/// Runs `f` over `items` on `threads` threads, keeping the order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| sc.spawn(|| c.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker thread panicked")).collect()
    })
}

fn n_threads(t: usize) -> usize {
    if t > 0 {
        t
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
}

struct FrameRows {
    rows: Vec<f64>,
    rhs: Vec<f64>,
    has_e: bool,
    n_f: usize,
    has_s: bool,
    n_atoms: usize,
    volume: f64,
    /// (element block, [1, B_lin]) of every atom
    envs: Vec<(usize, Vec<f64>)>,
}

struct RowWeights {
    e: f64,
    f: f64,
    s: f64,
    free: bool,
}

fn frame_rows(snap: &Snap, f: &Frame, w: &RowWeights, want_envs: bool) -> Result<FrameRows, ModelError> {
    let p = snap.params();
    let ne = p.elements.len();
    let nc = p.n_columns();
    let ncoef = 1 + nc;
    let ntot = ne * ncoef;
    let s = &f.structure;
    let n_atoms = s.len() as f64;
    let energy = energy_label(f, w.free).filter(|_| w.e > 0.0);
    let forces = f.forces_ev_per_a.as_ref().filter(|_| w.f > 0.0);
    let stress = f.stress_ev_per_a3.filter(|_| w.s > 0.0 && full_pbc(s));
    let d =
        if forces.is_some() || stress.is_some() { snap.descriptors_with_gradients(s)? } else { snap.descriptors(s)? };
    let mut rows = Vec::new();
    let mut rhs = Vec::new();
    if let Some(e) = energy {
        let er = d.energy_row();
        let mut row = vec![0.0; ntot];
        for &k in &d.atom_element {
            row[k * ncoef] += w.e / n_atoms;
        }
        for b in 0..ne {
            for n in 0..nc {
                row[b * ncoef + 1 + n] = er[b * nc + n] * w.e / n_atoms;
            }
        }
        rows.extend_from_slice(&row);
        rhs.push(e / n_atoms * w.e);
    }
    if let Some(fl) = forces {
        let fr = d.force_rows();
        let per_atom = ne * 3 * nc;
        for (k, fk) in fl.iter().enumerate() {
            for c in 0..3 {
                let start = rows.len();
                rows.resize(start + ntot, 0.0);
                let row = &mut rows[start..];
                for b in 0..ne {
                    let src = &fr[k * per_atom + b * 3 * nc + c * nc..][..nc];
                    for n in 0..nc {
                        row[b * ncoef + 1 + n] = src[n] * w.f;
                    }
                }
                rhs.push(fk[c] * w.f);
            }
        }
    }
    if let Some(st) = stress {
        let vr = d.virial_row();
        let v = s.volume_a3().abs();
        for t in 0..6 {
            let start = rows.len();
            rows.resize(start + ntot, 0.0);
            let row = &mut rows[start..];
            for b in 0..ne {
                let src = &vr[b * 6 * nc + t * nc..][..nc];
                for n in 0..nc {
                    row[b * ncoef + 1 + n] = src[n] * w.s / n_atoms;
                }
            }
            rhs.push(-st[t] * v / n_atoms * w.s);
        }
    }
    let envs = if want_envs {
        let nl = d.n_linear;
        (0..d.n_atoms)
            .map(|i| {
                let mut x = Vec::with_capacity(nl + 1);
                x.push(1.0);
                x.extend_from_slice(&d.b_row(i)[..nl]);
                (d.atom_element[i], x)
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(FrameRows {
        rows,
        rhs,
        has_e: energy.is_some(),
        n_f: forces.map_or(0, |f| 3 * f.len()),
        has_s: stress.is_some(),
        n_atoms: s.len(),
        volume: s.volume_a3().abs(),
        envs,
    })
}

/// Fits a SNAP model to labelled frames (energy, forces, optional stress).
pub fn fit(frames: &[Frame], params: SnapParams, opts: &FitOptions) -> Result<FitReport, ModelError> {
    let snap = Snap::new(&params)?;
    for (w, name) in [
        (opts.energy_weight, "energy_weight"),
        (opts.force_weight, "force_weight"),
        (opts.stress_weight, "stress_weight"),
        (opts.alpha, "alpha"),
    ] {
        if !(w >= 0.0 && w.is_finite()) {
            return Err(ModelError::Fit(format!("{name} must be finite and non-negative, got {w}")));
        }
    }
    if !(0.0..1.0).contains(&opts.test_fraction) {
        return Err(ModelError::Fit(format!("test_fraction must be in [0, 1), got {}", opts.test_fraction)));
    }
    let ne = params.elements.len();
    let ncoef = 1 + params.n_columns();
    let ntot = ne * ncoef;
    let mut warnings = Vec::new();

    // split and row counts
    let (mut train, mut test, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_e, mut n_f, mut n_s) = (0usize, 0usize, 0usize);
    for (k, f) in frames.iter().enumerate() {
        check_frame(k, f)?;
        for (i, &e) in f.structure.species.iter().enumerate() {
            if params.element_index(e).is_none() {
                return Err(ModelError::Fit(format!("frame {k}, atom {i}: {e} is not one of the model's elements")));
            }
        }
        let has_e = energy_label(f, opts.use_free_energy).is_some() && opts.energy_weight > 0.0;
        let has_f = f.forces_ev_per_a.is_some() && opts.force_weight > 0.0;
        let has_s = f.stress_ev_per_a3.is_some() && opts.stress_weight > 0.0 && full_pbc(&f.structure);
        if f.is_empty() || !(has_e || has_f || has_s) {
            skipped.push(k);
            continue;
        }
        if is_test_structure(&f.structure, opts.test_fraction, opts.split_salt) {
            test.push(k);
            continue;
        }
        train.push(k);
        n_e += has_e as usize;
        n_f += if has_f { 3 * f.len() } else { 0 };
        n_s += if has_s { 6 } else { 0 };
    }
    if train.is_empty() {
        return Err(ModelError::Fit(format!(
            "no training frames: {} frames, {} held out for testing, {} without usable labels",
            frames.len(),
            test.len(),
            skipped.len()
        )));
    }
    if !skipped.is_empty() {
        warnings.push(format!("{} frames have no usable label and were skipped", skipped.len()));
    }
    let w = RowWeights {
        e: if n_e > 0 { (opts.energy_weight / n_e as f64).sqrt() } else { 0.0 },
        f: if n_f > 0 { (opts.force_weight / n_f as f64).sqrt() } else { 0.0 },
        s: if n_s > 0 { (opts.stress_weight / n_s as f64).sqrt() } else { 0.0 },
        free: opts.use_free_energy,
    };

    // rows -> streaming QR, environments -> candidates
    let threads = n_threads(opts.threads);
    let mut qr = StreamingQr::new(ntot);
    let mut cand: Vec<Vec<Vec<f64>>> = vec![Vec::new(); ne];
    let mut cand_origin: Vec<Vec<EnvOrigin>> = vec![Vec::new(); ne];
    // Keep the rows for the training metrics when they are small enough (saves evaluating
    // every training frame again); otherwise the metrics come from `evaluate`.
    let keep_rows = opts.energy_weight > 0.0
        && opts.force_weight > 0.0
        && opts.stress_weight > 0.0
        && (n_e + n_f + n_s).saturating_mul(ntot) <= MAX_KEPT_ROW_VALUES;
    let mut kept: Vec<FrameRows> = Vec::new();
    for batch in train.chunks(opts.batch_frames.max(1) * threads) {
        let results = par_map(batch, threads, |&k| frame_rows(&snap, &frames[k], &w, opts.active_set));
        for (&k, r) in batch.iter().zip(results) {
            let r = r?;
            if r.rows.iter().chain(&r.rhs).any(|x| !x.is_finite()) {
                return Err(ModelError::Fit(format!("frame {k}: non-finite descriptors")));
            }
            qr.add_rows(&r.rows, &r.rhs);
            let mut r = r;
            for (atom, (e, x)) in std::mem::take(&mut r.envs).into_iter().enumerate() {
                cand[e].push(x);
                cand_origin[e].push(EnvOrigin { frame: k, atom });
            }
            if keep_rows {
                kept.push(r);
            }
        }
    }

    // regularised, equilibrated, pivoted solve of [R; √α D] β = [Qᵀb; 0]
    let d = qr.column_norms();
    let colscale: Vec<f64> = d.iter().map(|&x| if x > 0.0 { 1.0 / x } else { 1.0 }).collect();
    let reg_rows = if opts.alpha > 0.0 { ntot } else { 0 };
    let mut a = ColMat::zeros(ntot + reg_rows, ntot);
    for j in 0..ntot {
        for i in 0..=j {
            a.set(i, j, qr.r[i * ntot + j] * colscale[j]);
        }
        if reg_rows > 0 && j % ncoef != 0 && d[j] > 0.0 {
            // √α d_j β_j, with β_j = colscale_j z_j = z_j / d_j
            a.set(ntot + j, j, opts.alpha.sqrt());
        }
    }
    let mut rhs = qr.qtb.clone();
    rhs.resize(ntot + reg_rows, 0.0);
    let sol = lstsq_pivoted(a, &rhs, opts.rank_rtol);
    let beta_flat: Vec<f64> = sol.x.iter().zip(&colscale).map(|(z, s)| z * s).collect();
    if beta_flat.iter().any(|x| !x.is_finite()) {
        return Err(ModelError::Fit("the solve produced non-finite coefficients".into()));
    }
    if sol.rank < ntot {
        let zero_cols = d.iter().filter(|&&x| x == 0.0).count();
        warnings.push(format!(
            "rank-deficient design: the data{} determine {} of {} coefficients ({} columns are all zero); \
             the others were set to zero",
            if reg_rows > 0 { " and alpha" } else { "" },
            sol.rank,
            ntot,
            zero_cols
        ));
    }
    let beta: Vec<Vec<f64>> = (0..ne).map(|e| beta_flat[e * ncoef..(e + 1) * ncoef].to_vec()).collect();
    let mut model = SnapModel { params: params.clone(), beta, active_sets: Vec::new() };

    if opts.active_set {
        let mut sets = Vec::with_capacity(ne);
        for e in 0..ne {
            let el = params.elements[e].element;
            let set = if cand[e].is_empty() {
                ActiveSet::empty(el, 1 + params.n_linear())
            } else {
                ActiveSet::select(el, &cand[e], &cand_origin[e], &opts.maxvol).map_err(ModelError::Fit)?
            };
            if let Some(n) = &set.note {
                warnings.push(n.clone());
            }
            sets.push(set);
        }
        model.active_sets = sets;
    }
    drop(cand);

    let eval_opts = EvalOptions { use_free_energy: opts.use_free_energy, threads: opts.threads };
    let train_m = if keep_rows {
        metrics_from_rows(&kept, &beta_flat, &w, &model, frames, &train)
    } else {
        let train_frames: Vec<Frame> = train.iter().map(|&k| frames[k].clone()).collect();
        evaluate_errors_with(&model, &train_frames, &eval_opts)?
    };
    drop(kept);
    let test_frames: Vec<Frame> = test.iter().map(|&k| frames[k].clone()).collect();
    let test_m = evaluate_errors_with(&model, &test_frames, &eval_opts)?;
    Ok(FitReport {
        model,
        options: opts.clone(),
        train: train_m,
        test: test_m,
        train_frames: train,
        test_frames: test,
        skipped_frames: skipped,
        n_energy_rows: n_e,
        n_force_rows: n_f,
        n_stress_rows: n_s,
        n_coefficients: ntot,
        rank: sol.rank,
        condition_estimate: sol.condition_estimate,
        weighted_rss_lower_bound: qr.rss,
        warnings,
    })
}

/// Largest number of design-matrix values kept in memory for the training metrics.
const MAX_KEPT_ROW_VALUES: usize = 32 << 20;

/// Training metrics from the kept (weighted) rows: prediction = row · β.
fn metrics_from_rows(
    kept: &[FrameRows],
    beta: &[f64],
    w: &RowWeights,
    model: &SnapModel,
    frames: &[Frame],
    train: &[usize],
) -> ErrorMetrics {
    let n = beta.len();
    let (mut ae, mut af, mut as_) = (Acc::default(), Acc::default(), Acc::default());
    for r in kept {
        let mut row = 0;
        let resid = |row: &mut usize| {
            let p: f64 = r.rows[*row * n..(*row + 1) * n].iter().zip(beta).map(|(a, b)| a * b).sum();
            let d = p - r.rhs[*row];
            *row += 1;
            d
        };
        if r.has_e {
            ae.add(resid(&mut row) / w.e);
        }
        for _ in 0..r.n_f {
            af.add(resid(&mut row) / w.f);
        }
        if r.has_s {
            for _ in 0..6 {
                // Δ(W/N) -> Δσ = -Δ(W/N) N / V
                as_.add(-resid(&mut row) / w.s * r.n_atoms as f64 / r.volume);
            }
        }
    }
    ErrorMetrics {
        n_frames: train.len(),
        n_atoms: train.iter().map(|&k| frames[k].len()).sum(),
        energy_ev_per_atom: ae.stat(1.0),
        forces_ev_per_a: af.stat(1.0),
        stress_ev_per_a3: as_.stat(1.0),
        stress_gpa: as_.stat(EV_PER_A3_IN_GPA),
        max_gamma: (!model.active_sets.is_empty())
            .then(|| model.active_sets.iter().map(|a| a.max_training_gamma).fold(0.0, f64::max)),
    }
}

/// Options of [`evaluate_errors_with`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    pub use_free_energy: bool,
    /// 0: all available cores.
    pub threads: usize,
}

/// Errors of `model` on `frames` (energy per atom, force components, stress), all cores.
pub fn evaluate_errors(model: &SnapModel, frames: &[Frame]) -> Result<ErrorMetrics, ModelError> {
    evaluate_errors_with(model, frames, &EvalOptions::default())
}

pub fn evaluate_errors_with(
    model: &SnapModel,
    frames: &[Frame],
    opts: &EvalOptions,
) -> Result<ErrorMetrics, ModelError> {
    let ev = model.evaluator()?;
    let per_frame = par_map(frames, n_threads(opts.threads), |f| -> Result<(Acc, Acc, Acc, Option<f64>), ModelError> {
        let r = ev.evaluate(&f.structure)?;
        let (mut ae, mut af, mut as_) = (Acc::default(), Acc::default(), Acc::default());
        let n = f.len().max(1) as f64;
        if let Some(e) = energy_label(f, opts.use_free_energy) {
            ae.add((r.energy_ev - e) / n);
        }
        if let Some(fr) = &f.forces_ev_per_a {
            for (a, b) in r.forces_ev_per_a.iter().zip(fr) {
                for c in 0..3 {
                    af.add(a[c] - b[c]);
                }
            }
        }
        if let (Some(sp), Some(sr)) = (r.stress_ev_per_a3, f.stress_ev_per_a3) {
            for t in 0..6 {
                as_.add(sp[t] - sr[t]);
            }
        }
        Ok((ae, af, as_, r.max_gamma()))
    });
    let (mut ae, mut af, mut as_) = (Acc::default(), Acc::default(), Acc::default());
    let mut gmax: Option<f64> = None;
    for r in per_frame {
        let (a, b, c, g) = r?;
        ae.merge(&a);
        af.merge(&b);
        as_.merge(&c);
        if let Some(g) = g {
            gmax = Some(gmax.map_or(g, |x: f64| x.max(g)));
        }
    }
    Ok(ErrorMetrics {
        n_frames: frames.len(),
        n_atoms: frames.iter().map(|f| f.len()).sum(),
        energy_ev_per_atom: ae.stat(1.0),
        forces_ev_per_a: af.stat(1.0),
        stress_ev_per_a3: as_.stat(1.0),
        stress_gpa: as_.stat(EV_PER_A3_IN_GPA),
        max_gamma: gmax,
    })
}
