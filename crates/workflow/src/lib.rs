//! Workflows: configuration (raw -> validated) and the run that drives generation,
//! labelling and export through the job database and an executor.

pub mod config;
pub mod doctor;
pub mod drift;
pub mod examples;
pub mod explore_job;
pub mod generate;
pub mod goal_init;
pub mod goals;
pub mod lammps_explore;

pub use config::{load_config, load_oracle, parse_config, Config, ConfigError, ExecutionConfig};
pub mod labelling;
pub mod learn;
pub mod models;
pub mod pace_job;
pub mod pace_loop;
pub mod property_runs;
pub mod screening;
pub mod select;

pub use labelling::{label_frame, new_calculations, RunError};
pub use learn::{run_loop, LoopOutcome, LoopReporter, RunOptions};
