//! Diffusion: unwrapped positions from wrapped frames, the mean squared displacement per
//! species over every time origin, D from its linear regime with a block-average error,
//! and the Arrhenius fit over temperatures. Pure computation; [`diffusion_workflow`]
//! runs the molecular dynamics (NPT, NVT, production) through a [`Watched`] force field.
//!
//! * Unwrapping ([`unwrap_frames`]): the displacement between consecutive frames is
//!   taken in fractional coordinates of each frame's cell and brought into `[-1/2, 1/2)`
//!   per component, so any triclinic (and changing) cell works as long as no atom moves
//!   more than half a lattice-plane spacing between two frames.
//! * MSD over all time origins ([`msd`]): for a series `r_k` of `N` samples,
//!   `Σ_k |r_{k+m} - r_k|² = Σ_k (r_{k+m}² + r_k²) - 2 Σ_k r_k·r_{k+m}`; the first sum is a
//!   running sum, the second an autocorrelation by FFT (zero-padded to avoid wrap-around),
//!   so the cost is `O(N log N)` per atom instead of `O(N²)`. The centre-of-mass drift
//!   of the whole system is removed first.
//! * D ([`fit_diffusion`]): `MSD = 6 D t + c`, a least-squares line over lags from
//!   `start` to `end` (fractions) of the length of one of `blocks` consecutive blocks of
//!   the trajectory: the ballistic start is skipped, and long lags, whose few
//!   independent origins make them noisy, are left out. D is fitted to the whole
//!   trajectory's MSD (every origin); its standard error is the standard error of the
//!   mean of the blocks' D over the same lags.
//! * Arrhenius ([`fit_arrhenius`]): `ln D = ln D0 - Ea / (k_B T)`, weighted by
//!   `(D / σ_D)²`; the covariance `(XᵀWX)⁻¹` is scaled by the reduced χ² when that is
//!   above 1 (so the errors are never smaller than the scatter of the points says).

use crate::guard::Watched;
use autopipe_atoms::structure::{inverse3, vec_mat};
use autopipe_atoms::{Element, Structure};
use autopipe_md::units::{A2_PER_FS_IN_CM2_PER_S, BOLTZMANN_EV_PER_K};
use autopipe_md::{maxwell_boltzmann, run_md, Ensemble, ForceField, MdSettings, MdState, MsdAccumulator, Observer};
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiffusionError {
    #[error("frame {frame}: {message}")]
    Frame { frame: usize, message: String },
    #[error("{0}")]
    Input(String),
    #[error("MD at {temperature_k} K: {message}")]
    Md { temperature_k: f64, message: String },
}

/// Unwrapped positions, frame-major: `frames[t][atom]`, Å.
pub type Positions = Vec<Vec<[f64; 3]>>;

/// Continuous (unwrapped) positions from frames whose atoms were wrapped into the cell.
/// The first frame's positions are kept as they are.
pub fn unwrap_frames(frames: &[Structure]) -> Result<Positions, DiffusionError> {
    let Some(first) = frames.first() else { return Err(DiffusionError::Input("no frames".into())) };
    let n = first.len();
    let mut out: Positions = Vec::with_capacity(frames.len());
    out.push(first.positions_a.clone());
    let fractional = |s: &Structure, t: usize| -> Result<Vec<[f64; 3]>, DiffusionError> {
        let inv = inverse3(&s.cell_a).ok_or_else(|| DiffusionError::Frame {
            frame: t + 1,
            message: "the cell is singular (a periodic trajectory needs three cell vectors)".into(),
        })?;
        Ok(s.positions_a.iter().map(|x| vec_mat(x, &inv)).collect())
    };
    let mut previous = fractional(first, 0)?;
    for (t, s) in frames.iter().enumerate().skip(1) {
        if s.len() != n || s.species != first.species {
            return Err(DiffusionError::Frame {
                frame: t + 1,
                message: format!("the atoms differ from the first frame's ({} atoms, {})", n, first.formula()),
            });
        }
        let now = fractional(s, t)?;
        let last = out.last().expect("one frame at least");
        let mut next = Vec::with_capacity(n);
        for i in 0..n {
            let mut d = [0.0; 3];
            for k in 0..3 {
                let x = now[i][k] - previous[i][k];
                d[k] = x - x.round();
            }
            let dx = vec_mat(&d, &s.cell_a);
            next.push([last[i][0] + dx[0], last[i][1] + dx[1], last[i][2] + dx[2]]);
        }
        out.push(next);
        previous = now;
    }
    Ok(out)
}

/// The MSD of each species at lags `0..N` (in frames), Å², averaged over every time
/// origin and every atom of the species, after removing the centre-of-mass drift.
#[derive(Clone, Debug, PartialEq)]
pub struct MsdCurves {
    pub species: Vec<Element>,
    /// `msd_a2[s][m]`: species `s`, lag `m` frames.
    pub msd_a2: Vec<Vec<f64>>,
    pub atoms: Vec<usize>,
}

/// Species in order of first appearance.
fn species_order(species: &[Element]) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    for e in species {
        if !out.contains(e) {
            out.push(*e);
        }
    }
    out
}

/// MSD per species over all time origins, by FFT (see the module notes).
pub fn msd(positions: &[Vec<[f64; 3]>], species: &[Element]) -> MsdCurves {
    use realfft::RealFftPlanner;
    let n_frames = positions.len();
    let n_atoms = species.len();
    let order = species_order(species);
    let mut sums = vec![vec![0.0; n_frames]; order.len()];
    let mut counts = vec![0usize; order.len()];
    if n_frames == 0 {
        return MsdCurves { species: order, msd_a2: sums, atoms: counts };
    }
    // Centre of mass of each frame.
    let masses: Vec<f64> = species.iter().map(|e| e.mass_amu()).collect();
    let total_mass: f64 = masses.iter().sum();
    let com: Vec<[f64; 3]> = positions
        .iter()
        .map(|frame| {
            let mut c = [0.0; 3];
            for (x, m) in frame.iter().zip(&masses) {
                for k in 0..3 {
                    c[k] += m * x[k];
                }
            }
            c.map(|v| v / total_mass)
        })
        .collect();
    let len = (2 * n_frames).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(len);
    let inverse = planner.plan_fft_inverse(len);
    let mut series = forward.make_input_vec();
    let mut spectrum = forward.make_output_vec();
    let mut scratch_f = forward.make_scratch_vec();
    let mut scratch_i = inverse.make_scratch_vec();
    let mut auto = inverse.make_output_vec();
    let mut d2 = vec![0.0; n_frames];
    for atom in 0..n_atoms {
        let s = order.iter().position(|e| *e == species[atom]).expect("listed");
        counts[s] += 1;
        for k in 0..3 {
            // The series less its mean (MSD does not change; the sums below cancel less).
            let mean = positions.iter().zip(&com).map(|(f, c)| f[atom][k] - c[k]).sum::<f64>() / n_frames as f64;
            series.iter_mut().for_each(|v| *v = 0.0);
            for (t, (f, c)) in positions.iter().zip(&com).enumerate() {
                series[t] = f[atom][k] - c[k] - mean;
                d2[t] = series[t] * series[t];
            }
            forward.process_with_scratch(&mut series, &mut spectrum, &mut scratch_f).expect("sizes from the plan");
            for z in spectrum.iter_mut() {
                *z = realfft::num_complex::Complex::new(z.norm_sqr(), 0.0);
            }
            inverse.process_with_scratch(&mut spectrum, &mut auto, &mut scratch_i).expect("sizes from the plan");
            // Running sum S1(m) = Σ_{k<N-m} (r_{k+m}² + r_k²).
            let mut q: f64 = 2.0 * d2.iter().sum::<f64>();
            let out = &mut sums[s];
            for m in 0..n_frames {
                if m > 0 {
                    q -= d2[m - 1] + d2[n_frames - m];
                }
                out[m] += q - 2.0 * auto[m] / len as f64;
            }
        }
    }
    for (s, out) in sums.iter_mut().enumerate() {
        for (m, v) in out.iter_mut().enumerate() {
            *v = (*v / ((n_frames - m) * counts[s].max(1)) as f64).max(0.0);
        }
    }
    MsdCurves { species: order, msd_a2: sums, atoms: counts }
}

/// Which part of the MSD curve the line is fitted to, as fractions of the span.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FitWindow {
    /// Lags shorter than this fraction of the span are the ballistic start: skipped.
    pub start: f64,
    /// Lags longer than this fraction have few origins: left out.
    pub end: f64,
    /// Consecutive blocks for the standard error.
    pub blocks: usize,
}

impl Default for FitWindow {
    fn default() -> Self {
        FitWindow { start: 0.1, end: 0.5, blocks: 5 }
    }
}

/// D of one species.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpeciesDiffusion {
    pub element: Element,
    pub atoms: usize,
    pub diffusion_cm2_per_s: f64,
    /// Standard error of the mean over the blocks (None with fewer than 2 blocks).
    pub stderr_cm2_per_s: Option<f64>,
    /// Coefficient of determination of the line through the full trajectory's MSD.
    pub r2: f64,
    /// The lags fitted, fs.
    pub fit_from_fs: f64,
    pub fit_to_fs: f64,
}

/// D = slope / 6 (Å²/fs), the r² and the window in lags, for one MSD curve; the window
/// is taken as fractions of `span` frames.
fn line_fit(msd_a2: &[f64], span: usize, dt_fs: f64, w: &FitWindow) -> Option<(f64, f64, usize, usize)> {
    let n = msd_a2.len().min(span);
    if n < 4 {
        return None;
    }
    let span = (n - 1) as f64;
    let from = ((w.start * span).round() as usize).max(1);
    let to = ((w.end * span).round() as usize).min(n - 1);
    if to < from + 2 {
        return None;
    }
    let pts: Vec<(f64, f64)> = (from..=to).map(|m| (m as f64 * dt_fs, msd_a2[m])).collect();
    let (slope, _, r2) = autopipe_md::observers::fit_line(&pts)?;
    Some((slope / 6.0, r2, from, to))
}

/// D per species from unwrapped positions sampled every `dt_fs`.
pub fn fit_diffusion(
    positions: &[Vec<[f64; 3]>],
    species: &[Element],
    dt_fs: f64,
    window: &FitWindow,
) -> Result<Vec<SpeciesDiffusion>, DiffusionError> {
    if !(dt_fs.is_finite() && dt_fs > 0.0) {
        return Err(DiffusionError::Input(format!("the frame interval must be > 0 fs, got {dt_fs}")));
    }
    let ordered = (0.0..1.0).contains(&window.start) && window.start < window.end && window.end <= 1.0;
    if !ordered {
        return Err(DiffusionError::Input(format!(
            "the fit window {} .. {} is not inside 0 .. 1 in increasing order",
            window.start, window.end
        )));
    }
    let min_frames = 20 * window.blocks.max(1);
    if positions.len() < min_frames {
        return Err(DiffusionError::Input(format!(
            "{} frames are too few: the fit over {} blocks needs at least {min_frames}",
            positions.len(),
            window.blocks.max(1)
        )));
    }
    let whole = msd(positions, species);
    let block_len = positions.len() / window.blocks.max(1);
    let blocks: Vec<MsdCurves> = if window.blocks >= 2 {
        (0..window.blocks).map(|b| msd(&positions[b * block_len..(b + 1) * block_len], species)).collect()
    } else {
        vec![]
    };
    let mut out = Vec::new();
    for (s, &element) in whole.species.iter().enumerate() {
        // The same lags for the whole trajectory and for each block: the blocks' scatter
        // is then the error of the whole's estimate (times sqrt(blocks)).
        let (d, r2, from, to) = line_fit(&whole.msd_a2[s], block_len, dt_fs, window)
            .ok_or_else(|| DiffusionError::Input("too few frames in the fit window".into()))?;
        let per_block: Vec<f64> =
            blocks.iter().filter_map(|b| line_fit(&b.msd_a2[s], block_len, dt_fs, window).map(|f| f.0)).collect();
        let stderr = (per_block.len() >= 2).then(|| {
            let k = per_block.len() as f64;
            let mean = per_block.iter().sum::<f64>() / k;
            let var = per_block.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
            (var / k).sqrt() * A2_PER_FS_IN_CM2_PER_S
        });
        out.push(SpeciesDiffusion {
            element,
            atoms: whole.atoms[s],
            diffusion_cm2_per_s: d * A2_PER_FS_IN_CM2_PER_S,
            stderr_cm2_per_s: stderr,
            r2,
            fit_from_fs: from as f64 * dt_fs,
            fit_to_fs: to as f64 * dt_fs,
        });
    }
    Ok(out)
}

/// `D = D0 exp(-Ea / k_B T)` fitted to D(T).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arrhenius {
    pub d0_cm2_per_s: f64,
    pub d0_stderr_cm2_per_s: f64,
    pub ea_ev: f64,
    pub ea_stderr_ev: f64,
    /// Temperatures used.
    pub points: usize,
}

/// Weighted fit of `ln D` against `1/(k_B T)`: points are (T K, D cm²/s, σ_D cm²/s or
/// None for equal weights). Needs two temperatures and D > 0 at each.
pub fn fit_arrhenius(points: &[(f64, f64, Option<f64>)]) -> Result<Arrhenius, DiffusionError> {
    let mut temps: Vec<f64> = points.iter().map(|p| p.0).collect();
    temps.sort_by(f64::total_cmp);
    temps.dedup();
    if temps.len() < 2 {
        return Err(DiffusionError::Input("the Arrhenius fit needs two temperatures or more".into()));
    }
    let mut rows = Vec::new();
    for &(t, d, s) in points {
        if !(t.is_finite() && t > 0.0) {
            return Err(DiffusionError::Input(format!("temperature {t} K is not > 0")));
        }
        if !(d.is_finite() && d > 0.0) {
            return Err(DiffusionError::Input(format!(
                "D = {d} cm²/s at {t} K: no diffusion to fit an activation energy to (a solid without defects?)"
            )));
        }
        let sigma_ln = s.filter(|s| s.is_finite() && *s > 0.0).map(|s| s / d);
        rows.push((1.0 / (BOLTZMANN_EV_PER_K * t), d.ln(), sigma_ln));
    }
    // Equal weights for all when any point has no error.
    let equal = rows.iter().any(|r| r.2.is_none());
    let w: Vec<f64> = rows.iter().map(|r| if equal { 1.0 } else { 1.0 / r.2.unwrap().powi(2) }).collect();
    let (sw, swx, swy) = rows.iter().zip(&w).fold((0.0, 0.0, 0.0), |a, (r, w)| (a.0 + w, a.1 + w * r.0, a.2 + w * r.1));
    let (xm, ym) = (swx / sw, swy / sw);
    let sxx: f64 = rows.iter().zip(&w).map(|(r, w)| w * (r.0 - xm).powi(2)).sum();
    let sxy: f64 = rows.iter().zip(&w).map(|(r, w)| w * (r.0 - xm) * (r.1 - ym)).sum();
    let slope = sxy / sxx;
    let intercept = ym - slope * xm;
    // (XᵀWX)⁻¹ for the centred form.
    let mut var_slope = 1.0 / sxx;
    let mut var_intercept = 1.0 / sw + xm * xm / sxx;
    let dof = rows.len() as f64 - 2.0;
    if dof > 0.0 {
        let chi2: f64 = rows.iter().zip(&w).map(|(r, w)| w * (r.1 - intercept - slope * r.0).powi(2)).sum();
        let scale = if equal { chi2 / dof } else { (chi2 / dof).max(1.0) };
        var_slope *= scale;
        var_intercept *= scale;
    }
    let d0 = intercept.exp();
    Ok(Arrhenius {
        d0_cm2_per_s: d0,
        d0_stderr_cm2_per_s: d0 * var_intercept.sqrt(),
        ea_ev: -slope,
        ea_stderr_ev: var_slope.sqrt(),
        points: rows.len(),
    })
}

/// The molecular dynamics of [`diffusion_workflow`] at each temperature.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffusionMd {
    pub timestep_fs: f64,
    /// NPT at `pressure_gpa` (volume), then NVT at the mean volume of its second half,
    /// then NVT production sampled every `sample_every` steps.
    pub npt_steps: u64,
    pub nvt_steps: u64,
    pub production_steps: u64,
    pub sample_every: u64,
    pub pressure_gpa: f64,
    pub friction_per_fs: f64,
    pub seed: u64,
    pub window: FitWindow,
}

impl Default for DiffusionMd {
    fn default() -> Self {
        DiffusionMd {
            timestep_fs: 2.0,
            npt_steps: 2000,
            nvt_steps: 1000,
            production_steps: 10_000,
            sample_every: 10,
            pressure_gpa: 0.0,
            friction_per_fs: 0.01,
            seed: 1,
            window: FitWindow::default(),
        }
    }
}

/// The result at one temperature.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TemperatureDiffusion {
    pub temperature_k: f64,
    /// Mean volume of the NPT run's second half, used for NVT and production, Å³.
    pub volume_a3: f64,
    /// Mean temperature of the production run, K.
    pub mean_temperature_k: f64,
    pub species: Vec<SpeciesDiffusion>,
}

/// Per species: the Arrhenius fit over the temperatures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpeciesArrhenius {
    pub element: Element,
    #[serde(flatten)]
    pub fit: Arrhenius,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffusionReport {
    pub temperatures: Vec<TemperatureDiffusion>,
    /// Per species (None when fewer than two temperatures or no diffusion).
    pub arrhenius: Vec<SpeciesArrhenius>,
    /// Largest extrapolation grade met in all the MD (None: the force field has none).
    pub max_gamma: Option<f64>,
    /// Structures at or above gamma_select, kept by the guard.
    pub uncertain: usize,
}

/// Equilibrate (NPT, then NVT at the mean NPT volume) and run production MD at each
/// temperature from `start`, then fit D per species and the Arrhenius law. `progress`
/// hears one line per stage.
pub fn diffusion_workflow<F: ForceField>(
    ff: &mut Watched<F>,
    start: &Structure,
    temperatures_k: &[f64],
    md: &DiffusionMd,
    progress: &mut dyn FnMut(&str),
) -> Result<DiffusionReport, DiffusionError> {
    if temperatures_k.is_empty() {
        return Err(DiffusionError::Input("no temperatures".into()));
    }
    if md.sample_every == 0 || md.production_steps / md.sample_every < 20 * md.window.blocks.max(1) as u64 {
        return Err(DiffusionError::Input(format!(
            "production_steps / sample_every = {} samples: at least {} are needed",
            md.production_steps / md.sample_every.max(1),
            20 * md.window.blocks.max(1)
        )));
    }
    let mut temperatures = Vec::new();
    for (i, &t) in temperatures_k.iter().enumerate() {
        let md_err = |e: autopipe_md::MdError| DiffusionError::Md { temperature_k: t, message: e.to_string() };
        let seed = md.seed.wrapping_add(1000 * i as u64);
        let velocities = maxwell_boltzmann(start, t, &mut autopipe_build::rng_from_seed(seed));
        let mut state = MdState::new(start.clone(), velocities);
        // NPT: the volume at T; the mean over the second half.
        progress(&format!("{t} K: NPT, {} steps", md.npt_steps));
        let npt = Ensemble::Npt {
            temperature_k: t,
            friction_per_fs: md.friction_per_fs,
            pressure_gpa: md.pressure_gpa,
            barostat_time_fs: 500.0,
            compressibility_per_gpa: 0.01,
            isotropic: true,
        };
        let mut volumes = Vec::new();
        let half = md.npt_steps / 2;
        let mut vol = autopipe_md::FnObserver::new(10, |s: &MdState, _: &autopipe_md::Evaluation| {
            if s.step >= half {
                volumes.push(s.structure.volume_a3().abs());
            }
            autopipe_md::Control::Continue
        });
        let settings = MdSettings::new(md.timestep_fs, md.npt_steps, npt, seed);
        settings.validate().map_err(md_err)?;
        run_md(&mut state, &mut *ff, &settings, &mut [&mut vol as &mut dyn Observer]).map_err(md_err)?;
        let volume_a3 = if volumes.is_empty() {
            state.structure.volume_a3().abs()
        } else {
            volumes.iter().sum::<f64>() / volumes.len() as f64
        };
        let scale = (volume_a3 / state.structure.volume_a3().abs()).cbrt();
        state.structure.cell_a = state.structure.cell_a.map(|r| r.map(|x| x * scale));
        state.structure.positions_a = state.structure.positions_a.iter().map(|r| r.map(|x| x * scale)).collect();
        // NVT equilibration, then production.
        let nvt = Ensemble::Nvt { temperature_k: t, friction_per_fs: md.friction_per_fs };
        progress(&format!("{t} K: NVT at {volume_a3:.2} Å³, {} steps", md.nvt_steps));
        state.step = 0;
        state.time_fs = 0.0;
        let settings = MdSettings::new(md.timestep_fs, md.nvt_steps, nvt.clone(), seed + 1);
        run_md(&mut state, &mut *ff, &settings, &mut []).map_err(md_err)?;
        progress(&format!("{t} K: production, {} steps", md.production_steps));
        state.step = 0;
        state.time_fs = 0.0;
        let mut msd_obs = MsdAccumulator::new(md.sample_every).with_positions(true);
        let mut temps_seen = (0.0, 0usize);
        let mut thermo = autopipe_md::FnObserver::new(md.sample_every, |s: &MdState, _: &autopipe_md::Evaluation| {
            temps_seen.0 += s.temperature_k();
            temps_seen.1 += 1;
            autopipe_md::Control::Continue
        });
        let settings = MdSettings::new(md.timestep_fs, md.production_steps, nvt, seed + 2);
        run_md(&mut state, &mut *ff, &settings, &mut [&mut msd_obs as &mut dyn Observer, &mut thermo])
            .map_err(md_err)?;
        let dt_fs = md.timestep_fs * md.sample_every as f64;
        let species = fit_diffusion(msd_obs.positions(), &start.species, dt_fs, &md.window)?;
        temperatures.push(TemperatureDiffusion {
            temperature_k: t,
            volume_a3,
            mean_temperature_k: temps_seen.0 / temps_seen.1.max(1) as f64,
            species,
        });
    }
    let mut arrhenius = Vec::new();
    if temperatures.len() >= 2 {
        for (s, element) in temperatures[0].species.iter().map(|x| x.element).enumerate() {
            let points: Vec<(f64, f64, Option<f64>)> = temperatures
                .iter()
                .map(|t| (t.temperature_k, t.species[s].diffusion_cm2_per_s, t.species[s].stderr_cm2_per_s))
                .collect();
            if let Ok(fit) = fit_arrhenius(&points) {
                arrhenius.push(SpeciesArrhenius { element, fit });
            }
        }
    }
    Ok(DiffusionReport { temperatures, arrhenius, max_gamma: ff.max_gamma(), uncertain: ff.uncertain().len() })
}
