//! Where work runs: job directories, the job process, and the local process pool with
//! its wall-time limits, retry budgets, failure tolerance and crash reconciliation.

pub mod job;
pub mod local;

pub use job::{execute_job_dir, JobFile, JobResult};
pub use local::{run_local, ExecError, ExecEvent, Launcher, LocalOptions, Observer, RunSummary};
