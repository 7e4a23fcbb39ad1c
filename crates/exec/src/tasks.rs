//! Task directories: work of the loop's own (exploration segments) that runs as jobs on
//! the same backend as the labels, without being a calculation of the database.
//!
//! A task directory holds its input (written by the caller) and is run by
//! `autopipe job-exec DIR`, which takes the directory's `.lock` for its life and writes
//! `result.json` atomically as its last step. A task is finished when `result.json`
//! exists; running it again gives the same result (tasks are deterministic), so after a
//! crash a task is only waited for (its lock held, or its job still in the scheduler's
//! queue) or run again, never lost.

use crate::job::{lock_is_held, RESULT_FILE};
use crate::local::{install_signal_handlers, last_line, restore_signal_handlers, INTERRUPTED};
use crate::{ExecError, Launcher, LocalOptions};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How a task ended: `None` when it left its `result.json`, else why it did not.
pub type TaskEnd = Option<String>;

pub fn task_done(dir: &Path) -> bool {
    dir.join(RESULT_FILE).is_file()
}

/// Run the task directories on this machine, at most `opts.workers` at once, each in its
/// own process group, killed beyond `opts.walltime`. Tasks already done are not run;
/// tasks whose lock is held (left running by an orchestrator that died) are waited for.
pub fn run_tasks_local(dirs: &[PathBuf], opts: &LocalOptions, launcher: &Launcher) -> Result<Vec<TaskEnd>, ExecError> {
    install_signal_handlers();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let result = local_pool(dirs, opts, launcher);
    restore_signal_handlers();
    result
}

fn local_pool(dirs: &[PathBuf], opts: &LocalOptions, launcher: &Launcher) -> Result<Vec<TaskEnd>, ExecError> {
    let mut ends: Vec<Option<TaskEnd>> = vec![None; dirs.len()];
    let mut queue: Vec<usize> = Vec::new();
    let mut adopted: Vec<usize> = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        if lock_is_held(dir) {
            adopted.push(k);
        } else if task_done(dir) {
            ends[k] = Some(None);
        } else {
            queue.push(k);
        }
    }
    queue.reverse();
    let mut running: Vec<(usize, Child, Instant, bool)> = Vec::new();
    let workers = opts.workers.max(1);
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            for (_, mut child, _, _) in running {
                kill_group(child.id() as i32);
                let _ = child.wait();
            }
            return Err(ExecError::Interrupted);
        }
        while running.len() < workers {
            let Some(k) = queue.pop() else { break };
            let dir = &dirs[k];
            let log = |name: &str| -> Result<File, ExecError> {
                let p = dir.join(name);
                File::create(&p).map_err(|error| ExecError::Io { path: p, error })
            };
            let child = {
                use std::os::unix::process::CommandExt;
                Command::new(&launcher.program)
                    .args(&launcher.args)
                    .arg(dir)
                    .stdin(Stdio::null())
                    .stdout(log("stdout")?)
                    .stderr(log("stderr")?)
                    .process_group(0)
                    .spawn()
                    .map_err(|error| ExecError::Launcher { program: launcher.program.clone(), error })?
            };
            running.push((k, child, Instant::now(), false));
        }
        adopted.retain(|&k| {
            if lock_is_held(&dirs[k]) {
                return true;
            }
            ends[k] = Some(if task_done(&dirs[k]) { None } else { Some("a task left running by an earlier run ended without a result".into()) });
            false
        });
        let mut i = 0;
        while i < running.len() {
            let (k, child, started, killed) = &mut running[i];
            match child.try_wait() {
                Ok(Some(status)) => {
                    let dir = &dirs[*k];
                    ends[*k] = Some(if task_done(dir) {
                        None
                    } else if *killed {
                        Some(format!("wall time of {} s exceeded; the task was killed", opts.walltime.as_secs_f64()))
                    } else {
                        Some(format!(
                            "the task process ended ({status}) without a result{}",
                            last_line(&dir.join("stderr")).map(|l| format!(": {l}")).unwrap_or_default()
                        ))
                    });
                    running.swap_remove(i);
                }
                Ok(None) => {
                    if !*killed && started.elapsed() > opts.walltime {
                        kill_group(child.id() as i32);
                        *killed = true;
                    }
                    i += 1;
                }
                Err(error) => return Err(ExecError::Io { path: dirs[*k].clone(), error }),
            }
        }
        if running.is_empty() && queue.is_empty() && adopted.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(ends.into_iter().map(|e| e.unwrap_or(Some("not run".into()))).collect())
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: a signal to a process group this process created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}
