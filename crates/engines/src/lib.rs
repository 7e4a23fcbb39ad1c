//! Engines: everything that turns a structure into labels (energy, forces, stress).
//!
//! * `emt`: the built-in effective-medium theory (pure computation, in process).
//! * `qe`, `cp2k`: Quantum ESPRESSO and CP2K input writers, runners and output parsers.
//! * `orca`, `vasp`: ORCA and VASP input writers and output parsers.
//! * `job_dir`: what every runner does in its job directory before the engine starts.
//! * `ase_bridge`: any ASE calculator in a long-lived Python process (oracle or surrogate).
//! * `spec`: how a calculation runs (engine + settings), and running it in a job directory.
//! * `output`: the common shape of what a parser reads from an engine's output.

pub mod ase_bridge;
pub mod cp2k;
pub mod emt;
pub mod job_dir;
pub mod labels;
pub mod lammps;
pub mod orca;
pub mod output;
pub mod qe;
pub mod spec;
pub mod vasp;

pub use labels::Labels;
pub use spec::{EngineOutcome, EngineSpec};
