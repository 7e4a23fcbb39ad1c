//! Batch schedulers (Slurm, Flux) as backends: the cluster's own scheduler runs the
//! jobs; this process submits them, watches them in batches and harvests their results.
//! The database stays the single source of truth; no daemon, no queue of our own.
//!
//! One submission is one job array (Slurm) or one `--cc` set (Flux) of at most
//! `max_tasks` tasks; task K runs the attempt directory on line K+1 of the submission's
//! manifest (`RUN/sched/NAME.tasks`) with `autopipe job-exec`, exactly as the local pool
//! does. Every job name starts with the campaign's prefix (`ap-` and a hash of the run
//! directory), so one `squeue` call per poll sees every job of the campaign.
//!
//! Submission is two-phase (see `autopipe_store::JobStore::submit_attempts`): a kill
//! between the scheduler's submission and the database write is found by the job name on
//! the next start, never submitted again.
//!
//! Reconciliation on start: a calculation the database holds as submitted or running
//! that is still in the queue is adopted and watched; one that left the queue is
//! harvested from its `result.json`, or failed with the scheduler's final state as an
//! infrastructure failure (TIMEOUT, NODE_FAIL, CANCELLED ... never use the physics
//! budget); one the scheduler no longer knows at all, without a result, is failed as
//! vanished (infrastructure budget).

pub mod flux;
pub mod slurm;

use crate::job::{attempt_dir_rel, calc_dir_rel, lock_is_held, read_result, JobError};
use crate::local::{last_line, Pool, INTERRUPTED};
use crate::{ExecError, ExecEvent, Launcher, LocalOptions, Observer, RunSummary};
use autopipe_store::{CalcStatus, FailureKind, JobStore, INTENT_PREFIX};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How a scheduler sees a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedState {
    /// Waiting in the queue (PENDING, CONFIGURING, SCHED ...): ours is `submitted`.
    Queued,
    /// RUNNING, COMPLETING ...: ours is `running`.
    Running,
    /// Out of the queue, with how it ended.
    Ended(Ended),
}

/// How a job ended, as the scheduler says (the word it used is kept for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Completed,
    /// TIMEOUT, DEADLINE: the wall time of the job was exceeded.
    Timeout(String),
    /// NODE_FAIL, BOOT_FAIL, PREEMPTED, OUT_OF_MEMORY, CANCELLED ...: the job was stopped
    /// from outside.
    Killed(String),
    /// FAILED: the job script ended with an error.
    Failed(String),
}

/// A task the scheduler lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedTask {
    /// The scheduler's id of the task (Slurm `ARRAY_TASK`, Flux job id).
    pub id: String,
    pub name: String,
    pub state: SchedState,
}

#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub struct SchedError {
    pub command: String,
    pub message: String,
}

impl SchedError {
    pub fn new(command: impl Into<String>, message: impl Into<String>) -> SchedError {
        SchedError { command: command.into(), message: message.into() }
    }
}

/// One submission: a set of attempt directories run as the tasks of one job array.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The job name (the campaign's prefix and a number).
    pub name: String,
    /// Absolute run directory.
    pub run_dir: PathBuf,
    /// `RUN/sched`: scripts, manifests, the scheduler's own logs.
    pub sched_dir: PathBuf,
    /// The file naming each task's attempt directory, one line per task.
    pub manifest: PathBuf,
    pub tasks: usize,
    /// The scheduler's wall-time limit of each task.
    pub walltime_s: f64,
    /// What the engine is told it has (below the scheduler's limit, so that it stops
    /// cleanly before it is killed).
    pub engine_walltime_s: f64,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Submission {
    /// The scheduler's log of task `token` (`%a` for Slurm, `{cc}` for Flux).
    pub fn log_pattern(&self, token: &str) -> PathBuf {
        self.sched_dir.join(format!("{}_{token}.out", self.name))
    }
}

/// The part of a job script that runs one task: the attempt directory from the
/// manifest's line (index in `$index_var`), then `autopipe job-exec DIR`. Every path is
/// quoted for the shell; nothing of a structure or a user's file name is ever
/// interpreted by it.
pub fn task_body(sub: &Submission, index_var: &str) -> String {
    let mut o = String::new();
    o.push_str(&format!("manifest={}\n", shell_quote(&sub.manifest.display().to_string())));
    o.push_str(&format!("dir=\"$(sed -n \"$((${{{index_var}}} + 1))p\" \"$manifest\")\"\n"));
    o.push_str(&format!(
        "if [ -z \"$dir\" ] || [ ! -d \"$dir\" ]; then echo \"autopipe: task ${{{index_var}}} has no attempt directory in $manifest\" >&2; exit 1; fi\n"
    ));
    o.push_str(&format!("export AUTOPIPE_WALLTIME_S={}\n", sub.engine_walltime_s.floor() as u64));
    let mut cmd = vec![shell_quote(&sub.program.display().to_string())];
    cmd.extend(sub.args.iter().map(|a| shell_quote(a)));
    o.push_str(&format!("exec {} \"$dir\" >\"$dir/stdout\" 2>\"$dir/stderr\"\n", cmd.join(" ")));
    o
}

/// `s` as one shell word: single-quoted, with each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A value that goes into a job script as it is: letters, digits and `_.,:=+-@/%`.
pub fn check_token(name: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.,:=+-@/%".contains(&b)) {
        return Err(format!(
            "{name} = {value:?}: only letters, digits and _.,:=+-@/% are allowed (it goes into the job script)"
        ));
    }
    Ok(())
}

/// The engine's own time limit inside a scheduler's wall time: 10 % (at least 5 s, at
/// most 5 minutes) less, so that it stops cleanly (QE `max_seconds`, CP2K `WALLTIME`)
/// and writes its output before the scheduler kills it.
pub fn engine_walltime_s(walltime_s: f64) -> f64 {
    (walltime_s - (0.1 * walltime_s).clamp(5.0, 300.0)).max(0.5 * walltime_s)
}

/// Run a scheduler's command-line tool; its standard output, or an error with what it
/// said on standard error.
pub fn run_tool(program: &str, args: &[String]) -> Result<String, SchedError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SchedError::new(program, format!("cannot run it: {e} (is it on PATH?)")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(SchedError::new(
            program,
            if err.is_empty() { format!("exited with {}", out.status) } else { err.to_string() },
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A batch scheduler's command-line interface.
pub trait Scheduler {
    /// `slurm`, `flux`: recorded as the backend of every attempt it runs.
    fn name(&self) -> &'static str;
    /// Most tasks in one submission.
    fn max_tasks(&self) -> usize;
    /// The job script of a submission.
    fn script(&self, sub: &Submission) -> String;
    /// Submit; the scheduler's id of each task, in task order.
    fn submit(&self, sub: &Submission, script_path: &Path) -> Result<Vec<String>, SchedError>;
    /// Every task of this user in the queue (pending or running) whose job name starts
    /// with `prefix`: one call, whatever the number of jobs.
    fn queue(&self, prefix: &str) -> Result<Vec<QueuedTask>, SchedError>;
    /// How tasks that left the queue ended, with the scheduler's words; tasks it no
    /// longer knows are absent.
    fn final_states(&self, ids: &[String]) -> Result<HashMap<String, (SchedState, String)>, SchedError>;
    /// Stop tasks (queued or running).
    fn cancel(&self, ids: &[String]) -> Result<(), SchedError>;
    /// For messages: "Slurm (partition debug)".
    fn describe(&self) -> String;
}

/// How a scheduler campaign is run.
#[derive(Clone, Debug)]
pub struct SchedOptions {
    /// Time between two looks at the queue.
    pub poll: Duration,
    /// Submit and return at once, without waiting (a later `jobs run` picks the
    /// campaign up).
    pub detach: bool,
    /// Submit at most this many calculations (with `detach`: `jobs submit --batch-size`).
    pub limit: Option<usize>,
    /// Skip pending calculations that failed this many times or more.
    pub max_fail_count: Option<u32>,
}

impl Default for SchedOptions {
    fn default() -> Self {
        SchedOptions { poll: Duration::from_secs(5), detach: false, limit: None, max_fail_count: None }
    }
}

/// The prefix of every job name of the campaign of `run_dir`: `ap-` and 8 hex digits of
/// a hash of its absolute path.
pub fn campaign_prefix(run_dir: &Path) -> String {
    let abs = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("ap-{:08x}-", (h >> 32) as u32 ^ h as u32)
}

/// A calculation this orchestrator watches.
#[derive(Clone, Debug)]
struct Tracked {
    calc: i64,
    attempt_id: i64,
    attempt: u32,
    /// The scheduler's id; empty for a local job left by a local run (watched by its lock).
    backend_id: String,
    job_dir: PathBuf,
    running: bool,
}

/// Run every pending calculation of `store` through `sched`, after reconciling what the
/// database holds in flight. Returns when nothing is pending or in flight (or at once
/// after submitting, with `detach`).
pub fn run_scheduled(
    store: &mut JobStore,
    run_dir: &Path,
    opts: &LocalOptions,
    sched: &dyn Scheduler,
    sopts: &SchedOptions,
    launcher: &Launcher,
    observer: &mut dyn Observer,
) -> Result<RunSummary, ExecError> {
    crate::local::install_signal_handlers();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let result = campaign(store, run_dir, opts, sched, sopts, launcher, observer);
    crate::local::restore_signal_handlers();
    result
}

fn campaign(
    store: &mut JobStore,
    run_dir: &Path,
    opts: &LocalOptions,
    sched: &dyn Scheduler,
    sopts: &SchedOptions,
    launcher: &Launcher,
    observer: &mut dyn Observer,
) -> Result<RunSummary, ExecError> {
    let run_dir_abs = std::fs::canonicalize(run_dir).map_err(|e| ExecError::Io { path: run_dir.into(), error: e })?;
    store.take_leases(autopipe_store::this_process_owner(), crate::local::LEASE.as_secs_f64());
    let version = store.data_version()?;
    let mut pool =
        Pool { store, run_dir, opts, observer, summary: RunSummary::default(), version, checked: Instant::now() };
    let mut c = Campaign {
        sched,
        prefix: campaign_prefix(run_dir),
        run_dir: run_dir_abs,
        tracked: Vec::new(),
        submitted: 0,
        seq: 0,
        query_failures: 0,
    };
    c.reconcile(&mut pool)?;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            c.detach_event(&mut pool, true)?;
            break;
        }
        c.drop_cancelled(&mut pool)?;
        if pool.summary.stopped.is_none() {
            c.submit_pending(&mut pool, sopts, launcher)?;
        }
        if sopts.detach {
            c.detach_event(&mut pool, false)?;
            break;
        }
        if c.tracked.is_empty() {
            break;
        }
        // Sleep in small steps: Ctrl-C and cancellations are noticed at once.
        let until = Instant::now() + sopts.poll;
        while Instant::now() < until && !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50).min(sopts.poll));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            continue;
        }
        c.poll(&mut pool)?;
    }
    pool.summary.pending = pool.store.counts()?.pending;
    if pool.summary.stopped.is_some() {
        let line = pool.stop_message()?;
        pool.store.log_event(None, "stopped", &line)?;
        pool.summary.stopped = Some(line);
    }
    Ok(pool.summary)
}

struct Campaign<'s> {
    sched: &'s dyn Scheduler,
    prefix: String,
    run_dir: PathBuf,
    tracked: Vec<Tracked>,
    /// Calculations submitted by this process.
    submitted: usize,
    seq: u32,
    /// Consecutive failed looks at the queue.
    query_failures: u32,
}

/// How many failed looks at the queue in a row end the campaign (with an error): a
/// controller restarting is waited for, a scheduler that is gone is not.
const MAX_QUERY_FAILURES: u32 = 30;

impl Campaign<'_> {
    fn reconcile(&mut self, pool: &mut Pool) -> Result<(), ExecError> {
        let flights = pool.store.claim_in_flight()?;
        if flights.is_empty() {
            pool.summary.batch = pool.batch_size(0)?;
            pool.observer.event(&ExecEvent::Batch { total: pool.summary.batch, adopted: 0, harvested: 0, requeued: 0 });
            return Ok(());
        }
        let queue = self.queue()?;
        let by_id: HashMap<&str, &QueuedTask> = queue.iter().map(|t| (t.id.as_str(), t)).collect();
        let (mut adopted, mut requeued) = (0, 0);
        let mut ended = Vec::new();
        let mut to_cancel = Vec::new();
        for f in flights {
            let job_dir = crate::local::attempt_dir(pool.run_dir, f.job_dir.as_deref(), f.calculation_id, f.attempt);
            let backend_id = f.backend_id.clone().unwrap_or_default();
            let mut t = Tracked {
                calc: f.calculation_id,
                attempt_id: f.attempt_id,
                attempt: f.attempt,
                backend_id: backend_id.clone(),
                job_dir,
                running: !f.submitted,
            };
            if f.backend.as_deref() != Some(self.sched.name()) {
                // Left by a local run: watched by its job lock until it ends.
                t.backend_id.clear();
                if lock_is_held(&t.job_dir) {
                    adopted += 1;
                    self.tracked.push(t);
                } else {
                    ended.push(t);
                }
                continue;
            }
            if let Some(name) = backend_id.strip_prefix(INTENT_PREFIX) {
                // Submission intent: was it submitted before the orchestrator died?
                let found: Vec<&QueuedTask> = queue.iter().filter(|q| q.name == name).collect();
                if !found.is_empty() {
                    match self.task_of(name, f.calculation_id, &found) {
                        Some(task) => {
                            pool.store.confirm_submitted(&[(f.calculation_id, f.attempt_id, task.id.clone())])?;
                            t.backend_id = task.id.clone();
                            t.running = task.state == SchedState::Running;
                            adopted += 1;
                            self.tracked.push(t);
                        }
                        None => {
                            // Queued, but which task is whose cannot be told: stop them all and
                            // submit again (nothing has run twice; nothing is lost).
                            to_cancel.extend(found.iter().map(|q| q.id.clone()));
                            requeued += 1;
                            pool.store.requeue_lost(
                                f.calculation_id,
                                f.attempt_id,
                                "submission found unconfirmed; submitted again",
                            )?;
                        }
                    }
                } else if matches!(read_result(&t.job_dir), Ok(Some(_)) | Err(_)) {
                    ended.push(t);
                } else {
                    requeued += 1;
                    pool.store.requeue_lost(
                        f.calculation_id,
                        f.attempt_id,
                        "the orchestrator stopped while submitting this attempt and the scheduler has no job of it",
                    )?;
                }
                continue;
            }
            match by_id.get(backend_id.as_str()) {
                Some(task) => {
                    t.running = task.state == SchedState::Running;
                    adopted += 1;
                    self.tracked.push(t);
                }
                None => ended.push(t),
            }
        }
        to_cancel.sort();
        to_cancel.dedup();
        if !to_cancel.is_empty() {
            self.sched.cancel(&to_cancel).map_err(sched_error)?;
        }
        let harvested = ended.len();
        self.finish(pool, ended)?;
        pool.summary.batch = pool.batch_size(self.tracked.len())?;
        pool.observer.event(&ExecEvent::Batch { total: pool.summary.batch, adopted, harvested, requeued });
        Ok(())
    }

    /// The task of calculation `calc` in the queued tasks of submission `name`, by its
    /// line in the submission's manifest (Slurm task ids end in `_INDEX`).
    fn task_of<'q>(&self, name: &str, calc: i64, found: &[&'q QueuedTask]) -> Option<&'q QueuedTask> {
        let ids = std::fs::read_to_string(self.run_dir.join("sched").join(format!("{name}.ids"))).ok()?;
        let index = ids.lines().position(|l| l.trim().parse::<i64>().ok() == Some(calc))?;
        found.iter().copied().find(|q| q.id.rsplit_once('_').map(|(_, k)| k) == Some(&index.to_string()))
    }

    fn queue(&mut self) -> Result<Vec<QueuedTask>, ExecError> {
        queue_with_retries(self.sched, &self.prefix, &mut self.query_failures)
    }

    /// Submit pending calculations (up to the limit), one submission per `max_tasks`.
    fn submit_pending(&mut self, pool: &mut Pool, sopts: &SchedOptions, launcher: &Launcher) -> Result<(), ExecError> {
        loop {
            let room = sopts.limit.map(|l| l.saturating_sub(self.submitted)).unwrap_or(usize::MAX);
            if room == 0 || pool.summary.stopped.is_some() {
                return Ok(());
            }
            let ids = pool.store.pending_ids_below(room.min(self.sched.max_tasks()), sopts.max_fail_count)?;
            if ids.is_empty() {
                return Ok(());
            }
            self.submit(pool, &ids, launcher)?;
        }
    }

    fn submit(&mut self, pool: &mut Pool, ids: &[i64], launcher: &Launcher) -> Result<(), ExecError> {
        self.seq += 1;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0);
        let name = format!("{}{millis}{:03}", self.prefix, self.seq % 1000);
        let claimed = pool.store.submit_attempts(ids, self.sched.name(), &name, calc_dir_rel)?;
        if claimed.is_empty() {
            return Ok(());
        }
        self.submitted += claimed.len();
        let walltime_s = pool.opts.walltime.as_secs_f64();
        let engine_walltime = engine_walltime_s(walltime_s);
        let mut ready = Vec::new();
        for cl in &claimed {
            let job_dir = self.run_dir.join(attempt_dir_rel(cl.calculation_id, cl.attempt));
            match crate::job::prepare_attempt(cl, &job_dir, Some(engine_walltime)) {
                Ok(()) => ready.push((cl.clone(), job_dir)),
                Err(message) => {
                    let r = pool.fail_in(cl, FailureKind::Setup, &message, 0);
                    pool.settle(cl.calculation_id, r)?;
                }
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let sched_dir = self.run_dir.join("sched");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| ExecError::Io { path, error }
        };
        std::fs::create_dir_all(&sched_dir).map_err(io(&sched_dir))?;
        let sub = Submission {
            name: name.clone(),
            run_dir: self.run_dir.clone(),
            sched_dir: sched_dir.clone(),
            manifest: sched_dir.join(format!("{name}.tasks")),
            tasks: ready.len(),
            walltime_s,
            engine_walltime_s: engine_walltime,
            program: launcher.program.clone(),
            args: launcher.args.clone(),
        };
        let mut manifest = String::new();
        let mut id_lines = String::new();
        for (cl, dir) in &ready {
            manifest.push_str(&format!("{}\n", dir.display()));
            id_lines.push_str(&format!("{}\n", cl.calculation_id));
        }
        let ids_path = sched_dir.join(format!("{name}.ids"));
        crate::job::write_atomic(&ids_path, id_lines.as_bytes()).map_err(|e| ExecError::Job(e.to_string()))?;
        crate::job::write_atomic(&sub.manifest, manifest.as_bytes()).map_err(|e| ExecError::Job(e.to_string()))?;
        let script_path = sched_dir.join(format!("{name}.sh"));
        crate::job::write_atomic(&script_path, self.sched.script(&sub).as_bytes())
            .map_err(|e| ExecError::Job(e.to_string()))?;
        let task_ids = match self.sched.submit(&sub, &script_path) {
            Ok(ids) => ids,
            Err(e) => {
                // Nothing was submitted: back to pending without using a retry, and the
                // campaign stops with the scheduler's own words (a wrong partition, an
                // account without allocation ... is the user's to fix).
                for (cl, _) in &ready {
                    pool.store.requeue_lost(cl.calculation_id, cl.attempt_id, &format!("not submitted: {e}"))?;
                }
                return Err(sched_error(e));
            }
        };
        // Fault injection for the test of two-phase submission (a kill between the
        // scheduler's submission and the database write cannot be timed from outside).
        if std::env::var_os("AUTOPIPE_TEST_ABORT_AFTER_SUBMIT").is_some() {
            std::process::abort();
        }
        let confirmed: Vec<(i64, i64, String)> =
            ready.iter().zip(&task_ids).map(|((cl, _), id)| (cl.calculation_id, cl.attempt_id, id.clone())).collect();
        pool.store.confirm_submitted(&confirmed)?;
        for ((cl, dir), id) in ready.into_iter().zip(task_ids) {
            pool.observer.event(&ExecEvent::Started { id: cl.calculation_id, attempt: cl.attempt });
            self.tracked.push(Tracked {
                calc: cl.calculation_id,
                attempt_id: cl.attempt_id,
                attempt: cl.attempt,
                backend_id: id,
                job_dir: dir,
                running: false,
            });
        }
        let event = ExecEvent::Submitted {
            name,
            tasks: confirmed.len(),
            scheduler: self.sched.describe(),
            script: script_path,
        };
        if let Some(line) = event.log_line() {
            pool.store.log_event(None, "submit", &line)?;
        }
        pool.observer.event(&event);
        pool.summary.batch = pool.batch_size(self.tracked.len())?;
        Ok(())
    }

    /// One look at the queue: start times recorded, ended tasks harvested or failed.
    fn poll(&mut self, pool: &mut Pool) -> Result<(), ExecError> {
        pool.store.renew_leases()?;
        let queue = self.queue()?;
        let by_id: HashMap<&str, &SchedState> = queue.iter().map(|t| (t.id.as_str(), &t.state)).collect();
        let mut started = Vec::new();
        let mut ended = Vec::new();
        for t in std::mem::take(&mut self.tracked) {
            let state = if t.backend_id.is_empty() {
                lock_is_held(&t.job_dir).then_some(&SchedState::Running)
            } else {
                by_id.get(t.backend_id.as_str()).copied()
            };
            match state {
                Some(SchedState::Running) if !t.running => {
                    started.push(t.calc);
                    self.tracked.push(Tracked { running: true, ..t });
                }
                Some(SchedState::Queued | SchedState::Running) => self.tracked.push(t),
                _ => ended.push(t),
            }
        }
        if !started.is_empty() {
            pool.store.mark_running(&started)?;
        }
        self.finish(pool, ended)
    }

    /// Tasks that left the queue: harvested from their result, or failed with the
    /// scheduler's final state (one batch query for all of them).
    fn finish(&mut self, pool: &mut Pool, ended: Vec<Tracked>) -> Result<(), ExecError> {
        let mut no_result = Vec::new();
        for t in ended {
            let claimed = match pool.store.load_running(t.calc, t.attempt_id) {
                Ok(c) => c,
                Err(e) => return Err(e.into()),
            };
            // Another process (cancel) may have moved it meanwhile.
            if !matches!(pool.store.status_of(t.calc)?, Some(CalcStatus::Running | CalcStatus::Submitted)) {
                continue;
            }
            let running = self.tracked.len() + 1;
            match read_result(&t.job_dir) {
                Ok(Some(r)) if r.calculation_id == t.calc && r.attempt == t.attempt => {
                    let res = pool.harvest_in(&claimed, r, running);
                    pool.settle(t.calc, res)?;
                }
                // A local job left by an earlier local run, gone without a result: back to
                // pending without using a retry, as the local pool does.
                Ok(_) if t.backend_id.is_empty() => pool.store.requeue_lost(
                    t.calc,
                    t.attempt_id,
                    "the orchestrator stopped while this attempt was in flight and the job left no result",
                )?,
                Ok(_) => no_result.push((t, claimed)),
                Err(e @ (JobError::CorruptResult { .. } | JobError::Io { .. } | JobError::BadJobFile { .. })) => {
                    let res = pool.fail_in(&claimed, FailureKind::Crashed, &e.to_string(), running);
                    pool.settle(t.calc, res)?;
                }
            }
        }
        if no_result.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = no_result.iter().map(|(t, _)| t.backend_id.clone()).filter(|i| !i.is_empty()).collect();
        let states = if ids.is_empty() { HashMap::new() } else { self.sched.final_states(&ids).unwrap_or_default() };
        let who = self.sched.describe();
        for (t, claimed) in no_result {
            let stderr =
                last_line(&t.job_dir.join("stderr")).map(|l| format!("; its stderr ends: {l}")).unwrap_or_default();
            let (kind, message) = match states.get(&t.backend_id) {
                Some((SchedState::Ended(Ended::Timeout(w)), detail)) => (
                    FailureKind::Timeout,
                    format!(
                        "{who} ended job {} {w} (wall time {} s) without a result [{detail}]",
                        t.backend_id,
                        pool.opts.walltime.as_secs_f64()
                    ),
                ),
                Some((SchedState::Ended(Ended::Killed(w)), detail)) => {
                    (FailureKind::Killed, format!("{who} ended job {} {w} without a result [{detail}]", t.backend_id))
                }
                Some((SchedState::Ended(Ended::Failed(w)), detail)) => (
                    FailureKind::Crashed,
                    format!("{who} job {} ended {w} without a result [{detail}]{stderr}", t.backend_id),
                ),
                Some((_, detail)) => (
                    FailureKind::Crashed,
                    format!("{who} job {} ended without a result [{detail}]{stderr}", t.backend_id),
                ),
                None => (
                    FailureKind::Killed,
                    format!(
                        "{who} job {} left the queue without a result and the scheduler no longer knows it{stderr}",
                        t.backend_id
                    ),
                ),
            };
            let running = self.tracked.len() + 1;
            let res = pool.fail_in(&claimed, kind, &message, running);
            pool.settle(t.calc, res)?;
        }
        Ok(())
    }

    /// When another process changed the database, stop the jobs of calculations that are
    /// no longer in flight (cancelled) and stop watching them.
    fn drop_cancelled(&mut self, pool: &mut Pool) -> Result<(), ExecError> {
        let version = pool.store.data_version()?;
        if version == pool.version {
            return Ok(());
        }
        pool.version = version;
        let mut gone = Vec::new();
        let mut keep = Vec::new();
        for t in std::mem::take(&mut self.tracked) {
            match pool.store.status_of(t.calc)? {
                Some(CalcStatus::Running | CalcStatus::Submitted) => keep.push(t),
                _ => gone.push(t),
            }
        }
        self.tracked = keep;
        let ids: Vec<String> = gone.iter().map(|t| t.backend_id.clone()).filter(|i| !i.is_empty()).collect();
        if !ids.is_empty() {
            self.sched.cancel(&ids).map_err(sched_error)?;
        }
        for t in gone {
            pool.summary.cancelled += 1;
            pool.observer.event(&ExecEvent::Cancelled { id: t.calc });
        }
        pool.summary.batch = pool.batch_size(self.tracked.len())?;
        Ok(())
    }

    fn detach_event(&mut self, pool: &mut Pool, interrupted: bool) -> Result<(), ExecError> {
        let in_flight = self.tracked.iter().filter(|t| !t.backend_id.is_empty()).count();
        pool.summary.in_flight = in_flight as u64;
        pool.summary.interrupted = interrupted;
        let labels = pool.store.counts()?.done;
        pool.observer.event(&ExecEvent::Detached { in_flight, labels, scheduler: self.sched.describe(), interrupted });
        Ok(())
    }
}

/// The queue, asked again with backoff while the scheduler does not answer (a
/// controller restarting); an error after `MAX_QUERY_FAILURES` failures in a row.
fn queue_with_retries(sched: &dyn Scheduler, prefix: &str, failures: &mut u32) -> Result<Vec<QueuedTask>, ExecError> {
    let mut wait = Duration::from_millis(500);
    loop {
        match sched.queue(prefix) {
            Ok(q) => {
                *failures = 0;
                return Ok(q);
            }
            Err(e) => {
                *failures += 1;
                if *failures >= MAX_QUERY_FAILURES {
                    return Err(sched_error(e));
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Write a submission's manifest and script and submit it: the scheduler's task ids.
fn submit_dirs(
    sched: &dyn Scheduler,
    run_dir: &Path,
    name: &str,
    dirs: &[&PathBuf],
    opts: &LocalOptions,
    launcher: &Launcher,
) -> Result<(Vec<String>, PathBuf), ExecError> {
    let sched_dir = run_dir.join("sched");
    std::fs::create_dir_all(&sched_dir).map_err(|error| ExecError::Io { path: sched_dir.clone(), error })?;
    let walltime_s = opts.walltime.as_secs_f64();
    let sub = Submission {
        name: name.to_string(),
        run_dir: run_dir.to_path_buf(),
        sched_dir: sched_dir.clone(),
        manifest: sched_dir.join(format!("{name}.tasks")),
        tasks: dirs.len(),
        walltime_s,
        engine_walltime_s: engine_walltime_s(walltime_s),
        program: launcher.program.clone(),
        args: launcher.args.clone(),
    };
    let manifest: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    crate::job::write_atomic(&sub.manifest, manifest.as_bytes()).map_err(|e| ExecError::Job(e.to_string()))?;
    let script_path = sched_dir.join(format!("{name}.sh"));
    crate::job::write_atomic(&script_path, sched.script(&sub).as_bytes()).map_err(|e| ExecError::Job(e.to_string()))?;
    let ids = sched.submit(&sub, &script_path).map_err(sched_error)?;
    Ok((ids, script_path))
}

/// Run task directories (see `crate::tasks`) as one submission whose job name ends in
/// `label` (the same label for the same work: generation 3's exploration is `x3`). Tasks
/// of that name still in the queue, left by an orchestrator that died, are waited for
/// first; only tasks without a result are submitted. Ctrl-C leaves the jobs to the
/// scheduler (the next run waits for them).
pub fn run_tasks_scheduled(
    sched: &dyn Scheduler,
    run_dir: &Path,
    label: &str,
    dirs: &[PathBuf],
    opts: &LocalOptions,
    poll: Duration,
    launcher: &Launcher,
) -> Result<Vec<crate::tasks::TaskEnd>, ExecError> {
    use crate::tasks::task_done;
    crate::local::install_signal_handlers();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let result = (|| {
        let run_dir = std::fs::canonicalize(run_dir).map_err(|error| ExecError::Io { path: run_dir.into(), error })?;
        let prefix = campaign_prefix(&run_dir);
        let name = format!("{prefix}{label}");
        let mut failures = 0;
        let wait_for_name = |failures: &mut u32| -> Result<(), ExecError> {
            loop {
                let q = queue_with_retries(sched, &prefix, failures)?;
                if !q.iter().any(|t| t.name == name) {
                    return Ok(());
                }
                let until = Instant::now() + poll;
                while Instant::now() < until {
                    if INTERRUPTED.load(Ordering::SeqCst) {
                        return Err(ExecError::Interrupted);
                    }
                    std::thread::sleep(Duration::from_millis(50).min(poll));
                }
            }
        };
        wait_for_name(&mut failures)?;
        let todo: Vec<&PathBuf> = dirs.iter().filter(|d| !task_done(d)).collect();
        let mut ids = Vec::new();
        if !todo.is_empty() {
            let (task_ids, _) = submit_dirs(sched, &run_dir, &name, &todo, opts, launcher)?;
            ids = task_ids;
            wait_for_name(&mut failures)?;
        }
        let missing: Vec<String> =
            todo.iter().zip(&ids).filter(|(d, _)| !task_done(d)).map(|(_, id)| id.clone()).collect();
        let states = if missing.is_empty() { HashMap::new() } else { sched.final_states(&missing).unwrap_or_default() };
        let by_dir: HashMap<&PathBuf, &String> = todo.iter().copied().zip(&ids).collect();
        Ok(dirs
            .iter()
            .map(|d| {
                if task_done(d) {
                    return None;
                }
                let id = by_dir.get(d).map(|s| s.as_str()).unwrap_or("?");
                let how = states.get(id).map(|(_, detail)| format!(" [{detail}]")).unwrap_or_default();
                let stderr = last_line(&d.join("stderr")).map(|l| format!("; its stderr ends: {l}")).unwrap_or_default();
                Some(format!("{} task {id} ended without a result{how}{stderr}", sched.describe()))
            })
            .collect())
    })();
    crate::local::restore_signal_handlers();
    result
}

fn sched_error(e: SchedError) -> ExecError {
    ExecError::Scheduler(e.to_string())
}

/// Stop the scheduler jobs of calculations `jobs cancel` cancelled (their backend ids).
pub fn cancel_jobs(sched: &dyn Scheduler, backend_ids: &[String]) -> Result<(), ExecError> {
    let ids: Vec<String> = backend_ids
        .iter()
        .filter(|i| !i.is_empty() && !i.starts_with(INTENT_PREFIX))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    sched.cancel(&ids).map_err(sched_error)
}

#[cfg(test)]
mod tests;
