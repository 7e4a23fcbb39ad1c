//! Integrators, thermostat and barostat, and the MD loop.
//!
//! * NVE: velocity Verlet.
//! * NVT: Langevin dynamics in the BAOAB splitting of Leimkuhler & Matthews
//!   (half kick, half drift, exact Ornstein-Uhlenbeck velocity update, half drift,
//!   force evaluation, half kick): one force evaluation per step, and configurational
//!   sampling that is exact for harmonic systems at any time step. (Not ASE's
//!   `Langevin`, which is a different second-order splitting with the same friction
//!   parameter.) With `fix_com` (the default) the centre-of-mass velocity is removed
//!   after each O step; since the noise is isotropic in mass-weighted coordinates,
//!   this is an orthogonal projection and the remaining 3N-3 degrees of freedom are
//!   sampled exactly at T — the same 3N-3 used to report temperatures.
//! * NPT: the same Langevin thermostat plus the stochastic cell rescaling barostat of
//!   Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020). With ε = ln V,
//!   `dε = -(β_T/τ_p)(P0 - P_int - kT/V) dt + sqrt(2 kT β_T / (V τ_p)) dW`,
//!   positions and the cell are scaled by `exp(dε/3)` and velocities by `exp(-dε/3)`.
//!   It is first order (no piston mass, no volume oscillations), so it relaxes solids
//!   quickly and still gives the correct volume fluctuations. `P_int` includes the
//!   kinetic term. The anisotropic variant here evolves the three Cartesian diagonal
//!   strains independently, `dε_α = -(β_T/(3τ_p))(P0 - P_αα - kT/V) dt +
//!   sqrt(2 kT β_T / (3 V τ_p)) dW_α`, which sums to the isotropic equation for ln V;
//!   shear stresses are not controlled (the cell shape changes only along x, y, z).
//!   The barostat acts at the start of each step, with the pressure of the current
//!   (consistent) positions, velocities and stress; the scaled positions then get
//!   fresh forces at the end of the step. Time discretisation: Euler-Maruyama.
//!
//! All randomness comes from a ChaCha8 generator seeded with `settings.seed`, with the
//! step number as the stream for that step's noise, so the same seed and the same
//! starting state give the same trajectory, and a run split into pieces (stopped and
//! continued from its state) is bit-for-bit the run done in one go.

use crate::forcefield::{Evaluation, ForceField};
use crate::observers::{Control, Observer};
use crate::stability::{close_pair_message, closest_pair_within, limits, StabilityGuard};
use crate::state::{masses_amu, remove_com_velocity, MdState};
use crate::units::{
    AMU_A2_PER_FS2_IN_EV, BOLTZMANN_EV_PER_K, EV_IN_AMU_A2_PER_FS2, EV_PER_A3_IN_GPA, GPA_IN_EV_PER_A3,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

fn default_friction() -> f64 {
    0.01
}
fn default_barostat_time() -> f64 {
    200.0
}
fn default_compressibility() -> f64 {
    // About 1/(100 GPa): the order of magnitude of metals and ceramics.
    0.01
}
fn default_true() -> bool {
    true
}
fn default_guard() -> Option<StabilityGuard> {
    Some(StabilityGuard::default())
}

/// Which ensemble to sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Ensemble {
    /// Velocity Verlet.
    Nve,
    /// BAOAB Langevin. `friction_per_fs` is γ (1/fs): velocities decorrelate in ~1/γ.
    Nvt {
        temperature_k: f64,
        #[serde(default = "default_friction")]
        friction_per_fs: f64,
    },
    /// BAOAB Langevin + stochastic cell rescaling.
    Npt {
        temperature_k: f64,
        #[serde(default = "default_friction")]
        friction_per_fs: f64,
        pressure_gpa: f64,
        /// τ_p: relaxation time of the volume when `compressibility_per_gpa` is the
        /// true isothermal compressibility.
        #[serde(default = "default_barostat_time")]
        barostat_time_fs: f64,
        /// β_T, an estimate of the isothermal compressibility (1/GPa). Only the
        /// relaxation speed depends on it, not the sampled distribution.
        #[serde(default = "default_compressibility")]
        compressibility_per_gpa: f64,
        /// One scaling for the whole cell (true) or one per Cartesian axis (false).
        #[serde(default = "default_true")]
        isotropic: bool,
    },
}

/// Settings of one MD run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MdSettings {
    pub timestep_fs: f64,
    /// Number of steps to integrate.
    pub steps: u64,
    pub ensemble: Ensemble,
    #[serde(default)]
    pub seed: u64,
    /// Langevin (NVT/NPT): remove the centre-of-mass velocity after each stochastic
    /// update, so the total momentum stays zero.
    #[serde(default = "default_true")]
    pub fix_com: bool,
    /// Call the observers on the starting state (before the first step) too.
    #[serde(default = "default_true")]
    pub observe_initial: bool,
    /// Stop with [`MdError::Unstable`] when the dynamics blow up (on by default;
    /// `None` turns the guard off).
    #[serde(default = "default_guard")]
    pub stability: Option<StabilityGuard>,
}

impl MdSettings {
    pub fn new(timestep_fs: f64, steps: u64, ensemble: Ensemble, seed: u64) -> MdSettings {
        MdSettings {
            timestep_fs,
            steps,
            ensemble,
            seed,
            fix_com: true,
            observe_initial: true,
            stability: default_guard(),
        }
    }

    /// Checks every setting against [`crate::stability::limits`]: time step `> 0` and
    /// `<= 20` fs, steps `<= 1e9`, temperature `0 ..= 20000` K, friction `0 ..= 10` /fs,
    /// pressure `-50 ..= 1000` GPa, barostat time `> 0` and `<= 1e6` fs, compressibility
    /// `> 0` and `<= 10` /GPa, and the stability guard's bounds. The message names the
    /// field (as in the struct) and states the limit.
    pub fn validate(&self) -> Result<(), MdError> {
        let bad = |m: String| Err(MdError::InvalidSettings(m));
        let dt = self.timestep_fs;
        if !(dt.is_finite() && dt > 0.0 && dt <= limits::MAX_TIMESTEP_FS) {
            return bad(format!("timestep_fs must be > 0 and <= {} fs, got {dt} fs", limits::MAX_TIMESTEP_FS));
        }
        if self.steps > limits::MAX_STEPS {
            return bad(format!("steps must be <= {}, got {}", limits::MAX_STEPS, self.steps));
        }
        if let Some(g) = &self.stability {
            g.validate().map_err(MdError::InvalidSettings)?;
        }
        match &self.ensemble {
            Ensemble::Nve => {}
            Ensemble::Nvt { temperature_k, friction_per_fs } => {
                check_thermostat(*temperature_k, *friction_per_fs)?;
            }
            Ensemble::Npt {
                temperature_k,
                friction_per_fs,
                pressure_gpa,
                barostat_time_fs,
                compressibility_per_gpa,
                ..
            } => {
                check_thermostat(*temperature_k, *friction_per_fs)?;
                let (lo, hi) = limits::PRESSURE_GPA;
                if !(pressure_gpa.is_finite() && (lo..=hi).contains(pressure_gpa)) {
                    return bad(format!("pressure_gpa must be in {lo} ..= {hi} GPa, got {pressure_gpa} GPa"));
                }
                let tau_max = limits::MAX_BAROSTAT_TIME_FS;
                if !(barostat_time_fs.is_finite() && *barostat_time_fs > 0.0 && *barostat_time_fs <= tau_max) {
                    return bad(format!("barostat_time_fs must be > 0 and <= {tau_max} fs, got {barostat_time_fs} fs"));
                }
                let beta_max = limits::MAX_COMPRESSIBILITY_PER_GPA;
                let beta = *compressibility_per_gpa;
                if !(beta.is_finite() && beta > 0.0 && beta <= beta_max) {
                    return bad(format!("compressibility_per_gpa must be > 0 and <= {beta_max} /GPa, got {beta} /GPa"));
                }
            }
        }
        Ok(())
    }
}

fn check_thermostat(t: f64, gamma: f64) -> Result<(), MdError> {
    let t_max = limits::MAX_TEMPERATURE_K;
    if !(t.is_finite() && (0.0..=t_max).contains(&t)) {
        return Err(MdError::InvalidSettings(format!("temperature_k must be in 0 ..= {t_max} K, got {t} K")));
    }
    let g_max = limits::MAX_FRICTION_PER_FS;
    if !(gamma.is_finite() && (0.0..=g_max).contains(&gamma)) {
        return Err(MdError::InvalidSettings(format!("friction_per_fs must be in 0 ..= {g_max} /fs, got {gamma} /fs")));
    }
    Ok(())
}

/// Why a run ended without error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StopReason {
    /// All requested steps were done.
    Completed,
    /// An observer asked to stop (e.g. the gamma watchdog), with its reason.
    Observer(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Completed => write!(f, "completed"),
            StopReason::Observer(r) => write!(f, "stopped by observer: {r}"),
        }
    }
}

/// The result of [`run_md`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MdOutcome {
    /// Steps integrated by this call.
    pub steps_done: u64,
    pub reason: StopReason,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MdError {
    #[error("invalid MD settings: {0}")]
    InvalidSettings(String),
    #[error("invalid MD state: {0}")]
    InvalidState(String),
    #[error("force field failed at step {step}: {message}")]
    ForceField { step: u64, message: String },
    #[error("non-finite {what} at step {step} (the dynamics blew up; reduce the time step?)")]
    NonFinite { step: u64, what: String },
    #[error("NPT needs a stress from the force field, which gave none")]
    MissingStress,
    #[error("barostat unstable at step {step}: ln V changed by {dlnv:.3} in one step (increase barostat_time_fs or decrease compressibility_per_gpa)")]
    BarostatUnstable { step: u64, dlnv: f64 },
    /// The [`StabilityGuard`] fired: the state after step `step` (counted like
    /// [`MdState::step`]) failed it and was not shown to the observers; every state they
    /// saw had a step below `step`.
    #[error("MD unstable at step {step}: {reason} (the dynamics blew up; reduce the time step?)")]
    Unstable { step: u64, reason: String },
}

impl MdError {
    /// The step at which the dynamics blew up ([`MdError::Unstable`],
    /// [`MdError::NonFinite`], [`MdError::BarostatUnstable`]); `None` for other errors.
    /// Frames the observers collected before this step passed the guard.
    pub fn unstable_step(&self) -> Option<u64> {
        match self {
            MdError::Unstable { step, .. }
            | MdError::NonFinite { step, .. }
            | MdError::BarostatUnstable { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// Runs `settings.steps` steps of MD from `state` (which is advanced in place),
/// calling every observer on the starting state (if `observe_initial`) and after every
/// step. Stops early when an observer returns [`Control::Stop`]. Observers' `finish`
/// is called at the end, also on error.
pub fn run_md(
    state: &mut MdState,
    ff: &mut dyn ForceField,
    settings: &MdSettings,
    observers: &mut [&mut dyn Observer],
) -> Result<MdOutcome, MdError> {
    let result = run_inner(state, ff, settings, observers);
    for o in observers.iter_mut() {
        o.finish();
    }
    result
}

fn run_inner(
    state: &mut MdState,
    ff: &mut dyn ForceField,
    settings: &MdSettings,
    observers: &mut [&mut dyn Observer],
) -> Result<MdOutcome, MdError> {
    settings.validate()?;
    let n = state.structure.len();
    if state.velocities_a_per_fs.len() != n {
        return Err(MdError::InvalidState(format!("{} atoms but {} velocities", n, state.velocities_a_per_fs.len())));
    }
    state.structure.validate().map_err(|e| MdError::InvalidState(e.to_string()))?;
    if let Ensemble::Npt { .. } = settings.ensemble {
        if state.structure.pbc != [true; 3] {
            return Err(MdError::InvalidSettings("NPT needs a cell periodic in all three directions".into()));
        }
    }
    let masses = masses_amu(&state.structure);
    let inv_m: Vec<f64> = masses.iter().map(|m| EV_IN_AMU_A2_PER_FS2 / m).collect();
    let base_rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let dt = settings.timestep_fs;

    let mut eval = evaluate(ff, state, state.step)?;
    if matches!(settings.ensemble, Ensemble::Npt { .. }) && eval.stress_ev_per_a3.is_none() {
        return Err(MdError::MissingStress);
    }
    let guard = settings.stability.as_ref().map(|g| Guard::new(g, settings, state, &eval));
    if let Some(g) = &guard {
        g.check(state, &eval, true)?;
    }
    if settings.observe_initial {
        if let Some(r) = notify(observers, state, &eval) {
            return Ok(MdOutcome { steps_done: 0, reason: StopReason::Observer(r) });
        }
    }

    for done in 0..settings.steps {
        let mut rng = base_rng.clone();
        rng.set_stream(state.step);
        match &settings.ensemble {
            Ensemble::Nve => {
                kick(state, &eval, &inv_m, 0.5 * dt);
                drift(state, dt);
                eval = evaluate(ff, state, state.step + 1)?;
                kick(state, &eval, &inv_m, 0.5 * dt);
            }
            Ensemble::Nvt { temperature_k, friction_per_fs } => {
                kick(state, &eval, &inv_m, 0.5 * dt);
                drift(state, 0.5 * dt);
                ornstein_uhlenbeck(state, &masses, *temperature_k, *friction_per_fs, dt, settings.fix_com, &mut rng);
                drift(state, 0.5 * dt);
                eval = evaluate(ff, state, state.step + 1)?;
                kick(state, &eval, &inv_m, 0.5 * dt);
            }
            Ensemble::Npt {
                temperature_k,
                friction_per_fs,
                pressure_gpa,
                barostat_time_fs,
                compressibility_per_gpa,
                isotropic,
            } => {
                let baro = Barostat {
                    temperature_k: *temperature_k,
                    pressure_ev_per_a3: pressure_gpa * GPA_IN_EV_PER_A3,
                    tau_fs: *barostat_time_fs,
                    beta_a3_per_ev: compressibility_per_gpa * EV_PER_A3_IN_GPA,
                    isotropic: *isotropic,
                };
                baro.apply(state, &eval, dt, &mut rng)?;
                kick(state, &eval, &inv_m, 0.5 * dt);
                drift(state, 0.5 * dt);
                ornstein_uhlenbeck(state, &masses, *temperature_k, *friction_per_fs, dt, settings.fix_com, &mut rng);
                drift(state, 0.5 * dt);
                eval = evaluate(ff, state, state.step + 1)?;
                if eval.stress_ev_per_a3.is_none() {
                    return Err(MdError::MissingStress);
                }
                kick(state, &eval, &inv_m, 0.5 * dt);
            }
        }
        state.step += 1;
        state.time_fs += dt;
        if let Some(i) = state.velocities_a_per_fs.iter().position(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(MdError::NonFinite { step: state.step, what: format!("velocity of atom {}", i + 1) });
        }
        if let Some(g) = &guard {
            g.check(state, &eval, (done + 1) % g.limits.distance_check_every == 0)?;
        }
        if let Some(r) = notify(observers, state, &eval) {
            return Ok(MdOutcome { steps_done: done + 1, reason: StopReason::Observer(r) });
        }
    }
    Ok(MdOutcome { steps_done: settings.steps, reason: StopReason::Completed })
}

/// The stability guard of one run, with its bounds resolved.
struct Guard<'a> {
    limits: &'a StabilityGuard,
    max_temperature_k: f64,
    start_energy_per_atom_ev: f64,
}

impl<'a> Guard<'a> {
    fn new(limits: &'a StabilityGuard, settings: &MdSettings, state: &MdState, eval: &Evaluation) -> Guard<'a> {
        let target_k = match &settings.ensemble {
            Ensemble::Nve => state.temperature_k(),
            Ensemble::Nvt { temperature_k, .. } | Ensemble::Npt { temperature_k, .. } => *temperature_k,
        };
        let n = state.structure.len().max(1) as f64;
        Guard {
            limits,
            max_temperature_k: limits.temperature_bound_k(target_k),
            start_energy_per_atom_ev: eval.energy_ev / n,
        }
    }

    fn check(&self, state: &MdState, eval: &Evaluation, distances: bool) -> Result<(), MdError> {
        let unstable = |reason: String| Err(MdError::Unstable { step: state.step, reason });
        let t = state.temperature_k();
        if t.is_nan() || t > self.max_temperature_k {
            return unstable(format!("temperature {t:.0} K exceeds {:.0} K", self.max_temperature_k));
        }
        let f_max = self.limits.max_force_ev_per_a;
        if let Some((i, f)) = eval
            .forces_ev_per_a
            .iter()
            .map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt())
            .enumerate()
            .find(|(_, f)| f.is_nan() || *f > f_max)
        {
            return unstable(format!("force on atom {} is {f:.1} eV/Å, above {f_max} eV/Å", i + 1));
        }
        let n = state.structure.len().max(1) as f64;
        let de = eval.energy_ev / n - self.start_energy_per_atom_ev;
        let de_max = self.limits.max_energy_change_ev_per_atom;
        if de.is_nan() || de.abs() > de_max {
            return unstable(format!(
                "potential energy per atom changed by {de:.2} eV/atom from the start, beyond ±{de_max} eV/atom"
            ));
        }
        let d_min = self.limits.min_distance_a;
        if distances && d_min > 0.0 {
            if let Some((i, j, d)) = closest_pair_within(&state.structure, d_min) {
                if d < d_min {
                    return unstable(close_pair_message(i, j, d, d_min));
                }
            }
        }
        Ok(())
    }
}

/// Calls every observer (all of them, even after one asked to stop); the first stop
/// reason, if any.
fn notify(observers: &mut [&mut dyn Observer], state: &MdState, eval: &Evaluation) -> Option<String> {
    let mut stop = None;
    for o in observers.iter_mut() {
        if let Control::Stop(r) = o.observe(state, eval) {
            stop.get_or_insert(r);
        }
    }
    stop
}

/// Evaluates the current structure, which is that of step `step`.
fn evaluate(ff: &mut dyn ForceField, state: &MdState, step: u64) -> Result<Evaluation, MdError> {
    let e = ff.evaluate(&state.structure).map_err(|message| MdError::ForceField { step, message })?;
    let n = state.structure.len();
    if e.forces_ev_per_a.len() != n {
        return Err(MdError::ForceField {
            step,
            message: format!("{} forces for {} atoms", e.forces_ev_per_a.len(), n),
        });
    }
    if !e.energy_ev.is_finite() {
        return Err(MdError::NonFinite { step, what: "energy".into() });
    }
    if let Some(i) = e.forces_ev_per_a.iter().position(|f| f.iter().any(|x| !x.is_finite())) {
        return Err(MdError::NonFinite { step, what: format!("force on atom {}", i + 1) });
    }
    if let Some(s) = &e.stress_ev_per_a3 {
        if s.iter().any(|x| !x.is_finite()) {
            return Err(MdError::NonFinite { step, what: "stress".into() });
        }
    }
    if let Some(g) = &e.gamma {
        if g.len() != n {
            return Err(MdError::ForceField { step, message: format!("{} gamma values for {} atoms", g.len(), n) });
        }
    }
    Ok(e)
}

/// v += h F/m.
fn kick(state: &mut MdState, eval: &Evaluation, inv_m: &[f64], h: f64) {
    for ((v, f), &im) in state.velocities_a_per_fs.iter_mut().zip(&eval.forces_ev_per_a).zip(inv_m) {
        let c = h * im;
        v[0] += c * f[0];
        v[1] += c * f[1];
        v[2] += c * f[2];
    }
}

/// x += h v (never wrapped).
fn drift(state: &mut MdState, h: f64) {
    for (x, v) in state.structure.positions_a.iter_mut().zip(&state.velocities_a_per_fs) {
        x[0] += h * v[0];
        x[1] += h * v[1];
        x[2] += h * v[2];
    }
}

/// Exact Ornstein-Uhlenbeck update over `dt`: v = c1 v + sqrt(1-c1²) sqrt(kT/m) ξ.
fn ornstein_uhlenbeck(
    state: &mut MdState,
    masses: &[f64],
    temperature_k: f64,
    gamma: f64,
    dt: f64,
    fix_com: bool,
    rng: &mut ChaCha8Rng,
) {
    let c1 = (-gamma * dt).exp();
    let c2 = (1.0 - c1 * c1).max(0.0).sqrt();
    let kt = BOLTZMANN_EV_PER_K * temperature_k / AMU_A2_PER_FS2_IN_EV;
    for (v, &m) in state.velocities_a_per_fs.iter_mut().zip(masses) {
        let s = c2 * (kt / m).sqrt();
        for x in v.iter_mut() {
            let xi: f64 = rng.sample(StandardNormal);
            *x = c1 * *x + s * xi;
        }
    }
    if fix_com && masses.len() > 1 {
        remove_com_velocity(masses, &mut state.velocities_a_per_fs);
    }
}

struct Barostat {
    temperature_k: f64,
    pressure_ev_per_a3: f64,
    tau_fs: f64,
    beta_a3_per_ev: f64,
    isotropic: bool,
}

impl Barostat {
    /// One Euler-Maruyama step of stochastic cell rescaling.
    fn apply(&self, state: &mut MdState, eval: &Evaluation, dt: f64, rng: &mut ChaCha8Rng) -> Result<(), MdError> {
        let v = state.structure.volume_a3().abs();
        let kt = BOLTZMANN_EV_PER_K * self.temperature_k;
        let stress = state.total_stress_ev_per_a3(eval).ok_or(MdError::MissingStress)?;
        let (p0, beta, tau) = (self.pressure_ev_per_a3, self.beta_a3_per_ev, self.tau_fs);
        let mut deps = [0.0; 3];
        if self.isotropic {
            let p = -(stress[0] + stress[1] + stress[2]) / 3.0;
            let xi: f64 = rng.sample(StandardNormal);
            let d = -(beta / tau) * (p0 - p - kt / v) * dt + (2.0 * kt * beta * dt / (v * tau)).sqrt() * xi;
            deps = [d / 3.0; 3];
        } else {
            for (a, de) in deps.iter_mut().enumerate() {
                let p = -stress[a];
                let xi: f64 = rng.sample(StandardNormal);
                *de = -(beta / (3.0 * tau)) * (p0 - p - kt / v) * dt
                    + (2.0 * kt * beta * dt / (3.0 * v * tau)).sqrt() * xi;
            }
        }
        let dlnv = deps[0] + deps[1] + deps[2];
        if !dlnv.is_finite() || deps.iter().any(|d| d.abs() > 0.05) {
            return Err(MdError::BarostatUnstable { step: state.step, dlnv });
        }
        let mu = deps.map(f64::exp);
        for row in state.structure.cell_a.iter_mut() {
            for k in 0..3 {
                row[k] *= mu[k];
            }
        }
        for x in state.structure.positions_a.iter_mut() {
            for k in 0..3 {
                x[k] *= mu[k];
            }
        }
        for u in state.velocities_a_per_fs.iter_mut() {
            for k in 0..3 {
                u[k] /= mu[k];
            }
        }
        Ok(())
    }
}
