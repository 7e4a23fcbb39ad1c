//! Fitting a SNAP model: weighted, ridge-regularised linear least squares on energies,
//! forces and stresses, solved by Householder QR (never by the normal equations); a
//! deterministic train/test split; error metrics, overall and per group; the active set
//! for γ.
//!
//! Weights have FitSNAP's meaning: a weight multiplies its rows. Every training frame
//! gives one energy row (energy per atom, eV/atom), `3N` force rows (eV/Å) and, when it
//! has a stress and is periodic in all directions, 6 stress rows (the stress in bar, as
//! FitSNAP's virial rows: LAMMPS metal units), and the loss is
//!
//! ```text
//! L(β) = Σ_frames [ w_E² (ΔE/N)²  +  w_F² Σ ΔF_kc²  +  w_S² Σ_t Δσ_t(bar)² ]  +  α Σ_k d_k² β_k²
//! ```
//!
//! where `w_E`, `w_F`, `w_S` are the weights of the frame's group (the extended XYZ
//! `config_type` of the frame, [`frame_group`]) from [`FitOptions::groups`], or the global
//! ones for a group not named; so a FitSNAP `[GROUPS]` table (eweight, fweight, vweight)
//! carries over unchanged. `d_k` is the norm of column k of the weighted design matrix
//! (so `α` is relative, independent of the scale of each descriptor; the constant terms
//! are not penalised).
//!
//! With a reference potential ([`FitOptions::reference`], ZBL), its energy, forces and
//! stress are subtracted from the labels before the fit; the model carries it and adds it
//! back in every evaluation. With per-element reference energies
//! ([`FitOptions::reference_energies_ev`]) the constant term of those elements is fixed
//! to the given isolated-atom energy instead of fitted.
//!
//! The design matrix is never stored: frames are turned into rows (in parallel) and
//! folded into the triangular factor of a streaming QR. The final solve is a
//! column-equilibrated, column-pivoted QR of `[R; √α D]`, which reports the numerical
//! rank: coefficients the data cannot determine (and α does not pin) are set to zero and
//! a warning says so.

use crate::active_set::{ActiveSet, EnvOrigin, MaxVolOptions};
use crate::linalg::{lstsq_pivoted, ColMat, StreamingQr};
use crate::model::{ModelError, ModelEval, SnapModel};
use crate::snap::{Snap, SnapParams};
use crate::zbl::ZblReference;
use autopipe_atoms::units::EV_PER_A3_IN_GPA;
use autopipe_atoms::{Frame, InfoValue, Structure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Weights of one group of frames (FitSNAP's `[GROUPS]` row: eweight, fweight, vweight);
/// a key left out takes the global value of [`FitOptions`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupWeights {
    /// Multiplies the energy-per-atom row ((eV/atom)⁻¹).
    pub energy_weight: Option<f64>,
    /// Multiplies each force-component row ((eV/Å)⁻¹).
    pub force_weight: Option<f64>,
    /// Multiplies each stress row (bar⁻¹, FitSNAP's vweight).
    pub stress_weight: Option<f64>,
    /// Share of the group's frames held out for testing.
    pub test_fraction: Option<f64>,
}

/// The group of frames without an extended XYZ `config_type`.
pub const DEFAULT_GROUP: &str = "default";

/// The group of a frame: its extended XYZ `config_type` info key (the convention of GAP,
/// MACE, ACE and FitSNAP data sets), or [`DEFAULT_GROUP`].
pub fn frame_group(f: &Frame) -> &str {
    match f.info.get("config_type") {
        Some(InfoValue::Str(s)) if !s.is_empty() => s,
        _ => DEFAULT_GROUP,
    }
}

/// Options of [`fit`]. The weights multiply rows (FitSNAP's meaning, see the module
/// documentation). The defaults suit metals: on 32-atom cells they weigh the mean squared
/// energy per atom 1000 times the mean squared force component (3 meV/atom in energy costs
/// as much as 0.1 eV/Å in forces) and 0.7 GPa of stress costs as much as 0.1 eV/Å.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitOptions {
    /// Multiplies the energy-per-atom row of every frame of a group not named in `groups`
    /// ((eV/atom)⁻¹).
    pub energy_weight: f64,
    /// Multiplies every force-component row ((eV/Å)⁻¹).
    pub force_weight: f64,
    /// Multiplies every stress row (bar⁻¹); only frames with a stress label and periodic
    /// in all directions.
    pub stress_weight: f64,
    /// Per-group weights and held-out shares, by group name ([`frame_group`]).
    pub groups: BTreeMap<String, GroupWeights>,
    /// Reference potential subtracted from the labels before the fit and carried by the
    /// model (None: bare SNAP). Configured in `[potential.reference]`, not in `[fit]`.
    #[serde(skip)]
    pub reference: Option<ZblReference>,
    /// Isolated-atom energies (eV) by element symbol: the constant term of these elements
    /// is fixed to them instead of fitted (needs `bzeroflag`, where the constant term is
    /// the energy of the isolated atom). Configured in `[potential.reference]`.
    #[serde(skip)]
    pub reference_energies_ev: BTreeMap<String, f64>,
    /// Relative ridge parameter (see the module documentation). 0 = none. The default
    /// (1e-10) only pins directions the data leave (nearly) undetermined: on 300 noisy
    /// 32-atom Cu cells at 2J = 8 it changed no test error, where 1e-8 already biased the
    /// fit (stress test RMSE 0.016 -> 0.10 GPa) and 1e-6 ruined it.
    pub alpha: f64,
    /// Fraction of frames held out for testing (by a hash of the structure), for groups
    /// without their own.
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
    /// K-fold cross-validation of the loop's fits (0: none): when >= 2, the loop judges
    /// convergence on the cross-validated errors over all labels instead of the test
    /// split. Not used by [`fit`] itself.
    pub folds: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            energy_weight: 300.0,
            force_weight: 1.0,
            stress_weight: 6e-5,
            groups: BTreeMap::new(),
            reference: None,
            reference_energies_ev: BTreeMap::new(),
            alpha: 1e-10,
            test_fraction: 0.1,
            split_salt: 0,
            use_free_energy: false,
            active_set: true,
            maxvol: MaxVolOptions::default(),
            rank_rtol: 1e-12,
            threads: 0,
            batch_frames: 32,
            folds: 0,
        }
    }
}

/// LAMMPS metal units: eV/Å³ -> bar (`force->nktv2p`, the factor FitSNAP uses).
pub const EV_PER_A3_IN_BAR: f64 = 1.6021765e6;

impl FitOptions {
    /// The row weights and held-out share of a group.
    pub fn group_weights(&self, group: &str) -> (RowWeights, f64) {
        let g = self.groups.get(group);
        let pick = |v: Option<f64>, d: f64| v.unwrap_or(d);
        (
            RowWeights {
                e: pick(g.and_then(|g| g.energy_weight), self.energy_weight),
                f: pick(g.and_then(|g| g.force_weight), self.force_weight),
                s: pick(g.and_then(|g| g.stress_weight), self.stress_weight),
            },
            pick(g.and_then(|g| g.test_fraction), self.test_fraction),
        )
    }

    /// Every option checked (weights finite and >= 0, shares in 0 ..< 1, the reference).
    pub fn validate(&self) -> Result<(), String> {
        let mut ws = vec![
            ("energy_weight".to_string(), self.energy_weight),
            ("force_weight".to_string(), self.force_weight),
            ("stress_weight".to_string(), self.stress_weight),
            ("alpha".to_string(), self.alpha),
        ];
        for (name, g) in &self.groups {
            for (k, v) in [
                ("energy_weight", g.energy_weight),
                ("force_weight", g.force_weight),
                ("stress_weight", g.stress_weight),
            ] {
                if let Some(v) = v {
                    ws.push((format!("groups.{name}.{k}"), v));
                }
            }
            if let Some(t) = g.test_fraction {
                if !(0.0..1.0).contains(&t) {
                    return Err(format!("groups.{name}.test_fraction must be in [0, 1), got {t}"));
                }
            }
        }
        for (name, w) in ws {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(format!("{name} must be finite and non-negative, got {w}"));
            }
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(format!("test_fraction must be in [0, 1), got {}", self.test_fraction));
        }
        if let Some(r) = &self.reference {
            r.validate()?;
        }
        for (el, e) in &self.reference_energies_ev {
            if !e.is_finite() {
                return Err(format!("reference energy of {el} must be finite, got {e}"));
            }
        }
        Ok(())
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
    /// The same per group ([`frame_group`]).
    #[serde(default)]
    pub train_groups: BTreeMap<String, ErrorMetrics>,
    #[serde(default)]
    pub test_groups: BTreeMap<String, ErrorMetrics>,
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
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| sc.spawn(|| c.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker thread panicked")).collect()
    })
}

pub(crate) fn n_threads(t: usize) -> usize {
    if t > 0 {
        t
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
}

pub(crate) struct FrameRows {
    pub(crate) rows: Vec<f64>,
    pub(crate) rhs: Vec<f64>,
    pub(crate) w: RowWeights,
    pub(crate) has_e: bool,
    pub(crate) n_f: usize,
    pub(crate) has_s: bool,
    n_atoms: usize,
    /// (element block, [1, B_lin]) of every atom
    envs: Vec<(usize, Vec<f64>)>,
}

/// Row multipliers of one frame (energy per atom, force components, stress in bar).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowWeights {
    pub e: f64,
    pub f: f64,
    pub s: f64,
}

/// What the fit subtracts from a frame's labels: the reference potential and the fixed
/// constant terms.
pub(crate) struct Baseline<'a> {
    pub(crate) reference: Option<&'a ZblReference>,
    /// Per model element: the fixed constant term (isolated-atom energy), if any.
    pub(crate) fixed_constant: Vec<Option<f64>>,
    pub(crate) free: bool,
}

pub(crate) fn frame_rows(
    snap: &Snap,
    f: &Frame,
    w: RowWeights,
    base: &Baseline,
    want_envs: bool,
) -> Result<FrameRows, ModelError> {
    let p = snap.params();
    let ne = p.elements.len();
    let nc = p.n_columns();
    let ncoef = 1 + nc;
    let ntot = ne * ncoef;
    let s = &f.structure;
    let n_atoms = s.len() as f64;
    let energy = energy_label(f, base.free).filter(|_| w.e > 0.0);
    let forces = f.forces_ev_per_a.as_ref().filter(|_| w.f > 0.0);
    let stress = f.stress_ev_per_a3.filter(|_| w.s > 0.0 && full_pbc(s));
    let refe = base.reference.map(|r| r.evaluate(s));
    let d =
        if forces.is_some() || stress.is_some() { snap.descriptors_with_gradients(s)? } else { snap.descriptors(s)? };
    let mut rows = Vec::new();
    let mut rhs = Vec::new();
    if let Some(e) = energy {
        let er = d.energy_row();
        let mut row = vec![0.0; ntot];
        let mut target = e - refe.as_ref().map_or(0.0, |r| r.energy_ev);
        for &k in &d.atom_element {
            match base.fixed_constant[k] {
                Some(c) => target -= c,
                None => row[k * ncoef] += w.e / n_atoms,
            }
        }
        for b in 0..ne {
            for n in 0..nc {
                row[b * ncoef + 1 + n] = er[b * nc + n] * w.e / n_atoms;
            }
        }
        rows.extend_from_slice(&row);
        rhs.push(target / n_atoms * w.e);
    }
    let mut n_f = 0;
    if let Some(fl) = forces {
        let fr = d.force_rows();
        let per_atom = ne * 3 * nc;
        // per-atom force weights (the `force_weight` column; 0: the atom's rows are dropped)
        let atom_w = atom_force_weights(f);
        for (k, fk) in fl.iter().enumerate() {
            let wa = atom_w.as_ref().map_or(1.0, |a| a[k]);
            if wa == 0.0 {
                continue;
            }
            let wf = w.f * wa;
            n_f += 3;
            for c in 0..3 {
                let start = rows.len();
                rows.resize(start + ntot, 0.0);
                let row = &mut rows[start..];
                for b in 0..ne {
                    let src = &fr[k * per_atom + b * 3 * nc + c * nc..][..nc];
                    for n in 0..nc {
                        row[b * ncoef + 1 + n] = src[n] * wf;
                    }
                }
                let target = fk[c] - refe.as_ref().map_or(0.0, |r| r.forces_ev_per_a[k][c]);
                rhs.push(target * wf);
            }
        }
    }
    if let Some(st) = stress {
        let vr = d.virial_row();
        let v = s.volume_a3().abs();
        // σ = -W/V (eV/Å³), in bar
        let scale = -EV_PER_A3_IN_BAR / v;
        for t in 0..6 {
            let start = rows.len();
            rows.resize(start + ntot, 0.0);
            let row = &mut rows[start..];
            for b in 0..ne {
                let src = &vr[b * 6 * nc + t * nc..][..nc];
                for n in 0..nc {
                    row[b * ncoef + 1 + n] = src[n] * scale * w.s;
                }
            }
            let target = st[t] - refe.as_ref().map_or(0.0, |r| -r.virial_ev[t] / v);
            rhs.push(target * EV_PER_A3_IN_BAR * w.s);
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
    Ok(FrameRows { rows, rhs, w, has_e: energy.is_some(), n_f, has_s: stress.is_some(), n_atoms: s.len(), envs })
}

/// The per-atom force weights of a frame (extxyz column `force_weight`, one real per
/// atom, finite and >= 0; anything else is ignored): extracted cells trust only their
/// core atoms' forces.
fn atom_force_weights(f: &Frame) -> Option<Vec<f64>> {
    match f.arrays.get("force_weight") {
        Some(autopipe_atoms::frame::ArrayValue::Real { columns: 1, values })
            if values.len() == f.len() && values.iter().all(|w| w.is_finite() && *w >= 0.0) =>
        {
            Some(values.clone())
        }
        _ => None,
    }
}

/// Which frames a fit trains on and tests on, and its row counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    /// Frames without any usable label.
    pub skipped: Vec<usize>,
}

/// The labels of a frame the fit can use with its group's weights: (energy, forces, stress).
fn usable(f: &Frame, w: &RowWeights, free: bool) -> (bool, bool, bool) {
    (
        energy_label(f, free).is_some() && w.e > 0.0,
        f.forces_ev_per_a.is_some() && w.f > 0.0,
        f.stress_ev_per_a3.is_some() && w.s > 0.0 && full_pbc(&f.structure),
    )
}

/// The split of [`fit`]: per frame, the held-out share of its group decides by a hash of
/// the structure ([`is_test_structure`]); frames without a usable label are skipped.
pub fn split_frames(frames: &[Frame], opts: &FitOptions) -> Split {
    let mut sp = Split::default();
    for (k, f) in frames.iter().enumerate() {
        let (w, tf) = opts.group_weights(frame_group(f));
        let (e, fo, st) = usable(f, &w, opts.use_free_energy);
        if f.is_empty() || !(e || fo || st) {
            sp.skipped.push(k);
        } else if is_test_structure(&f.structure, tf, opts.split_salt) {
            sp.test.push(k);
        } else {
            sp.train.push(k);
        }
    }
    sp
}

/// Per model element: the constant term fixed by `opts.reference_energies_ev`, if any.
pub(crate) fn fixed_constants(params: &SnapParams, opts: &FitOptions) -> Result<Vec<Option<f64>>, ModelError> {
    let ne = params.elements.len();
    let mut fixed_constant = vec![None; ne];
    for (sym, &e) in &opts.reference_energies_ev {
        let Some(k) = params.elements.iter().position(|x| x.element.symbol() == sym) else {
            return Err(ModelError::Fit(format!(
                "reference energy given for {sym}, which is not one of the model's elements"
            )));
        };
        if !params.bzeroflag {
            return Err(ModelError::Fit(format!(
                "reference energy of {sym}: fixing the isolated-atom energy needs bzeroflag (without it the constant term is not the isolated atom's energy)"
            )));
        }
        fixed_constant[k] = Some(e);
    }
    Ok(fixed_constant)
}

/// Fits a SNAP model to labelled frames (energy, forces, optional stress), with the split
/// of [`split_frames`].
pub fn fit(frames: &[Frame], params: SnapParams, opts: &FitOptions) -> Result<FitReport, ModelError> {
    opts.validate().map_err(ModelError::Fit)?;
    for (k, f) in frames.iter().enumerate() {
        check_frame(k, f)?;
    }
    let sp = split_frames(frames, opts);
    fit_split(frames, params, opts, sp)
}

/// [`fit`] on a given split (`train` and `test` index `frames`; the test frames are only
/// evaluated). Used by cross-validation.
pub fn fit_split(frames: &[Frame], params: SnapParams, opts: &FitOptions, sp: Split) -> Result<FitReport, ModelError> {
    let snap = Snap::new(&params)?;
    opts.validate().map_err(ModelError::Fit)?;
    let ne = params.elements.len();
    let ncoef = 1 + params.n_columns();
    let ntot = ne * ncoef;
    let mut warnings = Vec::new();

    let fixed_constant = fixed_constants(&params, opts)?;
    let Split { train, test, skipped } = sp;
    let (mut n_e, mut n_f, mut n_s) = (0usize, 0usize, 0usize);
    for &k in train.iter().chain(&test) {
        let f = &frames[k];
        check_frame(k, f)?;
        for (i, &e) in f.structure.species.iter().enumerate() {
            if params.element_index(e).is_none() {
                return Err(ModelError::Fit(format!("frame {k}, atom {i}: {e} is not one of the model's elements")));
            }
        }
    }
    for &k in &train {
        let f = &frames[k];
        let (w, _) = opts.group_weights(frame_group(f));
        let (he, hf, hs) = usable(f, &w, opts.use_free_energy);
        n_e += he as usize;
        n_f +=
            if hf { 3 * atom_force_weights(f).map_or(f.len(), |w| w.iter().filter(|&&x| x > 0.0).count()) } else { 0 };
        n_s += if hs { 6 } else { 0 };
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
    let base = Baseline {
        reference: opts.reference.as_ref(),
        fixed_constant: fixed_constant.clone(),
        free: opts.use_free_energy,
    };

    // rows -> streaming QR, environments -> candidates
    let threads = n_threads(opts.threads);
    let mut qr = StreamingQr::new(ntot);
    let mut cand: Vec<Vec<Vec<f64>>> = vec![Vec::new(); ne];
    let mut cand_origin: Vec<Vec<EnvOrigin>> = vec![Vec::new(); ne];
    // Keep the rows for the training metrics when they are small enough and every label
    // has a row (saves evaluating every training frame again); otherwise the metrics
    // come from `evaluate`.
    let all_rows = train.iter().all(|&k| {
        let f = &frames[k];
        let (w, _) = opts.group_weights(frame_group(f));
        let (he, hf, hs) = usable(f, &w, opts.use_free_energy);
        he == energy_label(f, opts.use_free_energy).is_some()
            && hf == f.forces_ev_per_a.is_some()
            && hs == (f.stress_ev_per_a3.is_some() && full_pbc(&f.structure))
    });
    let keep_rows = all_rows && (n_e + n_f + n_s).saturating_mul(ntot) <= MAX_KEPT_ROW_VALUES;
    let mut kept: Vec<(usize, FrameRows)> = Vec::new();
    for batch in train.chunks(opts.batch_frames.max(1) * threads) {
        let results = par_map(batch, threads, |&k| {
            let (w, _) = opts.group_weights(frame_group(&frames[k]));
            frame_rows(&snap, &frames[k], w, &base, opts.active_set)
        });
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
                kept.push((k, r));
            }
        }
    }

    let (mut beta_flat, sol, d) = solve_regularised(&qr, ncoef, opts.alpha, opts.rank_rtol)?;
    let reg_rows = if opts.alpha > 0.0 { ntot } else { 0 };
    let n_fixed = fixed_constant.iter().filter(|c| c.is_some()).count();
    if sol.rank + n_fixed < ntot {
        let zero_cols = d.iter().filter(|&&x| x == 0.0).count() - n_fixed;
        warnings.push(format!(
            "rank-deficient design: the data{} determine {} of {} coefficients ({} columns are all zero); \
             the others were set to zero",
            if reg_rows > 0 { " and alpha" } else { "" },
            sol.rank,
            ntot - n_fixed,
            zero_cols
        ));
    }
    for (e, c) in fixed_constant.iter().enumerate() {
        if let Some(c) = c {
            beta_flat[e * ncoef] = *c;
        }
    }
    let beta: Vec<Vec<f64>> = (0..ne).map(|e| beta_flat[e * ncoef..(e + 1) * ncoef].to_vec()).collect();
    let mut model = SnapModel { params: params.clone(), beta, active_sets: Vec::new(), reference: opts.reference };

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
    let (train_m, train_groups) = if keep_rows {
        // the fixed constants sit in the targets, not the rows: β0 of those elements is 0 there
        let mut beta_rows = beta_flat.clone();
        for (e, c) in fixed_constant.iter().enumerate() {
            if c.is_some() {
                beta_rows[e * ncoef] = 0.0;
            }
        }
        metrics_from_rows(&kept, &beta_rows, &model, frames)
    } else {
        let train_frames: Vec<Frame> = train.iter().map(|&k| frames[k].clone()).collect();
        evaluate_errors_by_group(&model, &train_frames, &eval_opts)?
    };
    drop(kept);
    let test_frames: Vec<Frame> = test.iter().map(|&k| frames[k].clone()).collect();
    let (test_m, test_groups) = evaluate_errors_by_group(&model, &test_frames, &eval_opts)?;
    Ok(FitReport {
        model,
        options: opts.clone(),
        train: train_m,
        test: test_m,
        train_groups,
        test_groups,
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

/// The regularised, equilibrated, pivoted solve of `[R; √α D] β = [Qᵀb; 0]`: the
/// coefficients, the solution's rank and condition, and the column norms `D`.
pub(crate) fn solve_regularised(
    qr: &StreamingQr,
    ncoef: usize,
    alpha: f64,
    rank_rtol: f64,
) -> Result<(Vec<f64>, crate::linalg::LstsqSolution, Vec<f64>), ModelError> {
    let ntot = qr.n;
    let d = qr.column_norms();
    let colscale: Vec<f64> = d.iter().map(|&x| if x > 0.0 { 1.0 / x } else { 1.0 }).collect();
    let reg_rows = if alpha > 0.0 { ntot } else { 0 };
    let mut a = ColMat::zeros(ntot + reg_rows, ntot);
    for j in 0..ntot {
        for i in 0..=j {
            a.set(i, j, qr.r[i * ntot + j] * colscale[j]);
        }
        if reg_rows > 0 && j % ncoef != 0 && d[j] > 0.0 {
            // √α d_j β_j, with β_j = colscale_j z_j = z_j / d_j
            a.set(ntot + j, j, alpha.sqrt());
        }
    }
    let mut rhs = qr.qtb.clone();
    rhs.resize(ntot + reg_rows, 0.0);
    let sol = lstsq_pivoted(a, &rhs, rank_rtol);
    let beta: Vec<f64> = sol.x.iter().zip(&colscale).map(|(z, s)| z * s).collect();
    if beta.iter().any(|x| !x.is_finite()) {
        return Err(ModelError::Fit("the solve produced non-finite coefficients".into()));
    }
    Ok((beta, sol, d))
}

/// Largest number of design-matrix values kept in memory for the training metrics.
const MAX_KEPT_ROW_VALUES: usize = 32 << 20;

/// Error sums of a set of frames, to be merged and turned into [`ErrorMetrics`].
#[derive(Clone, Copy, Default)]
struct MetricsAcc {
    n_frames: usize,
    n_atoms: usize,
    e: Acc,
    f: Acc,
    s: Acc,
    gamma: Option<f64>,
}

impl MetricsAcc {
    fn merge(&mut self, o: &MetricsAcc) {
        self.n_frames += o.n_frames;
        self.n_atoms += o.n_atoms;
        self.e.merge(&o.e);
        self.f.merge(&o.f);
        self.s.merge(&o.s);
        if let Some(g) = o.gamma {
            self.gamma = Some(self.gamma.map_or(g, |x| x.max(g)));
        }
    }
    fn metrics(&self) -> ErrorMetrics {
        ErrorMetrics {
            n_frames: self.n_frames,
            n_atoms: self.n_atoms,
            energy_ev_per_atom: self.e.stat(1.0),
            forces_ev_per_a: self.f.stat(1.0),
            stress_ev_per_a3: self.s.stat(1.0),
            stress_gpa: self.s.stat(EV_PER_A3_IN_GPA),
            max_gamma: self.gamma,
        }
    }
}

/// Overall and per-group metrics of per-frame sums.
fn group_metrics<'a>(
    per_frame: impl IntoIterator<Item = (&'a str, MetricsAcc)>,
) -> (ErrorMetrics, BTreeMap<String, ErrorMetrics>) {
    let mut all = MetricsAcc::default();
    let mut groups: BTreeMap<String, MetricsAcc> = BTreeMap::new();
    for (g, a) in per_frame {
        all.merge(&a);
        groups.entry(g.to_string()).or_default().merge(&a);
    }
    (all.metrics(), groups.into_iter().map(|(g, a)| (g, a.metrics())).collect())
}

/// Training metrics from the kept (weighted) rows: prediction = row · β.
fn metrics_from_rows(
    kept: &[(usize, FrameRows)],
    beta: &[f64],
    model: &SnapModel,
    frames: &[Frame],
) -> (ErrorMetrics, BTreeMap<String, ErrorMetrics>) {
    let n = beta.len();
    let training_gamma = (!model.active_sets.is_empty())
        .then(|| model.active_sets.iter().map(|a| a.max_training_gamma).fold(0.0, f64::max));
    let per_frame = kept.iter().map(|(k, r)| {
        let mut acc = MetricsAcc { n_frames: 1, n_atoms: r.n_atoms, ..Default::default() };
        let mut row = 0;
        let resid = |row: &mut usize| {
            let p: f64 = r.rows[*row * n..(*row + 1) * n].iter().zip(beta).map(|(a, b)| a * b).sum();
            let d = p - r.rhs[*row];
            *row += 1;
            d
        };
        if r.has_e {
            acc.e.add(resid(&mut row) / r.w.e);
        }
        for _ in 0..r.n_f {
            acc.f.add(resid(&mut row) / r.w.f);
        }
        if r.has_s {
            for _ in 0..6 {
                acc.s.add(resid(&mut row) / r.w.s / EV_PER_A3_IN_BAR);
            }
        }
        (frame_group(&frames[*k]), acc)
    });
    let (mut all, mut groups) = group_metrics(per_frame.collect::<Vec<_>>());
    all.max_gamma = training_gamma;
    for g in groups.values_mut() {
        g.max_gamma = training_gamma;
    }
    (all, groups)
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
    Ok(evaluate_errors_by_group(model, frames, opts)?.0)
}

/// Errors of `model` on `frames`, overall and per group ([`frame_group`]).
pub fn evaluate_errors_by_group(
    model: &SnapModel,
    frames: &[Frame],
    opts: &EvalOptions,
) -> Result<(ErrorMetrics, BTreeMap<String, ErrorMetrics>), ModelError> {
    let ev = model.evaluator()?;
    let per_frame = par_map(frames, n_threads(opts.threads), |f| -> Result<MetricsAcc, ModelError> {
        Ok(frame_errors(f, &ev.evaluate(&f.structure)?, opts))
    });
    let mut accs = Vec::with_capacity(frames.len());
    for (f, a) in frames.iter().zip(per_frame) {
        accs.push((frame_group(f), a?));
    }
    Ok(group_metrics(accs))
}

/// Errors of predictions made elsewhere (another potential's evaluations, one per frame,
/// in order), overall and per group, with the same statistics as [`evaluate_errors_by_group`].
pub fn errors_of_evaluations(
    frames: &[Frame],
    evaluations: &[ModelEval],
    opts: &EvalOptions,
) -> (ErrorMetrics, BTreeMap<String, ErrorMetrics>) {
    group_metrics(frames.iter().zip(evaluations).map(|(f, r)| (frame_group(f), frame_errors(f, r, opts))))
}

fn frame_errors(f: &Frame, r: &ModelEval, opts: &EvalOptions) -> MetricsAcc {
    let mut acc = MetricsAcc { n_frames: 1, n_atoms: f.len(), gamma: r.max_gamma(), ..Default::default() };
    let n = f.len().max(1) as f64;
    if let Some(e) = energy_label(f, opts.use_free_energy) {
        acc.e.add((r.energy_ev - e) / n);
    }
    if let Some(fr) = &f.forces_ev_per_a {
        for (a, b) in r.forces_ev_per_a.iter().zip(fr) {
            for c in 0..3 {
                acc.f.add(a[c] - b[c]);
            }
        }
    }
    if let (Some(sp), Some(sr)) = (r.stress_ev_per_a3, f.stress_ev_per_a3) {
        for t in 0..6 {
            acc.s.add(sp[t] - sr[t]);
        }
    }
    acc
}
