//! Where calculations run, behind one trait: the local process pool, or a batch
//! scheduler (Slurm, Flux). The learning loop and `autopipe jobs run` hold a
//! `Box<dyn Backend>` and do not know which one runs their calculations.

use crate::sched::flux::{Flux, FluxSettings};
use crate::sched::slurm::{Slurm, SlurmSettings};
use crate::sched::{cancel_jobs, run_scheduled, run_tasks_scheduled, SchedOptions, Scheduler};
use crate::tasks::{run_tasks_local, TaskEnd};
use crate::{run_local, ExecError, Launcher, LocalOptions, Observer, RunSummary};
use autopipe_store::admin::CancelledCalc;
use autopipe_store::JobStore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs the pending calculations of a job database.
pub trait Backend {
    /// `local`, `slurm`, `flux`.
    fn name(&self) -> &'static str;
    /// Run (or, detached, submit) every pending calculation after reconciling what the
    /// database holds in flight; returns when nothing is pending or in flight.
    fn run_batch(
        &self,
        store: &mut JobStore,
        run_dir: &Path,
        opts: &LocalOptions,
        launcher: &Launcher,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary, ExecError>;

    /// Run task directories (exploration segments: see `crate::tasks`) as jobs, in
    /// parallel; `label` names the work (the same label for the same work, so that a
    /// restarted orchestrator finds the jobs it left). How each task ended.
    fn run_tasks(
        &self,
        run_dir: &Path,
        label: &str,
        dirs: &[PathBuf],
        opts: &LocalOptions,
        launcher: &Launcher,
    ) -> Result<Vec<TaskEnd>, ExecError>;
}

/// The local process pool.
pub struct LocalPool;

impl Backend for LocalPool {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run_batch(
        &self,
        store: &mut JobStore,
        run_dir: &Path,
        opts: &LocalOptions,
        launcher: &Launcher,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary, ExecError> {
        run_local(store, run_dir, opts, launcher, observer)
    }

    fn run_tasks(
        &self,
        _run_dir: &Path,
        _label: &str,
        dirs: &[PathBuf],
        opts: &LocalOptions,
        launcher: &Launcher,
    ) -> Result<Vec<TaskEnd>, ExecError> {
        run_tasks_local(dirs, opts, launcher)
    }
}

/// A batch scheduler with the options of its campaign.
pub struct Scheduled<S: Scheduler> {
    pub scheduler: S,
    pub options: SchedOptions,
}

impl<S: Scheduler> Backend for Scheduled<S> {
    fn name(&self) -> &'static str {
        self.scheduler.name()
    }

    fn run_batch(
        &self,
        store: &mut JobStore,
        run_dir: &Path,
        opts: &LocalOptions,
        launcher: &Launcher,
        observer: &mut dyn Observer,
    ) -> Result<RunSummary, ExecError> {
        run_scheduled(store, run_dir, opts, &self.scheduler, &self.options, launcher, observer)
    }

    fn run_tasks(
        &self,
        run_dir: &Path,
        label: &str,
        dirs: &[PathBuf],
        opts: &LocalOptions,
        launcher: &Launcher,
    ) -> Result<Vec<TaskEnd>, ExecError> {
        run_tasks_scheduled(&self.scheduler, run_dir, label, dirs, opts, self.options.poll, launcher)
    }
}

/// Which backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    #[default]
    Local,
    Slurm,
    Flux,
}

impl BackendKind {
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "local" => Some(BackendKind::Local),
            "slurm" => Some(BackendKind::Slurm),
            "flux" => Some(BackendKind::Flux),
            _ => None,
        }
    }
}

/// Everything that says where calculations run (`[execution]` of a configuration, or
/// the flags of `jobs run`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendSettings {
    pub kind: BackendKind,
    pub slurm: SlurmSettings,
    pub flux: FluxSettings,
    /// Seconds between two looks at a scheduler's queue.
    pub poll_s: Option<f64>,
}

impl BackendSettings {
    /// The backend, with `detach`/`limit`/`max_fail_count` for a scheduler's campaign.
    pub fn backend(&self, detach: bool, limit: Option<usize>, max_fail_count: Option<u32>) -> Box<dyn Backend> {
        let options =
            SchedOptions { poll: Duration::from_secs_f64(self.poll_s.unwrap_or(5.0)), detach, limit, max_fail_count };
        match self.kind {
            BackendKind::Local => Box::new(LocalPool),
            BackendKind::Slurm => Box::new(Scheduled { scheduler: Slurm { settings: self.slurm.clone() }, options }),
            BackendKind::Flux => Box::new(Scheduled { scheduler: Flux { settings: self.flux.clone() }, options }),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.poll_s {
            if !(p.is_finite() && (0.05..=3600.0).contains(&p)) {
                return Err(format!("poll_s = {p}: must be between 0.05 and 3600 seconds"));
            }
        }
        self.slurm.validate().map_err(|m| format!("slurm.{m}"))?;
        self.flux.validate().map_err(|m| format!("flux.{m}"))
    }
}

/// Stop the jobs of calculations that `jobs cancel` just cancelled, whichever backend
/// runs them (recorded with each calculation): a local job's process group (only while
/// its lock is held), a scheduler's task (`scancel`, `flux cancel`). Returns the ids of
/// the calculations whose job was asked to stop.
pub fn stop_cancelled(run_dir: &Path, cancelled: &[CancelledCalc]) -> Result<Vec<i64>, ExecError> {
    use autopipe_store::CalcStatus::{Running, Submitted};
    let mut stopped = Vec::new();
    // Per scheduler: its tasks to stop and their calculations.
    type Batch = (Box<dyn Scheduler>, Vec<String>, Vec<i64>);
    let mut by_sched: Vec<Batch> =
        vec![(Box::new(Slurm::default()), Vec::new(), Vec::new()), (Box::new(Flux::default()), Vec::new(), Vec::new())];
    for c in cancelled.iter().filter(|c| matches!(c.was, Running | Submitted)) {
        match c.backend.as_deref() {
            Some(name @ ("slurm" | "flux")) => {
                if let (Some(entry), Some(id)) = (by_sched.iter_mut().find(|e| e.0.name() == name), &c.backend_id) {
                    entry.1.push(id.clone());
                    entry.2.push(c.id);
                }
            }
            _ => {
                if crate::local::stop_job(run_dir, c.job_dir.as_deref(), c.id, c.attempt, c.backend_id.as_deref()) {
                    stopped.push(c.id);
                }
            }
        }
    }
    for (sched, ids, calcs) in by_sched {
        if !ids.is_empty() {
            cancel_jobs(sched.as_ref(), &ids)?;
            stopped.extend(calcs);
        }
    }
    Ok(stopped)
}
