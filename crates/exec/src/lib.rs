//! Where work runs: job directories (one per calculation, one per attempt inside), the
//! job process, and the local process pool with its wall-time limits, retry budgets,
//! failure tolerance, cancellation and crash reconciliation.

pub mod campaign;
pub mod job;
pub mod local;

pub use job::{attempt_dir_rel, calc_dir_rel, execute_job_dir, JobFile, JobResult};
pub use local::{plural, run_local, ExecError, ExecEvent, Launcher, LocalOptions, Observer, RunSummary};
