//! The job manager of a campaign, on the job directories: stalled running jobs
//! (`jobs status --stalled`, `jobs reset --stalled`) and the rescan of job directories
//! for jobs run or finished outside the orchestrator (`jobs update`).
//!
//! `update` looks, for every calculation that is not finished, at the attempt directory
//! where a job of it runs or would run: the latest attempt's for a running one,
//! `attempt-(N+1)` for one with N attempts that is pending, failed or timed out (a job
//! started by hand or by a scheduler script). A directory whose job lock is held is
//! still running and left alone. A `result.json` is harvested as the executor harvests
//! it; without one, the engine's output (plain or gzipped) is parsed with the engine's
//! parser and recorded: done, a physics failure (retried on the physics budget, with the
//! remediation ladder), or an infrastructure failure. An output that stops mid-run
//! (truncated) is a job still being written and is left alone.

use crate::job::{calc_dir_rel, lock_is_held, read_result, JobFile, JobResult, JOB_FILE, RESULT_FILE};
use crate::local::{attempt_dir, stop_job, ExecError};
use autopipe_engines::output::{ParsedOutput, RunStatus};
use autopipe_engines::{cp2k, orca, qe, vasp, EngineOutcome, EngineSpec};
use autopipe_store::{CalcResult, CalcStatus, Claimed, FailureKind, JobStore, RunningCalc, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running calculation whose attempt directory has not changed for a while.
#[derive(Clone, Debug, Serialize)]
pub struct Stalled {
    pub id: i64,
    pub attempt: u32,
    /// The attempt's directory.
    pub dir: PathBuf,
    /// Seconds since the newest modification in it (or since the attempt started, when
    /// the directory is missing or empty).
    pub idle_s: f64,
    /// Whether a live job still holds the attempt's lock.
    pub lock_held: bool,
    pub fail_count: u32,
    #[serde(skip)]
    running: RunningCalc,
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The newest modification time (unix seconds) of `dir` and of the files and
/// directories inside it, three levels deep (an engine's scratch directories).
pub fn newest_modification_s(dir: &Path) -> Option<f64> {
    fn walk(dir: &Path, depth: u32, newest: &mut Option<f64>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if let Ok(t) = meta.modified() {
                let t = unix_s(t);
                *newest = Some(newest.map_or(t, |n: f64| n.max(t)));
            }
            if meta.is_dir() && depth > 0 {
                walk(&e.path(), depth - 1, newest);
            }
        }
    }
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok().map(unix_s);
    walk(dir, 3, &mut newest);
    newest
}

/// Running calculations whose attempt directory's newest modification is older than
/// `after_s` seconds (a job that stopped writing: hung, or lost without anyone noticing).
pub fn stalled(store: &JobStore, run_dir: &Path, after_s: f64) -> Result<Vec<Stalled>, ExecError> {
    let now = autopipe_store::now_s();
    let mut out = Vec::new();
    for running in store.running_calculations()? {
        let dir = attempt_dir(run_dir, running.job_dir.as_deref(), running.id, running.attempt);
        let last = newest_modification_s(&dir).unwrap_or(running.started_at_s);
        let idle_s = now - last;
        if idle_s > after_s {
            out.push(Stalled {
                id: running.id,
                attempt: running.attempt,
                lock_held: lock_is_held(&dir),
                dir,
                idle_s,
                fail_count: running.fail_count,
                running,
            });
        }
    }
    Ok(out)
}

/// What `reset --stalled` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StalledReset {
    /// Put back to pending (their job stopped first when it still held its lock).
    pub reset: Vec<i64>,
    /// Of those, the ones whose live job was stopped.
    pub stopped: Vec<i64>,
    /// Left as they are: their fail_count reached the limit (id, fail_count).
    pub chronic: Vec<(i64, u32)>,
    /// Left running: their job holds its lock and could not be stopped from here (no
    /// process group recorded, or it did not let go in time).
    pub not_stopped: Vec<i64>,
}

/// Stalled running calculations back to pending: a job still holding its lock is
/// stopped first (its process group killed, as `jobs cancel` does); the attempt is
/// recorded as `stalled` and counts in `fail_count`. Those whose `fail_count` reached
/// `max_fail_count` are chronic and left as they are.
pub fn reset_stalled(
    store: &mut JobStore,
    run_dir: &Path,
    after_s: f64,
    max_fail_count: Option<u32>,
) -> Result<StalledReset, ExecError> {
    let mut report = StalledReset::default();
    for s in stalled(store, run_dir, after_s)? {
        if max_fail_count.is_some_and(|k| s.fail_count >= k) {
            report.chronic.push((s.id, s.fail_count));
            continue;
        }
        if s.lock_held {
            let r = &s.running;
            stop_job(run_dir, r.job_dir.as_deref(), r.id, r.attempt, r.backend_id.as_deref());
            let deadline = Instant::now() + Duration::from_secs(5);
            while lock_is_held(&s.dir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if lock_is_held(&s.dir) {
                report.not_stopped.push(s.id);
                continue;
            }
            report.stopped.push(s.id);
        }
        let message =
            format!("stalled: nothing in {} changed for {:.1} h; reset to pending", s.dir.display(), s.idle_s / 3600.0);
        if store.reset_stalled(s.id, s.running.attempt_id, &message)? {
            report.reset.push(s.id);
        }
    }
    Ok(report)
}

/// Retry budgets `jobs update` applies to the failures it records (as `jobs run` does).
#[derive(Clone, Debug)]
pub struct UpdateOptions {
    pub max_physics_retries: u32,
    pub max_infra_retries: u32,
}

/// What `jobs update` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateReport {
    /// Directories looked at (calculations not finished).
    pub scanned: usize,
    /// Recorded as done: (id, where the result came from).
    pub done: Vec<(i64, String)>,
    /// Failed attempts recorded: (id, status after it, message).
    pub failed: Vec<(i64, CalcStatus, String)>,
    /// Jobs still running (their lock is held).
    pub running: Vec<i64>,
    /// Outputs that stop mid-run with no job holding the lock: (id, file). Left alone
    /// (a job still being written elsewhere, or one that died: `status --stalled`).
    pub incomplete: Vec<(i64, PathBuf)>,
    /// Directories that could not be used: (id, why).
    pub problems: Vec<(i64, String)>,
}

/// The engine output of an attempt directory, by the file names the engines write
/// (plain or gzipped): ORCA `orca.out` (or any `*.out`), QE `pw.out`, CP2K `cp2k.out`,
/// VASP `vasprun.xml`.
fn find_output(engine: &EngineSpec, dir: &Path) -> Option<PathBuf> {
    let named =
        |names: &[&str]| names.iter().flat_map(|n| [dir.join(n), dir.join(format!("{n}.gz"))]).find(|p| p.is_file());
    match engine {
        EngineSpec::Orca(_) => named(&["orca.out"]).or_else(|| {
            // any other ORCA output name, the newest; never the job process's own logs
            let mut outs: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    (name.ends_with(".out") || name.ends_with(".out.gz")) && p.is_file()
                })
                .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
                .collect();
            outs.sort();
            outs.pop().map(|(_, p)| p)
        }),
        EngineSpec::Qe(_) => named(&["pw.out"]),
        EngineSpec::Cp2k(_) => named(&["cp2k.out"]),
        EngineSpec::Vasp(_) => named(&["vasprun.xml"]),
        EngineSpec::Emt | EngineSpec::Command { .. } | EngineSpec::Ase(_) => None,
    }
}

/// Parse an engine output file (gunzipped when it is gzip, whatever its name).
fn parse_output(engine: &EngineSpec, path: &Path) -> Result<ParsedOutput, String> {
    let text = orca::read_maybe_gz(path).map_err(|e| e.to_string())?;
    let source = path.display().to_string();
    let parsed = match engine {
        EngineSpec::Orca(_) => orca::parse_orca_output(&text, &source),
        EngineSpec::Qe(_) => qe::parse_pw_output(&text, &source),
        EngineSpec::Cp2k(_) => cp2k::parse_cp2k_output(&text, &source),
        EngineSpec::Vasp(_) => vasp::parse_vasprun(&text, &source),
        EngineSpec::Emt | EngineSpec::Command { .. } | EngineSpec::Ase(_) => {
            return Err("this engine writes no output to parse".into())
        }
    };
    parsed.map_err(|e| e.to_string())
}

/// Whether the `job.json` of `dir` is a job of calculation `id`: the same structure and
/// the same label-defining settings.
fn same_job(store: &JobStore, id: i64, dir: &Path) -> Result<(), String> {
    let path = dir.join(JOB_FILE);
    let job: JobFile = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let calc = store.calculation(id).map_err(|e| e.to_string())?.ok_or("no such calculation")?;
    if job.calculation_id != id
        || job.structure.content_hash() != calc.structure.hash
        || job.engine.label_params() != calc.label_params
    {
        return Err(format!(
            "{} is not a job of this calculation (another structure or other settings)",
            path.display()
        ));
    }
    Ok(())
}

/// What the harvest of one directory found to record.
enum Found {
    Result(JobResult),
    Parsed(PathBuf, ParsedOutput),
}

/// Rescan the job directories of every unfinished calculation and record what jobs run
/// outside the orchestrator left there (see the module's documentation). The caller
/// holds the run lock.
pub fn update(store: &mut JobStore, run_dir: &Path, opts: &UpdateOptions) -> Result<UpdateReport, ExecError> {
    let mut report = UpdateReport::default();
    for c in store.update_candidates()? {
        let calc_rel = c.job_dir.clone().unwrap_or_else(|| calc_dir_rel(c.id));
        let in_flight = c.status == CalcStatus::Running;
        let (dir, attempt) = if in_flight {
            (attempt_dir(run_dir, c.job_dir.as_deref(), c.id, c.attempts), c.attempts)
        } else {
            (run_dir.join(&calc_rel).join(format!("attempt-{}", c.attempts + 1)), c.attempts + 1)
        };
        if !dir.is_dir() {
            continue;
        }
        report.scanned += 1;
        if lock_is_held(&dir) {
            report.running.push(c.id);
            continue;
        }
        // The engine is the calculation's (its run spec), whatever a directory says.
        let found = if dir.join(RESULT_FILE).exists() {
            match read_result(&dir) {
                Ok(Some(r)) if r.calculation_id == c.id && r.attempt == attempt => {
                    // A job started outside the orchestrator: its job.json must be this
                    // calculation's (not that of a forgotten one whose id was given again).
                    if !in_flight {
                        if let Err(why) = same_job(store, c.id, &dir) {
                            report.problems.push((c.id, why));
                            continue;
                        }
                    }
                    Found::Result(r)
                }
                Ok(Some(r)) => {
                    let why = format!(
                        "{} is of calculation {} attempt {}, not of calculation {} attempt {attempt}",
                        dir.join(RESULT_FILE).display(),
                        r.calculation_id,
                        r.attempt,
                        c.id
                    );
                    report.problems.push((c.id, why));
                    continue;
                }
                Ok(None) => continue,
                Err(e) => {
                    report.problems.push((c.id, e.to_string()));
                    continue;
                }
            }
        } else {
            let claimed_spec = match store.run_spec_of(c.id)? {
                Some(v) => v,
                None => continue,
            };
            let engine: EngineSpec = match serde_json::from_value(claimed_spec) {
                Ok(e) => e,
                Err(e) => {
                    report.problems.push((c.id, format!("stored engine settings are unreadable: {e}")));
                    continue;
                }
            };
            let Some(path) = find_output(&engine, &dir) else { continue };
            match parse_output(&engine, &path) {
                Ok(p) if p.status == RunStatus::Truncated => {
                    report.incomplete.push((c.id, path));
                    continue;
                }
                Ok(p) => Found::Parsed(path, p),
                Err(e) => {
                    report.problems.push((c.id, e));
                    continue;
                }
            }
        };
        let claimed = if in_flight {
            match c.attempt_id {
                Some(a) => store.load_running(c.id, a)?,
                None => continue,
            }
        } else {
            match store.start_external_attempt(c.id, &calc_rel) {
                Ok(claimed) => claimed,
                // cancelled or forgotten meanwhile (`jobs cancel` takes no run lock)
                Err(e @ (StoreError::WrongState { .. } | StoreError::NoSuchCalculation(_))) => {
                    report.problems.push((c.id, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        record(store, &claimed, found, opts, &mut report)?;
    }
    Ok(report)
}

/// Record what a directory held for an attempt in flight, as the executor does.
fn record(
    store: &mut JobStore,
    claimed: &Claimed,
    found: Found,
    opts: &UpdateOptions,
    report: &mut UpdateReport,
) -> Result<(), ExecError> {
    let id = claimed.calculation_id;
    let (outcome, wall_time_s, input_error, source) = match found {
        Found::Result(r) => (r.outcome, Some(r.wall_time_s), r.input_error, RESULT_FILE.to_string()),
        Found::Parsed(path, p) => {
            let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let wall = p.wall_time_s;
            (parsed_outcome(p, claimed.structure.len()), wall, false, source)
        }
    };
    match outcome {
        EngineOutcome::Labels { labels, scf_steps } => {
            let calc = CalcResult {
                max_force_ev_per_a: labels.max_force_ev_per_a(),
                energy_ev: labels.energy_ev,
                forces_ev_per_a: labels.forces_ev_per_a,
                stress_ev_per_a3: labels.stress_ev_per_a3,
                scf_steps,
                wall_time_s: wall_time_s.unwrap_or(0.0),
            };
            store.complete_found(id, claimed.attempt_id, &calc, wall_time_s.is_some())?;
            report.done.push((id, source));
        }
        EngineOutcome::PhysicsFailure { message } => {
            fail(store, claimed, FailureKind::Physics, &message, opts, report)?
        }
        EngineOutcome::Error { message } => {
            let kind = if input_error { FailureKind::Input } else { FailureKind::Crashed };
            fail(store, claimed, kind, &message, opts, report)?
        }
    }
    Ok(())
}

/// A parsed output as an engine outcome (as the engines judge a run they started):
/// converged with energy and forces for every atom -> labels; SCF or relaxation not
/// converged -> physics failure; anything else -> an error.
fn parsed_outcome(p: ParsedOutput, n_atoms: usize) -> EngineOutcome {
    let what = || {
        let status =
            serde_json::to_value(p.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        match &p.message {
            Some(m) => format!("{status}: {m}"),
            None => status,
        }
    };
    if p.status.is_physics_failure() {
        return EngineOutcome::PhysicsFailure { message: what() };
    }
    match p.to_labels() {
        Some(labels) if labels.forces_ev_per_a.len() == n_atoms => {
            EngineOutcome::Labels { labels, scf_steps: p.scf_steps }
        }
        Some(labels) => EngineOutcome::Error {
            message: format!(
                "the output has forces on {} atoms, the structure {n_atoms}",
                labels.forces_ev_per_a.len()
            ),
        },
        None if p.status == RunStatus::Converged => {
            EngineOutcome::Error { message: format!("{}: no energy or no forces in the output", what()) }
        }
        None => EngineOutcome::Error { message: what() },
    }
}

/// A failed attempt, retried within the budget of its kind (with the next remediation
/// step for a physics failure), as the executor does; input errors are never retried.
fn fail(
    store: &mut JobStore,
    claimed: &Claimed,
    kind: FailureKind,
    message: &str,
    opts: &UpdateOptions,
    report: &mut UpdateReport,
) -> Result<(), ExecError> {
    let (_, _, retry, remediation) =
        crate::local::retry_decision(claimed, kind, opts.max_physics_retries, opts.max_infra_retries);
    let id = claimed.calculation_id;
    store.fail_attempt(
        id,
        claimed.attempt_id,
        kind,
        message,
        retry,
        remediation.as_ref().map(|(v, c)| (v, c.as_str())),
    )?;
    let status = if retry { CalcStatus::Pending } else { CalcStatus::Failed };
    let line = format!("jobs update: calculation {id} failed ({}): {message}", kind.as_str());
    store.log_event(Some(id), if retry { "retry" } else { "failed" }, &line)?;
    report.failed.push((id, status, message.to_string()));
    Ok(())
}
