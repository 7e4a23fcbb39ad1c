//! The run lock: one process at a time may write a run directory.
//!
//! An exclusive `flock` on `RUN/autopipe.lock`, held for the life of the command that
//! writes (`run`, `jobs import|reset|cancel|forget`, `doctor --recover`); `jobs run` and
//! `jobs submit` take it shared, so that several of them can work on one database (their
//! calculations kept apart by leases) while no exclusive writer runs. The kernel
//! releases it when the process dies, however it dies, so a stale lock cannot exist.
//! The file holds who took it (pid, start time, command line), for the message the
//! second process prints. Read-only commands never take it.

use crate::StoreError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = "autopipe.lock";

/// An exclusive lock on a run directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of `run_dir` (created when absent), or fail at once with
    /// [`StoreError::Locked`] naming the process that holds it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock, StoreError> {
        Self::take(run_dir, libc::LOCK_EX)
    }

    /// A shared lock: several holders at once (`jobs run` processes working on one
    /// database, kept apart by leases), none while an exclusive holder writes.
    pub fn acquire_shared(run_dir: &Path) -> Result<RunLock, StoreError> {
        Self::take(run_dir, libc::LOCK_SH)
    }

    fn take(run_dir: &Path, mode: libc::c_int) -> Result<RunLock, StoreError> {
        let path = run_dir.join(LOCK_FILE);
        std::fs::create_dir_all(run_dir).map_err(|source| StoreError::Io { path: run_dir.to_path_buf(), source })?;
        let io = |source| StoreError::Io { path: path.clone(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // SAFETY: flock on a descriptor we own; the lock lives as long as `file`.
        if unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(err));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                dir: run_dir.to_path_buf(),
                holder: if holder.is_empty() { "pid unknown".into() } else { holder.replace('\n', ", ") },
            });
        }
        let started = crate::now_s();
        let command: Vec<String> = std::env::args().collect();
        let text = format!("pid {}\nstarted {}\ncommand {}\n", std::process::id(), utc(started), command.join(" "));
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        Ok(RunLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Unix seconds as an ISO 8601 UTC time (civil-from-days, no time-zone database needed).
pub fn utc(unix_s: f64) -> String {
    let secs = unix_s.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_matches_known_instants() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_083_200.0 + 3661.5), "2026-12-01T01:01:01Z");
    }

    #[test]
    fn a_second_lock_in_the_same_process_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("another autopipe"), "{err}");
        drop(first);
        RunLock::acquire(dir.path()).expect("free again once dropped");
    }
}
