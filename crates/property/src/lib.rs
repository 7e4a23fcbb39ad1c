//! Material properties computed with any force field (pure computation: no files, no
//! processes; the callers own I/O).
//!
//! Every property calculation evaluates its force field through [`guard::Watched`], so
//! that the largest extrapolation grade it met and the structures the model is unsure
//! of are known when the number is reported.

pub mod diffusion;
pub mod elastic;
pub mod guard;
pub mod hull;
pub mod relax;
