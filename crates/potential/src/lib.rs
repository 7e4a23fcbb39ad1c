//! The native potential: SNAP bispectrum descriptors with analytic gradients (and, later,
//! the linear/quadratic model, fitting, active set and LAMMPS export).
//!
//! Pure computation: nothing here touches files, processes or the clock.

pub mod snap;

pub use snap::{
    compute_descriptors, compute_descriptors_with_gradients, energy_forces_virial, n_descriptors, EnergyForcesVirial,
    Snap, SnapDescriptors, SnapElement, SnapError, SnapGradients, SnapParams,
};
