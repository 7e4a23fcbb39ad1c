//! The job directory and the job process.
//!
//! A job directory holds `job.json` (what to run), the engine's own inputs and outputs,
//! `stdout`/`stderr` of the job process, and `result.json`, written atomically (temp
//! file + rename) as the very last step. The job process holds an exclusive `flock` on
//! `.lock` for its whole life: the lock is how a restarted orchestrator tells a job that
//! is still running from one that is gone, whatever happened to process ids meanwhile.

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
    /// calculation in its directory and reused it instead of computing it again.
    #[serde(default)]
    pub reused_from_attempt: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    BadJobFile { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io { path: path.to_path_buf(), source }
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

pub fn read_result(job_dir: &Path) -> Option<JobResult> {
    let text = std::fs::read_to_string(job_dir.join(RESULT_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a live process holds the job directory's lock (a job is running there).
pub fn lock_is_held(job_dir: &Path) -> bool {
    let Ok(f) = File::open(job_dir.join(LOCK_FILE)) else { return false };
    // SAFETY: flock on a file descriptor we own; released when `f` is dropped.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    r != 0
}

/// The body of the job process (`autopipe job-exec DIR`): take the lock, run the
/// engine, write `result.json`. Returns the outcome it recorded.
pub fn execute_job_dir(job_dir: &Path) -> Result<JobResult, JobError> {
    let lock_path = job_dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    // Blocking: if an older attempt is somehow still running here, wait for it and
    // reuse its result below rather than running the engine twice at once.
    // SAFETY: flock on a descriptor we own for the whole function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(&lock_path)(std::io::Error::last_os_error()));
    }
    let job_path = job_dir.join(JOB_FILE);
    let text = std::fs::read_to_string(&job_path).map_err(io(&job_path))?;
    let job: JobFile = serde_json::from_str(&text)
        .map_err(|e| JobError::BadJobFile { path: job_path.clone(), message: e.to_string() })?;
    let result_path = job_dir.join(RESULT_FILE);
    if let Some(previous) = read_result(job_dir) {
        if previous.calculation_id == job.calculation_id && matches!(previous.outcome, EngineOutcome::Labels { .. }) {
            let reused = JobResult {
                attempt: job.attempt,
                reused_from_attempt: Some(previous.reused_from_attempt.unwrap_or(previous.attempt)),
                ..previous
            };
            write_atomic(&result_path, &serde_json::to_vec(&reused).expect("results serialise"))?;
            return Ok(reused);
        }
        std::fs::remove_file(&result_path).map_err(io(&result_path))?;
    }
    let start = Instant::now();
    let outcome = job.engine.run(job_dir, &job.structure);
    let result = JobResult {
        calculation_id: job.calculation_id,
        attempt: job.attempt,
        outcome,
        wall_time_s: start.elapsed().as_secs_f64(),
        reused_from_attempt: None,
    };
    write_atomic(&result_path, &serde_json::to_vec(&result).expect("results serialise"))?;
    drop(lock);
    Ok(result)
}
