//! Where work runs: job directories (one per calculation, one per attempt inside), the
//! job process, the local process pool with its wall-time limits, retry budgets, failure
//! tolerance, cancellation and crash reconciliation, and batch schedulers (Slurm, Flux)
//! behind the same [`Backend`] trait.

pub mod backend;
pub mod campaign;
pub mod job;
pub mod local;
pub mod sched;
pub mod tasks;

pub use backend::{stop_cancelled, Backend, BackendKind, BackendSettings, LocalPool};
pub use job::{attempt_dir_rel, calc_dir_rel, execute_job_dir, JobFile, JobResult};
pub use local::{plural, run_local, ExecError, ExecEvent, Launcher, LocalOptions, Observer, RunSummary};
pub use sched::flux::FluxSettings;
pub use sched::slurm::SlurmSettings;
