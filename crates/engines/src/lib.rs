//! Engines: everything that turns a structure into labels (energy, forces, stress).
//!
//! * `emt`: the built-in effective-medium theory (pure computation, in process).
//! * `qe`, `cp2k`: Quantum ESPRESSO and CP2K input writers and output parsers.
//! * `output`: the common shape of what a parser reads from an engine's output.

pub mod emt;
pub mod labels;

pub use labels::Labels;
