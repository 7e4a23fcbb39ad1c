//! The job directories and the job process.
//!
//! Every calculation has a directory, `RUN/jobs/NNN/NNNNNN/`, and every attempt of it a
//! directory of its own inside, `attempt-K/` (K = 1, 2, ...). An attempt's directory holds
//! `job.json` (what to run), the engine's own inputs and outputs, `stdout`/`stderr` of the
//! job process, and `result.json`, written atomically (temp file + rename) as the very
//! last step. The job process holds an exclusive `flock` on the attempt's `.lock` for its
//! whole life: the lock is how a restarted orchestrator tells a job that is still running
//! from one that is gone, whatever happened to process ids meanwhile.
//!
//! A finished label is never computed twice: before running the engine, an attempt looks
//! at the `result.json` of the earlier attempts of the same calculation (and at the
//! calculation directory itself, where runs of older versions wrote it) and reuses
//! finished labels it finds there.

use autopipe_atoms::Structure;
use autopipe_engines::{EngineOutcome, EngineSpec};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const JOB_FILE: &str = "job.json";
pub const RESULT_FILE: &str = "result.json";
pub const LOCK_FILE: &str = ".lock";

/// The directory of a calculation, relative to the run directory.
pub fn calc_dir_rel(id: i64) -> String {
    format!("jobs/{:03}/{:06}", id / 1000, id)
}

/// The directory of one attempt (1-based) of a calculation, relative to the run directory.
pub fn attempt_dir_rel(id: i64, attempt: u32) -> String {
    format!("{}/attempt-{attempt}", calc_dir_rel(id))
}

/// What a job process runs: written by the executor before the process starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub calculation_id: i64,
    pub attempt: u32,
    pub engine: EngineSpec,
    pub structure: Structure,
}

/// What a job process leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    pub calculation_id: i64,
    pub attempt: u32,
    #[serde(flatten)]
    pub outcome: EngineOutcome,
    pub wall_time_s: f64,
    /// Set when this attempt found the finished result of an earlier attempt of the same
    /// calculation and reused it instead of computing it again.
    #[serde(default)]
    pub reused_from_attempt: Option<u32>,
    /// Set when the input can never succeed (the structure or the settings are invalid
    /// for this engine): the attempt fails at once, without retries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_error: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {message}")]
    BadJobFile { path: PathBuf, message: String },
    /// A `result.json` that exists but cannot be read as a result (truncated, damaged).
    #[error("{path}: corrupt result file ({message})")]
    CorruptResult { path: PathBuf, message: String },
    /// The job was told to stop (SIGTERM: a scheduler cancelling it or ending it at its
    /// wall time) while its engine ran: no result is written, so the orchestrator takes
    /// the scheduler's word for what happened instead of an engine "killed by a signal".
    #[error("the job was terminated (SIGTERM) while its engine ran; no result was written")]
    Terminated,
}

static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |error| JobError::Io { path: path.to_path_buf(), error }
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, renamed
/// over the target, so a reader sees the old file or the whole new one, never a part.
/// (No fsync: like the database in WAL mode with synchronous=NORMAL, this survives any
/// crash of a process; after an operating-system crash a lost result only means the
/// job runs again.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The result in `job_dir`: `Ok(None)` when there is none, an error when there is a
/// file that is not a readable result (it is then never taken for a missing one).
pub fn read_result(job_dir: &Path) -> Result<Option<JobResult>, JobError> {
    let path = job_dir.join(RESULT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| JobError::CorruptResult { path, message: e.to_string() })
}

/// Whether this job process was started by a batch scheduler (Slurm, Flux).
fn under_a_scheduler() -> bool {
    ["SLURM_JOB_ID", "FLUX_JOB_ID"].iter().any(|v| std::env::var_os(v).is_some())
}

/// Make an attempt's directory ready to run: created, without a stale `result.json` (a
/// directory left by a forgotten calculation whose id was given again), with its
/// `job.json`. With `engine_walltime_s`, the engine is told to stop itself within that
/// time (QE `max_seconds`, CP2K `WALLTIME`), below the wall time that kills it.
pub fn prepare_attempt(
    claimed: &autopipe_store::Claimed,
    job_dir: &Path,
    engine_walltime_s: Option<f64>,
) -> Result<(), String> {
    let at = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    std::fs::create_dir_all(job_dir).map_err(|e| at("create the job directory", job_dir, e))?;
    let stale = job_dir.join(RESULT_FILE);
    match std::fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(at("remove the stale", &stale, e)),
    }
    let mut engine: EngineSpec = serde_json::from_value(claimed.run_spec.clone())
        .map_err(|e| format!("stored engine settings are unreadable: {e}"))?;
    if let Some(s) = engine_walltime_s {
        engine = engine.with_time_limit_s(s);
    }
    let job = JobFile {
        calculation_id: claimed.calculation_id,
        attempt: claimed.attempt,
        engine,
        structure: claimed.structure.clone(),
    };
    write_atomic(&job_dir.join(JOB_FILE), &serde_json::to_vec_pretty(&job).expect("job files serialise"))
        .map_err(|e| e.to_string())
}

/// Whether a live process holds the job directory's lock (a job is running there).
pub fn lock_is_held(job_dir: &Path) -> bool {
    let Ok(f) = File::open(job_dir.join(LOCK_FILE)) else { return false };
    // SAFETY: flock on a file descriptor we own; released when `f` is dropped.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    r != 0
}

/// Take the exclusive lock of `dir`, waiting for it when `wait`.
pub fn lock(dir: &Path, wait: bool) -> Result<Option<File>, JobError> {
    let lock_path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let flags = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    // SAFETY: flock on a descriptor we own; released when the file is dropped.
    if unsafe { libc::flock(f.as_raw_fd(), flags) } != 0 {
        let e = std::io::Error::last_os_error();
        if !wait && e.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(io(&lock_path)(e));
    }
    Ok(Some(f))
}

/// Finished labels of an earlier attempt of the same calculation, with the number of the
/// attempt that computed them. Earlier attempts are the `attempt-K` siblings of
/// `attempt_dir` with K < `job.attempt`, and the calculation directory itself (the layout
/// of older versions). An earlier attempt still running (its lock held) is waited for.
/// Only a result for the same structure and the same label-defining settings counts: the
/// directory of a forgotten calculation whose id was given again is not reused.
fn earlier_labels(attempt_dir: &Path, job: &JobFile) -> Option<JobResult> {
    let calc_dir = attempt_dir.parent()?;
    let mut dirs: Vec<PathBuf> = (1..job.attempt).rev().map(|k| calc_dir.join(format!("attempt-{k}"))).collect();
    dirs.push(calc_dir.to_path_buf());
    let hash = job.structure.content_hash();
    let params = job.engine.label_params();
    for dir in dirs {
        if !dir.join(RESULT_FILE).exists() && !lock_is_held(&dir) {
            continue;
        }
        // Wait for an attempt that is somehow still running here, then read its result.
        let _wait = if dir != calc_dir { lock(&dir, true).ok().flatten() } else { None };
        let previous = match read_result(&dir) {
            Ok(Some(previous)) => previous,
            Ok(None) => continue,
            // Said in the job's stderr; the labels are computed again.
            Err(e) => {
                eprintln!("{e}; not reused");
                continue;
            }
        };
        if previous.calculation_id != job.calculation_id || !matches!(previous.outcome, EngineOutcome::Labels { .. }) {
            continue;
        }
        let same_job = std::fs::read_to_string(dir.join(JOB_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<JobFile>(&t).ok())
            .is_some_and(|j| j.structure.content_hash() == hash && j.engine.label_params() == params);
        if same_job {
            return Some(previous);
        }
    }
    None
}

/// Whether the engine can ever succeed on this input. An error here is an input error:
/// the structure is invalid, an element is not supported, a pseudopotential file named by
/// the settings does not exist. (The engines report such errors as plain errors, so they
/// are told apart here, before the engine runs.) Relative paths in the settings are
/// relative to `job_dir`, where the engine runs.
pub fn check_input(engine: &EngineSpec, structure: &Structure, job_dir: &Path) -> Result<(), String> {
    structure.validate().map_err(|e| format!("invalid structure: {e}"))?;
    engine.check_structure(structure)?;
    if let EngineSpec::Qe(s) = engine {
        for e in &structure.species {
            if let Some(file) = s.pseudopotentials.get(e.symbol()) {
                let path = job_dir.join(&s.pseudo_dir).join(file);
                if !path.is_file() {
                    return Err(format!("the pseudopotential file for {e} does not exist: {}", path.display()));
                }
            }
        }
    }
    Ok(())
}

/// The body of the job process (`autopipe job-exec ATTEMPT_DIR`): take the lock, run the
/// engine (or reuse finished labels of an earlier attempt), write `result.json`. Returns
/// the outcome it recorded.
pub fn execute_job_dir(job_dir: &Path) -> Result<JobResult, JobError> {
    // Blocking: if this attempt is somehow being run twice, the second waits and then
    // reuses the first one's result rather than running the engine twice at once.
    let lock = lock(job_dir, true)?;
    // A scheduler stops a job with SIGTERM to every process of it (then SIGKILL): the
    // engine dies of it, and this process notes it and writes no result.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let job_path = job_dir.join(JOB_FILE);
    let text = std::fs::read_to_string(&job_path).map_err(io(&job_path))?;
    let job: JobFile = serde_json::from_str(&text)
        .map_err(|e| JobError::BadJobFile { path: job_path.clone(), message: e.to_string() })?;
    let result_path = job_dir.join(RESULT_FILE);
    match read_result(job_dir) {
        Ok(Some(previous))
            if previous.calculation_id == job.calculation_id
                && previous.attempt == job.attempt
                && matches!(previous.outcome, EngineOutcome::Labels { .. }) =>
        {
            return Ok(previous)
        }
        Err(e) => eprintln!("{e}; this attempt computes its labels again"),
        _ => {}
    }
    if result_path.exists() {
        std::fs::remove_file(&result_path).map_err(io(&result_path))?;
    }
    if let Some(previous) = earlier_labels(job_dir, &job) {
        let reused = JobResult {
            attempt: job.attempt,
            reused_from_attempt: Some(previous.reused_from_attempt.unwrap_or(previous.attempt)),
            ..previous
        };
        write_atomic(&result_path, &serde_json::to_vec(&reused).expect("results serialise"))?;
        return Ok(reused);
    }
    let start = Instant::now();
    // What the local pool sets for the job process, set here too for jobs a scheduler
    // started (a command engine may read them). This process has no other thread yet.
    std::env::set_var("AUTOPIPE_CALCULATION_ID", job.calculation_id.to_string());
    std::env::set_var("AUTOPIPE_ATTEMPT", job.attempt.to_string());
    // The cores this job was given (allocation mode, a scheduler's cpus_per_task).
    let cores = std::env::var("AUTOPIPE_CORES").ok().and_then(|c| c.parse::<u32>().ok()).unwrap_or(1);
    let engine = job.engine.with_cores(cores);
    let (outcome, input_error) = match check_input(&engine, &job.structure, job_dir) {
        Ok(()) => (engine.run(job_dir, &job.structure), false),
        Err(message) => (EngineOutcome::Error { message }, true),
    };
    let result = JobResult {
        calculation_id: job.calculation_id,
        attempt: job.attempt,
        outcome,
        wall_time_s: start.elapsed().as_secs_f64(),
        reused_from_attempt: None,
        input_error,
    };
    if matches!(result.outcome, EngineOutcome::Error { .. }) && !result.input_error && under_a_scheduler() {
        // A scheduler signals every process of the job, the engine's perhaps a moment
        // before this one's: an engine that died of it is only told from a crash once
        // this process's own SIGTERM has had time to arrive.
        for _ in 0..30 {
            if TERMINATED.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if TERMINATED.load(std::sync::atomic::Ordering::SeqCst) && !matches!(result.outcome, EngineOutcome::Labels { .. }) {
        return Err(JobError::Terminated);
    }
    write_atomic(&result_path, &serde_json::to_vec(&result).expect("results serialise"))?;
    drop(lock);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::Element;

    fn cu(a: f64) -> Structure {
        let cu = Element::from_symbol("Cu").unwrap();
        Structure::new([[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]], vec![[0.0; 3]], vec![cu], [true; 3]).unwrap()
    }

    fn write_job(dir: &Path, attempt: u32, structure: Structure) {
        std::fs::create_dir_all(dir).unwrap();
        let job = JobFile { calculation_id: 7, attempt, engine: EngineSpec::Emt, structure };
        write_atomic(&dir.join(JOB_FILE), &serde_json::to_vec(&job).unwrap()).unwrap();
    }

    #[test]
    fn a_corrupt_result_is_told_from_a_missing_one() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_result(tmp.path()).unwrap().is_none());
        std::fs::write(tmp.path().join(RESULT_FILE), "{\"calculation_id\": 7").unwrap();
        match read_result(tmp.path()) {
            Err(e @ JobError::CorruptResult { .. }) => assert!(e.to_string().contains("result.json: corrupt")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_corrupt_result_in_the_attempt_or_an_earlier_one_is_computed_again_not_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let calc = tmp.path().join(calc_dir_rel(7));
        write_job(&calc.join("attempt-1"), 1, cu(2.6));
        std::fs::write(calc.join("attempt-1").join(RESULT_FILE), "{\"calculation_id\": 7").unwrap();
        write_job(&calc.join("attempt-2"), 2, cu(2.6));
        std::fs::write(calc.join("attempt-2").join(RESULT_FILE), "{\"calculation_id\": 7, \"att").unwrap();
        let r = execute_job_dir(&calc.join("attempt-2")).unwrap();
        assert!(matches!(r.outcome, EngineOutcome::Labels { .. }), "{r:?}");
        assert_eq!((r.attempt, r.reused_from_attempt), (2, None), "computed by attempt 2 itself");
        assert_eq!(read_result(&calc.join("attempt-2")).unwrap().unwrap().attempt, 2);
    }

    #[test]
    fn finished_labels_of_an_earlier_attempt_are_reused_only_for_the_same_job() {
        let tmp = tempfile::tempdir().unwrap();
        let calc = tmp.path().join(calc_dir_rel(7));
        write_job(&calc.join("attempt-1"), 1, cu(2.6));
        let first = execute_job_dir(&calc.join("attempt-1")).unwrap();
        assert!(first.reused_from_attempt.is_none());
        write_job(&calc.join("attempt-2"), 2, cu(2.6));
        let second = execute_job_dir(&calc.join("attempt-2")).unwrap();
        assert_eq!(second.reused_from_attempt, Some(1));
        assert_eq!(second.attempt, 2);
        // Another structure under the same id (a forgotten calculation's directory): not reused.
        write_job(&calc.join("attempt-3"), 3, cu(2.7));
        assert!(execute_job_dir(&calc.join("attempt-3")).unwrap().reused_from_attempt.is_none());
    }

    #[test]
    fn an_invalid_structure_is_an_input_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = cu(2.6);
        s.cell_a = [[0.0; 3]; 3];
        write_job(&tmp.path().join("attempt-1"), 1, s);
        let r = execute_job_dir(&tmp.path().join("attempt-1")).unwrap();
        assert!(r.input_error, "{r:?}");
        assert!(matches!(r.outcome, EngineOutcome::Error { ref message } if message.contains("singular")));
    }
}
