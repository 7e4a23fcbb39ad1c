//! The local executor: a pool of job processes on this machine.
//!
//! Each attempt runs as its own process, in its own process group (so a wall-time kill
//! takes the engine and everything it started), in its own directory
//! `RUN/jobs/NNN/NNNNNN/attempt-K/` (the database records the calculation's directory
//! `jobs/NNN/NNNNNN`; the attempt's is derived from the attempt number). The
//! orchestrator owns the database; every transition is committed before the next step
//! (attempt recorded before the process starts; result harvested from `result.json`).
//!
//! After a crash of the orchestrator, `run` first reconciles: a job whose lock is still
//! held is adopted and waited for; a job that left a result is harvested; a job that is
//! gone without a result is put back to pending without touching its failure budgets.
//!
//! Another process may cancel calculations while a batch runs (`autopipe jobs cancel`):
//! the pool notices that the database changed, stops the process group of every running
//! calculation that is no longer `running`, and never harvests it.

use crate::job::JOB_FILE;
use crate::job::{calc_dir_rel, lock_is_held, read_result, JobResult};
use autopipe_engines::{EngineOutcome, EngineSpec};
use autopipe_store::{CalcResult, CalcStatus, Claimed, FailureKind, InFlight, JobStore, StoreError};
use std::fs::{File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the local pool runs.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Concurrent job processes.
    pub workers: usize,
    /// Wall-time limit of one attempt; the whole process group is killed beyond it.
    pub walltime: Duration,
    /// Retries after physics failures (SCF not converged ...), each with the next
    /// remediation step when the engine has a ladder.
    pub max_physics_retries: u32,
    /// Retries after infrastructure failures (timeout, killed, crashed, setup).
    pub max_infra_retries: u32,
    /// The batch stops when more than this fraction of it has failed for good.
    pub failure_tolerance: f64,
    /// Allocation mode: each worker's job is bound to its own this many cores (CPU
    /// affinity), with `OMP_NUM_THREADS` and `AUTOPIPE_CORES` set to match.
    pub cores_per_worker: Option<usize>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            workers: 1,
            walltime: Duration::from_secs(3600),
            max_physics_retries: 2,
            max_infra_retries: 2,
            failure_tolerance: 0.5,
            cores_per_worker: None,
        }
    }
}

/// The command that runs one job directory: `program args... JOB_DIR`.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// What happens while a batch runs, for progress bars and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecEvent {
    /// The batch after reconciliation: `total` calculations to finish, of which
    /// `adopted` were still running from before and `harvested` had finished unseen.
    Batch {
        total: u64,
        adopted: usize,
        harvested: usize,
        requeued: usize,
    },
    Started {
        id: i64,
        attempt: u32,
    },
    Done {
        id: i64,
        reused: bool,
    },
    Retrying {
        id: i64,
        attempt: u32,
        of: u32,
        kind: FailureKind,
        message: String,
    },
    Failed {
        id: i64,
        kind: FailureKind,
        message: String,
    },
    /// Cancelled (by `autopipe jobs cancel`) while in flight: its process group was
    /// stopped and its result, if any, is not used.
    Cancelled {
        id: i64,
    },
    /// Too many failures: nothing more is launched or retried; the `running` jobs
    /// already started are let finish.
    Stopping {
        failed: u64,
        batch: u64,
        tolerance: f64,
        running: usize,
    },
    /// A submission to a batch scheduler: `tasks` calculations as one job array.
    Submitted {
        name: String,
        tasks: usize,
        scheduler: String,
        script: PathBuf,
    },
    /// The orchestrator stops watching (`--detach`, or Ctrl-C) while `in_flight` jobs stay
    /// with the scheduler; the next `jobs run` (or `autopipe run`) picks them up.
    Detached {
        in_flight: usize,
        labels: u64,
        scheduler: String,
        interrupted: bool,
    },
    /// SIGINT/SIGTERM: `requeued` running jobs were stopped and put back to pending;
    /// `labels` finished labels are in the database at `database`.
    Interrupted {
        requeued: usize,
        labels: u64,
        database: PathBuf,
    },
}

/// "1 attempt", "2 attempts".
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "a physics failure", "an input failure".
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {word}")
}

impl ExecEvent {
    /// The line a person reads for this event, where there is one.
    pub fn log_line(&self) -> Option<String> {
        match self {
            ExecEvent::Retrying { id, attempt, of, kind, message } => Some(format!(
                "Retrying calculation {id} (attempt {attempt} of {of}) after {} failure: {message}",
                with_article(kind.as_str())
            )),
            ExecEvent::Failed { id, kind: FailureKind::Input, message } => {
                Some(format!("Calculation {id} can never succeed with this input and is not retried: {message}"))
            }
            ExecEvent::Failed { id, kind, message } => {
                Some(format!("Calculation {id} failed ({}) and has no retries left: {message}", kind.as_str()))
            }
            ExecEvent::Cancelled { id } => {
                Some(format!("Calculation {id} was cancelled: its job was stopped and its result is not used"))
            }
            ExecEvent::Stopping { failed, batch, tolerance, running } => Some(format!(
                "Stopping: {failed} of {batch} calculations in this batch failed, more than failure_tolerance = {tolerance}; \
                 nothing more is launched or retried{}",
                if *running > 0 { format!(" (waiting for {} to finish)", plural(*running as u64, "running job", "running jobs")) } else { String::new() }
            )),
            ExecEvent::Batch { adopted, harvested, requeued, .. } if adopted + harvested + requeued > 0 => Some(format!(
                "Resuming: adopted {} still running, harvested {}, requeued {}",
                plural(*adopted as u64, "job", "jobs"),
                plural(*harvested as u64, "finished result", "finished results"),
                plural(*requeued as u64, "lost job", "lost jobs"),
            )),
            ExecEvent::Submitted { name, tasks, scheduler, script } => Some(format!(
                "submitted {} to {scheduler} as job array {name} ({})",
                plural(*tasks as u64, "calculation", "calculations"),
                script.display()
            )),
            ExecEvent::Detached { in_flight, labels, scheduler, interrupted } => Some(format!(
                "{}{} saved; {} with {scheduler}; `autopipe jobs run` (or the same command) picks them up",
                if *interrupted { "interrupted: " } else { "" },
                plural(*labels, "label is", "labels are"),
                plural(*in_flight as u64, "job stays", "jobs stay"),
            )),
            ExecEvent::Interrupted { requeued, labels, database } => Some(format!(
                "interrupted: {} saved in {}; {} stopped and put back to pending; run the same command again to resume",
                plural(*labels, "label is", "labels are"),
                database.display(),
                plural(*requeued as u64, "running job was", "running jobs were"),
            )),
            _ => None,
        }
    }
}

pub trait Observer {
    fn event(&mut self, event: &ExecEvent);
}

impl<F: FnMut(&ExecEvent)> Observer for F {
    fn event(&mut self, event: &ExecEvent) {
        self(event)
    }
}

/// How a batch ended.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunSummary {
    /// Calculations this batch had to finish (cancelled ones are not counted).
    pub batch: u64,
    pub done: u64,
    pub failed: u64,
    pub timeout: u64,
    /// Running calculations cancelled from outside while the batch ran.
    pub cancelled: u64,
    /// Calculations still pending when the batch ended.
    pub pending: u64,
    /// Set when the batch stopped because too many calculations failed: what was kept,
    /// and the command that brings the failed ones back.
    pub stopped: Option<String>,
    pub interrupted: bool,
    /// Jobs left with a scheduler when the orchestrator stopped watching (`--detach`).
    pub in_flight: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the job process {program}: {error}")]
    Launcher { program: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Job(String),
    /// The scheduler refused a submission or cannot be reached.
    #[error("scheduler: {0}")]
    Scheduler(String),
    /// SIGINT/SIGTERM while tasks ran (their processes were stopped; a scheduler's jobs
    /// stay queued).
    #[error("interrupted")]
    Interrupted,
}

pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(crate) fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Outside a batch, Ctrl-C stops the program at once again (every other phase of a run
/// is durable as it stands).
pub(crate) fn restore_signal_handlers() {
    // SAFETY: restoring the default dispositions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// The directory of a calculation, relative to the run directory (what the database
/// records as its job directory; each attempt runs in `attempt-K/` inside).
pub fn job_dir_rel(id: i64) -> String {
    calc_dir_rel(id)
}

/// The directory attempt `attempt` of a calculation runs in: `attempt-K/` inside the
/// calculation's directory, or the calculation's directory itself for an attempt started
/// by a version that ran every attempt there.
pub fn attempt_dir(run_dir: &Path, job_dir: Option<&str>, id: i64, attempt: u32) -> PathBuf {
    let calc = run_dir.join(job_dir.map(str::to_string).unwrap_or_else(|| calc_dir_rel(id)));
    let dir = calc.join(format!("attempt-{attempt}"));
    if !dir.exists() && calc.join(JOB_FILE).is_file() {
        return calc;
    }
    dir
}

/// Stop the job of an attempt that another process started (`jobs cancel`): its process
/// group `backend_id` is killed, only while the attempt's lock is held, so that a process
/// id recycled after the job ended is never signalled. True when a live job was stopped.
pub fn stop_job(run_dir: &Path, job_dir: Option<&str>, id: i64, attempt: u32, backend_id: Option<&str>) -> bool {
    let dir = attempt_dir(run_dir, job_dir, id, attempt);
    match backend_id.and_then(|b| b.parse::<i32>().ok()) {
        Some(pgid) if pgid > 1 && lock_is_held(&dir) => {
            kill_group(pgid);
            true
        }
        _ => false,
    }
}

/// How long the lease of an in-flight calculation lasts unless renewed (it is renewed
/// every quarter of that while this process runs).
pub(crate) const LEASE: Duration = Duration::from_secs(120);

/// How often the pool looks whether another process changed the database (cancel).
const CANCEL_CHECK: Duration = Duration::from_millis(100);

enum Slot {
    /// A process this orchestrator started.
    Own { claimed: Claimed, job_dir: PathBuf, child: Child, started: Instant, killed_for_time: bool, cpu_slot: usize },
    /// A process a previous orchestrator started, still holding its job lock.
    Adopted { flight: InFlight, job_dir: PathBuf, killed_for_time: bool },
}

impl Slot {
    fn cpu_slot(&self) -> Option<usize> {
        match self {
            Slot::Own { cpu_slot, .. } => Some(*cpu_slot),
            Slot::Adopted { .. } => None,
        }
    }

    fn id(&self) -> i64 {
        match self {
            Slot::Own { claimed, .. } => claimed.calculation_id,
            Slot::Adopted { flight, .. } => flight.calculation_id,
        }
    }

    /// Kill the slot's process group (and reap our own child).
    fn kill(&mut self) {
        match self {
            Slot::Own { child, .. } => {
                kill_group(child.id() as i32);
                let _ = child.wait();
            }
            Slot::Adopted { flight, job_dir, .. } => {
                if lock_is_held(job_dir) {
                    if let Some(pgid) = flight.backend_id.as_deref().and_then(|b| b.parse::<i32>().ok()) {
                        kill_group(pgid);
                    }
                }
            }
        }
    }
}

pub(crate) struct Pool<'a> {
    pub(crate) store: &'a mut JobStore,
    pub(crate) run_dir: &'a Path,
    pub(crate) opts: &'a LocalOptions,
    pub(crate) observer: &'a mut dyn Observer,
    pub(crate) summary: RunSummary,
    /// The database's `data_version` when last looked at.
    pub(crate) version: i64,
    pub(crate) checked: Instant,
}

/// Run every pending calculation of `store` with the local pool, after reconciling
/// what a previous run left in flight.
pub fn run_local(
    store: &mut JobStore,
    run_dir: &Path,
    opts: &LocalOptions,
    launcher: &Launcher,
    observer: &mut dyn Observer,
) -> Result<RunSummary, ExecError> {
    install_signal_handlers();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let result = run_pool(store, run_dir, opts, launcher, observer);
    restore_signal_handlers();
    result
}

fn run_pool(
    store: &mut JobStore,
    run_dir: &Path,
    opts: &LocalOptions,
    launcher: &Launcher,
    observer: &mut dyn Observer,
) -> Result<RunSummary, ExecError> {
    store.take_leases(autopipe_store::this_process_owner(), LEASE.as_secs_f64());
    let version = store.data_version()?;
    let mut pool =
        Pool { store, run_dir, opts, observer, summary: RunSummary::default(), version, checked: Instant::now() };
    let mut slots = pool.reconcile()?;
    let mut renewed = Instant::now();
    let workers = opts.workers.max(1);
    let mut sleep = Duration::from_micros(200);
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            pool.interrupt(slots)?;
            break;
        }
        if renewed.elapsed() > LEASE / 4 {
            pool.store.renew_leases()?;
            renewed = Instant::now();
        }
        let mut progressed = pool.drop_cancelled(&mut slots)?;
        while pool.summary.stopped.is_none() && slots.len() < workers {
            let ids = pool.store.pending_ids(workers - slots.len())?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                // The lowest worker number free: its cores in allocation mode.
                let cpu_slot = (0..).find(|k| !slots.iter().any(|s| s.cpu_slot() == Some(*k))).unwrap_or(0);
                if let Some(slot) = pool.launch(id, launcher, cpu_slot)? {
                    slots.push(slot);
                }
                progressed = true;
            }
        }
        if slots.is_empty() {
            break;
        }
        let mut i = 0;
        while i < slots.len() {
            let running = slots.len();
            match pool.poll(&mut slots[i], running)? {
                true => {
                    slots.swap_remove(i);
                    progressed = true;
                }
                false => i += 1,
            }
        }
        if progressed {
            sleep = Duration::from_micros(200);
        } else {
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(20));
        }
    }
    pool.summary.pending = pool.store.counts()?.pending;
    if pool.summary.stopped.is_some() {
        let line = pool.stop_message()?;
        pool.store.log_event(None, "stopped", &line)?;
        pool.summary.stopped = Some(line);
    }
    Ok(pool.summary)
}

/// A transition that found the calculation cancelled (by another process) instead of
/// running: the attempt is dropped, not recorded.
fn was_cancelled(e: &ExecError) -> bool {
    matches!(e, ExecError::Store(StoreError::WrongState { found, .. }) if found == CalcStatus::Cancelled.as_str())
}

impl Pool<'_> {
    fn reconcile(&mut self) -> Result<Vec<Slot>, ExecError> {
        let mut slots = Vec::new();
        let (mut harvested, mut requeued) = (0, 0);
        for flight in self.store.claim_in_flight()? {
            let job_dir = attempt_dir(self.run_dir, flight.job_dir.as_deref(), flight.calculation_id, flight.attempt);
            if lock_is_held(&job_dir) {
                slots.push(Slot::Adopted { flight, job_dir, killed_for_time: false });
                continue;
            }
            let claimed = self.store.load_running(flight.calculation_id, flight.attempt_id)?;
            let outcome = match read_result(&job_dir) {
                Ok(Some(r))
                    if r.calculation_id == flight.calculation_id
                    // A result of this attempt, or finished labels of an earlier attempt
                    // (the layout of older versions, one directory for every attempt).
                    && (r.attempt == flight.attempt || matches!(r.outcome, EngineOutcome::Labels { .. })) =>
                {
                    harvested += 1;
                    self.harvest(&claimed, r)
                }
                Err(e) => {
                    harvested += 1;
                    self.fail(&claimed, FailureKind::Crashed, &e.to_string())
                }
                _ => {
                    requeued += 1;
                    self.store
                        .requeue_lost(
                            flight.calculation_id,
                            flight.attempt_id,
                            "the orchestrator stopped while this attempt was in flight and the job left no result",
                        )
                        .map_err(ExecError::from)
                }
            };
            self.settle(flight.calculation_id, outcome)?;
        }
        self.summary.batch = self.batch_size(slots.len())?;
        self.observer.event(&ExecEvent::Batch { total: self.summary.batch, adopted: slots.len(), harvested, requeued });
        Ok(slots)
    }

    /// The calculations of this batch: those finished by it, those in flight, those pending.
    pub(crate) fn batch_size(&self, in_flight: usize) -> Result<u64, ExecError> {
        let s = &self.summary;
        Ok(s.done + s.failed + s.timeout + in_flight as u64 + self.store.counts()?.pending)
    }

    /// A transition's result, where finding the calculation cancelled is not an error.
    pub(crate) fn settle(&mut self, id: i64, result: Result<(), ExecError>) -> Result<(), ExecError> {
        match result {
            Err(e) if was_cancelled(&e) => {
                self.summary.cancelled += 1;
                self.observer.event(&ExecEvent::Cancelled { id });
                Ok(())
            }
            other => other,
        }
    }

    /// When another process changed the database, stop every slot whose calculation is
    /// no longer running (cancelled), and count the batch again. True when a slot went.
    fn drop_cancelled(&mut self, slots: &mut Vec<Slot>) -> Result<bool, ExecError> {
        if self.checked.elapsed() < CANCEL_CHECK {
            return Ok(false);
        }
        self.checked = Instant::now();
        let version = self.store.data_version()?;
        if version == self.version {
            return Ok(false);
        }
        self.version = version;
        let mut dropped = false;
        let mut i = 0;
        while i < slots.len() {
            let id = slots[i].id();
            if self.store.status_of(id)? == Some(CalcStatus::Running) {
                i += 1;
                continue;
            }
            let mut slot = slots.swap_remove(i);
            slot.kill();
            self.summary.cancelled += 1;
            self.observer.event(&ExecEvent::Cancelled { id });
            dropped = true;
        }
        self.summary.batch = self.batch_size(slots.len())?;
        Ok(dropped)
    }

    fn launch(&mut self, id: i64, launcher: &Launcher, cpu_slot: usize) -> Result<Option<Slot>, ExecError> {
        let claimed = match self.store.start_attempt(id, "local", &calc_dir_rel(id)) {
            Ok(c) => c,
            // Cancelled or forgotten by another process since it was listed as pending.
            Err(StoreError::WrongState { .. } | StoreError::NoSuchCalculation(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.observer.event(&ExecEvent::Started { id, attempt: claimed.attempt });
        let job_dir = self.run_dir.join(crate::job::attempt_dir_rel(id, claimed.attempt));
        match self.spawn(&claimed, &job_dir, launcher, cpu_slot) {
            Ok(child) => {
                self.store.set_backend_id(id, claimed.attempt_id, &child.id().to_string())?;
                Ok(Some(Slot::Own {
                    claimed,
                    job_dir,
                    child,
                    started: Instant::now(),
                    killed_for_time: false,
                    cpu_slot,
                }))
            }
            Err(message) => {
                let r = self.fail(&claimed, FailureKind::Setup, &message);
                self.settle(id, r)?;
                Ok(None)
            }
        }
    }

    fn spawn(&self, claimed: &Claimed, job_dir: &Path, launcher: &Launcher, cpu_slot: usize) -> Result<Child, String> {
        let at = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
        let walltime_s = self.opts.walltime.as_secs_f64();
        crate::job::prepare_attempt(claimed, job_dir, Some(crate::sched::engine_walltime_s(walltime_s)))?;
        let log = |name: &str| -> Result<File, String> {
            let p = job_dir.join(name);
            OpenOptions::new().create(true).write(true).truncate(true).open(&p).map_err(|e| at("open", &p, e))
        };
        let mut command = Command::new(&launcher.program);
        if let Some(cores) = self.opts.cores_per_worker {
            let allowed = allowed_cpus();
            let first = cpu_slot * cores;
            let cpus: Vec<usize> = (first..first + cores).map(|k| allowed[k % allowed.len()]).collect();
            command.env("OMP_NUM_THREADS", cores.to_string()).env("AUTOPIPE_CORES", cores.to_string());
            // SAFETY: sched_setaffinity on the child between fork and exec touches only a
            // stack-allocated cpu_set_t, and is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for &c in &cpus {
                        libc::CPU_SET(c, &mut set);
                    }
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
            .args(&launcher.args)
            .arg(job_dir)
            .env("AUTOPIPE_CALCULATION_ID", claimed.calculation_id.to_string())
            .env("AUTOPIPE_ATTEMPT", claimed.attempt.to_string())
            .env("AUTOPIPE_WALLTIME_S", (crate::sched::engine_walltime_s(walltime_s).floor() as u64).to_string())
            .stdin(Stdio::null())
            .stdout(log("stdout")?)
            .stderr(log("stderr")?)
            .process_group(0)
            .spawn()
            .map_err(|e| at("start the job process", &launcher.program, e))
    }

    /// Check one slot; true when it finished (and was recorded).
    fn poll(&mut self, slot: &mut Slot, running: usize) -> Result<bool, ExecError> {
        let walltime = self.opts.walltime;
        let id = slot.id();
        let result = match slot {
            Slot::Own { claimed, job_dir, child, started, killed_for_time, .. } => match child.try_wait() {
                Ok(Some(status)) => {
                    let (claimed, job_dir, killed) = (claimed.clone(), job_dir.clone(), *killed_for_time);
                    self.finished(&claimed, &job_dir, Some(status), killed, running)
                }
                Ok(None) => {
                    if !*killed_for_time && started.elapsed() > walltime {
                        kill_group(child.id() as i32);
                        *killed_for_time = true;
                    }
                    return Ok(false);
                }
                Err(e) => {
                    let claimed = claimed.clone();
                    self.fail_in(
                        &claimed,
                        FailureKind::Crashed,
                        &format!("cannot wait for the job process: {e}"),
                        running,
                    )
                }
            },
            Slot::Adopted { flight, job_dir, killed_for_time } => {
                if lock_is_held(job_dir) {
                    let age = autopipe_store::now_s() - flight.started_at_s;
                    if !*killed_for_time && age > walltime.as_secs_f64() {
                        if let Some(pgid) = flight.backend_id.as_deref().and_then(|b| b.parse::<i32>().ok()) {
                            kill_group(pgid);
                        }
                        *killed_for_time = true;
                    }
                    return Ok(false);
                }
                let claimed = self.store.load_running(flight.calculation_id, flight.attempt_id)?;
                let (job_dir, killed) = (job_dir.clone(), *killed_for_time);
                self.finished(&claimed, &job_dir, None, killed, running)
            }
        };
        self.settle(id, result)?;
        Ok(true)
    }

    fn finished(
        &mut self,
        claimed: &Claimed,
        job_dir: &Path,
        status: Option<ExitStatus>,
        killed_for_time: bool,
        running: usize,
    ) -> Result<(), ExecError> {
        if killed_for_time {
            let message = format!(
                "wall time of {} s exceeded; the job's process group was killed",
                self.opts.walltime.as_secs_f64()
            );
            return self.fail_in(claimed, FailureKind::Timeout, &message, running);
        }
        let result = match read_result(job_dir) {
            Ok(r) => r.filter(|r| r.calculation_id == claimed.calculation_id && r.attempt == claimed.attempt),
            Err(e) => {
                return self.fail_in(claimed, FailureKind::Crashed, &e.to_string(), running);
            }
        };
        match (result, status) {
            (Some(r), _) => self.harvest_in(claimed, r, running),
            (None, Some(s)) if s.signal().is_some() => {
                let message = format!("the job process was killed by signal {}", s.signal().unwrap_or(0));
                self.fail_in(claimed, FailureKind::Killed, &message, running)
            }
            (None, s) => {
                let code =
                    s.and_then(|s| s.code()).map(|c| format!("exited with code {c}")).unwrap_or_else(|| "ended".into());
                let message = format!(
                    "the job process {code} without a result{}",
                    last_line(&job_dir.join("stderr")).map(|l| format!(": {l}")).unwrap_or_default()
                );
                self.fail_in(claimed, FailureKind::Crashed, &message, running)
            }
        }
    }

    fn harvest(&mut self, claimed: &Claimed, result: JobResult) -> Result<(), ExecError> {
        self.harvest_in(claimed, result, 0)
    }

    /// Record a job's result; `running` is how many jobs are in flight (for messages).
    pub(crate) fn harvest_in(&mut self, claimed: &Claimed, result: JobResult, running: usize) -> Result<(), ExecError> {
        match result.outcome {
            EngineOutcome::Labels { labels, scf_steps } => {
                let calc = CalcResult {
                    max_force_ev_per_a: labels.max_force_ev_per_a(),
                    energy_ev: labels.energy_ev,
                    forces_ev_per_a: labels.forces_ev_per_a,
                    stress_ev_per_a3: labels.stress_ev_per_a3,
                    scf_steps,
                    wall_time_s: result.wall_time_s,
                };
                self.store.complete(claimed.calculation_id, claimed.attempt_id, &calc)?;
                self.summary.done += 1;
                self.observer.event(&ExecEvent::Done {
                    id: claimed.calculation_id,
                    reused: result.reused_from_attempt.is_some(),
                });
                Ok(())
            }
            EngineOutcome::PhysicsFailure { message } => self.fail_in(claimed, FailureKind::Physics, &message, running),
            EngineOutcome::Error { message } if result.input_error => {
                self.fail_in(claimed, FailureKind::Input, &message, running)
            }
            EngineOutcome::Error { message } => self.fail_in(claimed, FailureKind::Crashed, &message, running),
        }
    }

    fn fail(&mut self, claimed: &Claimed, kind: FailureKind, message: &str) -> Result<(), ExecError> {
        self.fail_in(claimed, kind, message, 0)
    }

    /// Record a failed attempt, retrying within the budget of its kind (input errors
    /// are never retried). Once the batch is stopping, an attempt with budget left goes
    /// back to pending quietly, for the next run. `running` counts the jobs in flight.
    pub(crate) fn fail_in(
        &mut self,
        claimed: &Claimed,
        kind: FailureKind,
        message: &str,
        running: usize,
    ) -> Result<(), ExecError> {
        let (used, budget, retry, remediation) =
            retry_decision(claimed, kind, self.opts.max_physics_retries, self.opts.max_infra_retries);
        let id = claimed.calculation_id;
        self.store.fail_attempt(
            id,
            claimed.attempt_id,
            kind,
            message,
            retry,
            remediation.as_ref().map(|(v, c)| (v, c.as_str())),
        )?;
        if retry && self.summary.stopped.is_some() {
            return Ok(());
        }
        let event = if retry {
            let attempt = claimed.attempt + 1;
            let of = attempt + (budget - used - 1);
            let mut message = message.to_string();
            if let Some((_, changes)) = &remediation {
                message.push_str(&format!("; next attempt changes {changes}"));
            }
            ExecEvent::Retrying { id, attempt, of, kind, message }
        } else {
            if kind == FailureKind::Timeout {
                self.summary.timeout += 1;
            } else {
                self.summary.failed += 1;
            }
            ExecEvent::Failed { id, kind, message: message.to_string() }
        };
        if let Some(line) = event.log_line() {
            self.store.log_event(Some(id), if retry { "retry" } else { "failed" }, &line)?;
        }
        self.observer.event(&event);
        let failed = self.summary.failed + self.summary.timeout;
        if !retry
            && self.summary.stopped.is_none()
            && failed as f64 > self.opts.failure_tolerance * self.summary.batch as f64
        {
            let event = ExecEvent::Stopping {
                failed,
                batch: self.summary.batch,
                tolerance: self.opts.failure_tolerance,
                running: running.saturating_sub(1),
            };
            let line = event.log_line().unwrap_or_default();
            self.store.log_event(None, "stopping", &line)?;
            self.summary.stopped = Some(line);
            self.observer.event(&event);
        }
        Ok(())
    }

    /// What a stopped batch kept, and the command that brings its failures back.
    pub(crate) fn stop_message(&self) -> Result<String, ExecError> {
        let s = &self.summary;
        let counts = self.store.counts()?;
        let flags = match (s.failed > 0, s.timeout > 0) {
            (true, true) => "--failed --timeout",
            (false, true) => "--timeout",
            _ => "--failed",
        };
        let what = match (s.failed, s.timeout) {
            (f, 0) => plural(f, "failed calculation", "failed calculations"),
            (0, t) => plural(t, "timed-out calculation", "timed-out calculations"),
            (f, t) => format!("{f} failed and {t} timed-out calculations"),
        };
        Ok(format!(
            "Stopped: {} kept in {} ({} finished by this batch); {} pending for the next run. \
             To run the {what} again, fix the cause, then `autopipe jobs reset --dir {} {flags}` and run the same command again.",
            plural(counts.done, "label is", "labels are"),
            self.store.path().display(),
            s.done,
            plural(counts.pending, "calculation stays", "calculations stay"),
            self.run_dir.display(),
        ))
    }

    /// SIGINT/SIGTERM: stop our own jobs and put them back to pending; jobs adopted from
    /// an earlier run keep running and are adopted again next time.
    fn interrupt(&mut self, slots: Vec<Slot>) -> Result<(), ExecError> {
        let mut requeued = 0;
        for mut slot in slots {
            if let Slot::Own { claimed, .. } = &slot {
                let claimed = claimed.clone();
                slot.kill();
                self.store.requeue_lost(claimed.calculation_id, claimed.attempt_id, "interrupted by the user")?;
                requeued += 1;
            }
        }
        self.summary.interrupted = true;
        let labels = self.store.counts()?.done;
        let database = self.store.path().to_path_buf();
        self.observer.event(&ExecEvent::Interrupted { requeued, labels, database });
        Ok(())
    }
}

/// What a failed attempt leads to: the failures of its kind so far and the budget of
/// that kind, whether it is retried (input errors never are), and for a physics failure
/// retried, the next remediation step (new run settings, and what changed).
#[allow(clippy::type_complexity)]
pub(crate) fn retry_decision(
    claimed: &Claimed,
    kind: FailureKind,
    max_physics_retries: u32,
    max_infra_retries: u32,
) -> (u32, u32, bool, Option<(serde_json::Value, String)>) {
    let (used, budget) = if kind.is_physics() {
        (claimed.physics_failures, max_physics_retries)
    } else {
        (claimed.infra_failures, max_infra_retries)
    };
    let retry = used < budget && kind != FailureKind::Input;
    let remediation = if retry && kind.is_physics() {
        serde_json::from_value::<EngineSpec>(claimed.run_spec.clone())
            .ok()
            .and_then(|spec| spec.remediate(used + 1))
            .map(|(spec, changes)| (serde_json::to_value(spec).expect("engine settings serialise"), changes))
    } else {
        None
    };
    (used, budget, retry, remediation)
}

/// The CPUs this process may run on (the allocation's, inside a scheduler's job), in
/// order: worker K of allocation mode gets the K-th group of them.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        set
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: sending a signal to a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

pub(crate) fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect())
}
