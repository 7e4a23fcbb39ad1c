//! The native potential: SNAP bispectrum descriptors with analytic gradients (and, later,
//! the linear/quadratic model, fitting, active set and LAMMPS export).
//!
//! Pure computation: nothing here touches files, processes or the clock.

pub mod active_set;
pub mod cv;
pub mod fit;
pub mod lammps_export;
pub mod lammps_gamma;
pub mod linalg;
pub mod model;
pub mod pace;
pub mod search;
pub mod snap;
pub mod zbl;

pub use active_set::{ActiveSet, EnvOrigin, MaxVolOptions};
pub use cv::{assign_folds, cross_validate, CvErrors, CvReport, CvStat};
pub use fit::{
    errors_of_evaluations, evaluate_errors, evaluate_errors_by_group, evaluate_errors_with, fit, fit_split,
    frame_group, is_test_hash, is_test_structure, split_frames, ErrorMetrics, EvalOptions, FitOptions, FitReport,
    GroupWeights, RowWeights, Split, Stat, DEFAULT_GROUP, EV_PER_A3_IN_BAR,
};
pub use lammps_export::{pair_coeff_snippet, to_snapcoeff, to_snapparam};
pub use lammps_gamma::{gamma_watch_lines, sna_compute_line};
pub use model::{ModelError, ModelEval, ModelEvaluator, SnapModel};
pub use pace::{frame_weights as pace_frame_weights, is_pace_model_json, reference_energy_ev, PaceModel, PaceSettings};
pub use search::{search_weights, SearchGrid, SearchPoint, SearchReport};
pub use snap::{
    compute_descriptors, compute_descriptors_with_gradients, energy_forces_virial, n_descriptors, EnergyForcesVirial,
    Snap, SnapDescriptors, SnapElement, SnapError, SnapGradients, SnapKernels, SnapParams, PORTABLE_ENV,
};
pub use zbl::{ReferenceEval, ZblReference};
