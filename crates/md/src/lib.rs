//! Native molecular dynamics: pure computation.
//!
//! * [`run_md`] integrates an [`MdState`] with forces from any [`ForceField`]:
//!   velocity Verlet (NVE), Langevin dynamics in the BAOAB splitting (NVT), and
//!   BAOAB Langevin plus the stochastic cell rescaling barostat of Bernetti & Bussi
//!   (J. Chem. Phys. 153, 114107 (2020)), isotropic or with a diagonal (per-axis) cell
//!   (NPT).
//! * A [`StabilityGuard`] (on by default in [`MdSettings`]) stops dynamics that blew
//!   up (temperature, force, energy change, atoms closer than 0.5 Å) with
//!   [`MdError::Unstable`] before any observer sees the broken state;
//!   [`min_pair_distance_a`] and [`check_frame_sane`] test single frames.
//! * [`Observer`]s see every step: [`ExtxyzTrajectory`], [`ThermoLog`],
//!   [`GammaWatchdog`], [`MsdAccumulator`], [`FnObserver`]. Observers that write do so
//!   through a `std::io::Write` sink handed to them; nothing here opens files.
//!
//! Units: Å, fs, eV, amu, K; stress in eV/Å³ with ASE's sign convention (Voigt
//! `[xx, yy, zz, yz, xz, xy]`, `stress = (1/V) dE/dε`, so pressure = -trace/3).
//! Positions are never wrapped into the cell by the integrator, so they are the
//! unwrapped trajectory.

pub mod forcefield;
pub mod integrate;
pub mod observers;
pub mod stability;
pub mod state;
pub mod units;

pub use forcefield::{Evaluation, ForceField};
pub use integrate::{run_md, Ensemble, MdError, MdOutcome, MdSettings, StopReason};
pub use observers::{
    Control, DiffusionEstimate, ExtxyzTrajectory, FnObserver, GammaStep, GammaWatchdog, MsdAccumulator, MsdPoint,
    Observer, ThermoLog,
};
pub use stability::{check_frame_sane, min_pair_distance_a, StabilityGuard};
pub use state::{maxwell_boltzmann, MdState};
