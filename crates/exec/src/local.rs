//! The local executor: a pool of job processes on this machine.
//!
//! Each attempt runs as its own process, in its own process group (so a wall-time kill
//! takes the engine and everything it started), in its own job directory. The
//! orchestrator owns the database; every transition is committed before the next step
//! (attempt recorded before the process starts; result harvested from `result.json`).
//!
//! After a crash of the orchestrator, `run` first reconciles: a job whose lock is still
//! held is adopted and waited for; a job that left a result is harvested; a job that is
//! gone without a result is put back to pending without touching its failure budgets.

use crate::job::{lock_is_held, read_result, write_atomic, JobFile, JOB_FILE};
use autopipe_engines::{EngineOutcome, EngineSpec};
use autopipe_store::{CalcResult, Claimed, FailureKind, InFlight, JobStore, StoreError};
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
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            workers: 1,
            walltime: Duration::from_secs(3600),
            max_physics_retries: 2,
            max_infra_retries: 2,
            failure_tolerance: 0.5,
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
    Stopping {
        failed: u64,
        batch: u64,
        tolerance: f64,
    },
    Interrupted {
        requeued: usize,
    },
}

impl ExecEvent {
    /// The line a person reads for this event, where there is one.
    pub fn log_line(&self) -> Option<String> {
        match self {
            ExecEvent::Retrying { id, attempt, of, kind, message } => {
                Some(format!("Retrying calculation {id} (attempt {attempt} of {of}) after a {} failure: {message}", kind.as_str()))
            }
            ExecEvent::Failed { id, kind, message } => {
                Some(format!("Calculation {id} failed ({}) and has no retries left: {message}", kind.as_str()))
            }
            ExecEvent::Stopping { failed, batch, tolerance } => Some(format!(
                "Stopping: {failed} of {batch} calculations in this batch failed, more than failure_tolerance = {tolerance}. \
                 Finished labels are kept and the rest stay pending; fix the cause, then `autopipe jobs reset --failed` and run again."
            )),
            ExecEvent::Batch { adopted, harvested, requeued, .. } if adopted + harvested + requeued > 0 => Some(format!(
                "Resuming: {adopted} jobs still running were adopted, {harvested} finished results harvested, {requeued} lost jobs requeued"
            )),
            ExecEvent::Interrupted { requeued } => {
                Some(format!("Interrupted: {requeued} running jobs were stopped and put back to pending"))
            }
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
    pub batch: u64,
    pub done: u64,
    pub failed: u64,
    pub timeout: u64,
    /// Set when the batch stopped because too many calculations failed.
    pub stopped: Option<String>,
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the job process {program}: {source}")]
    Launcher { program: PathBuf, source: std::io::Error },
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Outside a batch, Ctrl-C stops the program at once again (every other phase of a run
/// is durable as it stands).
fn restore_signal_handlers() {
    // SAFETY: restoring the default dispositions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// The job directory of a calculation, relative to the run directory.
pub fn job_dir_rel(id: i64) -> String {
    format!("jobs/{:03}/{:06}", id / 1000, id)
}

enum Slot {
    /// A process this orchestrator started.
    Own { claimed: Claimed, job_dir: PathBuf, child: Child, started: Instant, killed_for_time: bool },
    /// A process a previous orchestrator started, still holding its job lock.
    Adopted { flight: InFlight, job_dir: PathBuf, killed_for_time: bool },
}

struct Pool<'a> {
    store: &'a mut JobStore,
    run_dir: &'a Path,
    opts: &'a LocalOptions,
    observer: &'a mut dyn Observer,
    summary: RunSummary,
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
    let mut pool = Pool { store, run_dir, opts, observer, summary: RunSummary::default() };
    let mut slots = pool.reconcile()?;
    let workers = opts.workers.max(1);
    let mut sleep = Duration::from_micros(200);
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            pool.interrupt(slots)?;
            break;
        }
        let mut progressed = false;
        while pool.summary.stopped.is_none() && slots.len() < workers {
            let ids = pool.store.pending_ids(workers - slots.len())?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                if let Some(slot) = pool.launch(id, launcher)? {
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
            match pool.poll(&mut slots[i])? {
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
    Ok(pool.summary)
}

impl Pool<'_> {
    fn reconcile(&mut self) -> Result<Vec<Slot>, ExecError> {
        let mut slots = Vec::new();
        let (mut harvested, mut requeued) = (0, 0);
        for flight in self.store.in_flight()? {
            let job_dir = self.run_dir.join(flight.job_dir.as_deref().unwrap_or(""));
            if flight.job_dir.is_some() && lock_is_held(&job_dir) {
                slots.push(Slot::Adopted { flight, job_dir, killed_for_time: false });
                continue;
            }
            let claimed = self.store.load_running(flight.calculation_id, flight.attempt_id)?;
            match read_result(&job_dir).filter(|r| r.calculation_id == flight.calculation_id) {
                // A result of this attempt, or finished labels of an earlier attempt.
                Some(r) if r.attempt == flight.attempt || matches!(r.outcome, EngineOutcome::Labels { .. }) => {
                    self.harvest(&claimed, r)?;
                    harvested += 1;
                }
                _ => {
                    self.store.requeue_lost(
                        flight.calculation_id,
                        flight.attempt_id,
                        "the orchestrator stopped while this attempt was in flight and the job left no result",
                    )?;
                    requeued += 1;
                }
            }
        }
        let counts = self.store.counts()?;
        let total = counts.pending + slots.len() as u64;
        self.summary.batch = total;
        self.observer.event(&ExecEvent::Batch { total, adopted: slots.len(), harvested, requeued });
        Ok(slots)
    }

    fn launch(&mut self, id: i64, launcher: &Launcher) -> Result<Option<Slot>, ExecError> {
        let rel = job_dir_rel(id);
        let claimed = self.store.start_attempt(id, "local", &rel)?;
        self.observer.event(&ExecEvent::Started { id, attempt: claimed.attempt });
        let job_dir = self.run_dir.join(&rel);
        match self.spawn(&claimed, &job_dir, launcher) {
            Ok(child) => {
                self.store.set_backend_id(id, claimed.attempt_id, &child.id().to_string())?;
                Ok(Some(Slot::Own { claimed, job_dir, child, started: Instant::now(), killed_for_time: false }))
            }
            Err(message) => {
                self.fail(&claimed, FailureKind::Setup, &message)?;
                Ok(None)
            }
        }
    }

    fn spawn(&self, claimed: &Claimed, job_dir: &Path, launcher: &Launcher) -> Result<Child, String> {
        let at = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
        std::fs::create_dir_all(job_dir).map_err(|e| at("create the job directory", job_dir, e))?;
        let engine: EngineSpec = serde_json::from_value(claimed.run_spec.clone())
            .map_err(|e| format!("stored engine settings are unreadable: {e}"))?;
        let job = JobFile {
            calculation_id: claimed.calculation_id,
            attempt: claimed.attempt,
            engine,
            structure: claimed.structure.clone(),
        };
        let job_path = job_dir.join(JOB_FILE);
        write_atomic(&job_path, &serde_json::to_vec_pretty(&job).expect("job files serialise"))
            .map_err(|e| e.to_string())?;
        let log = |name: &str| -> Result<File, String> {
            let p = job_dir.join(name);
            OpenOptions::new().create(true).append(true).open(&p).map_err(|e| at("open", &p, e))
        };
        Command::new(&launcher.program)
            .args(&launcher.args)
            .arg(job_dir)
            .stdin(Stdio::null())
            .stdout(log("stdout")?)
            .stderr(log("stderr")?)
            .process_group(0)
            .spawn()
            .map_err(|e| at("start the job process", &launcher.program, e))
    }

    /// Check one slot; true when it finished (and was recorded).
    fn poll(&mut self, slot: &mut Slot) -> Result<bool, ExecError> {
        let walltime = self.opts.walltime;
        match slot {
            Slot::Own { claimed, job_dir, child, started, killed_for_time } => match child.try_wait() {
                Ok(Some(status)) => {
                    let (claimed, job_dir, killed) = (claimed.clone(), job_dir.clone(), *killed_for_time);
                    self.finished(&claimed, &job_dir, Some(status), killed)?;
                    Ok(true)
                }
                Ok(None) => {
                    if !*killed_for_time && started.elapsed() > walltime {
                        kill_group(child.id() as i32);
                        *killed_for_time = true;
                    }
                    Ok(false)
                }
                Err(e) => {
                    let claimed = claimed.clone();
                    self.fail(&claimed, FailureKind::Crashed, &format!("cannot wait for the job process: {e}"))?;
                    Ok(true)
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
                self.finished(&claimed, &job_dir, None, killed)?;
                Ok(true)
            }
        }
    }

    fn finished(
        &mut self,
        claimed: &Claimed,
        job_dir: &Path,
        status: Option<ExitStatus>,
        killed_for_time: bool,
    ) -> Result<(), ExecError> {
        if killed_for_time {
            let message = format!(
                "wall time of {} s exceeded; the job's process group was killed",
                self.opts.walltime.as_secs_f64()
            );
            return self.fail(claimed, FailureKind::Timeout, &message);
        }
        let result =
            read_result(job_dir).filter(|r| r.calculation_id == claimed.calculation_id && r.attempt == claimed.attempt);
        match (result, status) {
            (Some(r), _) => self.harvest(claimed, r),
            (None, Some(s)) if s.signal().is_some() => {
                let message = format!("the job process was killed by signal {}", s.signal().unwrap_or(0));
                self.fail(claimed, FailureKind::Killed, &message)
            }
            (None, s) => {
                let code =
                    s.and_then(|s| s.code()).map(|c| format!("exited with code {c}")).unwrap_or_else(|| "ended".into());
                let message = format!(
                    "the job process {code} without a result{}",
                    last_line(&job_dir.join("stderr")).map(|l| format!(": {l}")).unwrap_or_default()
                );
                self.fail(claimed, FailureKind::Crashed, &message)
            }
        }
    }

    fn harvest(&mut self, claimed: &Claimed, result: crate::job::JobResult) -> Result<(), ExecError> {
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
            EngineOutcome::PhysicsFailure { message } => self.fail(claimed, FailureKind::Physics, &message),
            EngineOutcome::Error { message } => self.fail(claimed, FailureKind::Crashed, &message),
        }
    }

    /// Record a failed attempt, retrying within the budget of its kind.
    fn fail(&mut self, claimed: &Claimed, kind: FailureKind, message: &str) -> Result<(), ExecError> {
        let (used, budget) = if kind.is_physics() {
            (claimed.physics_failures, self.opts.max_physics_retries)
        } else {
            (claimed.infra_failures, self.opts.max_infra_retries)
        };
        let retry = used < budget;
        let remediation = if retry && kind.is_physics() {
            serde_json::from_value::<EngineSpec>(claimed.run_spec.clone())
                .ok()
                .and_then(|spec| spec.remediate(used + 1))
                .map(|(spec, changes)| (serde_json::to_value(spec).expect("engine settings serialise"), changes))
        } else {
            None
        };
        let id = claimed.calculation_id;
        self.store.fail_attempt(
            id,
            claimed.attempt_id,
            kind,
            message,
            retry,
            remediation.as_ref().map(|(v, c)| (v, c.as_str())),
        )?;
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
            let event =
                ExecEvent::Stopping { failed, batch: self.summary.batch, tolerance: self.opts.failure_tolerance };
            let line = event.log_line().unwrap_or_default();
            self.store.log_event(None, "stopped", &line)?;
            self.summary.stopped = Some(line);
            self.observer.event(&event);
        }
        Ok(())
    }

    /// SIGINT/SIGTERM: stop our own jobs and put them back to pending; jobs adopted from
    /// an earlier run keep running and are adopted again next time.
    fn interrupt(&mut self, slots: Vec<Slot>) -> Result<(), ExecError> {
        let mut requeued = 0;
        for slot in slots {
            if let Slot::Own { claimed, mut child, .. } = slot {
                kill_group(child.id() as i32);
                let _ = child.wait();
                self.store.requeue_lost(claimed.calculation_id, claimed.attempt_id, "interrupted by the user")?;
                requeued += 1;
            }
        }
        self.summary.interrupted = true;
        self.observer.event(&ExecEvent::Interrupted { requeued });
        Ok(())
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

fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect())
}
